//! Dataplane, IPv4 underlay side: any datagram from a raw IPv4 socket is
//! handled without a panic by a tunnel with an IPv6 and an IPv4 path, both
//! probed. A forwarded datagram is exactly one well-formed inner packet for
//! the TUN device; a consumed one is a probe, whose only output is a keepalive
//! reply on the IPv4 path it came in on; a dropped one leaves nothing behind.
//! Input: 1 byte of flags (bit 0: IPv4 path probed by ICMP rather than
//! keepalives; bit 1: rewrite the addresses to the path's and fix the header
//! checksum, so the fuzzer gets past the outer header; bit 2: device per
//! path), then the datagram. The datagram is then also handed over as an ICMPv4 error
//! (Fragmentation Needed handling), which must never raise a path MTU.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use dataplane::{
    Batch, Dataplane, Destination, Mode, PathConfig, PathId, Probe, TunnelConfig, Verdict,
};
use libfuzzer_sys::fuzz_target;
use wire::{Ipv4Packet, Ipv6Packet, ip_proto};

const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const REMOTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const REMOTE4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn config(flags: u8) -> TunnelConfig {
    let mut c = TunnelConfig::new("fuzz", Mode::Any, LOCAL, REMOTE);
    let ipv4_probe = if flags & 1 != 0 {
        Probe::Icmp {
            target: "203.0.113.1".parse().unwrap(),
            source: None,
        }
    } else {
        Probe::Keepalive
    };
    c.paths = vec![
        PathConfig {
            cost: 10,
            ..PathConfig::new("ipoe", LOCAL, REMOTE)
        },
        PathConfig {
            cost: 100,
            probe: ipv4_probe,
            ..PathConfig::new("pppoe", LOCAL4, REMOTE4)
        },
    ];
    c.routes = vec![
        "203.0.113.0/24".parse().unwrap(),
        "2001:db8:b::/48".parse().unwrap(),
    ];
    c.allowed_sources = c.routes.clone();
    c.icmp_source_v4 = Some("198.51.100.254".parse().unwrap());
    c.icmp_source_v6 = Some("2001:db8:a::fe".parse().unwrap());
    c.device_per_path = flags & 4 != 0;
    c
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, datagram)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut dp = Dataplane::new();
    let id = dp.add_tunnel(config(flags)).unwrap();
    // Probes out first, so replies to them have something to match.
    let mut probes = Batch::new(0);
    dp.handle_timeout(now, &mut probes);
    assert_eq!(probes.len(), 2);

    let mut datagram = datagram.to_vec();
    let header_len = usize::from(datagram.first().map_or(0, |b| b & 0x0f)) * 4;
    if flags & 2 != 0 && header_len >= 20 && header_len <= datagram.len() {
        let mut view = Ipv4Packet::new_unchecked(&mut datagram[..]);
        view.set_src_addr(REMOTE4);
        view.set_dst_addr(LOCAL4);
        view.fill_checksum();
    }
    let mut out = Batch::new(0);
    let verdict = dp.handle_outer_ipv4(now, &mut datagram, &mut out);
    match verdict {
        Verdict::Forwarded => {
            assert_eq!(out.len(), 1);
            let (destination, inner) = out.get(0).unwrap();
            let expected = if flags & 4 != 0 {
                Destination::TunPath(id, PathId(1))
            } else {
                Destination::Tun(id)
            };
            assert_eq!(destination, expected);
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
            assert_eq!(dp.path_stats(id, PathId(1)).unwrap().rx_packets, 1);
        }
        Verdict::Consumed => {
            for (destination, reply) in &out {
                assert_eq!(
                    destination,
                    Destination::Underlay {
                        remote: IpAddr::V4(REMOTE4)
                    }
                );
                let outer = Ipv4Packet::new_checked(reply).expect("reply parses");
                assert!(outer.verify_checksum());
                assert_eq!((outer.src_addr(), outer.dst_addr()), (LOCAL4, REMOTE4));
                assert_eq!(outer.protocol(), ip_proto::IPIP);
            }
            assert!(out.len() <= 1);
        }
        Verdict::Dropped(_) => assert!(out.is_empty()),
    }
    let stats = dp.stats(id).unwrap();
    assert_eq!(stats.tx_packets, 0, "probes are not traffic");

    // The same bytes as an ICMPv4 error from the underlay: handled without a panic, and a
    // path MTU only ever falls.
    let before = stats.path_mtu;
    let _ = dp.handle_icmpv4(now, &datagram);
    assert!(dp.stats(id).unwrap().path_mtu <= before);
});
