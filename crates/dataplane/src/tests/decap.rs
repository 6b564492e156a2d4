use wire::tcp::flags;

use super::*;
use crate::{DropReason, Verdict};

fn decap(
    dp: &mut Dataplane,
    meta: &OuterMeta,
    payload: &[u8],
) -> (Verdict, Vec<(Destination, Vec<u8>)>) {
    let mut out = Batch::new(2048);
    let v = dp.handle_outer(now(), meta, &mut payload.to_vec(), &mut out);
    (v, packets(&out))
}

#[test]
fn delivers_the_inner_packet_to_the_tunnel() {
    let (mut dp, id) = dataplane(config(Mode::Any));
    let v4 = udp4(FAR4, NEAR4, 100, true);
    let (v, got) = decap(&mut dp, &from_remote(ip_proto::IPIP), &v4);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(got, vec![(Destination::Tun(id), v4.clone())]);

    let v6 = udp6(FAR6, NEAR6, 100);
    let (v, got) = decap(&mut dp, &from_remote(ip_proto::IPV6), &v6);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(got, vec![(Destination::Tun(id), v6.clone())]);

    let stats = dp.stats(id).unwrap();
    assert_eq!(stats.rx_packets, 2);
    assert_eq!(stats.rx_bytes, (v4.len() + v6.len()) as u64);
}

#[test]
fn accepts_any_encap_limit_including_zero() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let packet = udp4(FAR4, NEAR4, 10, false);
    for limit in [0, 1, 4, 255] {
        let meta = OuterMeta {
            encap_limit: Some(limit),
            ..from_remote(ip_proto::IPIP)
        };
        let (v, got) = decap(&mut dp, &meta, &packet);
        assert_eq!(v, Verdict::Forwarded);
        assert_eq!(got, vec![(Destination::Tun(id), packet.clone())]);
    }
}

#[test]
fn skips_a_destination_options_header_left_in_the_payload() {
    // A shell that hands over the payload right after the fixed header.
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let packet = udp4(FAR4, NEAR4, 10, false);
    let mut payload = vec![ip_proto::IPIP, 0, 4, 1, 0, 1, 1, 0];
    payload.extend_from_slice(&packet);
    let (v, got) = decap(&mut dp, &from_remote(ip_proto::DSTOPTS), &payload);
    assert_eq!(v, Verdict::Forwarded);
    assert_eq!(got, vec![(Destination::Tun(id), packet)]);
}

#[test]
fn outer_source_must_be_the_remote() {
    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let packet = udp4(FAR4, NEAR4, 10, false);
    let spoofed = OuterMeta {
        src: "2001:db8:666::1".parse().unwrap(),
        ..from_remote(ip_proto::IPIP)
    };
    let (v, got) = decap(&mut dp, &spoofed, &packet);
    assert_eq!(v, Verdict::Dropped(DropReason::SpoofedOuterSource));
    assert!(got.is_empty());
    assert_eq!(dp.stats(id).unwrap().drops.spoofed_outer_source, 1);
    assert_eq!(dp.unattributed_drops().total(), 0);

    let elsewhere = OuterMeta {
        dst: "2001:db8:0:9::1".parse().unwrap(),
        ..from_remote(ip_proto::IPIP)
    };
    let (v, _) = decap(&mut dp, &elsewhere, &packet);
    assert_eq!(v, Verdict::Dropped(DropReason::NoTunnel));
    assert_eq!(dp.unattributed_drops().no_tunnel, 1);
    assert_eq!(dp.stats(id).unwrap().drops.total(), 1);
}

#[test]
fn picks_the_tunnel_by_both_endpoints() {
    let mut dp = Dataplane::new();
    let first = dp.add_tunnel(config(Mode::Ipip6)).unwrap();
    let other_remote: Ipv6Addr = "2001:db8:0:3::1".parse().unwrap();
    let mut c = config(Mode::Ipip6);
    c.paths[0].remote = other_remote.into();
    let second = dp.add_tunnel(c).unwrap();
    let packet = udp4(FAR4, NEAR4, 10, false);
    let meta = OuterMeta {
        src: other_remote,
        ..from_remote(ip_proto::IPIP)
    };
    let (_, got) = decap(&mut dp, &meta, &packet);
    assert_eq!(got[0].0, Destination::Tun(second));
    let (_, got) = decap(&mut dp, &from_remote(ip_proto::IPIP), &packet);
    assert_eq!(got[0].0, Destination::Tun(first));
}

#[test]
fn next_header_must_agree_with_inner_version_and_mode() {
    let (mut dp, id) = dataplane(config(Mode::Any));
    let v4 = udp4(FAR4, NEAR4, 10, false);
    let v6 = udp6(FAR6, NEAR6, 10);
    let (v, _) = decap(&mut dp, &from_remote(ip_proto::IPV6), &v4);
    assert_eq!(v, Verdict::Dropped(DropReason::Malformed));
    let (v, _) = decap(&mut dp, &from_remote(ip_proto::IPIP), &v6);
    assert_eq!(v, Verdict::Dropped(DropReason::Malformed));
    let (v, _) = decap(&mut dp, &from_remote(ip_proto::UDP), &v4);
    assert_eq!(v, Verdict::Dropped(DropReason::Malformed));
    assert_eq!(dp.stats(id).unwrap().drops.malformed, 3);

    let (mut dp, id) = dataplane(config(Mode::Ipip6));
    let (v, _) = decap(&mut dp, &from_remote(ip_proto::IPV6), &v6);
    assert_eq!(v, Verdict::Dropped(DropReason::WrongFamily));
    assert_eq!(dp.stats(id).unwrap().drops.wrong_family, 1);

    let mut c = config(Mode::Any);
    c.allow_ipv4 = false;
    let (mut dp, _) = dataplane(c);
    let (v, _) = decap(&mut dp, &from_remote(ip_proto::IPIP), &v4);
    assert_eq!(v, Verdict::Dropped(DropReason::WrongFamily));
}

#[test]
fn inner_source_must_be_allowed() {
    let (mut dp, id) = dataplane(config(Mode::Any));
    let (v, got) = decap(
        &mut dp,
        &from_remote(ip_proto::IPIP),
        &udp4(Ipv4Addr::new(198, 18, 0, 1), NEAR4, 10, true),
    );
    assert_eq!(v, Verdict::Dropped(DropReason::InnerSourceNotAllowed));
    assert!(got.is_empty());
    let (v, _) = decap(
        &mut dp,
        &from_remote(ip_proto::IPV6),
        &udp6(NEAR6, NEAR6, 10),
    );
    assert_eq!(v, Verdict::Dropped(DropReason::InnerSourceNotAllowed));
    assert_eq!(dp.stats(id).unwrap().drops.inner_source_not_allowed, 2);

    let mut c = config(Mode::Any);
    c.allowed_sources.clear();
    let (mut dp, _) = dataplane(c);
    let (v, _) = decap(
        &mut dp,
        &from_remote(ip_proto::IPIP),
        &udp4(FAR4, NEAR4, 10, true),
    );
    assert_eq!(v, Verdict::Dropped(DropReason::InnerSourceNotAllowed));
}

#[test]
fn inner_ipv4_checksum_is_verified() {
    let (mut dp, _) = dataplane(config(Mode::Ipip6));
    let mut packet = udp4(FAR4, NEAR4, 10, true);
    packet[8] = 1; // TTL changed without the checksum
    let (v, got) = decap(&mut dp, &from_remote(ip_proto::IPIP), &packet);
    assert_eq!(v, Verdict::Dropped(DropReason::Malformed));
    assert!(got.is_empty());
}

#[test]
fn truncated_inner_packets_are_malformed() {
    let (mut dp, _) = dataplane(config(Mode::Any));
    let v4 = udp4(FAR4, NEAR4, 10, true);
    for len in 0..v4.len() {
        let (v, _) = decap(&mut dp, &from_remote(ip_proto::IPIP), &v4[..len]);
        assert_eq!(v, Verdict::Dropped(DropReason::Malformed), "len {len}");
    }
    let v6 = udp6(FAR6, NEAR6, 10);
    for len in 0..v6.len() {
        let (v, _) = decap(&mut dp, &from_remote(ip_proto::IPV6), &v6[..len]);
        assert_eq!(v, Verdict::Dropped(DropReason::Malformed), "len {len}");
    }
}

fn with_ecn4(ecn: u8) -> Vec<u8> {
    let mut packet = udp4(FAR4, NEAR4, 10, true);
    let mut view = Ipv4Packet::new_unchecked(&mut packet[..]);
    view.set_dscp_ecn(0x28 | ecn);
    view.fill_checksum();
    packet
}

#[test]
fn congestion_mark_reaches_the_inner_header() {
    let (mut dp, id) = dataplane(config(Mode::Any));
    let ce = OuterMeta {
        traffic_class: 0x03,
        ..from_remote(ip_proto::IPIP)
    };
    for ect in [0b01, 0b10, 0b11] {
        let (v, got) = decap(&mut dp, &ce, &with_ecn4(ect));
        assert_eq!(v, Verdict::Forwarded);
        let inner = Ipv4Packet::new_checked(&got[0].1[..]).unwrap();
        assert_eq!(inner.dscp_ecn(), 0x2b);
        assert!(inner.verify_checksum());
    }
    let (v, got) = decap(&mut dp, &ce, &with_ecn4(0));
    assert_eq!(v, Verdict::Dropped(DropReason::CongestionNotEct));
    assert!(got.is_empty());
    assert_eq!(dp.stats(id).unwrap().drops.congestion_not_ect, 1);

    let mut v6 = udp6(FAR6, NEAR6, 10);
    Ipv6Packet::new_unchecked(&mut v6[..]).set_traffic_class(0x02);
    let ce6 = OuterMeta {
        traffic_class: 0xb3,
        ..from_remote(ip_proto::IPV6)
    };
    let (_, got) = decap(&mut dp, &ce6, &v6);
    assert_eq!(
        Ipv6Packet::new_unchecked(&got[0].1[..]).traffic_class(),
        0x03
    );

    // Without CE on the outside the inner header is left alone, DSCP included.
    let ect_outer = OuterMeta {
        traffic_class: 0xb9,
        ..from_remote(ip_proto::IPIP)
    };
    let packet = with_ecn4(0b10);
    let (_, got) = decap(&mut dp, &ect_outer, &packet);
    assert_eq!(got[0].1, packet);
}

#[test]
fn mss_is_clamped_on_the_way_in() {
    let mut c = config(Mode::Any);
    c.mss_clamp = MssClamp::Auto;
    c.mtu = 1400;
    let (mut dp, id) = dataplane(c);
    let (_, got) = decap(
        &mut dp,
        &from_remote(ip_proto::IPIP),
        &tcp4(FAR4, NEAR4, &syn(flags::SYN | flags::ACK, 1460)),
    );
    let tcp = TcpPacket::new_checked(&got[0].1[20..]).unwrap();
    assert_eq!(tcp.mss(), Ok(Some(1360)));
    assert!(tcp.verify_checksum_v4(&FAR4, &NEAR4));
    let (_, got) = decap(
        &mut dp,
        &from_remote(ip_proto::IPV6),
        &tcp6(FAR6, NEAR6, &syn(flags::SYN, 1440)),
    );
    let tcp = TcpPacket::new_checked(&got[0].1[40..]).unwrap();
    assert_eq!(tcp.mss(), Ok(Some(1340)));
    assert!(tcp.verify_checksum_v6(&FAR6, &NEAR6));
    assert_eq!(dp.stats(id).unwrap().mss_clamped, 2);
}
