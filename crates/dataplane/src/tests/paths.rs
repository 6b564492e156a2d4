//! Tunnels over several paths and over IPv4: framing per path, receiving on
//! all of them, and which one sends.

use std::net::IpAddr;

use hex_literal::hex;
use wire::{Icmpv6Packet, Icmpv6Repr, tcp::flags};

use super::*;
use crate::{
    ConfigError, DropReason, Event, PathId, PathMtuReason, SwitchReason, TrafficClass, Verdict,
};

/// ICMP echo request 198.51.100.1 -> 203.0.113.1, DF, TTL 64, id 0x1234,
/// data "v6gate!!", the same packet as the ip6tnl vectors use.
const ECHO: [u8; 36] = hex!(
    "45 00 00 24 12 34 40 00 40 01 c2 6e c6 33 64 01 cb 00 71 01"
    "08 00 42 9e 42 42 00 01 76 36 67 61 74 65 21 21"
);

fn over_ipv4(mode: Mode) -> TunnelConfig {
    let mut c = config(mode);
    c.paths = vec![PathConfig {
        probe: Probe::None,
        ..PathConfig::new("pppoe", LOCAL4, REMOTE4)
    }];
    c
}

fn send(dp: &mut Dataplane, id: TunnelId, packet: &[u8]) -> (Verdict, Vec<(Destination, Vec<u8>)>) {
    let mut out = Batch::new(4096);
    let verdict = dp.handle_inner(now(), id, &mut packet.to_vec(), &mut out);
    (verdict, packets(&out))
}

fn receive4(dp: &mut Dataplane, datagram: &[u8]) -> (Verdict, Vec<(Destination, Vec<u8>)>) {
    let mut out = Batch::new(4096);
    let verdict = dp.handle_outer_ipv4(now(), &mut datagram.to_vec(), &mut out);
    (verdict, packets(&out))
}

/// An outer IPv4 datagram as a peer would send it.
fn outer4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, tos: u8, inner: &[u8]) -> Vec<u8> {
    let mut datagram = ipv4(src, dst, protocol, inner, false);
    let mut view = Ipv4Packet::new_unchecked(&mut datagram[..]);
    view.set_dscp_ecn(tos);
    view.fill_checksum();
    datagram
}

#[test]
fn ipip_over_ipv4_matches_rfc_2003_byte_for_byte() {
    // Outer: version 4, IHL 5, TOS 0, total length 20 + 36, identification 1
    // (the first of the counter), DF copied from the inner packet, TTL 64,
    // protocol 4, checksum worked out by hand (sum of the other nine words
    // 0x25164, folded 0x5166, complemented 0xae99), 198.18.0.1 -> 198.18.0.2.
    let expected = hex!(
        "45 00 00 38 00 01 40 00 40 04 ae 99 c6 12 00 01 c6 12 00 02"
        "45 00 00 24 12 34 40 00 40 01 c2 6e c6 33 64 01 cb 00 71 01"
        "08 00 42 9e 42 42 00 01 76 36 67 61 74 65 21 21"
    );
    let (mut dp, id) = dataplane(over_ipv4(Mode::Ipip6));
    let (verdict, got) = send(&mut dp, id, &ECHO);
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(
        got,
        vec![(
            Destination::Underlay {
                remote: REMOTE4.into()
            },
            expected.to_vec()
        )]
    );
}

#[test]
fn ipv4_outer_df_follows_the_inner_packet_and_never_for_ipv6() {
    let (mut dp, id) = dataplane(over_ipv4(Mode::Any));
    let (_, got) = send(&mut dp, id, &udp4(NEAR4, FAR4, 100, false));
    let outer = Ipv4Packet::new_checked(&got[0].1[..]).unwrap();
    assert!(!outer.dont_frag());
    assert_eq!(outer.protocol(), ip_proto::IPIP);

    let inner6 = udp6(NEAR6, FAR6, 100);
    let (_, got) = send(&mut dp, id, &inner6);
    let outer = Ipv4Packet::new_checked(&got[0].1[..]).unwrap();
    assert!(outer.verify_checksum());
    assert!(!outer.dont_frag(), "RFC 4213 §3.2.1: static MTU, no DF");
    assert_eq!(outer.protocol(), ip_proto::IPV6);
    assert_eq!(usize::from(outer.total_len()), 20 + inner6.len());
    assert_eq!(outer.payload(), &inner6[..]);
    // Each datagram takes the next identification.
    assert_eq!(outer.ident(), 2);
}

#[test]
fn ipv4_outer_takes_ttl_and_tos_from_the_tunnel() {
    let mut c = over_ipv4(Mode::Ipip6);
    c.hop_limit = 9;
    c.traffic_class = TrafficClass::Fixed(0xb8);
    let (mut dp, id) = dataplane(c);
    let mut inner = ECHO;
    {
        let mut view = Ipv4Packet::new_unchecked(&mut inner[..]);
        view.set_dscp_ecn(0x02); // ECT(0)
        view.fill_checksum();
    }
    let (_, got) = send(&mut dp, id, &inner);
    let outer = Ipv4Packet::new_checked(&got[0].1[..]).unwrap();
    assert_eq!(outer.ttl(), 9);
    assert_eq!(outer.dscp_ecn(), 0xba);
    assert!(outer.verify_checksum());
}

#[test]
fn ipv4_path_fragments_inner_packets_without_df() {
    let mut c = over_ipv4(Mode::Ipip6);
    c.mtu = 576;
    let (mut dp, id) = dataplane(c);
    let packet = udp4(NEAR4, FAR4, 1000, false);
    let (verdict, got) = send(&mut dp, id, &packet);
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(got.len(), 2);
    let mut idents = Vec::new();
    for (destination, outer) in &got {
        assert_eq!(
            *destination,
            Destination::Underlay {
                remote: REMOTE4.into()
            }
        );
        assert!(outer.len() <= 576 + 20);
        let view = Ipv4Packet::new_checked(&outer[..]).unwrap();
        assert!(view.verify_checksum());
        assert!(!view.dont_frag());
        idents.push(view.ident());
        let inner = Ipv4Packet::new_checked(view.payload()).unwrap();
        assert!(inner.verify_checksum());
    }
    assert_ne!(idents[0], idents[1]);
    let stats = dp.stats(id).unwrap();
    assert_eq!(stats.tx_packets, 2);
    assert_eq!(stats.fragmented, 1);
}

#[test]
fn decapsulates_whole_ipv4_datagrams() {
    let (mut dp, id) = dataplane(over_ipv4(Mode::Any));
    let v4 = udp4(FAR4, NEAR4, 64, true);
    let (verdict, got) = receive4(&mut dp, &outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0, &v4));
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(got, vec![(Destination::Tun(id), v4.clone())]);

    let v6 = udp6(FAR6, NEAR6, 64);
    let (verdict, got) = receive4(&mut dp, &outer4(REMOTE4, LOCAL4, ip_proto::IPV6, 0, &v6));
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(got, vec![(Destination::Tun(id), v6.clone())]);

    // Link-layer padding after the datagram is not part of it.
    let mut padded = outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0, &v4);
    padded.extend_from_slice(&[0; 6]);
    let (_, got) = receive4(&mut dp, &padded);
    assert_eq!(got[0].1, v4);

    let stats = dp.stats(id).unwrap();
    assert_eq!(stats.rx_packets, 3);
    let path = dp.path_stats(id, PathId(0)).unwrap();
    assert_eq!(path.rx_packets, 3);
    assert_eq!(path.rx_bytes, (2 * v4.len() + v6.len()) as u64);
}

#[test]
fn skips_outer_ipv4_options() {
    let (mut dp, id) = dataplane(over_ipv4(Mode::Ipip6));
    let inner = udp4(FAR4, NEAR4, 20, true);
    let mut datagram = outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0, &inner);
    // Four bytes of NOP options after the fixed header.
    datagram.splice(20..20, [1, 1, 1, 1]);
    let mut view = Ipv4Packet::new_unchecked(&mut datagram[..]);
    view.set_header_len(24);
    view.set_total_len(24 + inner.len() as u16);
    view.fill_checksum();
    let (verdict, got) = receive4(&mut dp, &datagram);
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(got, vec![(Destination::Tun(id), inner)]);
}

#[test]
fn broken_or_foreign_ipv4_datagrams_are_dropped() {
    let (mut dp, id) = dataplane(over_ipv4(Mode::Ipip6));
    let inner = udp4(FAR4, NEAR4, 20, true);
    let good = outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0, &inner);

    let mut bad_checksum = good.clone();
    bad_checksum[10] ^= 0xff;
    let mut fragment = good.clone();
    Ipv4Packet::new_unchecked(&mut fragment[..]).set_more_frags(true);
    Ipv4Packet::new_unchecked(&mut fragment[..]).fill_checksum();
    let mut version6 = good.clone();
    version6[0] = 0x65;
    for (what, datagram) in [
        ("checksum", bad_checksum),
        ("fragment", fragment),
        ("version", version6),
        ("truncated", good[..19].to_vec()),
        ("empty", Vec::new()),
    ] {
        let (verdict, got) = receive4(&mut dp, &datagram);
        assert_eq!(verdict, Verdict::Dropped(DropReason::Malformed), "{what}");
        assert!(got.is_empty());
    }
    assert_eq!(dp.unattributed_drops().malformed, 5);

    let spoofed = outer4(
        Ipv4Addr::new(198, 18, 9, 9),
        LOCAL4,
        ip_proto::IPIP,
        0,
        &inner,
    );
    let (verdict, _) = receive4(&mut dp, &spoofed);
    assert_eq!(verdict, Verdict::Dropped(DropReason::SpoofedOuterSource));
    assert_eq!(dp.stats(id).unwrap().drops.spoofed_outer_source, 1);

    let elsewhere = outer4(
        REMOTE4,
        Ipv4Addr::new(198, 18, 9, 9),
        ip_proto::IPIP,
        0,
        &inner,
    );
    let (verdict, _) = receive4(&mut dp, &elsewhere);
    assert_eq!(verdict, Verdict::Dropped(DropReason::NoTunnel));

    let udp = outer4(REMOTE4, LOCAL4, ip_proto::UDP, 0, &inner);
    let (verdict, _) = receive4(&mut dp, &udp);
    assert_eq!(verdict, Verdict::Dropped(DropReason::Malformed));
    assert_eq!(dp.stats(id).unwrap().drops.malformed, 1);
}

#[test]
fn congestion_marks_on_an_ipv4_outer_header_reach_inside() {
    let (mut dp, _) = dataplane(over_ipv4(Mode::Ipip6));
    let mut ect = udp4(FAR4, NEAR4, 20, true);
    {
        let mut view = Ipv4Packet::new_unchecked(&mut ect[..]);
        view.set_dscp_ecn(0x01);
        view.fill_checksum();
    }
    let (verdict, got) = receive4(
        &mut dp,
        &outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0x03, &ect),
    );
    assert_eq!(verdict, Verdict::Forwarded);
    let inner = Ipv4Packet::new_checked(&got[0].1[..]).unwrap();
    assert_eq!(inner.dscp_ecn(), 0x03);
    assert!(inner.verify_checksum());
    let not_ect = udp4(FAR4, NEAR4, 20, true);
    let (verdict, _) = receive4(
        &mut dp,
        &outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0x03, &not_ect),
    );
    assert_eq!(verdict, Verdict::Dropped(DropReason::CongestionNotEct));
}

#[test]
fn receives_on_every_path_and_sends_on_the_cheapest() {
    let (mut dp, id) = dataplane(two_paths(Mode::Any));
    assert_eq!(dp.active_path(id), Some(PathId(0)));
    let (_, got) = send(&mut dp, id, &ECHO);
    assert_eq!(
        got[0].0,
        Destination::Underlay {
            remote: REMOTE.into()
        }
    );

    let v4 = udp4(FAR4, NEAR4, 30, true);
    let mut out = Batch::new(4096);
    let (meta, mut payload) = (from_remote(ip_proto::IPIP), v4.clone());
    assert_eq!(
        dp.handle_outer(now(), &meta, &mut payload, &mut out),
        Verdict::Forwarded
    );
    let (verdict, got) = receive4(&mut dp, &outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0, &v4));
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(got[0].0, Destination::Tun(id));

    let ipoe = dp.path_stats(id, PathId(0)).unwrap();
    let pppoe = dp.path_stats(id, PathId(1)).unwrap();
    assert_eq!((ipoe.tx_packets, ipoe.rx_packets), (1, 1));
    assert_eq!((pppoe.tx_packets, pppoe.rx_packets), (0, 1));
    assert_eq!(dp.stats(id).unwrap().rx_packets, 2);
    assert_eq!(ipoe.state, HealthState::Up, "not probed counts as up");
    assert_eq!(dp.path_stats(id, PathId(2)), None);
}

#[test]
fn cost_ties_go_to_the_first_listed() {
    let mut c = two_paths(Mode::Ipip6);
    c.paths[0].cost = 100;
    let (dp, id) = dataplane(c.clone());
    assert_eq!(dp.active_path(id), Some(PathId(0)));
    c.paths[0].cost = 101;
    let (dp, id) = dataplane(c);
    assert_eq!(dp.active_path(id), Some(PathId(1)));
    assert_eq!(dp.stats(id).unwrap().active_path, PathId(1));
}

#[test]
fn demultiplexes_over_all_paths_of_all_tunnels() {
    let mut dp = Dataplane::new();
    let first = dp.add_tunnel(two_paths(Mode::Ipip6)).unwrap();
    // Same local addresses, other remotes.
    let mut other = two_paths(Mode::Ipip6);
    other.paths[0].remote = "2001:db8:0:3::1".parse().unwrap();
    other.paths[1].remote = "198.18.0.3".parse().unwrap();
    let second = dp.add_tunnel(other).unwrap();
    assert_eq!(
        dp.path_by_endpoints(LOCAL4, REMOTE4),
        Some((first, PathId(1)))
    );
    assert_eq!(
        dp.path_by_endpoints(LOCAL4, "198.18.0.3".parse::<Ipv4Addr>().unwrap()),
        Some((second, PathId(1)))
    );
    let inner = udp4(FAR4, NEAR4, 20, true);
    let from_third = outer4(
        "198.18.0.3".parse().unwrap(),
        LOCAL4,
        ip_proto::IPIP,
        0,
        &inner,
    );
    let (_, got) = receive4(&mut dp, &from_third);
    assert_eq!(got[0].0, Destination::Tun(second));

    // A path of another tunnel with the same ends is refused, whatever its name.
    let mut clash = config(Mode::Ipip6);
    clash.paths = vec![PathConfig::new("x", LOCAL4, REMOTE4)];
    assert_eq!(
        dp.add_tunnel(clash),
        Err(ConfigError::DuplicateEndpoints {
            existing: first,
            local: LOCAL4.into(),
            remote: REMOTE4.into(),
        })
    );
    assert!(dp.remove_tunnel(first));
    assert_eq!(dp.path_by_endpoints(LOCAL4, REMOTE4), None);
    assert_eq!(dp.path_by_endpoints(LOCAL, REMOTE), None);
}

#[test]
fn the_loop_check_covers_every_path() {
    let mut c = two_paths(Mode::Any);
    c.routes.push("0.0.0.0/0".parse().unwrap());
    let (mut dp, id) = dataplane(c);
    let (verdict, _) = send(&mut dp, id, &udp4(NEAR4, REMOTE4, 10, true));
    assert_eq!(verdict, Verdict::Dropped(DropReason::RoutingLoop));
}

/// A Packet Too Big about an outer packet of the IPv6 path.
fn ptb_for(dp: &mut Dataplane, id: TunnelId, mtu: u32) -> Verdict {
    let router: Ipv6Addr = "2001:db8:0:ff::1".parse().unwrap();
    let mut out = Batch::new(4096);
    let mut probe = udp4(NEAR4, FAR4, 1200, true);
    let _ = dp.handle_inner_on_path(now(), id, PathId(0), &mut probe, &mut out);
    let quoted = packets(&out).remove(0).1;
    let repr = Icmpv6Repr::PacketTooBig {
        mtu,
        data: &quoted[..quoted.len().min(1232)],
    };
    let mut message = vec![0; repr.buffer_len()];
    repr.emit(
        &router,
        &LOCAL,
        &mut Icmpv6Packet::new_unchecked(&mut message[..]),
    );
    dp.handle_icmpv6(now(), router, LOCAL, &message)
}

#[test]
fn path_mtu_is_per_path_and_the_active_one_decides() {
    let mut c = two_paths(Mode::Ipip6);
    c.mss_clamp = MssClamp::Auto;
    let (mut dp, id) = dataplane(c);
    assert_eq!(ptb_for(&mut dp, id, 1400), Verdict::Consumed);
    assert_eq!(
        dp.poll_event(),
        Some(Event::PathMtuChanged {
            tunnel: id,
            path: PathId(0),
            mtu: 1360,
            reason: PathMtuReason::PacketTooBig {
                from: "2001:db8:0:ff::1".parse().unwrap(),
                reported: 1400
            }
        })
    );
    assert_eq!(dp.path_stats(id, PathId(0)).unwrap().path_mtu, 1360);
    assert_eq!(dp.path_stats(id, PathId(1)).unwrap().path_mtu, 1460);
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1360);

    // Active path 0: too big, and SYNs are clamped to its MTU.
    let big = udp4(NEAR4, FAR4, 1380, true);
    let (verdict, _) = send(&mut dp, id, &big);
    assert_eq!(verdict, Verdict::Dropped(DropReason::TooBig));
    let (_, got) = send(&mut dp, id, &tcp4(NEAR4, FAR4, &syn(flags::SYN, 1460)));
    let mss = TcpPacket::new_checked(&got[0].1[60..]).unwrap().mss();
    assert_eq!(mss, Ok(Some(1320)));

    // The IPv4 path has its own, unlowered MTU.
    let mut out = Batch::new(4096);
    let verdict = dp.handle_inner_on_path(now(), id, PathId(1), &mut big.clone(), &mut out);
    assert_eq!(verdict, Verdict::Forwarded);
    out.clear();
    let mut syn4 = tcp4(NEAR4, FAR4, &syn(flags::SYN, 1460));
    let _ = dp.handle_inner_on_path(now(), id, PathId(1), &mut syn4, &mut out);
    let (_, outer) = out.get(0).unwrap();
    assert_eq!(
        TcpPacket::new_checked(&outer[40..]).unwrap().mss(),
        Ok(Some(1420))
    );
}

#[test]
fn an_unknown_path_is_no_tunnel() {
    let (mut dp, id) = dataplane(two_paths(Mode::Ipip6));
    let mut out = Batch::new(4096);
    let verdict = dp.handle_inner_on_path(now(), id, PathId(2), &mut ECHO.to_vec(), &mut out);
    assert_eq!(verdict, Verdict::Dropped(DropReason::NoTunnel));
    assert!(out.is_empty());
    assert_eq!(dp.stats(id).unwrap().drops.no_tunnel, 1);
    let verdict =
        dp.handle_inner_on_path(now(), TunnelId(9), PathId(0), &mut ECHO.to_vec(), &mut out);
    assert_eq!(verdict, Verdict::Dropped(DropReason::NoTunnel));
    assert_eq!(dp.unattributed_drops().no_tunnel, 1);
}

fn per_path(mode: Mode) -> TunnelConfig {
    let mut c = two_paths(mode);
    c.device_per_path = true;
    c
}

#[test]
fn a_device_per_path_sends_on_that_path_with_no_route_filter() {
    let (mut dp, id) = dataplane(per_path(Mode::Ipip6));
    // An OSPF hello to 224.0.0.5 is in no configured route.
    let hello = ipv4(
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::new(224, 0, 0, 5),
        89,
        &[2, 1, 0, 44],
        false,
    );
    for (path, remote) in [
        (PathId(0), IpAddr::from(REMOTE)),
        (PathId(1), REMOTE4.into()),
    ] {
        let mut out = Batch::new(4096);
        let verdict = dp.handle_inner_on_path(now(), id, path, &mut hello.clone(), &mut out);
        assert_eq!(verdict, Verdict::Forwarded);
        assert_eq!(out.get(0).unwrap().0, Destination::Underlay { remote });
    }
    // Without a device per path the routes still filter.
    let (mut dp, id) = dataplane(two_paths(Mode::Ipip6));
    let mut out = Batch::new(4096);
    let verdict = dp.handle_inner_on_path(now(), id, PathId(1), &mut hello.clone(), &mut out);
    assert_eq!(verdict, Verdict::Dropped(DropReason::NotRouted));
}

#[test]
fn a_device_per_path_receives_per_path_and_keeps_the_source_filter() {
    let (mut dp, id) = dataplane(per_path(Mode::Ipip6));
    let inner = udp4(FAR4, NEAR4, 20, true);
    let (_, got) = receive4(&mut dp, &outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0, &inner));
    assert_eq!(
        got,
        vec![(Destination::TunPath(id, PathId(1)), inner.clone())]
    );
    let mut out = Batch::new(4096);
    let _ = dp.handle_outer(
        now(),
        &from_remote(ip_proto::IPIP),
        &mut inner.clone(),
        &mut out,
    );
    assert_eq!(out.get(0).unwrap().0, Destination::TunPath(id, PathId(0)));

    let stranger = udp4(Ipv4Addr::new(198, 18, 7, 7), NEAR4, 20, true);
    let (verdict, _) = receive4(
        &mut dp,
        &outer4(REMOTE4, LOCAL4, ip_proto::IPIP, 0, &stranger),
    );
    assert_eq!(verdict, Verdict::Dropped(DropReason::InnerSourceNotAllowed));
}

#[test]
fn icmp_errors_for_a_path_device_go_through_the_host_stack() {
    let mut c = per_path(Mode::Ipip6);
    c.mtu = 1000;
    let (mut dp, id) = dataplane(c);
    let mut out = Batch::new(4096);
    let big = udp4(NEAR4, FAR4, 1200, true);
    let verdict = dp.handle_inner_on_path(now(), id, PathId(1), &mut big.clone(), &mut out);
    assert_eq!(verdict, Verdict::Dropped(DropReason::TooBig));
    assert_eq!(out.get(0).unwrap().0, Destination::Local);
}

#[test]
fn update_keeps_paths_by_name_and_the_active_one() {
    let mut dp = Dataplane::new();
    let id = dp.add_tunnel(two_paths(Mode::Ipip6)).unwrap();
    let _ = send(&mut dp, id, &ECHO);
    assert_eq!(ptb_for(&mut dp, id, 1400), Verdict::Consumed);
    let _ = dp.poll_event();

    // Reordered, the IPv6 path now second and dearer; a third path added.
    let mut c = two_paths(Mode::Ipip6);
    c.paths.swap(0, 1);
    c.paths[1].cost = 1000;
    c.paths.push(PathConfig {
        cost: 500,
        probe: Probe::None,
        ..PathConfig::new(
            "lte",
            Ipv4Addr::new(198, 18, 5, 1),
            Ipv4Addr::new(198, 18, 5, 2),
        )
    });
    dp.update_tunnel(id, c.clone()).unwrap();
    // Traffic stays on "ipoe", which kept its counters and its learnt MTU.
    assert_eq!(dp.active_path(id), Some(PathId(1)));
    let ipoe = dp.path_stats(id, PathId(1)).unwrap();
    assert_eq!(ipoe.tx_packets, 2);
    assert_eq!(ipoe.path_mtu, 1360);
    assert_eq!(dp.stats(id).unwrap().path_mtu, 1360);
    assert_eq!(dp.poll_event(), None);
    assert_eq!(
        dp.path_by_endpoints(Ipv4Addr::new(198, 18, 5, 1), Ipv4Addr::new(198, 18, 5, 2)),
        Some((id, PathId(2)))
    );
    assert_eq!(dp.path_by_endpoints(LOCAL, REMOTE), Some((id, PathId(1))));

    // Dropping the active path moves traffic to the cheapest one left.
    c.paths.remove(1);
    dp.update_tunnel(id, c).unwrap();
    assert_eq!(dp.active_path(id), Some(PathId(0)));
    assert_eq!(
        dp.poll_event(),
        Some(Event::ActivePathChanged {
            tunnel: id,
            from: PathId(1),
            to: PathId(0),
            reason: SwitchReason::Reconfigured
        })
    );
    assert_eq!(dp.path_by_endpoints(LOCAL, REMOTE), None);
    let (_, got) = send(&mut dp, id, &ECHO);
    assert_eq!(
        got[0].0,
        Destination::Underlay {
            remote: REMOTE4.into()
        }
    );
}
