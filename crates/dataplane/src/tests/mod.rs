//! Behaviour of the whole core, driven through the public API with real packets.

mod decap;
mod encap;
mod failover;
mod fragment;
mod gro;
mod paths;
mod pmtu;
mod probes;
mod props;
mod sim;
mod too_big;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use wire::{
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, TcpRepr, UdpPacket, UdpRepr, ip_proto,
    ipv6_ext,
};

use crate::{
    Batch, Dataplane, Destination, HealthState, Mode, MssClamp, OuterMeta, PathConfig, Probe,
    TunnelConfig, TunnelId, Verdict,
};

pub(crate) const LOCAL: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1);
pub(crate) const REMOTE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1);
/// Our end and the peer's of an IPv4 path (a PPPoE line, say).
pub(crate) const LOCAL4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub(crate) const REMOTE4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Our LAN and the far LAN.
pub(crate) const NEAR4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub(crate) const FAR4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
pub(crate) const NEAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 1);
pub(crate) const FAR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 1);
pub(crate) const ICMP_SOURCE4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
pub(crate) const ICMP_SOURCE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 0xfe);

/// A tunnel from our side: routes towards the far LAN, accepts sources from it.
pub(crate) fn config(mode: Mode) -> TunnelConfig {
    let mut c = TunnelConfig::new("t0", mode, LOCAL, REMOTE);
    c.routes = vec![
        "203.0.113.0/24".parse().unwrap(),
        "2001:db8:b::/48".parse().unwrap(),
    ];
    c.allowed_sources = c.routes.clone();
    c.mss_clamp = MssClamp::Off;
    c.icmp_source_v4 = Some(ICMP_SOURCE4);
    c.icmp_source_v6 = Some(ICMP_SOURCE6);
    c
}

/// [`config`] over two paths that are not probed: "ipoe" over IPv6, cost 10,
/// and "pppoe" over IPv4, cost 100.
pub(crate) fn two_paths(mode: Mode) -> TunnelConfig {
    let mut c = config(mode);
    c.paths = vec![
        PathConfig {
            cost: 10,
            probe: Probe::None,
            ..PathConfig::new("ipoe", LOCAL, REMOTE)
        },
        PathConfig {
            cost: 100,
            probe: Probe::None,
            ..PathConfig::new("pppoe", LOCAL4, REMOTE4)
        },
    ];
    c
}

/// The same tunnel seen from the peer: every path's ends swapped.
pub(crate) fn mirrored(mut c: TunnelConfig) -> TunnelConfig {
    for path in &mut c.paths {
        core::mem::swap(&mut path.local, &mut path.remote);
    }
    c
}

pub(crate) fn dataplane(config: TunnelConfig) -> (Dataplane, TunnelId) {
    let mut dp = Dataplane::new();
    let id = dp.add_tunnel(config).unwrap();
    (dp, id)
}

pub(crate) fn now() -> Instant {
    // Any fixed point works: the core only compares instants it was given.
    Instant::now()
}

pub(crate) fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload: &[u8],
    dont_frag: bool,
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        payload_len: payload.len(),
        ttl: 64,
        dscp_ecn: 0,
        ident: 0x1234,
        dont_frag,
    };
    let mut buf = vec![0xA5; 20 + payload.len()];
    repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
    buf[20..].copy_from_slice(payload);
    buf
}

pub(crate) fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let repr = Ipv6Repr {
        src_addr: src,
        dst_addr: dst,
        next_header,
        payload_len: payload.len(),
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0x12345,
    };
    let mut buf = vec![0xA5; 40 + payload.len()];
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
    buf[40..].copy_from_slice(payload);
    buf
}

/// A UDP datagram of `len` payload bytes with a valid checksum, inside IPv4.
pub(crate) fn udp4(src: Ipv4Addr, dst: Ipv4Addr, len: usize, dont_frag: bool) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let repr = UdpRepr {
        src_port: 5000,
        dst_port: 6000,
        payload_len: len,
    };
    let mut udp = vec![0u8; 8 + len];
    let mut view = UdpPacket::new_unchecked(&mut udp[..]);
    repr.emit(&mut view);
    view.payload_mut().copy_from_slice(&payload);
    view.fill_checksum_v4(&src, &dst);
    ipv4(src, dst, ip_proto::UDP, &udp, dont_frag)
}

pub(crate) fn udp6(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Vec<u8> {
    let repr = UdpRepr {
        src_port: 5000,
        dst_port: 6000,
        payload_len: len,
    };
    let mut udp = vec![0u8; 8 + len];
    let mut view = UdpPacket::new_unchecked(&mut udp[..]);
    repr.emit(&mut view);
    view.payload_mut().fill(0x66);
    view.fill_checksum_v6(&src, &dst);
    ipv6(src, dst, ip_proto::UDP, &udp)
}

pub(crate) fn syn(flags: u8, mss: u16) -> TcpRepr<'static> {
    TcpRepr {
        src_port: 40000,
        dst_port: 443,
        seq_number: 1,
        ack_number: 0,
        flags,
        window: 64240,
        mss: Some(mss),
        payload: b"",
    }
}

pub(crate) fn tcp4(src: Ipv4Addr, dst: Ipv4Addr, tcp: &TcpRepr<'_>) -> Vec<u8> {
    let mut seg = vec![0u8; tcp.buffer_len()];
    let mut view = TcpPacket::new_unchecked(&mut seg[..]);
    tcp.emit(&mut view);
    view.fill_checksum_v4(&src, &dst);
    ipv4(src, dst, ip_proto::TCP, &seg, true)
}

pub(crate) fn tcp6(src: Ipv6Addr, dst: Ipv6Addr, tcp: &TcpRepr<'_>) -> Vec<u8> {
    let mut seg = vec![0u8; tcp.buffer_len()];
    let mut view = TcpPacket::new_unchecked(&mut seg[..]);
    tcp.emit(&mut view);
    view.fill_checksum_v6(&src, &dst);
    ipv6(src, dst, ip_proto::TCP, &seg)
}

/// The packets of a batch, owned.
pub(crate) fn packets(out: &Batch) -> Vec<(Destination, Vec<u8>)> {
    out.iter().map(|(d, b)| (d, b.to_vec())).collect()
}

/// Splits an outer packet the way the kernel hands it to a raw socket: the
/// header fields as metadata, the payload after the extension headers.
pub(crate) fn receive(outer: &[u8]) -> (OuterMeta, Vec<u8>) {
    let ip = Ipv6Packet::new_checked(outer).unwrap();
    let walk = ipv6_ext::walk(ip.next_header(), ip.payload()).unwrap();
    let meta = OuterMeta {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        next_header: walk.upper_protocol,
        traffic_class: ip.traffic_class(),
        encap_limit: walk.encap_limit,
    };
    (meta, ip.payload()[walk.offset..].to_vec())
}

/// Outer metadata for a packet from the remote to us.
pub(crate) fn from_remote(next_header: u8) -> OuterMeta {
    OuterMeta {
        src: REMOTE,
        dst: LOCAL,
        next_header,
        traffic_class: 0,
        encap_limit: None,
    }
}
