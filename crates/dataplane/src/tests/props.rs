//! Properties over random packets: what goes in one end comes out the other,
//! and nothing the network sends can make the core panic.

use proptest::prelude::*;
use wire::{Icmpv6Packet, icmpv6};

use super::*;
use crate::{EncapLimit, TrafficClass};

fn any_ipv4() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u8>(),
        any::<u8>(),
        1u8..,
        any::<u16>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(|(src, dst, protocol, tos, ttl, ident, df, payload)| {
            let repr = Ipv4Repr {
                src_addr: src.into(),
                dst_addr: dst.into(),
                protocol,
                payload_len: payload.len(),
                ttl,
                dscp_ecn: tos,
                ident,
                dont_frag: df,
            };
            let mut buf = vec![0; 20 + payload.len()];
            repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
            buf[20..].copy_from_slice(&payload);
            buf
        })
}

fn any_ipv6() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u8>(),
        any::<u8>(),
        0u32..1 << 20,
        proptest::collection::vec(any::<u8>(), 0..1400),
    )
        .prop_map(|(src, dst, next_header, tc, flow, payload)| {
            let repr = Ipv6Repr {
                src_addr: src.into(),
                dst_addr: dst.into(),
                next_header,
                payload_len: payload.len(),
                hop_limit: 64,
                traffic_class: tc,
                flow_label: flow,
            };
            let mut buf = vec![0; 40 + payload.len()];
            repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
            buf[40..].copy_from_slice(&payload);
            buf
        })
}

fn any_encap_limit() -> impl Strategy<Value = EncapLimit> {
    prop_oneof![
        Just(EncapLimit::None),
        any::<u8>().prop_map(EncapLimit::Limit)
    ]
}

fn any_traffic_class() -> impl Strategy<Value = TrafficClass> {
    prop_oneof![
        Just(TrafficClass::Inherit),
        any::<u8>().prop_map(TrafficClass::Fixed)
    ]
}

fn open_config(local: Ipv6Addr, remote: Ipv6Addr) -> TunnelConfig {
    let mut c = TunnelConfig::new("p", Mode::Any, local, remote);
    c.mtu = 1500;
    c.routes = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    c.allowed_sources = c.routes.clone();
    c.mss_clamp = MssClamp::Off;
    c
}

/// A tunnel configuration that reaches every branch: tiny MTUs for the
/// fragmentation and ICMP paths, MSS clamping, both families.
fn any_config() -> impl Strategy<Value = TunnelConfig> {
    (
        prop_oneof![Just(Mode::Ipip6), Just(Mode::Ip6ip6), Just(Mode::Any)],
        any_encap_limit(),
        any_traffic_class(),
        prop_oneof![Just(68u16), Just(576), Just(1280), Just(1500)],
        prop_oneof![
            Just(MssClamp::Off),
            Just(MssClamp::Auto),
            any::<u16>().prop_map(MssClamp::Fixed)
        ],
    )
        .prop_map(|(mode, encap_limit, traffic_class, mtu, mss_clamp)| {
            let mut c = open_config(LOCAL, REMOTE);
            c.mode = mode;
            c.encap_limit = encap_limit;
            c.traffic_class = traffic_class;
            c.mtu = if mode == Mode::Ipip6 {
                mtu
            } else {
                mtu.max(1280)
            };
            c.mss_clamp = mss_clamp;
            c.icmp_source_v4 = Some(ICMP_SOURCE4);
            c.icmp_source_v6 = Some(ICMP_SOURCE6);
            c
        })
}

/// Random bytes, or a real packet with a few bytes overwritten: the second
/// gets past the first checks and into the deeper ones.
fn any_inner_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        prop_oneof![any_ipv4(), any_ipv6()],
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        any::<usize>(),
    )
        .prop_map(|(mut packet, edits, cut)| {
            for (at, value) in edits {
                let len = packet.len();
                packet[at % len] = value;
            }
            let len = packet.len();
            packet.truncate(len - cut % (len / 4 + 1));
            packet
        });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..1600), mutated]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encap_then_decap_returns_the_inner_packet(
        inner in prop_oneof![any_ipv4(), any_ipv6()],
        encap_limit in any_encap_limit(),
        traffic_class in any_traffic_class(),
        hop_limit in 1u8..,
    ) {
        let is_v6 = inner[0] >> 4 == 6;
        if is_v6 {
            let view = Ipv6Packet::new_unchecked(&inner[..]);
            prop_assume!(view.src_addr() != REMOTE && view.dst_addr() != REMOTE);
        }
        let mut near = open_config(LOCAL, REMOTE);
        near.encap_limit = encap_limit;
        near.traffic_class = traffic_class;
        near.hop_limit = hop_limit;
        let (mut a, a_id) = dataplane(near);
        let (mut b, b_id) = dataplane(open_config(REMOTE, LOCAL));

        let mut out = Batch::new(2048);
        let mut sent = inner.clone();
        prop_assert_eq!(a.handle_inner(now(), a_id, &mut sent, &mut out), Verdict::Forwarded);
        prop_assert_eq!(&sent, &inner);
        prop_assert_eq!(out.len(), 1);
        let (_, outer) = out.get(0).unwrap();
        let outer_view = Ipv6Packet::new_checked(outer).unwrap();
        prop_assert_eq!(outer_view.hop_limit(), hop_limit);
        prop_assert_eq!(outer.len(), 40 + encap_limit_len(encap_limit) + inner.len());

        let (meta, mut payload) = receive(outer);
        prop_assert_eq!(meta.encap_limit, match encap_limit {
            EncapLimit::None => None,
            EncapLimit::Limit(n) => Some(n),
        });
        let mut back = Batch::new(2048);
        prop_assert_eq!(b.handle_outer(now(), &meta, &mut payload, &mut back), Verdict::Forwarded);
        prop_assert_eq!(packets(&back), vec![(Destination::Tun(b_id), inner)]);
    }

    #[test]
    fn handle_inner_never_panics(
        config in any_config(),
        packet in any_inner_bytes(),
        reported_mtu in proptest::option::of(0u32..2000),
    ) {
        let (mut dp, id) = dataplane(config);
        if let Some(mtu) = reported_mtu {
            // Narrow the path first, so fragmentation of both kinds is reached.
            let mut out = Batch::new(0);
            let mut probe = udp4(NEAR4, FAR4, 20, true);
            let _ = dp.handle_inner(now(), id, &mut probe, &mut out);
            let mut quoted = packets(&out).pop().map(|(_, p)| p).unwrap_or_else(|| {
                let mut p = vec![0u8; 40];
                p[0] = 0x60;
                p[6] = ip_proto::IPV6;
                p
            });
            quoted[8..24].copy_from_slice(&LOCAL.octets());
            quoted[24..40].copy_from_slice(&REMOTE.octets());
            let mut message = vec![icmpv6::msg_type::PACKET_TOO_BIG, 0, 0, 0];
            message.extend_from_slice(&mtu.to_be_bytes());
            message.extend_from_slice(&quoted);
            Icmpv6Packet::new_unchecked(&mut message[..]).fill_checksum(&NEAR6, &LOCAL);
            let _ = dp.handle_icmpv6(now(), NEAR6, LOCAL, &message);
        }
        let path_mtu = dp.stats(id).unwrap().path_mtu;
        let overhead = 40 + dp.tunnel(id).unwrap().encap_limit.overhead();
        // The narrowing packet may itself have been dropped, for the same
        // reason as the packet under test.
        let before = *dp.stats(id).unwrap();
        let mut out = Batch::new(0);
        let mut packet = packet;
        let verdict = dp.handle_inner(now(), id, &mut packet, &mut out);
        let stats = dp.stats(id).unwrap();
        match verdict {
            Verdict::Forwarded => prop_assert!(stats.tx_packets > before.tx_packets),
            Verdict::Dropped(reason) => {
                prop_assert_eq!(stats.drops.get(reason), before.drops.get(reason) + 1);
            }
            Verdict::Consumed => prop_assert!(false, "inner packets are never consumed"),
        }
        // Nothing leaves wider than the path, however it was narrowed.
        let link_mtu = usize::from(path_mtu) + overhead;
        for (destination, bytes) in &out {
            if let Destination::Underlay { .. } = destination {
                prop_assert!(bytes.len() <= link_mtu, "{} > {}", bytes.len(), link_mtu);
            }
        }
    }

    #[test]
    fn handle_outer_never_panics(
        config in any_config(),
        payload in any_inner_bytes(),
        next_header in prop_oneof![Just(4u8), Just(41), Just(60), Just(0), Just(43), Just(44), any::<u8>()],
        traffic_class in any::<u8>(),
        spoofed in any::<bool>(),
    ) {
        let (mut dp, _) = dataplane(config);
        let meta = OuterMeta {
            src: if spoofed { NEAR6 } else { REMOTE },
            dst: LOCAL,
            next_header,
            traffic_class,
            encap_limit: None,
        };
        let mut out = Batch::new(0);
        let mut payload = payload;
        let verdict = dp.handle_outer(now(), &meta, &mut payload, &mut out);
        prop_assert_eq!(verdict == Verdict::Forwarded, out.len() == 1);
    }

    #[test]
    fn handle_icmpv6_never_panics(
        config in any_config(),
        body in proptest::collection::vec(any::<u8>(), 0..1300),
        quote in any_inner_bytes(),
        valid in any::<bool>(),
    ) {
        let (mut dp, id) = dataplane(config);
        let mut message = body;
        if valid {
            // A checksummed Packet Too Big quoting something tunnel-like, so the
            // quote parsing is reached.
            message.resize(8, 0);
            message[0] = icmpv6::msg_type::PACKET_TOO_BIG;
            message.extend_from_slice(&quote);
            let mut view = Icmpv6Packet::new_unchecked(&mut message[..]);
            view.fill_checksum(&NEAR6, &LOCAL);
        }
        let _ = dp.handle_icmpv6(now(), NEAR6, LOCAL, &message);
        let mtu = dp.stats(id).unwrap().path_mtu;
        prop_assert!(mtu <= dp.tunnel(id).unwrap().mtu);
        prop_assert!(mtu >= dp.tunnel(id).unwrap().mtu.min(1232));
    }
}

/// A tunnel over one IPv4 path, open to everything.
fn open_v4_config(local: Ipv4Addr, remote: Ipv4Addr) -> TunnelConfig {
    let mut c = open_config(LOCAL, REMOTE);
    c.paths = vec![PathConfig {
        probe: Probe::None,
        ..PathConfig::new("v4", local, remote)
    }];
    c
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encap_then_decap_over_ipv4_returns_the_inner_packet(
        inner in prop_oneof![any_ipv4(), any_ipv6()],
        traffic_class in any_traffic_class(),
        hop_limit in 1u8..,
    ) {
        let is_v4 = inner[0] >> 4 == 4;
        if is_v4 {
            let view = Ipv4Packet::new_unchecked(&inner[..]);
            prop_assume!(view.src_addr() != REMOTE4 && view.dst_addr() != REMOTE4);
        }
        let mut near = open_v4_config(LOCAL4, REMOTE4);
        near.traffic_class = traffic_class;
        near.hop_limit = hop_limit;
        let (mut a, a_id) = dataplane(near);
        let (mut b, b_id) = dataplane(open_v4_config(REMOTE4, LOCAL4));

        let mut out = Batch::new(2048);
        prop_assert_eq!(a.handle_inner(now(), a_id, &mut inner.clone(), &mut out), Verdict::Forwarded);
        prop_assert_eq!(out.len(), 1);
        let (destination, outer) = out.get(0).unwrap();
        prop_assert_eq!(destination, Destination::Underlay { remote: REMOTE4.into() });
        let view = Ipv4Packet::new_checked(outer).unwrap();
        prop_assert!(view.verify_checksum());
        prop_assert_eq!(view.ttl(), hop_limit);
        prop_assert_eq!(view.protocol(), if is_v4 { ip_proto::IPIP } else { ip_proto::IPV6 });
        let inner_df = is_v4 && Ipv4Packet::new_unchecked(&inner[..]).dont_frag();
        prop_assert_eq!(view.dont_frag(), inner_df);
        prop_assert_eq!(view.payload(), &inner[..]);

        let mut back = Batch::new(2048);
        let mut datagram = outer.to_vec();
        prop_assert_eq!(b.handle_outer_ipv4(now(), &mut datagram, &mut back), Verdict::Forwarded);
        prop_assert_eq!(packets(&back), vec![(Destination::Tun(b_id), inner)]);
    }

    #[test]
    fn handle_outer_ipv4_never_panics(
        config in any_config(),
        inner in any_inner_bytes(),
        protocol in prop_oneof![Just(4u8), Just(41), any::<u8>()],
        tos in any::<u8>(),
        spoofed in any::<bool>(),
        raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3),
    ) {
        let mut config = config;
        config.paths = vec![PathConfig::new("v4", LOCAL4, REMOTE4)];
        let (mut dp, id) = dataplane(config);
        let mut datagram = raw.unwrap_or_else(|| {
            let src = if spoofed { NEAR4 } else { REMOTE4 };
            let mut d = ipv4(src, LOCAL4, protocol, &inner, false);
            let mut view = Ipv4Packet::new_unchecked(&mut d[..]);
            view.set_dscp_ecn(tos);
            view.fill_checksum();
            d
        });
        for (at, value) in edits {
            if !datagram.is_empty() {
                let len = datagram.len();
                datagram[at % len] = value;
            }
        }
        let mut out = Batch::new(0);
        let verdict = dp.handle_outer_ipv4(now(), &mut datagram, &mut out);
        match verdict {
            Verdict::Forwarded => {
                prop_assert_eq!(out.len(), 1);
                prop_assert_eq!(out.get(0).unwrap().0, Destination::Tun(id));
            }
            // A keepalive request is answered on its path, a reply is not.
            Verdict::Consumed => {
                for (destination, _) in &out {
                    prop_assert_eq!(destination, Destination::Underlay { remote: REMOTE4.into() });
                }
            }
            Verdict::Dropped(_) => prop_assert!(out.is_empty()),
        }
    }
}

fn encap_limit_len(limit: EncapLimit) -> usize {
    limit.overhead()
}
