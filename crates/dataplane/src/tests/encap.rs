use hex_literal::hex;
use wire::tcp::flags;

use super::*;
use crate::{ConfigError, DropReason, EncapLimit, TrafficClass, Verdict};

/// ICMP echo request 198.51.100.1 -> 203.0.113.1, DF, TTL 64, id 0x1234,
/// data "v6gate!!", checksums worked out by hand.
const ECHO: [u8; 36] = hex!(
    "45 00 00 24 12 34 40 00 40 01 c2 6e c6 33 64 01 cb 00 71 01"
    "08 00 42 9e 42 42 00 01 76 36 67 61 74 65 21 21"
);

fn encap_one(config: TunnelConfig, packet: &[u8]) -> Vec<u8> {
    let (mut dp, id) = dataplane(config);
    let mut out = Batch::new(2048);
    let mut packet = packet.to_vec();
    assert_eq!(
        dp.handle_inner(now(), id, &mut packet, &mut out),
        Verdict::Forwarded
    );
    let got = packets(&out);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0,
        Destination::Underlay {
            remote: REMOTE.into()
        }
    );
    got[0].1.clone()
}

#[test]
fn ipip6_matches_ip6tnl_with_encaplimit_none() {
    let expected = hex!(
        "60 00 00 00 00 24 04 40"
        "20 01 0d b8 00 00 00 01 00 00 00 00 00 00 00 01"
        "20 01 0d b8 00 00 00 02 00 00 00 00 00 00 00 01"
        "45 00 00 24 12 34 40 00 40 01 c2 6e c6 33 64 01 cb 00 71 01"
        "08 00 42 9e 42 42 00 01 76 36 67 61 74 65 21 21"
    );
    assert_eq!(encap_one(config(Mode::Ipip6), &ECHO), expected);
}

#[test]
fn ipip6_matches_ip6tnl_with_encaplimit_4() {
    // What `ip -6 tunnel add ... mode ipip6` sends by default: Next Header 60
    // and the 8-byte Destination Options header before the inner packet.
    let expected = hex!(
        "60 00 00 00 00 2c 3c 40"
        "20 01 0d b8 00 00 00 01 00 00 00 00 00 00 00 01"
        "20 01 0d b8 00 00 00 02 00 00 00 00 00 00 00 01"
        "04 00 04 01 04 01 01 00"
        "45 00 00 24 12 34 40 00 40 01 c2 6e c6 33 64 01 cb 00 71 01"
        "08 00 42 9e 42 42 00 01 76 36 67 61 74 65 21 21"
    );
    let mut c = config(Mode::Ipip6);
    c.encap_limit = EncapLimit::Limit(4);
    assert_eq!(encap_one(c, &ECHO), expected);
}

#[test]
fn limit_zero_is_still_sent() {
    let mut c = config(Mode::Ipip6);
    c.encap_limit = EncapLimit::Limit(0);
    let outer = encap_one(c, &ECHO);
    assert_eq!(outer[6], ip_proto::DSTOPTS);
    assert_eq!(&outer[40..48], &hex!("04 00 04 01 00 01 01 00"));
}

#[test]
fn ip6ip6_uses_next_header_41() {
    let inner = udp6(NEAR6, FAR6, 10);
    let outer = encap_one(config(Mode::Ip6ip6), &inner);
    assert_eq!(outer[6], ip_proto::IPV6);
    assert_eq!(&outer[4..6], &(inner.len() as u16).to_be_bytes());
    assert_eq!(&outer[40..], &inner[..]);

    let mut c = config(Mode::Any);
    c.encap_limit = EncapLimit::Limit(7);
    let outer = encap_one(c, &inner);
    assert_eq!(outer[6], ip_proto::DSTOPTS);
    assert_eq!(&outer[40..48], &hex!("29 00 04 01 07 01 01 00"));
    assert_eq!(&outer[48..], &inner[..]);
}

#[test]
fn traffic_class_fixed_or_inherited_with_ecn() {
    let mut inner = ECHO;
    {
        let mut view = Ipv4Packet::new_unchecked(&mut inner[..]);
        view.set_dscp_ecn(0xb9); // EF + ECT(1)
        view.fill_checksum();
    }
    // Fixed DSCP, ECN from the inner packet.
    let outer = encap_one(config(Mode::Ipip6), &inner);
    assert_eq!(Ipv6Packet::new_unchecked(&outer[..]).traffic_class(), 0x01);

    let mut c = config(Mode::Ipip6);
    c.traffic_class = TrafficClass::Fixed(0x23);
    let outer = encap_one(c, &inner);
    assert_eq!(&outer[..2], &[0x62, 0x10]);

    let mut c = config(Mode::Ipip6);
    c.traffic_class = TrafficClass::Inherit;
    let outer = encap_one(c.clone(), &inner);
    let view = Ipv6Packet::new_unchecked(&outer[..]);
    assert_eq!(view.traffic_class(), 0xb9);
    assert_eq!(view.flow_label(), 0);

    c.mode = Mode::Any;
    let mut inner6 = udp6(NEAR6, FAR6, 4);
    Ipv6Packet::new_unchecked(&mut inner6[..]).set_traffic_class(0x2a);
    let outer = encap_one(c, &inner6);
    assert_eq!(Ipv6Packet::new_unchecked(&outer[..]).traffic_class(), 0x2a);
}

#[test]
fn hop_limit_follows_config() {
    let mut c = config(Mode::Ipip6);
    c.hop_limit = 255;
    assert_eq!(encap_one(c, &ECHO)[7], 255);
}

#[test]
fn trailing_bytes_after_the_packet_are_not_sent() {
    let mut padded = ECHO.to_vec();
    padded.extend_from_slice(&[0xEE; 6]);
    let outer = encap_one(config(Mode::Ipip6), &padded);
    assert_eq!(&outer[40..], &ECHO[..]);
}

#[test]
fn counts_tx() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let mut out = Batch::new(2048);
    for _ in 0..3 {
        let _ = dp.handle_inner(now(), id, &mut ECHO.clone(), &mut out);
    }
    let stats = dp.stats(id).unwrap();
    assert_eq!(stats.tx_packets, 3);
    assert_eq!(stats.tx_bytes, 3 * ECHO.len() as u64);
    assert_eq!(stats.drops.total(), 0);
}

fn verdict(config: TunnelConfig, packet: &[u8]) -> (Verdict, Dataplane, TunnelId, Batch) {
    let (mut dp, id) = dataplane(config);
    let mut out = Batch::new(2048);
    let v = dp.handle_inner(now(), id, &mut packet.to_vec(), &mut out);
    (v, dp, id, out)
}

#[test]
fn family_must_match_mode_and_switches() {
    let v6 = udp6(NEAR6, FAR6, 8);
    let v4 = udp4(NEAR4, FAR4, 8, true);
    for (mode, allow4, allow6, packet, ok) in [
        (Mode::Ipip6, true, true, &v6, false),
        (Mode::Ipip6, true, true, &v4, true),
        (Mode::Ip6ip6, true, true, &v4, false),
        (Mode::Ip6ip6, true, true, &v6, true),
        (Mode::Any, true, false, &v6, false),
        (Mode::Any, true, false, &v4, true),
        (Mode::Any, false, true, &v4, false),
        (Mode::Any, false, true, &v6, true),
    ] {
        let mut c = config(mode);
        c.allow_ipv4 = allow4;
        c.allow_ipv6 = allow6;
        let (v, dp, id, out) = verdict(c, packet);
        if ok {
            assert_eq!(v, Verdict::Forwarded, "{mode:?} {allow4} {allow6}");
        } else {
            assert_eq!(v, Verdict::Dropped(DropReason::WrongFamily));
            assert!(out.is_empty());
            assert_eq!(dp.stats(id).unwrap().drops.wrong_family, 1);
        }
    }
}

#[test]
fn destination_must_be_routed() {
    let (v, dp, id, out) = verdict(config(Mode::Ipip6), &udp4(NEAR4, NEAR4, 8, true));
    assert_eq!(v, Verdict::Dropped(DropReason::NotRouted));
    assert!(out.is_empty());
    assert_eq!(dp.stats(id).unwrap().drops.not_routed, 1);

    // An MLD report the kernel routed into the TUN device.
    let mld = ipv6(
        "fe80::1".parse().unwrap(),
        "ff02::16".parse().unwrap(),
        ip_proto::ICMPV6,
        &[143, 0, 0, 0, 0, 0, 0, 0],
    );
    let (v, ..) = verdict(config(Mode::Any), &mld);
    assert_eq!(v, Verdict::Dropped(DropReason::NotRouted));
}

#[test]
fn a_tunnel_never_carries_its_own_endpoint() {
    let mut c = config(Mode::Any);
    c.routes.push("::/0".parse().unwrap());
    let to_remote = udp6(NEAR6, REMOTE, 8);
    let (v, dp, id, _) = verdict(c.clone(), &to_remote);
    assert_eq!(v, Verdict::Dropped(DropReason::RoutingLoop));
    assert_eq!(dp.stats(id).unwrap().drops.routing_loop, 1);
    let from_remote = udp6(REMOTE, FAR6, 8);
    let (v, ..) = verdict(c, &from_remote);
    assert_eq!(v, Verdict::Dropped(DropReason::RoutingLoop));
}

#[test]
fn malformed_inner_packets_are_dropped() {
    let mut bad_len = ECHO;
    bad_len[3] = 0x30; // total length beyond the buffer
    for packet in [
        &[][..],
        &[0x45][..],
        &ECHO[..19],
        &bad_len[..],
        &[0x75; 40][..],
    ] {
        let (v, dp, id, out) = verdict(config(Mode::Any), packet);
        assert_eq!(v, Verdict::Dropped(DropReason::Malformed), "{packet:02x?}");
        assert!(out.is_empty());
        assert_eq!(dp.stats(id).unwrap().drops.malformed, 1);
    }
}

#[test]
fn unknown_tunnel_is_counted_apart() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let mut out = Batch::new(0);
    let other = TunnelId(id.0 + 1);
    let v = dp.handle_inner(now(), other, &mut ECHO.clone(), &mut out);
    assert_eq!(v, Verdict::Dropped(DropReason::NoTunnel));
    assert_eq!(dp.unattributed_drops().no_tunnel, 1);
    assert_eq!(dp.stats(id).unwrap().drops.total(), 0);
}

#[test]
fn mss_is_clamped_on_the_way_out() {
    let mut c = config(Mode::Any);
    c.mss_clamp = MssClamp::Auto;
    let (mut dp, id) = dataplane(c);
    let mut out = Batch::new(4096);
    let mut syn4 = tcp4(NEAR4, FAR4, &syn(flags::SYN, 1460));
    let _ = dp.handle_inner(now(), id, &mut syn4, &mut out);
    let mut syn6 = tcp6(NEAR6, FAR6, &syn(flags::SYN, 1440));
    let _ = dp.handle_inner(now(), id, &mut syn6, &mut out);
    let got = packets(&out);
    let tcp = TcpPacket::new_checked(&got[0].1[60..]).unwrap();
    assert_eq!(tcp.mss(), Ok(Some(1460 - 40)));
    assert!(tcp.verify_checksum_v4(&NEAR4, &FAR4));
    let tcp = TcpPacket::new_checked(&got[1].1[80..]).unwrap();
    assert_eq!(tcp.mss(), Ok(Some(1460 - 60)));
    assert!(tcp.verify_checksum_v6(&NEAR6, &FAR6));
    // Clamped in place as well, so the caller's buffer matches what was sent.
    assert_eq!(&syn4[..], &got[0].1[40..]);
    assert_eq!(dp.stats(id).unwrap().mss_clamped, 2);
}

#[test]
fn fixed_and_off_mss() {
    let mut c = config(Mode::Ipip6);
    c.mss_clamp = MssClamp::Fixed(1300);
    let outer = encap_one(c, &tcp4(NEAR4, FAR4, &syn(flags::SYN | flags::ACK, 1460)));
    assert_eq!(
        TcpPacket::new_checked(&outer[60..]).unwrap().mss(),
        Ok(Some(1300))
    );

    let packet = tcp4(NEAR4, FAR4, &syn(flags::SYN, 1460));
    let outer = encap_one(config(Mode::Ipip6), &packet);
    assert_eq!(&outer[40..], &packet[..]);
}

#[test]
fn add_tunnel_rejects_duplicates_and_bad_mtu() {
    let mut dp = Dataplane::new();
    let first = dp.add_tunnel(config(Mode::Ipip6)).unwrap();
    let err = dp.add_tunnel(config(Mode::Ip6ip6)).unwrap_err();
    assert_eq!(
        err,
        ConfigError::DuplicateEndpoints {
            existing: first,
            local: LOCAL.into(),
            remote: REMOTE.into()
        }
    );
    let mut c = config(Mode::Any);
    c.mtu = 1000;
    assert!(matches!(
        dp.add_tunnel(c),
        Err(ConfigError::MtuOutOfRange { .. })
    ));
    // Same local, other remote is a different tunnel.
    let mut c = config(Mode::Ipip6);
    c.paths[0].remote = "2001:db8:0:3::1".parse().unwrap();
    let second = dp.add_tunnel(c).unwrap();
    assert_ne!(first, second);
    assert_eq!(dp.tunnels().collect::<Vec<_>>(), vec![first, second]);
}

#[test]
fn removed_ids_are_not_reused() {
    let mut dp = Dataplane::new();
    let first = dp.add_tunnel(config(Mode::Ipip6)).unwrap();
    assert!(dp.remove_tunnel(first));
    assert!(!dp.remove_tunnel(first));
    assert!(dp.tunnel(first).is_none());
    assert!(dp.stats(first).is_none());
    let again = dp.add_tunnel(config(Mode::Ipip6)).unwrap();
    assert_ne!(first, again);
    assert_eq!(dp.tunnel(again).unwrap().name, "t0");
    let mut out = Batch::new(0);
    let v = dp.handle_inner(now(), first, &mut ECHO.clone(), &mut out);
    assert_eq!(v, Verdict::Dropped(DropReason::NoTunnel));
}
