//! Per-packet cost of the tunnel core on the two sizes that matter: 64-byte
//! packets (TCP ACKs, the syscall-bound case) and 1400-byte packets (bulk),
//! over an IPv6 and an IPv4 path; and the cost of a timer round that probes
//! the paths of many tunnels.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

mod common;

use common::ipv4;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dataplane::{
    Batch, Dataplane, HealthConfig, Mode, MssClamp, OuterMeta, PathConfig, TunnelConfig, TunnelId,
    Verdict,
};
use wire::{Ipv4Packet, Ipv4Repr, ip_proto};

const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const REMOTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const REMOTE4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const NEAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// A tunnel over an IPv6 path ("ipoe", active) and an IPv4 one ("pppoe"),
/// both probed, so the per-packet path bookkeeping is part of the cost.
fn config() -> TunnelConfig {
    let mut config = TunnelConfig::new("bench", Mode::Ipip6, LOCAL, REMOTE);
    config.paths = vec![
        PathConfig {
            cost: 10,
            ..PathConfig::new("ipoe", LOCAL, REMOTE)
        },
        PathConfig {
            cost: 100,
            ..PathConfig::new("pppoe", LOCAL4, REMOTE4)
        },
    ];
    config.mtu = 1460;
    // Several routes and sources, as a real site has, so the lookup is not free.
    config.routes = [
        "192.0.0.0/24",
        "198.18.0.0/15",
        "203.0.113.128/25",
        "203.0.113.0/24",
    ]
    .iter()
    .map(|r| r.parse().unwrap())
    .collect();
    config.allowed_sources = config.routes.clone();
    config.mss_clamp = MssClamp::Auto;
    config
}

fn tunnel() -> (Dataplane, TunnelId) {
    let mut dp = Dataplane::new();
    let id = dp.add_tunnel(config()).unwrap();
    (dp, id)
}

/// The same tunnel with the IPv4 path cheapest, so traffic takes it.
fn tunnel_over_ipv4() -> (Dataplane, TunnelId) {
    let mut config = config();
    config.paths[1].cost = 1;
    let mut dp = Dataplane::new();
    let id = dp.add_tunnel(config).unwrap();
    (dp, id)
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    for len in [64usize, 1400] {
        let mut group = c.benchmark_group(format!("ipv4_{len}"));
        group.throughput(Throughput::Bytes(len as u64));

        let (mut dp, id) = tunnel();
        let mut packet = ipv4(NEAR, FAR, len);
        let mut out = Batch::new(64 * 1024);
        group.bench_function("handle_inner", |b| {
            b.iter(|| {
                out.clear();
                let verdict = dp.handle_inner(now, id, black_box(&mut packet), &mut out);
                // A bench that measured drops would flatter the core.
                assert_eq!(verdict, Verdict::Forwarded);
            });
        });

        let (mut dp, _) = tunnel();
        let mut payload = ipv4(FAR, NEAR, len);
        let meta = OuterMeta {
            src: REMOTE,
            dst: LOCAL,
            next_header: ip_proto::IPIP,
            traffic_class: 0,
            encap_limit: None,
        };
        group.bench_function("handle_outer", |b| {
            b.iter(|| {
                out.clear();
                let verdict = dp.handle_outer(now, &meta, black_box(&mut payload), &mut out);
                assert_eq!(verdict, Verdict::Forwarded);
            });
        });
        group.finish();

        let mut group = c.benchmark_group(format!("ipv4_{len}_over_ipv4"));
        group.throughput(Throughput::Bytes(len as u64));
        let (mut dp, id) = tunnel_over_ipv4();
        let mut packet = ipv4(NEAR, FAR, len);
        group.bench_function("handle_inner", |b| {
            b.iter(|| {
                out.clear();
                let verdict = dp.handle_inner(now, id, black_box(&mut packet), &mut out);
                assert_eq!(verdict, Verdict::Forwarded);
            });
        });
        // The datagram is rewritten in place by nothing on this path (no
        // clamping of a UDP packet), so one copy serves every iteration.
        let inner = ipv4(FAR, NEAR, len);
        let mut datagram = vec![0u8; 20 + len];
        Ipv4Repr {
            src_addr: REMOTE4,
            dst_addr: LOCAL4,
            protocol: ip_proto::IPIP,
            payload_len: len,
            ttl: 64,
            dscp_ecn: 0,
            ident: 1,
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut datagram[..20]));
        datagram[20..].copy_from_slice(&inner);
        group.bench_function("handle_outer_ipv4", |b| {
            b.iter(|| {
                out.clear();
                let verdict = dp.handle_outer_ipv4(now, black_box(&mut datagram), &mut out);
                assert_eq!(verdict, Verdict::Forwarded);
            });
        });
        group.finish();
    }

    // One timer round of a gateway with 100 two-path tunnels: every path's
    // probe is due, since the clock moves by one interval per round.
    let mut dp = Dataplane::new();
    for i in 0..100u16 {
        let mut config = config();
        config.name = format!("t{i}");
        let [a, b] = i.to_be_bytes();
        config.paths[0].local = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i + 1).into();
        config.paths[1].local = Ipv4Addr::new(198, 19, a, b).into();
        dp.add_tunnel(config).unwrap();
    }
    let interval = HealthConfig::default().interval;
    let mut at = now;
    let mut out = Batch::new(64 * 1024);
    c.bench_function("handle_timeout_200_paths", |b| {
        b.iter(|| {
            out.clear();
            at += interval;
            dp.handle_timeout(black_box(at), &mut out);
            assert_eq!(out.len(), 200);
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
