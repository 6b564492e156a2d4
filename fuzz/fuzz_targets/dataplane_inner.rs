//! Dataplane, TUN side: any inner packet is encapsulated, fragmented, answered
//! with an ICMP error or dropped, never a panic; whatever goes to the underlay
//! is a well-formed outer packet between the tunnel's endpoints that the far
//! end decapsulates back to the same inner bytes. With the top bit of the
//! first byte the packet is sent on the tunnel's IPv4 path with
//! `handle_inner_on_path` instead, and the far end takes the whole outer IPv4
//! datagram. Input: 1 byte choosing the tunnel configuration, then the inner
//! packet.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use dataplane::{
    Batch, Dataplane, Destination, EncapLimit, Mode, MssClamp, OuterMeta, PathConfig, PathId,
    Probe, TrafficClass, TunnelConfig, Verdict,
};
use libfuzzer_sys::fuzz_target;
use wire::{Ipv4Packet, Ipv6Packet, ipv6_ext};

const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const REMOTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const REMOTE4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Bits of `choice` pick the mode, MTU, option, traffic class and clamping,
/// so every branch of the core is reachable.
fn config(choice: u8, local: Ipv6Addr, remote: Ipv6Addr) -> TunnelConfig {
    let mode = [Mode::Ipip6, Mode::Ip6ip6, Mode::Any, Mode::Ipip6][usize::from(choice & 3)];
    let mut c = TunnelConfig::new("fuzz", mode, local, remote);
    c.mtu = match (choice >> 2) & 3 {
        0 => 68,
        1 => 576,
        2 => 1280,
        _ => 1500,
    };
    if mode != Mode::Ipip6 {
        c.mtu = c.mtu.max(1280);
    }
    c.encap_limit = if choice & 0x10 != 0 {
        EncapLimit::Limit(choice)
    } else {
        EncapLimit::None
    };
    c.traffic_class = if choice & 0x20 != 0 {
        TrafficClass::Inherit
    } else {
        TrafficClass::Fixed(choice)
    };
    c.mss_clamp = if choice & 0x40 != 0 {
        MssClamp::Auto
    } else {
        MssClamp::Off
    };
    c.routes = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    c.allowed_sources = c.routes.clone();
    c.icmp_source_v4 = Some("198.51.100.254".parse().unwrap());
    c.icmp_source_v6 = Some("2001:db8:a::fe".parse().unwrap());
    if choice & 0x80 != 0 {
        let (local4, remote4) = if local == LOCAL {
            (LOCAL4, REMOTE4)
        } else {
            (REMOTE4, LOCAL4)
        };
        c.paths.push(PathConfig {
            probe: Probe::None,
            ..PathConfig::new("v4", local4, remote4)
        });
    }
    c
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, packet)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let near = config(choice, LOCAL, REMOTE);
    let mtu = usize::from(near.mtu.max(1280));
    let mut a = Dataplane::new();
    let a_id = a.add_tunnel(near).unwrap();
    let mut far = config(choice, REMOTE, LOCAL);
    far.mss_clamp = MssClamp::Off;
    let mut b = Dataplane::new();
    b.add_tunnel(far).unwrap();

    let mut out = Batch::new(0);
    let verdict = if choice & 0x80 != 0 {
        a.handle_inner_on_path(now, a_id, PathId(1), &mut packet.to_vec(), &mut out)
    } else {
        a.handle_inner(now, a_id, &mut packet.to_vec(), &mut out)
    };
    assert_eq!(
        verdict == Verdict::Forwarded,
        out.iter()
            .any(|(d, _)| matches!(d, Destination::Underlay { .. }))
    );
    for (destination, bytes) in &out {
        let Destination::Underlay { remote } = destination else {
            assert_eq!(destination, Destination::Tun(a_id));
            continue;
        };
        if choice & 0x80 != 0 {
            assert_eq!(remote, IpAddr::V4(REMOTE4));
            let outer = Ipv4Packet::new_checked(bytes).expect("outer IPv4 parses");
            assert!(outer.verify_checksum());
            assert_eq!(usize::from(outer.total_len()), bytes.len());
            assert!(bytes.len() <= 20 + mtu);
            assert_eq!((outer.src_addr(), outer.dst_addr()), (LOCAL4, REMOTE4));
            let inner = outer.payload().to_vec();
            let mut back = Batch::new(0);
            if b.handle_outer_ipv4(now, &mut bytes.to_vec(), &mut back) == Verdict::Forwarded {
                assert_eq!(back.get(0).map(|(_, p)| p), Some(&inner[..]));
            }
            continue;
        }
        assert_eq!(remote, IpAddr::V6(REMOTE));
        let outer = Ipv6Packet::new_checked(bytes).expect("outer packet parses");
        assert_eq!(usize::from(outer.payload_len()) + 40, bytes.len());
        assert!(bytes.len() <= 48 + mtu);
        assert_eq!((outer.src_addr(), outer.dst_addr()), (LOCAL, REMOTE));
        let walk = ipv6_ext::walk(outer.next_header(), outer.payload()).expect("option parses");
        let inner = &outer.payload()[walk.offset..];
        let meta = OuterMeta {
            src: LOCAL,
            dst: REMOTE,
            next_header: walk.upper_protocol,
            traffic_class: outer.traffic_class(),
            encap_limit: walk.encap_limit,
        };
        let mut back = Batch::new(0);
        if b.handle_outer(now, &meta, &mut inner.to_vec(), &mut back) == Verdict::Forwarded {
            assert_eq!(back.get(0).map(|(_, p)| p), Some(inner));
        }
    }
});
