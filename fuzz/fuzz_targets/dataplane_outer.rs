//! Dataplane, underlay side: any outer payload or ICMPv6 message is handled
//! without a panic; a forwarded packet is exactly one well-formed inner packet
//! for the tunnel's TUN device, and a Packet Too Big never raises the path MTU.
//! Input: 1 byte choosing the tunnel configuration, 1 byte of flags (spoofed
//! source, treat as ICMPv6, fix the ICMPv6 checksum), 1 byte outer next
//! header, 1 byte outer traffic class, then the payload.
#![no_main]

use std::net::Ipv6Addr;
use std::time::Instant;

use dataplane::{
    Batch, Dataplane, Destination, EncapLimit, Mode, MssClamp, OuterMeta, TrafficClass,
    TunnelConfig, Verdict,
};
use libfuzzer_sys::fuzz_target;
use wire::{Icmpv6Packet, Ipv4Packet, Ipv6Packet};

const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const REMOTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
const ROUTER: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0xff, 0, 0, 0, 1);

fn config(choice: u8) -> TunnelConfig {
    let mode = [Mode::Ipip6, Mode::Ip6ip6, Mode::Any, Mode::Any][usize::from(choice & 3)];
    let mut c = TunnelConfig::new("fuzz", mode, LOCAL, REMOTE);
    c.mtu = if choice & 4 != 0 { 1500 } else { 1280 };
    c.encap_limit = if choice & 0x10 != 0 {
        EncapLimit::Limit(4)
    } else {
        EncapLimit::None
    };
    c.traffic_class = if choice & 0x20 != 0 {
        TrafficClass::Inherit
    } else {
        TrafficClass::Fixed(0)
    };
    c.mss_clamp = if choice & 0x40 != 0 {
        MssClamp::Auto
    } else {
        MssClamp::Fixed(u16::from(choice) * 5)
    };
    // Half the time only part of the address space may send.
    c.allowed_sources = if choice & 0x80 != 0 {
        vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]
    } else {
        vec![
            "203.0.113.0/24".parse().unwrap(),
            "2001:db8:b::/48".parse().unwrap(),
        ]
    };
    c.routes = c.allowed_sources.clone();
    c
}

fuzz_target!(|data: &[u8]| {
    let Some((&[choice, flags, next_header, traffic_class], payload)) =
        data.split_first_chunk::<4>()
    else {
        return;
    };
    let now = Instant::now();
    let mut dp = Dataplane::new();
    let id = dp.add_tunnel(config(choice)).unwrap();
    let configured = dp.tunnel(id).unwrap().mtu;

    if flags & 2 != 0 {
        let mut message = payload.to_vec();
        if flags & 4 != 0 && message.len() >= 8 {
            Icmpv6Packet::new_unchecked(&mut message[..]).fill_checksum(&ROUTER, &LOCAL);
        }
        let _ = dp.handle_icmpv6(now, ROUTER, LOCAL, &message);
        let mtu = dp.stats(id).unwrap().path_mtu;
        assert!(mtu <= configured);
        assert!(mtu >= 1232);
        return;
    }

    let meta = OuterMeta {
        src: if flags & 1 != 0 { ROUTER } else { REMOTE },
        dst: LOCAL,
        next_header,
        traffic_class,
        encap_limit: None,
    };
    let mut out = Batch::new(0);
    let verdict = dp.handle_outer(now, &meta, &mut payload.to_vec(), &mut out);
    if verdict != Verdict::Forwarded {
        assert!(out.is_empty());
        return;
    }
    assert_eq!(out.len(), 1);
    let (destination, inner) = out.get(0).unwrap();
    assert_eq!(destination, Destination::Tun(id));
    match inner[0] >> 4 {
        4 => {
            let packet = Ipv4Packet::new_checked(inner).expect("inner IPv4 parses");
            assert!(packet.verify_checksum());
            assert_eq!(usize::from(packet.total_len()), inner.len());
        }
        6 => {
            let packet = Ipv6Packet::new_checked(inner).expect("inner IPv6 parses");
            assert_eq!(usize::from(packet.payload_len()) + 40, inner.len());
        }
        version => panic!("forwarded an IPv{version} packet"),
    }
});
