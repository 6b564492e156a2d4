//! Inner packets that the underlay's GRO merged before the raw socket saw them: longer than
//! the tunnel MTU, TCP checksum left as the pseudo-header sum. Also the SYN a peer's kernel
//! path sends with the same field, since nothing on its way completed it.

use wire::{TcpRepr, checksum, tcp::flags};

use super::*;
use crate::{DropReason, PathConfig, Probe, Verdict};

/// What GRO hands a raw socket for a burst of `payload_len` bytes of one TCP flow: one
/// packet with the lengths rewritten and the checksum field holding the pseudo-header sum.
fn merged_tcp4(src: Ipv4Addr, dst: Ipv4Addr, payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7) as u8).collect();
    let repr = TcpRepr {
        src_port: 5201,
        dst_port: 40000,
        seq_number: 0x1000,
        ack_number: 0x2000,
        flags: flags::ACK,
        window: 512,
        mss: None,
        payload: &payload,
    };
    let mut segment = vec![0u8; repr.buffer_len()];
    let mut view = TcpPacket::new_unchecked(&mut segment[..]);
    repr.emit(&mut view);
    let len = view.header_len() as u32 + payload_len as u32;
    view.set_checksum(checksum::pseudo_header_v4(&src, &dst, ip_proto::TCP, len));
    ipv4(src, dst, ip_proto::TCP, &segment, true)
}

fn merged_tcp6(src: Ipv6Addr, dst: Ipv6Addr, payload_len: usize) -> Vec<u8> {
    let payload = vec![0x3c; payload_len];
    let repr = TcpRepr {
        src_port: 5201,
        dst_port: 40000,
        seq_number: 7,
        ack_number: 9,
        flags: flags::ACK | flags::PSH,
        window: 512,
        mss: None,
        payload: &payload,
    };
    let mut segment = vec![0u8; repr.buffer_len()];
    let mut view = TcpPacket::new_unchecked(&mut segment[..]);
    repr.emit(&mut view);
    let len = segment.len() as u32;
    TcpPacket::new_unchecked(&mut segment[..]).set_checksum(checksum::pseudo_header_v6(
        &src,
        &dst,
        ip_proto::TCP,
        len,
    ));
    ipv6(src, dst, ip_proto::TCP, &segment)
}

fn decap(
    dp: &mut Dataplane,
    next_header: u8,
    inner: &[u8],
) -> (Verdict, Vec<(Destination, Vec<u8>)>) {
    let mut out = Batch::new(2048);
    let verdict = dp.handle_outer(
        now(),
        &from_remote(next_header),
        &mut inner.to_vec(),
        &mut out,
    );
    (verdict, packets(&out))
}

#[test]
fn a_merged_tcp_packet_reaches_the_tun_whole_and_is_counted() {
    let (mut dp, id) = dataplane(config(Mode::Any));
    // 44 segments of a 1460-byte MTU: 44 * 1420 payload bytes behind one 40-byte header.
    let v4 = merged_tcp4(FAR4, NEAR4, 44 * 1420);
    assert_eq!(v4.len(), 62_520);
    let (verdict, got) = decap(&mut dp, ip_proto::IPIP, &v4);
    assert_eq!(verdict, Verdict::Forwarded);
    // Unchanged, and nothing else: no ICMP error, no fragments.
    assert_eq!(got, vec![(Destination::Tun(id), v4.clone())]);

    let v6 = merged_tcp6(FAR6, NEAR6, 20 * 1400);
    let (verdict, got) = decap(&mut dp, ip_proto::IPV6, &v6);
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(got, vec![(Destination::Tun(id), v6.clone())]);

    let stats = dp.stats(id).unwrap();
    assert_eq!(stats.outer_gro_packets, 2);
    assert_eq!(stats.rx_packets, 2);
    assert_eq!(stats.rx_bytes, (v4.len() + v6.len()) as u64);
    assert_eq!(stats.drops.total(), 0);
    assert_eq!(stats.icmp_sent, 0);
    // The path MTU learnt nothing from them.
    assert_eq!(stats.path_mtu, 1460);
}

#[test]
fn merged_packets_still_pass_the_inner_source_filter() {
    let mut c = config(Mode::Any);
    c.allowed_sources = vec!["203.0.113.128/25".parse().unwrap()];
    let (mut dp, id) = dataplane(c);
    let packet = merged_tcp4(FAR4, NEAR4, 10 * 1420);
    let (verdict, got) = decap(&mut dp, ip_proto::IPIP, &packet);
    assert_eq!(verdict, Verdict::Dropped(DropReason::InnerSourceNotAllowed));
    assert!(got.is_empty());
    let stats = dp.stats(id).unwrap();
    assert_eq!((stats.outer_gro_packets, stats.rx_packets), (0, 0));
}

#[test]
fn only_tcp_beyond_the_mtu_counts_as_merged() {
    let (mut dp, id) = dataplane(config(Mode::Any));
    // A UDP datagram beyond the MTU (a peer with a larger one) is delivered as before.
    let big_udp = udp4(FAR4, NEAR4, 3000, false);
    let (verdict, got) = decap(&mut dp, ip_proto::IPIP, &big_udp);
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(got, vec![(Destination::Tun(id), big_udp)]);
    // A TCP packet of exactly the MTU is one segment.
    let fits = merged_tcp4(FAR4, NEAR4, 1420);
    assert_eq!(fits.len(), 1460);
    let (verdict, _) = decap(&mut dp, ip_proto::IPIP, &fits);
    assert_eq!(verdict, Verdict::Forwarded);
    let stats = dp.stats(id).unwrap();
    assert_eq!((stats.outer_gro_packets, stats.rx_packets), (0, 2));
}

#[test]
fn merged_packets_over_an_ipv4_underlay_too() {
    let mut c = config(Mode::Any);
    c.paths = vec![PathConfig {
        probe: Probe::None,
        ..PathConfig::new("pppoe", LOCAL4, REMOTE4)
    }];
    c.mtu = 1480;
    let (mut dp, id) = dataplane(c);
    let inner = merged_tcp4(FAR4, NEAR4, 30 * 1440);
    // GRO rewrote the outer total length too, and fixed the header checksum.
    let mut datagram = ipv4(REMOTE4, LOCAL4, ip_proto::IPIP, &inner, true);
    assert!(datagram.len() > 1500);
    let mut out = Batch::new(2048);
    let verdict = dp.handle_outer_ipv4(now(), &mut datagram, &mut out);
    assert_eq!(verdict, Verdict::Forwarded);
    assert_eq!(packets(&out), vec![(Destination::Tun(id), inner)]);
    assert_eq!(dp.stats(id).unwrap().outer_gro_packets, 1);
}

/// A SYN from a host behind a veth, encapsulated by a peer's kernel path: its checksum field
/// holds the pseudo-header sum, with the full MSS of a 1500-byte LAN.
fn partial_syn4(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: 40000,
        dst_port: 5201,
        seq_number: 0x0102_0304,
        ack_number: 0,
        flags: flags::SYN,
        window: 64240,
        mss: Some(1460),
        payload: &[],
    };
    let mut segment = vec![0u8; repr.buffer_len()];
    let mut view = TcpPacket::new_unchecked(&mut segment[..]);
    repr.emit(&mut view);
    let len = segment.len() as u32;
    TcpPacket::new_unchecked(&mut segment[..]).set_checksum(checksum::pseudo_header_v4(
        &src,
        &dst,
        ip_proto::TCP,
        len,
    ));
    ipv4(src, dst, ip_proto::TCP, &segment, true)
}

#[test]
fn a_partial_syn_is_clamped_and_completes_to_a_valid_segment_on_the_tun() {
    let mut c = config(Mode::Any);
    c.mss_clamp = MssClamp::Auto;
    let (mut dp, id) = dataplane(c);
    let syn = partial_syn4(FAR4, NEAR4);
    let field = TcpPacket::new_checked(&syn[20..]).unwrap().checksum();
    let (verdict, got) = decap(&mut dp, ip_proto::IPIP, &syn);
    assert_eq!(verdict, Verdict::Forwarded);
    let [(Destination::Tun(to), packet)] = &got[..] else {
        panic!("one packet for the TUN: {got:?}");
    };
    assert_eq!(*to, id);
    let tcp = TcpPacket::new_checked(&packet[20..]).unwrap();
    assert_eq!(tcp.mss(), Ok(Some(1420)));
    assert_eq!(tcp.checksum(), field, "still the pseudo-header sum");
    assert_eq!(dp.stats(id).unwrap().mss_clamped, 1);

    // The TUN write asks the kernel to complete it, which gives a segment that verifies.
    let mut coalescer = crate::offload::Coalescer::with_mtu(1460);
    coalescer.push(packet);
    let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
    let [frame] = &frames[..] else {
        panic!("one frame: {frames:?}");
    };
    let header = wire::virtio::Packet::new_checked(&frame[..]).unwrap();
    let vnet = wire::virtio::Repr::parse(&header).unwrap();
    let mut completed = Vec::new();
    let mut bytes = frame[wire::virtio::HEADER_LEN..].to_vec();
    crate::offload::split(&vnet, &mut bytes, |p| completed.push(p.to_vec())).unwrap();
    let [done] = &completed[..] else {
        panic!("one packet: {completed:?}");
    };
    let tcp = TcpPacket::new_checked(&done[20..]).unwrap();
    assert!(tcp.verify_checksum_v4(&FAR4, &NEAR4));
    assert_eq!(tcp.mss(), Ok(Some(1420)));
}
