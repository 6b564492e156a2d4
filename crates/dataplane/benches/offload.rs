//! Cost of the TUN offload edges against the per-packet cost of the core:
//! splitting a 64 KiB TSO super-packet (alone and feeding `handle_inner`
//! segment by segment), coalescing 44 segments into one TUN write (alone and
//! behind `handle_outer`), and `handle_inner` on one full-size TCP segment.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::offload::{Coalescer, split};
use dataplane::{Batch, Dataplane, Mode, MssClamp, OuterMeta, TunnelConfig, TunnelId, Verdict};
use wire::virtio::{GsoType, PartialChecksum, Repr as VirtioRepr};
use wire::{Ipv4Packet, Ipv4Repr, TcpPacket, checksum, ip_proto, tcp};

const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const REMOTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
const NEAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const FAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// Payload per segment of a 1500-byte TCP/IPv4 packet with timestamps.
const MSS: usize = 1448;
/// Segments in one 64 KiB super-packet.
const SEGMENTS: usize = 44;
/// IPv4, TCP and the timestamp option.
const HEADER_LEN: usize = 20 + 20 + 12;

const TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

fn tunnel() -> (Dataplane, TunnelId) {
    let mut config = TunnelConfig::new("bench", Mode::Ipip6, LOCAL, REMOTE);
    config.mtu = 1500;
    config.routes = vec!["203.0.113.0/24".parse().unwrap()];
    config.allowed_sources = config.routes.clone();
    config.mss_clamp = MssClamp::Auto;
    let mut dp = Dataplane::new();
    let id = dp.add_tunnel(config).unwrap();
    (dp, id)
}

/// A TCP/IPv4 packet from `src` to `dst`; `partial` leaves the TCP checksum
/// as a sender with checksum offload does (pseudo-header sum only).
fn tcp4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    seq: u32,
    payload: usize,
    partial: bool,
) -> Vec<u8> {
    let len = HEADER_LEN + payload;
    let mut packet = vec![0x5a; len];
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol: ip_proto::TCP,
        payload_len: len - 20,
        ttl: 64,
        dscp_ecn: 0,
        ident,
        dont_frag: true,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut packet[..]));
    let mut tcp = TcpPacket::new_unchecked(&mut packet[20..]);
    tcp.set_src_port(40000);
    tcp.set_dst_port(5201);
    tcp.set_seq_number(seq);
    tcp.set_ack_number(1);
    tcp.set_header_len(32);
    tcp.set_flags(tcp::flags::ACK);
    tcp.set_window(4096);
    tcp.set_urgent(0);
    tcp.options_mut().copy_from_slice(&TIMESTAMPS);
    if partial {
        let pseudo = checksum::pseudo_header_v4(&src, &dst, ip_proto::TCP, (len - 20) as u32);
        tcp.set_checksum(pseudo);
    } else {
        tcp.fill_checksum_v4(&src, &dst);
    }
    packet
}

fn tso_header() -> VirtioRepr {
    VirtioRepr {
        csum: Some(PartialChecksum {
            start: 20,
            offset: 16,
        }),
        data_valid: false,
        gso_type: GsoType::TcpV4,
        ecn: false,
        hdr_len: HEADER_LEN as u16,
        gso_size: MSS as u16,
    }
}

fn bench(c: &mut Criterion) {
    let now = Instant::now();
    let payload = (SEGMENTS * MSS) as u64;

    // Read side: one TUN read of a 64 KiB super-packet.
    let mut group = c.benchmark_group("tso_64k");
    group.throughput(Throughput::Bytes(payload));
    let super_packet = tcp4(NEAR, FAR, 7, 1000, SEGMENTS * MSS, true);
    let vnet = tso_header();
    // split consumes its buffer, so each round gets a fresh copy (not timed).
    group.bench_function("split", |b| {
        b.iter_batched_ref(
            || super_packet.clone(),
            |packet| {
                let mut bytes = 0;
                let count =
                    split(&vnet, packet, |segment| bytes += black_box(segment).len()).unwrap();
                assert_eq!(count, SEGMENTS);
            },
            BatchSize::SmallInput,
        );
    });
    let (mut dp, id) = tunnel();
    let mut out = Batch::new(128 * 1024);
    group.bench_function("split_then_handle_inner", |b| {
        b.iter_batched_ref(
            || super_packet.clone(),
            |packet| {
                out.clear();
                split(&vnet, packet, |segment| {
                    let verdict = dp.handle_inner(now, id, segment, &mut out);
                    assert_eq!(verdict, Verdict::Forwarded);
                })
                .unwrap();
                assert_eq!(out.len(), SEGMENTS);
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    // The core alone on one segment, for the per-packet comparison.
    let mut group = c.benchmark_group("tcp_1500");
    group.throughput(Throughput::Bytes(MSS as u64));
    let mut segment = tcp4(NEAR, FAR, 7, 1000, MSS, false);
    group.bench_function("handle_inner", |b| {
        b.iter(|| {
            out.clear();
            let verdict = dp.handle_inner(now, id, black_box(&mut segment), &mut out);
            assert_eq!(verdict, Verdict::Forwarded);
        });
    });
    group.finish();

    // Write side: 44 decapsulated segments of one flow become one TUN write.
    let mut group = c.benchmark_group("gro_44");
    group.throughput(Throughput::Bytes(payload));
    let segments: Vec<Vec<u8>> = (0..SEGMENTS)
        .map(|i| tcp4(FAR, NEAR, i as u16, (i * MSS) as u32, MSS, false))
        .collect();
    let mut coalescer = Coalescer::default();
    group.bench_function("coalesce", |b| {
        b.iter(|| {
            coalescer.clear();
            for segment in &segments {
                coalescer.push(black_box(segment));
            }
            assert_eq!(coalescer.flush().len(), 1);
        });
    });
    let meta = OuterMeta {
        src: REMOTE,
        dst: LOCAL,
        next_header: ip_proto::IPIP,
        traffic_class: 0,
        encap_limit: None,
    };
    let (mut dp, _) = tunnel();
    let mut inbound = segments.clone();
    group.bench_function("handle_outer_then_coalesce", |b| {
        b.iter(|| {
            out.clear();
            coalescer.clear();
            for payload in &mut inbound {
                let verdict = dp.handle_outer(now, &meta, black_box(payload), &mut out);
                assert_eq!(verdict, Verdict::Forwarded);
            }
            for (_, packet) in out.iter() {
                coalescer.push(packet);
            }
            assert_eq!(coalescer.flush().len(), 1);
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
