//! Probes packet by packet: keepalives between cores, ICMP echoes to a
//! foreign peer, and what each does to the path it checks.

use std::net::IpAddr;
use std::time::Duration;

use wire::{Icmpv4Packet, icmpv4};

use super::*;
use crate::health::HealthReason;
use crate::probe::{KEEPALIVE_PROTOCOL, Keepalive, Kind};
use crate::{DropReason, Event, PathId};

const MS: Duration = Duration::from_millis(1);

fn probed(probe: Probe) -> TunnelConfig {
    let mut c = two_paths(Mode::Any);
    for path in &mut c.paths {
        path.probe = probe;
    }
    c
}

/// The inner packet of an outer one, and the outer ends.
fn open(outer: &[u8]) -> (IpAddr, IpAddr, u8, Vec<u8>) {
    if outer[0] >> 4 == 6 {
        let ip = Ipv6Packet::new_checked(outer).unwrap();
        let (meta, payload) = receive(outer);
        (
            ip.src_addr().into(),
            ip.dst_addr().into(),
            meta.next_header,
            payload,
        )
    } else {
        let ip = Ipv4Packet::new_checked(outer).unwrap();
        assert!(ip.verify_checksum());
        (
            ip.src_addr().into(),
            ip.dst_addr().into(),
            ip.protocol(),
            ip.payload().to_vec(),
        )
    }
}

/// Hands an outer packet to a core the way the shell would.
fn deliver(dp: &mut Dataplane, now: Instant, outer: &[u8]) -> (Verdict, Batch) {
    let mut out = Batch::new(4096);
    let verdict = if outer[0] >> 4 == 6 {
        let (meta, mut payload) = receive(outer);
        dp.handle_outer(now, &meta, &mut payload, &mut out)
    } else {
        dp.handle_outer_ipv4(now, &mut outer.to_vec(), &mut out)
    };
    (verdict, out)
}

fn timeout(dp: &mut Dataplane, now: Instant) -> Vec<(Destination, Vec<u8>)> {
    let mut out = Batch::new(4096);
    dp.handle_timeout(now, &mut out);
    packets(&out)
}

#[test]
fn keepalives_leave_on_each_probed_path_every_interval() {
    let mut c = probed(Probe::Keepalive);
    c.paths.push(PathConfig {
        probe: Probe::None,
        ..PathConfig::new(
            "lte",
            Ipv4Addr::new(198, 18, 5, 1),
            Ipv4Addr::new(198, 18, 5, 2),
        )
    });
    let (mut dp, id) = dataplane(c);
    // The core has never seen the clock: the first probes wait for a call.
    assert_eq!(dp.poll_timeout(), None);
    let t0 = now();
    let sent = timeout(&mut dp, t0);
    assert_eq!(sent.len(), 2);
    for (i, (destination, outer)) in sent.iter().enumerate() {
        let (src, dst, protocol, inner) = open(outer);
        let (local, remote): (IpAddr, IpAddr) = if i == 0 {
            (LOCAL.into(), REMOTE.into())
        } else {
            (LOCAL4.into(), REMOTE4.into())
        };
        assert_eq!(*destination, Destination::Underlay { remote });
        assert_eq!((src, dst), (local, remote));
        assert_eq!(protocol, ip_proto::IPIP);
        let ip = Ipv4Packet::new_checked(&inner[..]).unwrap();
        assert_eq!((ip.protocol(), ip.ttl()), (KEEPALIVE_PROTOCOL, 1));
        let keepalive = Keepalive::parse(&inner).unwrap();
        assert_eq!(keepalive.kind, Kind::Request);
        assert_eq!(
            (keepalive.path, keepalive.seq, keepalive.timestamp),
            (i as u8, 1, 0)
        );
    }
    assert_eq!(dp.poll_timeout(), Some(t0 + 100 * MS));
    assert!(timeout(&mut dp, t0 + 99 * MS).is_empty());
    let again = timeout(&mut dp, t0 + 100 * MS);
    assert_eq!(again.len(), 2);
    let keepalive = Keepalive::parse(&open(&again[1].1).3).unwrap();
    assert_eq!((keepalive.seq, keepalive.timestamp), (2, 100_000_000));
    let stats = dp.path_stats(id, PathId(1)).unwrap();
    assert_eq!((stats.probes_sent, stats.tx_packets), (2, 0));
    assert_eq!(dp.path_stats(id, PathId(2)).unwrap().probes_sent, 0);
}

#[test]
fn a_tunnel_added_later_probes_at_once() {
    let mut dp = Dataplane::new();
    let t0 = now();
    let _ = timeout(&mut dp, t0);
    dp.add_tunnel(probed(Probe::Keepalive)).unwrap();
    assert_eq!(dp.poll_timeout(), Some(t0));
}

#[test]
fn keepalive_requests_are_answered_on_the_path_they_came_on() {
    let (mut a, _) = dataplane(probed(Probe::Keepalive));
    // The peer carries no IPv4 and probes nothing: keepalives are answered
    // before any filter all the same.
    let mut far = mirrored(probed(Probe::None));
    far.mode = Mode::Ip6ip6;
    let (mut b, b_id) = dataplane(far);
    let t0 = now();
    for (i, (_, request)) in timeout(&mut a, t0).into_iter().enumerate() {
        let (verdict, out) = deliver(&mut b, t0 + 5 * MS, &request);
        assert_eq!(verdict, Verdict::Consumed);
        let out = packets(&out);
        assert_eq!(out.len(), 1, "one reply and nothing for the TUN device");
        let (req_src, req_dst, _, req_inner) = open(&request);
        let (src, dst, protocol, inner) = open(&out[0].1);
        assert_eq!((src, dst), (req_dst, req_src), "same path, ends swapped");
        assert_eq!(out[0].0, Destination::Underlay { remote: req_src });
        assert_eq!(protocol, ip_proto::IPIP);
        let asked = Keepalive::parse(&req_inner).unwrap();
        assert_eq!(
            Keepalive::parse(&inner),
            Some(Keepalive {
                kind: Kind::Reply,
                ..asked
            })
        );
        let stats = b.path_stats(b_id, PathId(i as u8)).unwrap();
        assert_eq!(stats.keepalives_answered, 1);
        assert_eq!(stats.rx_packets, 0);
    }
    assert_eq!(b.stats(b_id).unwrap().drops.total(), 0);
    assert_eq!(b.stats(b_id).unwrap().rx_packets, 0);
}

#[test]
fn replies_bring_the_path_up_and_measure_it() {
    let (mut a, a_id) = dataplane(probed(Probe::Keepalive));
    let (mut b, _) = dataplane(mirrored(probed(Probe::None)));
    let t0 = now();
    let requests = timeout(&mut a, t0);
    let (_, out) = deliver(&mut b, t0, &requests[1].1);
    let reply = packets(&out).remove(0).1;
    let (verdict, out) = deliver(&mut a, t0 + 30 * MS, &reply);
    assert_eq!(verdict, Verdict::Consumed);
    assert!(out.is_empty());
    assert_eq!(
        a.poll_event(),
        Some(Event::PathStateChanged {
            tunnel: a_id,
            path: PathId(1),
            state: HealthState::Up,
            reason: HealthReason::FirstReply
        })
    );
    let stats = a.path_stats(a_id, PathId(1)).unwrap();
    assert_eq!(stats.state, HealthState::Up);
    assert_eq!(stats.srtt, Some(30 * MS));
    assert_eq!(stats.probes_answered, 1);
    assert_eq!(stats.last_change, Some(t0 + 30 * MS));
    assert_eq!(
        a.path_stats(a_id, PathId(0)).unwrap().state,
        HealthState::Unknown
    );
    // The cheaper path has no verdict yet, so traffic stays where it started.
    assert_eq!(a.active_path(a_id), Some(PathId(0)));
    assert_eq!(a.poll_event(), None);

    // The same reply again, or one for another path, changes nothing.
    let (verdict, _) = deliver(&mut a, t0 + 40 * MS, &reply);
    assert_eq!(verdict, Verdict::Consumed);
    assert_eq!(a.path_stats(a_id, PathId(1)).unwrap().probes_answered, 1);
}

#[test]
fn a_reply_on_the_wrong_path_does_not_count() {
    let (mut a, a_id) = dataplane(probed(Probe::Keepalive));
    let t0 = now();
    let requests = timeout(&mut a, t0);
    // The reply to path 0's request, arriving over path 1.
    let asked = Keepalive::parse(&open(&requests[0].1).3).unwrap();
    let mut inner = [0u8; crate::probe::KEEPALIVE_LEN];
    Keepalive {
        kind: Kind::Reply,
        ..asked
    }
    .emit(&mut inner);
    let outer = ipv4(REMOTE4, LOCAL4, ip_proto::IPIP, &inner, false);
    let (verdict, _) = deliver(&mut a, t0, &outer);
    assert_eq!(verdict, Verdict::Consumed);
    for path in [PathId(0), PathId(1)] {
        assert_eq!(
            a.path_stats(a_id, path).unwrap().state,
            HealthState::Unknown
        );
    }
}

#[test]
fn spoofed_keepalives_are_not_answered() {
    let (mut b, b_id) = dataplane(mirrored(probed(Probe::None)));
    let mut inner = [0u8; crate::probe::KEEPALIVE_LEN];
    Keepalive {
        kind: Kind::Request,
        path: 0,
        seq: 1,
        timestamp: 0,
    }
    .emit(&mut inner);
    let outer = ipv4(
        Ipv4Addr::new(198, 18, 66, 6),
        REMOTE4,
        ip_proto::IPIP,
        &inner,
        false,
    );
    let (verdict, out) = deliver(&mut b, now(), &outer);
    assert_eq!(verdict, Verdict::Dropped(DropReason::SpoofedOuterSource));
    assert!(out.is_empty());
    assert_eq!(b.stats(b_id).unwrap().drops.spoofed_outer_source, 1);
}

/// Paths probed by pinging 203.0.113.1 (the peer's LAN address) from our
/// ICMP source.
fn pinging(target: IpAddr) -> TunnelConfig {
    probed(Probe::Icmp {
        target,
        source: None,
    })
}

/// What a foreign router's stack answers to an echo request.
fn echo_reply(request: &[u8]) -> Vec<u8> {
    let mut reply = request.to_vec();
    let (src, dst) = {
        let ip = Ipv4Packet::new_checked(request).unwrap();
        (ip.src_addr(), ip.dst_addr())
    };
    let mut ip = Ipv4Packet::new_unchecked(&mut reply[..]);
    ip.set_src_addr(dst);
    ip.set_dst_addr(src);
    ip.fill_checksum();
    let mut icmp = Icmpv4Packet::new_unchecked(ip.payload_mut());
    icmp.set_msg_type(icmpv4::msg_type::ECHO_REPLY);
    icmp.fill_checksum();
    reply
}

#[test]
fn icmp_probes_ping_through_their_path_with_an_ident_each() {
    let (mut a, a_id) = dataplane(pinging(FAR4.into()));
    let t0 = now();
    let requests = timeout(&mut a, t0);
    assert_eq!(requests.len(), 2);
    let mut idents = Vec::new();
    for (i, (destination, outer)) in requests.iter().enumerate() {
        let remote: IpAddr = if i == 0 {
            REMOTE.into()
        } else {
            REMOTE4.into()
        };
        assert_eq!(*destination, Destination::Underlay { remote });
        let (_, _, protocol, inner) = open(outer);
        assert_eq!(protocol, ip_proto::IPIP);
        let ip = Ipv4Packet::new_checked(&inner[..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), (ICMP_SOURCE4, FAR4));
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), icmpv4::msg_type::ECHO_REQUEST);
        assert_eq!(icmp.echo_seq_no(), 1);
        idents.push(icmp.echo_ident());
    }
    assert_ne!(idents[0], idents[1]);

    // The peer answers path 1's ping over path 0: it counts for path 1.
    let reply = echo_reply(&open(&requests[1].1).3);
    let mut out = Batch::new(4096);
    let verdict = a.handle_outer(
        t0 + 20 * MS,
        &from_remote(ip_proto::IPIP),
        &mut reply.clone(),
        &mut out,
    );
    assert_eq!(verdict, Verdict::Consumed);
    assert!(out.is_empty(), "probe replies do not reach the TUN device");
    let stats = a.path_stats(a_id, PathId(1)).unwrap();
    assert_eq!((stats.state, stats.probes_answered), (HealthState::Up, 1));
    assert_eq!(stats.srtt, Some(20 * MS));
    assert_eq!(
        a.path_stats(a_id, PathId(0)).unwrap().state,
        HealthState::Unknown
    );
    assert_eq!(a.stats(a_id).unwrap().rx_packets, 0);
}

#[test]
fn other_echo_replies_are_ordinary_traffic() {
    let (mut a, a_id) = dataplane(pinging(FAR4.into()));
    let t0 = now();
    let requests = timeout(&mut a, t0);
    let request = open(&requests[0].1).3;

    // Someone else's ping: another identifier.
    let mut foreign_ident = echo_reply(&request);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut foreign_ident[..]);
        let mut icmp = Icmpv4Packet::new_unchecked(ip.payload_mut());
        icmp.set_echo_ident(icmp.echo_ident().wrapping_add(7));
        icmp.fill_checksum();
    }
    // Our identifier, but not from the target.
    let mut other_source = echo_reply(&request);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut other_source[..]);
        ip.set_src_addr(Ipv4Addr::new(203, 0, 113, 2));
        ip.fill_checksum();
    }
    // Our identifier with a broken ICMP checksum.
    let mut broken = echo_reply(&request);
    *broken.last_mut().unwrap() ^= 1;
    for packet in [foreign_ident, other_source, broken] {
        let mut out = Batch::new(4096);
        let verdict = a.handle_outer(
            t0,
            &from_remote(ip_proto::IPIP),
            &mut packet.clone(),
            &mut out,
        );
        assert_eq!(verdict, Verdict::Forwarded);
        assert_eq!(packets(&out), vec![(Destination::Tun(a_id), packet)]);
    }
    assert_eq!(
        a.path_stats(a_id, PathId(0)).unwrap().state,
        HealthState::Unknown
    );
}

#[test]
fn icmpv6_probes_for_ipv6_targets() {
    let (mut a, a_id) = dataplane(pinging(FAR6.into()));
    let t0 = now();
    let requests = timeout(&mut a, t0);
    let (_, _, protocol, inner) = open(&requests[1].1);
    assert_eq!(
        protocol,
        ip_proto::IPV6,
        "inner IPv6 over the IPv4 path: RFC 4213"
    );
    let ip = Ipv6Packet::new_checked(&inner[..]).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (ICMP_SOURCE6, FAR6));
    let mut reply = inner.clone();
    {
        let mut ip = Ipv6Packet::new_unchecked(&mut reply[..]);
        ip.set_src_addr(FAR6);
        ip.set_dst_addr(ICMP_SOURCE6);
    }
    let mut icmp = wire::Icmpv6Packet::new_unchecked(&mut reply[40..]);
    icmp.set_msg_type(wire::icmpv6::msg_type::ECHO_REPLY);
    icmp.fill_checksum(&FAR6, &ICMP_SOURCE6);
    let outer = ipv4(REMOTE4, LOCAL4, ip_proto::IPV6, &reply, false);
    let (verdict, _) = deliver(&mut a, t0 + MS, &outer);
    assert_eq!(verdict, Verdict::Consumed);
    assert_eq!(
        a.path_stats(a_id, PathId(1)).unwrap().state,
        HealthState::Up
    );
}

#[test]
fn icmp_probe_settings_are_checked() {
    let mut dp = Dataplane::new();
    let mut c = pinging(FAR4.into());
    c.icmp_source_v4 = None;
    assert!(matches!(
        dp.add_tunnel(c),
        Err(crate::ConfigError::BadProbe { .. })
    ));
    let mut c = pinging(FAR6.into());
    c.mode = Mode::Ipip6;
    assert!(matches!(
        dp.add_tunnel(c),
        Err(crate::ConfigError::BadProbe { .. })
    ));
    let c = probed(Probe::Icmp {
        target: FAR4.into(),
        source: Some(NEAR6.into()),
    });
    assert!(matches!(
        dp.add_tunnel(c),
        Err(crate::ConfigError::BadProbe { .. })
    ));
    let c = probed(Probe::Icmp {
        target: FAR4.into(),
        source: Some(NEAR4.into()),
    });
    let id = dp.add_tunnel(c).unwrap();
    let mut out = Batch::new(4096);
    dp.handle_timeout(now(), &mut out);
    let inner = open(out.get(0).unwrap().1).3;
    assert_eq!(
        Ipv4Packet::new_checked(&inner[..]).unwrap().src_addr(),
        NEAR4
    );
    assert!(dp.remove_tunnel(id));
}

fn echo_ident(outer: &[u8]) -> u16 {
    let inner = open(outer).3;
    let ip = Ipv4Packet::new_checked(&inner[..]).unwrap();
    Icmpv4Packet::new_checked(ip.payload())
        .unwrap()
        .echo_ident()
}

#[test]
fn icmp_idents_are_unique_and_survive_reloads() {
    let mut dp = Dataplane::new();
    let first = dp.add_tunnel(pinging(FAR4.into())).unwrap();
    let mut other = mirrored(pinging(FAR4.into()));
    other.name = "other".into();
    let second = dp.add_tunnel(other.clone()).unwrap();
    let t0 = now();
    let sent = timeout(&mut dp, t0);
    let mut all: Vec<u16> = sent.iter().map(|(_, outer)| echo_ident(outer)).collect();
    assert_eq!(all.len(), 4);
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 4);

    // Reloaded with the paths swapped round: each keeps its identifier.
    let before: Vec<u16> = sent[2..].iter().map(|(_, o)| echo_ident(o)).collect();
    other.paths.swap(0, 1);
    dp.update_tunnel(second, other).unwrap();
    let sent = timeout(&mut dp, t0 + 100 * MS);
    let after: Vec<u16> = sent[2..].iter().map(|(_, o)| echo_ident(o)).collect();
    assert_eq!(after, vec![before[1], before[0]]);
    assert!(dp.remove_tunnel(first));
}
