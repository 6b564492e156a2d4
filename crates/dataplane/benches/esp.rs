//! Per-packet cost of the ESP core, stage by stage: sealing an inner packet
//! (`EspTunnel::handle_inner`) and opening an ESP packet (`handle_esp`) for
//! AES-GCM-128 and AES-128-CBC with HMAC-SHA2-256-128, at 64 and 1400 bytes,
//! raw and in UDP; and, in the "hub" group, whether the cost of receiving stays
//! flat when 1,000 tunnels or SAs are configured and traffic is spread over all
//! of them.
//!
//! Opening needs a packet never seen before (the replay window refuses the
//! rest), so every opened packet is sealed beforehand, outside the timing, in
//! chunks of `CHUNK`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

mod common;

use common::ipv4;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dataplane::esp::{
    EspBatch, EspDestination, EspPathConfig, EspPaths, EspTunnel, EspTunnelConfig, InboundSa,
    Integrity, OutboundSa, Suite, UdpKind, classify_udp,
};
use dataplane::{
    Batch, Dataplane, HealthConfig, Mode, MssClamp, OuterMeta, TunnelConfig, TunnelId, Verdict,
};
use ipnet::IpNet;
use wire::{ip_proto, ipv6};

const HUB: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
const SPOKE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
/// Behind the hub.
const NEAR: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// Behind a spoke.
const FAR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// Packets sealed ahead per timed batch of openings.
const CHUNK: usize = 1024;
/// Tunnels or SAs of the large hub.
const SPOKES: u16 = 1000;

const GCM128: Suite = Suite::AesGcm16 { key_bits: 128 };
const CBC128_SHA256: Suite = Suite::AesCbc {
    key_bits: 128,
    integrity: Integrity::HmacSha256_128,
};

/// Spoke `i`'s own address (`i` from 0).
fn spoke(i: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, i + 1)
}

/// Spoke `i`'s inner network: one /32 of 198.18.0.0/15 each, so every tunnel
/// has a source filter of its own.
fn spoke_net(i: u16) -> Ipv4Addr {
    let [a, b] = i.to_be_bytes();
    Ipv4Addr::new(198, 18, a, b)
}

/// The end of a tunnel at `local` towards `remote`, for site `ours` behind it
/// and `theirs` behind the peer.
fn esp_config(local: Ipv6Addr, remote: Ipv6Addr, ours: IpNet, theirs: IpNet) -> EspTunnelConfig {
    EspTunnelConfig {
        local: local.into(),
        remote: remote.into(),
        local_subnets: vec![ours],
        routes: vec![theirs],
        allowed_sources: vec![theirs],
        mtu: 1400,
        mss_clamp: MssClamp::Auto,
        hop_limit: 64,
        icmp_source_v4: None,
        icmp_source_v6: None,
    }
}

/// Key material of the SA with this SPI: distinct per SA, as IKE makes it.
fn keys(suite: Suite, spi: u32) -> (Vec<u8>, Vec<u8>) {
    let byte = |salt: u8| spi.to_be_bytes()[3] ^ salt;
    let encr = (0..suite.encr_key_len()).map(|i| byte(i as u8)).collect();
    let integ = (0..suite.integ_key_len())
        .map(|i| byte(0x80 ^ i as u8))
        .collect();
    (encr, integ)
}

fn outbound(suite: Suite, spi: u32) -> OutboundSa {
    let (encr, integ) = keys(suite, spi);
    OutboundSa::new(spi, suite, &encr, &integ, false).unwrap()
}

fn inbound(suite: Suite, spi: u32) -> InboundSa {
    let (encr, integ) = keys(suite, spi);
    InboundSa::new(spi, suite, &encr, &integ, false).unwrap()
}

/// The ESP part (from the SPI on) of what sealing `packet` at `sender`
/// produced: what the raw socket or the UDP socket delivers at the other end.
fn sealed(sender: &mut EspTunnel, now: Instant, packet: &[u8], out: &mut EspBatch) -> Vec<u8> {
    out.clear();
    let mut packet = packet.to_vec();
    sender.handle_inner(now, &mut packet, out).unwrap();
    let (destination, bytes) = out.get(0).unwrap();
    match destination {
        EspDestination::Raw {
            remote: IpAddr::V6(_),
        } => bytes[ipv6::HEADER_LEN..].to_vec(),
        EspDestination::Udp { .. } => bytes.to_vec(),
        other => panic!("sealed towards {other:?}"),
    }
}

fn suite_name(suite: Suite) -> &'static str {
    match suite {
        GCM128 => "gcm128",
        CBC128_SHA256 => "cbc128_sha256",
        _ => "other",
    }
}

/// Sealing and opening, one tunnel with one SA each way.
fn per_packet(c: &mut Criterion) {
    let now = Instant::now();
    let hub_net: IpNet = "203.0.113.0/24".parse().unwrap();
    let spoke_net: IpNet = "198.51.100.0/24".parse().unwrap();
    for suite in [GCM128, CBC128_SHA256] {
        for len in [64usize, 1400] {
            let mut group = c.benchmark_group(format!("esp_{}_{len}", suite_name(suite)));
            group.throughput(Throughput::Bytes(len as u64));
            for udp in [false, true] {
                let encap = if udp { "udp" } else { "raw" };
                let mut sender = EspTunnel::new(esp_config(HUB, SPOKE, hub_net, spoke_net));
                sender.install_outbound(outbound(suite, 0x100));
                let mut receiver = EspTunnel::new(esp_config(SPOKE, HUB, spoke_net, hub_net));
                receiver.install_inbound(inbound(suite, 0x100));
                if udp {
                    sender.set_udp_encap(now, Some(4500));
                }
                let packet = ipv4(NEAR, FAR, len);
                let mut out = EspBatch::new(64 * 1024);

                // Sealing leaves the packet as it was (UDP is not clamped), so
                // one copy serves every iteration.
                let mut inner = packet.clone();
                group.bench_function(format!("seal_{encap}"), |b| {
                    b.iter(|| {
                        out.clear();
                        let r = sender.handle_inner(now, black_box(&mut inner), &mut out);
                        // A bench that measured drops would flatter the core.
                        assert_eq!(r, Ok(()));
                    });
                });

                let mut staging = EspBatch::new(4096);
                let from = IpAddr::V6(HUB);
                group.bench_function(format!("open_{encap}"), |b| {
                    b.iter_batched(
                        || sealed(&mut sender, now, &packet, &mut staging),
                        |esp| {
                            out.clear();
                            // What the packet thread does to every datagram on port 4500.
                            if udp {
                                assert_eq!(classify_udp(black_box(&esp)), UdpKind::Esp);
                            }
                            let r = receiver.handle_esp(now, black_box(&esp), from, &mut out);
                            assert_eq!(r, Ok(()));
                        },
                        BatchSize::NumIterations(CHUNK as u64),
                    );
                });
            }
            group.finish();
        }
    }
}

/// A hub of `spokes` RFC 2473 tunnels, all from the hub's one address, and
/// one 64-byte outer packet from each spoke.
fn rfc2473_hub(spokes: u16) -> (Dataplane, Vec<(OuterMeta, Vec<u8>)>) {
    let mut dp = Dataplane::new();
    let mut packets = Vec::new();
    for i in 0..spokes {
        let mut config = TunnelConfig::new(format!("spoke{i}"), Mode::Ipip6, HUB, spoke(i));
        config.routes = vec![IpNet::from(IpAddr::V4(spoke_net(i)))];
        config.allowed_sources = config.routes.clone();
        config.mss_clamp = MssClamp::Auto;
        let id: TunnelId = dp.add_tunnel(config).unwrap();
        assert_eq!(dp.tunnel_by_endpoints(HUB, spoke(i)), Some(id));
        let meta = OuterMeta {
            src: spoke(i),
            dst: HUB,
            next_header: ip_proto::IPIP,
            traffic_class: 0,
            encap_limit: None,
        };
        packets.push((meta, ipv4(spoke_net(i), NEAR, 64)));
    }
    (dp, packets)
}

/// A hub of `spokes` ESP tunnels (one path each), found by the peer's address
/// as the packet thread finds them, with a sender for each spoke.
fn esp_hub(spokes: u16) -> (HashMap<IpAddr, EspPaths>, Vec<EspTunnel>) {
    let now = Instant::now();
    let hub_net: IpNet = "203.0.113.0/24".parse().unwrap();
    let mut tunnels = HashMap::new();
    let mut senders = Vec::new();
    for i in 0..spokes {
        let spi = 0x1000 + u32::from(i);
        let theirs = IpNet::from(IpAddr::V4(spoke_net(i)));
        let path = EspPathConfig {
            name: "default".into(),
            cost: 0,
            probed: false,
            esp: esp_config(HUB, spoke(i), hub_net, theirs),
        };
        let mut hub = EspPaths::new(HealthConfig::default(), vec![path]);
        // The outbound SA only makes the path usable; nothing is sealed with it.
        hub.install_sa(now, 0, inbound(GCM128, spi), outbound(GCM128, !spi), None);
        tunnels.insert(IpAddr::V6(spoke(i)), hub);
        let mut sender = EspTunnel::new(esp_config(spoke(i), HUB, theirs, hub_net));
        sender.install_outbound(outbound(GCM128, spi));
        senders.push(sender);
    }
    (tunnels, senders)
}

/// One ESP tunnel with `sas` inbound SAs (a peer that keeps many CHILD SAs),
/// with a sender for each.
fn esp_sas(sas: u16) -> (EspTunnel, Vec<EspTunnel>) {
    let hub_net: IpNet = "203.0.113.0/24".parse().unwrap();
    let spoke_net: IpNet = "198.51.100.0/24".parse().unwrap();
    let mut hub = EspTunnel::new(esp_config(HUB, SPOKE, hub_net, spoke_net));
    let mut senders = Vec::new();
    for i in 0..sas {
        let spi = 0x1000 + u32::from(i);
        hub.install_inbound(inbound(GCM128, spi));
        let mut sender = EspTunnel::new(esp_config(SPOKE, HUB, spoke_net, hub_net));
        sender.install_outbound(outbound(GCM128, spi));
        senders.push(sender);
    }
    assert_eq!(hub.inbound_count(), usize::from(sas));
    (hub, senders)
}

/// Which spokes send: all in turn, or only one of them, which tells the cost
/// of finding a tunnel among many from the cost of touching the state of many.
#[derive(Clone, Copy)]
enum Senders {
    All,
    One(u16),
}

impl Senders {
    fn name(self, spokes: u16, what: &str) -> String {
        match self {
            Self::All => format!("{spokes}_{what}"),
            Self::One(_) => format!("{spokes}_{what}_one_busy"),
        }
    }

    /// The spoke after `i`.
    fn next(self, i: u16, spokes: u16) -> u16 {
        match self {
            Self::All => (i + 1) % spokes,
            Self::One(busy) => busy,
        }
    }
}

const LOADS: [(u16, Senders); 3] = [
    (1, Senders::All),
    (SPOKES, Senders::All),
    (SPOKES, Senders::One(SPOKES / 2)),
];

/// Receiving on a hub with 1 and with 1,000 tunnels or SAs, 64-byte inner
/// packets taking every tunnel or SA in turn (and, for tunnels, all going to
/// one of the 1,000).
fn hub(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("hub");
    group.throughput(Throughput::Bytes(64));

    for (spokes, senders) in LOADS {
        let (mut dp, mut packets) = rfc2473_hub(spokes);
        let mut out = Batch::new(64 * 1024);
        let mut next = senders.next(0, spokes);
        let name = senders.name(spokes, "tunnels");
        group.bench_function(format!("rfc2473_handle_outer/{name}"), |b| {
            b.iter(|| {
                let i = next;
                next = senders.next(i, spokes);
                let (meta, payload) = &mut packets[usize::from(i)];
                out.clear();
                let verdict = dp.handle_outer(now, meta, black_box(payload), &mut out);
                assert_eq!(verdict, Verdict::Forwarded);
            });
        });
    }

    for (spokes, load) in LOADS {
        let (mut tunnels, mut senders) = esp_hub(spokes);
        let mut out = EspBatch::new(64 * 1024);
        let mut staging = EspBatch::new(4096);
        let mut next = load.next(0, spokes);
        let name = load.name(spokes, "tunnels");
        group.bench_function(format!("esp_open/{name}"), |b| {
            b.iter_batched(
                || {
                    let i = next;
                    next = load.next(i, spokes);
                    let packet = ipv4(spoke_net(i), NEAR, 64);
                    let esp = sealed(&mut senders[usize::from(i)], now, &packet, &mut staging);
                    (IpAddr::V6(spoke(i)), esp)
                },
                |(from, esp)| {
                    out.clear();
                    let tunnel = tunnels.get_mut(black_box(&from)).unwrap();
                    let r = tunnel.handle_esp(now, 0, black_box(&esp), from, &mut out);
                    assert_eq!(r, Ok(()));
                },
                BatchSize::NumIterations(CHUNK as u64),
            );
        });
    }

    for sas in [1, SPOKES] {
        let (mut hub, mut senders) = esp_sas(sas);
        let packet = ipv4(FAR, NEAR, 64);
        let mut out = EspBatch::new(64 * 1024);
        let mut staging = EspBatch::new(4096);
        let mut next = 0;
        let from = IpAddr::V6(SPOKE);
        group.bench_function(format!("esp_open/{sas}_sas_one_tunnel"), |b| {
            b.iter_batched(
                || {
                    let i = next;
                    next = (next + 1) % senders.len();
                    sealed(&mut senders[i], now, &packet, &mut staging)
                },
                |esp| {
                    out.clear();
                    let r = hub.handle_esp(now, black_box(&esp), from, &mut out);
                    assert_eq!(r, Ok(()));
                },
                BatchSize::NumIterations(CHUNK as u64),
            );
        });
    }
    group.finish();
}

criterion_group!(benches, per_packet, hub);
criterion_main!(benches);
