//! The same packets through the userspace core (crates/dataplane) and through the kernel
//! path's programs run by the kernel itself (`BPF_PROG_TEST_RUN`): the same bytes out and
//! the same verdicts, for good, malformed and spoofed packets, fixed and random.
//!
//! How a verdict of the core reads on the kernel path:
//! - on the way out, `Forwarded` is `TC_ACT_OK` with the outer header in front, and every
//!   drop is `TC_ACT_UNSPEC` with the frame untouched: what is not the tunnel's on the
//!   underlay's egress is the underlay's own traffic, passed on;
//! - on the way in, `Forwarded` is `TC_ACT_OK` with the outer header gone, `Consumed` is
//!   `TC_ACT_OK` with the frame untouched (punted to the stack and the userspace core), a
//!   drop is `TC_ACT_SHOT` counted under the same reason, and `NoTunnel` is `TC_ACT_UNSPEC`;
//!   inner protocol 253 (keepalives) is always punted, since the core, not the program,
//!   tells a keepalive from a malformed one.
//!
//! Needs root (loading BPF programs); changes nothing on the host.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use dataplane::{
    Batch, Dataplane, Destination, DropReason, EncapLimit, Mode, MssClamp, OuterMeta, PathConfig,
    Probe, TrafficClass, TunnelConfig, TunnelId, Verdict,
};
use kpath::{KernelPath, Spec};
use proptest::prelude::*;
use wire::ipv6_ext;

const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_UNSPEC: i32 = -1;

const MACS: [u8; 12] = [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];

const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1);
const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const REMOTE4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const OTHER4: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 9);

/// Our site: 198.51.100.0/24 and 2001:db8:1a::/48; theirs: 203.0.113.0/24, 2001:db8:1b::/48.
const OURS4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const THEIRS4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const OURS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x1a, 0, 0, 0, 0, 7);
const THEIRS6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x1b, 0, 0, 0, 0, 9);

fn can_load() -> bool {
    static LOADS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADS.get_or_init(probe)
}

fn probe() -> bool {
    match kpath::probe() {
        Ok(()) => true,
        Err(e) => {
            // Only a host that forbids BPF (not root, no CAP_BPF) may skip; anything else
            // is a failure of the programs themselves.
            let text = format!("{e:?}");
            assert!(
                text.contains("PermissionDenied") || text.contains("Operation not permitted"),
                "the kernel path does not load: {e}"
            );
            eprintln!("skipped: BPF programs cannot be loaded here ({e})");
            false
        }
    }
}

/// One configuration, both ways.
struct Pair {
    core: Dataplane,
    id: TunnelId,
    kernel: KernelPath,
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    /// ipip6/any over IPv6, defaults (no encapsulation limit, DSCP 0).
    V6Plain,
    /// With the encapsulation limit option and the inner TOS copied.
    V6Limit,
    /// Over an IPv4 path (RFC 2003 / protocol 41), DSCP 46.
    V4Path,
}

fn config(variant: Variant) -> TunnelConfig {
    let mut config = TunnelConfig::new("t", Mode::Any, LOCAL6, REMOTE6);
    config.routes = vec![
        "203.0.113.0/24".parse().unwrap(),
        "2001:db8:1b::/48".parse().unwrap(),
    ];
    config.allowed_sources = config.routes.clone();
    config.mss_clamp = MssClamp::Off;
    config.mtu = 1400;
    match variant {
        Variant::V6Plain => {}
        Variant::V6Limit => {
            config.encap_limit = EncapLimit::Limit(4);
            config.traffic_class = TrafficClass::Inherit;
        }
        Variant::V4Path => {
            config.paths = vec![PathConfig {
                probe: Probe::None,
                ..PathConfig::new("v4", LOCAL4, REMOTE4)
            }];
            config.traffic_class = TrafficClass::Fixed(46 << 2);
        }
    }
    config
}

impl Pair {
    fn new(variant: Variant) -> Self {
        let config = config(variant);
        let kernel = KernelPath::load(&Spec::from_config(&config)).expect("load");
        let mut core = Dataplane::new();
        let id = core.add_tunnel(config).expect("valid config");
        Self { core, id, kernel }
    }

    /// An inner packet leaving through the underlay device.
    fn egress(&mut self, inner: &[u8]) {
        let frame = frame(ethertype_of(inner), inner);
        let run = self
            .kernel
            .run_encap(&frame)
            .unwrap_or_else(|e| panic!("{e}: {}", hex(&frame)));
        let mut packet = inner.to_vec();
        let mut out = Batch::new(4096);
        let verdict = self
            .core
            .handle_inner(Instant::now(), self.id, &mut packet, &mut out);
        match verdict {
            Verdict::Forwarded => {
                assert_eq!(out.len(), 1, "one outer packet");
                let (dest, outer) = out.get(0).unwrap();
                assert!(matches!(dest, Destination::Underlay { .. }));
                let want = frame_for(outer);
                assert_eq!(run.retval, TC_ACT_OK, "core forwarded {}", hex(inner));
                assert_eq!(
                    hex(&run.data),
                    hex(&want),
                    "outer bytes differ for {}",
                    hex(inner)
                );
            }
            other => {
                assert_eq!(
                    run.retval,
                    TC_ACT_UNSPEC,
                    "core said {other:?} for {}",
                    hex(inner)
                );
                assert_eq!(run.data, frame, "passed on untouched");
            }
        }
    }

    /// An outer packet arriving on the underlay device.
    fn ingress(&mut self, outer: &[u8]) {
        let frame = frame(ethertype_of(outer), outer);
        let before = self.kernel.counters().unwrap();
        let run = self
            .kernel
            .run_decap(&frame)
            .unwrap_or_else(|e| panic!("{e}: {}", hex(&frame)));
        let after = self.kernel.counters().unwrap();
        let Some(expect) = self.core_ingress(outer) else {
            assert_eq!(
                run.retval,
                TC_ACT_UNSPEC,
                "not a tunnel packet for the core: {}",
                hex(outer)
            );
            assert_eq!(run.data, frame);
            return;
        };
        let keepalive_protocol = expect.inner_protocol == Some(253);
        if keepalive_protocol && run.retval == TC_ACT_OK && run.data == frame {
            assert_eq!(after.punted, before.punted + 1);
            return;
        }
        match expect.verdict {
            Verdict::Forwarded => {
                assert_eq!(run.retval, TC_ACT_OK, "core forwarded {}", hex(outer));
                let inner = expect.inner.unwrap();
                let want = frame_for(&inner);
                assert_eq!(hex(&run.data), hex(&want), "inner bytes for {}", hex(outer));
                assert_eq!(after.rx_packets, before.rx_packets + 1);
            }
            Verdict::Consumed => {
                assert_eq!(run.retval, TC_ACT_OK, "punted: {}", hex(outer));
                assert_eq!(run.data, frame);
            }
            Verdict::Dropped(DropReason::NoTunnel) => {
                assert_eq!(run.retval, TC_ACT_UNSPEC, "not ours: {}", hex(outer));
                assert_eq!(run.data, frame);
            }
            Verdict::Dropped(reason) => {
                assert_eq!(
                    run.retval,
                    TC_ACT_SHOT,
                    "core dropped {reason:?}: {}",
                    hex(outer)
                );
                assert_eq!(
                    after.drops(reason),
                    before.drops(reason) + 1,
                    "counted as {reason:?}"
                );
            }
        }
    }

    /// What the kernel and the userspace core make of an outer packet, as the shell hands
    /// it over: `None` when the core never sees it (not protocol 4 or 41).
    fn core_ingress(&mut self, outer: &[u8]) -> Option<Expect> {
        let now = Instant::now();
        let mut out = Batch::new(4096);
        let mut bytes = outer.to_vec();
        let verdict = match outer.first()? >> 4 {
            6 => {
                let packet = wire::Ipv6Packet::new_checked(outer).ok()?;
                let payload_len = usize::from(packet.payload_len());
                let next_header = packet.next_header();
                let walk = ipv6_ext::walk(next_header, &outer[40..40 + payload_len]).ok()?;
                if ![4, 41].contains(&walk.upper_protocol) {
                    return None;
                }
                let meta = OuterMeta {
                    src: packet.src_addr(),
                    dst: packet.dst_addr(),
                    next_header,
                    traffic_class: packet.traffic_class(),
                    encap_limit: walk.encap_limit,
                };
                let payload = &mut bytes[40..40 + payload_len];
                self.core.handle_outer(now, &meta, payload, &mut out)
            }
            4 => {
                let packet = wire::Ipv4Packet::new_checked(outer).ok()?;
                if ![4, 41].contains(&packet.protocol()) {
                    return None;
                }
                let total = usize::from(packet.total_len());
                self.core
                    .handle_outer_ipv4(now, &mut bytes[..total], &mut out)
            }
            _ => return None,
        };
        let inner = out
            .iter()
            .find(|(d, _)| matches!(d, Destination::Tun(_)))
            .map(|(_, b)| b.to_vec());
        Some(Expect {
            verdict,
            inner,
            inner_protocol: inner_protocol(outer),
        })
    }
}

struct Expect {
    verdict: Verdict,
    inner: Option<Vec<u8>>,
    inner_protocol: Option<u8>,
}

/// The protocol byte of an IPv4 packet behind the outer header (and the canonical
/// encapsulation limit option), if there is one.
fn inner_protocol(outer: &[u8]) -> Option<u8> {
    let offset = match outer.first()? >> 4 {
        6 if outer.get(6) == Some(&60) => 48,
        6 => 40,
        4 => 20,
        _ => return None,
    };
    let inner = outer.get(offset..)?;
    (inner.first()? >> 4 == 4).then(|| inner.get(9).copied())?
}

fn ethertype_of(packet: &[u8]) -> u16 {
    match packet.first().map(|b| b >> 4) {
        Some(6) => 0x86dd,
        _ => 0x0800,
    }
}

fn frame(ethertype: u16, packet: &[u8]) -> Vec<u8> {
    let mut frame = MACS.to_vec();
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(packet);
    frame
}

fn frame_for(outer: &[u8]) -> Vec<u8> {
    frame(ethertype_of(outer), outer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet with a valid header checksum.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, tos: u8, df: bool, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut p = vec![0x45, tos];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, if df { 0x40 } else { 0 }, 0, 64, protocol, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, tclass: u8, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60 | (tclass >> 4), (tclass << 4) | 0x0a, 0xbc, 0xde];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[next_header, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

const LIMIT_OPTION: [u8; 8] = [4, 0, 4, 1, 4, 1, 1, 0];

fn with_limit(next_header: u8, inner: &[u8]) -> Vec<u8> {
    let mut payload = LIMIT_OPTION.to_vec();
    payload[0] = next_header;
    payload.extend_from_slice(inner);
    payload
}

fn fixed_inner() -> Vec<Vec<u8>> {
    let udp = [0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4];
    let mut v = vec![
        ipv4(OURS4, THEIRS4, 0, true, 17, &udp),
        ipv4(OURS4, THEIRS4, 0xb9, false, 6, &[0x55; 40]),
        ipv4(
            OURS4,
            THEIRS4,
            0x02,
            true,
            1,
            &[8, 0, 0xf7, 0xff, 0, 0, 0, 0],
        ),
        ipv4(THEIRS4, THEIRS4, 0x03, true, 253, &[0; 16]),
        // Not routed into the tunnel.
        ipv4(OURS4, Ipv4Addr::new(192, 0, 2, 1), 0, true, 17, &udp),
        ipv4(OURS4, OTHER4, 0, true, 17, &udp),
        ipv6(OURS6, THEIRS6, 0x2d, 17, &udp),
        ipv6(OURS6, THEIRS6, 0, 59, &[]),
        ipv6(
            OURS6,
            Ipv6Addr::new(0x2001, 0xdb8, 0xff, 0, 0, 0, 0, 1),
            0,
            17,
            &udp,
        ),
    ];
    // Routed, but to or from the far end itself.
    v.push(ipv6(REMOTE6, THEIRS6, 0, 17, &udp));
    // Truncated, with bytes after the packet, with a bad version.
    let good = ipv4(OURS4, THEIRS4, 0, true, 17, &udp);
    v.push(good[..good.len() - 3].to_vec());
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0xee; 6]);
    v.push(trailing);
    let mut bad_ihl = good.clone();
    bad_ihl[0] = 0x44;
    v.push(bad_ihl);
    v
}

fn fixed_outer(variant: Variant) -> Vec<Vec<u8>> {
    let udp = [0x30, 0x39, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4];
    let inners = [
        ipv4(THEIRS4, OURS4, 0x01, true, 17, &udp),
        ipv4(THEIRS4, OURS4, 0x00, false, 6, &[0x11; 33]),
        ipv4(OURS4, OURS4, 0x02, true, 17, &udp),
        ipv4(THEIRS4, OURS4, 0x02, true, 253, &[0; 8]),
        ipv6(THEIRS6, OURS6, 0x01, 17, &udp),
        ipv6(OURS6, OURS6, 0x01, 17, &udp),
    ];
    let mut v = Vec::new();
    for inner in &inners {
        let proto = if inner[0] >> 4 == 4 { 4 } else { 41 };
        for tclass in [0x00, 0xb8, 0x03] {
            match variant {
                Variant::V4Path => {
                    for (src, dst) in [(REMOTE4, LOCAL4), (OTHER4, LOCAL4), (REMOTE4, OTHER4)] {
                        v.push(ipv4(src, dst, tclass, false, proto, inner));
                    }
                }
                _ => {
                    for (src, dst) in [(REMOTE6, LOCAL6), (OTHER6, LOCAL6), (REMOTE6, OTHER6)] {
                        v.push(ipv6(src, dst, tclass, proto, inner));
                        v.push(ipv6(src, dst, tclass, 60, &with_limit(proto, inner)));
                    }
                }
            }
        }
        // The outer protocol disagrees with the inner version; bytes past the inner packet.
        let wrong = if proto == 4 { 41 } else { 4 };
        let mut padded = inner.clone();
        padded.extend_from_slice(&[0xaa; 5]);
        match variant {
            Variant::V4Path => {
                v.push(ipv4(REMOTE4, LOCAL4, 0, false, wrong, inner));
                v.push(ipv4(REMOTE4, LOCAL4, 0, false, proto, &padded));
                v.push(ipv4(
                    REMOTE4,
                    LOCAL4,
                    0,
                    false,
                    proto,
                    &inner[..inner.len() - 1],
                ));
            }
            _ => {
                v.push(ipv6(REMOTE6, LOCAL6, 0, wrong, inner));
                v.push(ipv6(REMOTE6, LOCAL6, 0, proto, &padded));
                v.push(ipv6(REMOTE6, LOCAL6, 0, proto, &inner[..inner.len() - 1]));
            }
        }
    }
    // A bad inner checksum.
    let mut bad = inners[0].clone();
    bad[10] ^= 0x40;
    v.push(match variant {
        Variant::V4Path => ipv4(REMOTE4, LOCAL4, 0, false, 4, &bad),
        _ => ipv6(REMOTE6, LOCAL6, 0, 4, &bad),
    });
    // Not a tunnel packet: UDP to our address from the peer.
    v.push(match variant {
        Variant::V4Path => ipv4(REMOTE4, LOCAL4, 0, false, 17, &udp),
        _ => ipv6(REMOTE6, LOCAL6, 0, 17, &udp),
    });
    v
}

const VARIANTS: [Variant; 3] = [Variant::V6Plain, Variant::V6Limit, Variant::V4Path];

#[test]
fn fixed_vectors_give_the_same_bytes_and_verdicts() {
    if !can_load() {
        return;
    }
    for variant in VARIANTS {
        let mut pair = Pair::new(variant);
        let inner = fixed_inner();
        for packet in &inner {
            pair.egress(packet);
        }
        let outer = fixed_outer(variant);
        for packet in &outer {
            pair.ingress(packet);
        }
        let counters = pair.kernel.counters().unwrap();
        assert!(counters.tx_packets >= 5, "{variant:?}: {counters:?}");
        assert!(counters.rx_packets >= 3, "{variant:?}: {counters:?}");
        for reason in [
            DropReason::SpoofedOuterSource,
            DropReason::InnerSourceNotAllowed,
            DropReason::CongestionNotEct,
            DropReason::Malformed,
        ] {
            assert!(
                counters.drops(reason) > 0,
                "{variant:?} never saw {reason:?}"
            );
        }
    }
}

#[test]
fn failover_is_one_map_update() {
    if !can_load() {
        return;
    }
    let mut config = config(Variant::V6Plain);
    config.paths.push(PathConfig {
        probe: Probe::None,
        ..PathConfig::new("v4", LOCAL4, REMOTE4)
    });
    let mut kernel = KernelPath::load(&Spec::from_config(&config)).unwrap();
    let packet = frame(0x0800, &ipv4(OURS4, THEIRS4, 0, true, 17, &[0; 12]));
    let first = kernel.run_encap(&packet).unwrap();
    assert_eq!(first.data[12..14], [0x86, 0xdd]);
    assert_eq!(first.data[14 + 24..14 + 40], REMOTE6.octets());
    kernel.set_active(1).unwrap();
    let second = kernel.run_encap(&packet).unwrap();
    assert_eq!(second.data[12..14], [0x08, 0x00]);
    assert_eq!(second.data[14 + 16..14 + 20], REMOTE4.octets());
    assert!(kernel.set_active(2).is_err());
    assert_eq!(kernel.path_counters(0).unwrap().tx_packets, 1);
    assert_eq!(kernel.path_counters(1).unwrap().tx_packets, 1);
}

/// A reload's new prefixes are map updates on the loaded programs: a destination added to
/// the routes is encapsulated from the next packet on, one removed is passed on untouched,
/// and a source added to the allowed sources is decapsulated; the counters carry on.
#[test]
fn prefixes_change_by_map_updates() {
    if !can_load() {
        return;
    }
    let config = config(Variant::V6Plain);
    let mut kernel = KernelPath::load(&Spec::from_config(&config)).unwrap();
    let further: ipnet::IpNet = "198.18.200.0/24".parse().unwrap();
    let far = Ipv4Addr::new(198, 18, 200, 9);
    let to_far = frame(0x0800, &ipv4(OURS4, far, 0, true, 17, &[0; 12]));
    let to_theirs = frame(0x0800, &ipv4(OURS4, THEIRS4, 0, true, 17, &[0; 12]));
    let from_far = frame(
        0x86dd,
        &ipv6(
            REMOTE6,
            LOCAL6,
            0,
            4,
            &ipv4(far, OURS4, 0, true, 17, &[0; 12]),
        ),
    );
    assert_eq!(kernel.run_encap(&to_far).unwrap().retval, TC_ACT_UNSPEC);
    assert_eq!(kernel.run_decap(&from_far).unwrap().retval, TC_ACT_SHOT);

    let mut routes = config.routes.clone();
    routes.push(further);
    let mut sources = config.allowed_sources.clone();
    sources.push(further);
    kernel.set_prefixes(&routes, &sources).unwrap();
    let out = kernel.run_encap(&to_far).unwrap();
    assert_eq!(
        (out.retval, &out.data[12..14]),
        (TC_ACT_OK, &[0x86, 0xdd][..])
    );
    assert_eq!(kernel.run_decap(&from_far).unwrap().retval, TC_ACT_OK);
    assert_eq!(kernel.spec().routes, routes);

    // Only the new prefix left: the old one is passed on, the new one still encapsulated.
    kernel.set_prefixes(&[further], &[further]).unwrap();
    let passed = kernel.run_encap(&to_theirs).unwrap();
    assert_eq!((passed.retval, &passed.data), (TC_ACT_UNSPEC, &to_theirs));
    assert_eq!(kernel.run_encap(&to_far).unwrap().retval, TC_ACT_OK);
    let counters = kernel.counters().unwrap();
    assert_eq!(counters.tx_packets, 2, "{counters:?}");
    assert_eq!(counters.rx_packets, 1, "{counters:?}");
}

fn addr4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        Just(OURS4),
        Just(THEIRS4),
        Just(REMOTE4),
        Just(LOCAL4),
        Just(OTHER4),
        any::<[u8; 4]>().prop_map(Ipv4Addr::from),
    ]
}

fn addr6() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        Just(OURS6),
        Just(THEIRS6),
        Just(REMOTE6),
        Just(LOCAL6),
        Just(OTHER6),
        any::<[u8; 16]>().prop_map(Ipv6Addr::from),
    ]
}

fn protocol() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(1u8),
        Just(6),
        Just(17),
        Just(253),
        Just(59),
        any::<u8>()
    ]
}

/// An inner packet, mostly well formed, sometimes damaged.
fn inner_packet() -> impl Strategy<Value = Vec<u8>> {
    let v4 = (
        addr4(),
        addr4(),
        any::<u8>(),
        any::<bool>(),
        protocol(),
        prop::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(s, d, tos, df, p, payload)| ipv4(s, d, tos, df, p, &payload));
    let v6 = (
        addr6(),
        addr6(),
        any::<u8>(),
        protocol(),
        prop::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(s, d, tc, p, payload)| ipv6(s, d, tc, p, &payload));
    (
        prop_oneof![v4, v6],
        prop_oneof![
            4 => Just(None),
            1 => (0usize..80, any::<u8>()).prop_map(Some),
        ],
        0usize..4,
    )
        .prop_map(|(mut packet, damage, trailing)| {
            if let Some((at, byte)) = damage {
                let at = at % packet.len();
                packet[at] = byte;
            }
            packet.extend(std::iter::repeat_n(0xee, trailing));
            packet
        })
}

/// An outer packet around an inner one, from a peer or not, to us or not.
fn outer_packet(v4_path: bool) -> impl Strategy<Value = Vec<u8>> {
    (
        inner_packet(),
        0u8..4,
        any::<u8>(),
        prop_oneof![Just(None), Just(Some(4u8)), Just(Some(41)), Just(Some(17))],
        any::<bool>(),
        0usize..3,
    )
        .prop_map(move |(inner, who, tclass, proto, limit, cut)| {
            let natural = if inner.first().map(|b| b >> 4) == Some(6) {
                41
            } else {
                4
            };
            let proto = proto.unwrap_or(natural);
            let inner = &inner[..inner.len().saturating_sub(cut)];
            if v4_path {
                let (src, dst) = [
                    (REMOTE4, LOCAL4),
                    (OTHER4, LOCAL4),
                    (REMOTE4, OTHER4),
                    (LOCAL4, REMOTE4),
                ][usize::from(who)];
                ipv4(src, dst, tclass, false, proto, inner)
            } else {
                let (src, dst) = [
                    (REMOTE6, LOCAL6),
                    (OTHER6, LOCAL6),
                    (REMOTE6, OTHER6),
                    (LOCAL6, REMOTE6),
                ][usize::from(who)];
                if limit {
                    ipv6(src, dst, tclass, 60, &with_limit(proto, inner))
                } else {
                    ipv6(src, dst, tclass, proto, inner)
                }
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_packets_agree_both_ways(
        inner in prop::collection::vec(inner_packet(), 1..16),
        outer6 in prop::collection::vec(outer_packet(false), 1..16),
        outer4 in prop::collection::vec(outer_packet(true), 1..16),
        variant in 0usize..3,
    ) {
        if !can_load() {
            return Ok(());
        }
        let variant = VARIANTS[variant];
        let mut pair = Pair::new(variant);
        for packet in &inner {
            pair.egress(packet);
        }
        let outer = if matches!(variant, Variant::V4Path) { &outer4 } else { &outer6 };
        for packet in outer {
            pair.ingress(packet);
        }
    }
}
