//! Segmentation and coalescing against packets built here and checked field by field.

use std::net::{Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use wire::virtio::{self, GsoType, PartialChecksum, Repr as VirtioRepr};
use wire::{
    Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket, UdpPacket, checksum, ip_proto, tcp,
};

use super::{Coalescer, MAX_OPEN_FLOWS, MAX_SUPER_PACKET, OffloadError, complete_checksum, split};

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const DST4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 7);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xb, 0, 0, 0, 0, 9);

/// NOP, NOP, Timestamps: what Linux puts on every data segment.
const TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];

/// The per-flow constants of generated TCP segments.
#[derive(Debug, Clone)]
struct Flow {
    v6: bool,
    src_port: u16,
    dst_port: u16,
    ack: u32,
    window: u16,
    options: Vec<u8>,
    tos: u8,
    ttl: u8,
}

impl Flow {
    fn new(v6: bool, src_port: u16) -> Self {
        Self {
            v6,
            src_port,
            dst_port: 5201,
            ack: 0x0102_0304,
            window: 512,
            options: TIMESTAMPS.to_vec(),
            tos: 0,
            ttl: 64,
        }
    }

    fn l3_len(&self) -> usize {
        if self.v6 { 40 } else { 20 }
    }

    fn header_len(&self) -> usize {
        self.l3_len() + 20 + self.options.len()
    }

    /// A TCP segment with valid checksums.
    fn segment(&self, ident: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut packet = self.unchecked(ident, seq, flags, payload);
        let l3 = self.l3_len();
        let mut tcp = TcpPacket::new_unchecked(&mut packet[l3..]);
        if self.v6 {
            tcp.fill_checksum_v6(&SRC6, &DST6);
        } else {
            tcp.fill_checksum_v4(&SRC4, &DST4);
        }
        packet
    }

    /// A segment as a sender with checksum offload leaves it: the TCP checksum field holds the
    /// pseudo-header sum only.
    fn partial(&self, ident: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut packet = self.unchecked(ident, seq, flags, payload);
        let l3 = self.l3_len();
        let tcp_len = (packet.len() - l3) as u32;
        let pseudo = if self.v6 {
            checksum::pseudo_header_v6(&SRC6, &DST6, ip_proto::TCP, tcp_len)
        } else {
            checksum::pseudo_header_v4(&SRC4, &DST4, ip_proto::TCP, tcp_len)
        };
        TcpPacket::new_unchecked(&mut packet[l3..]).set_checksum(pseudo);
        packet
    }

    fn unchecked(&self, ident: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let l4_len = 20 + self.options.len() + payload.len();
        let mut packet = vec![0xa5; self.l3_len() + l4_len];
        ip_header(
            &mut packet,
            self.v6,
            ip_proto::TCP,
            ident,
            self.tos,
            self.ttl,
        );
        let l3 = self.l3_len();
        let mut tcp = TcpPacket::new_unchecked(&mut packet[l3..]);
        tcp.set_src_port(self.src_port);
        tcp.set_dst_port(self.dst_port);
        tcp.set_seq_number(seq);
        tcp.set_ack_number(self.ack);
        tcp.set_header_len(20 + self.options.len());
        tcp.set_flags(flags);
        tcp.set_window(self.window);
        tcp.set_checksum(0);
        tcp.set_urgent(0);
        tcp.options_mut().copy_from_slice(&self.options);
        tcp.payload_mut().copy_from_slice(payload);
        packet
    }
}

/// Writes an IP header for the whole of `packet` (IPv4: DF set, valid checksum).
fn ip_header(packet: &mut [u8], v6: bool, protocol: u8, ident: u16, tos: u8, ttl: u8) {
    if v6 {
        Ipv6Repr {
            src_addr: SRC6,
            dst_addr: DST6,
            next_header: protocol,
            payload_len: packet.len() - 40,
            hop_limit: ttl,
            traffic_class: tos,
            flow_label: 0x12345,
        }
        .emit(&mut Ipv6Packet::new_unchecked(&mut *packet));
    } else {
        Ipv4Repr {
            src_addr: SRC4,
            dst_addr: DST4,
            protocol,
            payload_len: packet.len() - 20,
            ttl,
            dscp_ecn: tos,
            ident,
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut *packet));
    }
}

/// A UDP datagram; `partial` leaves only the pseudo-header sum in the checksum field.
fn udp(v6: bool, ident: u16, payload: &[u8], partial: bool) -> Vec<u8> {
    let l3 = if v6 { 40 } else { 20 };
    let mut packet = vec![0x5a; l3 + 8 + payload.len()];
    ip_header(&mut packet, v6, ip_proto::UDP, ident, 0, 64);
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = UdpPacket::new_unchecked(&mut packet[l3..]);
    udp.set_src_port(4500);
    udp.set_dst_port(4501);
    udp.set_len(udp_len);
    udp.payload_mut().copy_from_slice(payload);
    if partial {
        let pseudo = if v6 {
            checksum::pseudo_header_v6(&SRC6, &DST6, ip_proto::UDP, u32::from(udp_len))
        } else {
            checksum::pseudo_header_v4(&SRC4, &DST4, ip_proto::UDP, u32::from(udp_len))
        };
        udp.set_checksum(pseudo);
    } else if v6 {
        udp.fill_checksum_v6(&SRC6, &DST6);
    } else {
        udp.fill_checksum_v4(&SRC4, &DST4);
    }
    packet
}

/// The header Linux puts before a TSO/USO super-packet; `hdr_len` is deliberately not the
/// header length, as Linux's is not either.
fn gso_header(gso_type: GsoType, l3_len: usize, checksum_offset: u16, mss: u16) -> VirtioRepr {
    VirtioRepr {
        csum: Some(PartialChecksum {
            start: l3_len as u16,
            offset: checksum_offset,
        }),
        data_valid: false,
        gso_type,
        ecn: false,
        hdr_len: 128,
        gso_size: mss,
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn split_all(vnet: &VirtioRepr, packet: &[u8]) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut packet = packet.to_vec();
    let mut out = Vec::new();
    let count = split(vnet, &mut packet, |segment| out.push(segment.to_vec()))?;
    assert_eq!(count, out.len());
    Ok(out)
}

/// Splits every frame of a coalescer as a TUN reader would.
fn split_frames(coalescer: &mut Coalescer) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    for frame in coalescer.flush() {
        let header = virtio::Packet::new_checked(frame).unwrap();
        let vnet = VirtioRepr::parse(&header).unwrap();
        packets.extend(split_all(&vnet, &frame[virtio::HEADER_LEN..]).unwrap());
    }
    packets
}

fn verifies(packet: &[u8]) -> bool {
    match packet[0] >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(packet).unwrap();
            let l4 = &packet[ip.header_len()..usize::from(ip.total_len())];
            ip.verify_checksum()
                && match ip.protocol() {
                    ip_proto::TCP => TcpPacket::new_checked(l4)
                        .unwrap()
                        .verify_checksum_v4(&SRC4, &DST4),
                    _ => UdpPacket::new_checked(l4)
                        .is_ok_and(|u| u.checksum() != 0 && u.verify_checksum_v4(&SRC4, &DST4)),
                }
        }
        _ => {
            let ip = Ipv6Packet::new_checked(packet).unwrap();
            let l4 = &packet[40..40 + usize::from(ip.payload_len())];
            match ip.next_header() {
                ip_proto::TCP => TcpPacket::new_checked(l4)
                    .unwrap()
                    .verify_checksum_v6(&SRC6, &DST6),
                _ => UdpPacket::new_checked(l4).is_ok_and(|u| u.verify_checksum_v6(&SRC6, &DST6)),
            }
        }
    }
}

#[test]
fn tso_v4_is_cut_like_a_nic() {
    let flow = Flow::new(false, 40000);
    let data = pattern(2500, 1);
    let flags = tcp::flags::ACK | tcp::flags::PSH | tcp::flags::FIN | tcp::flags::CWR;
    let packet = flow.partial(100, 0xffff_fc00, flags, &data);
    let vnet = gso_header(GsoType::TcpV4, 20, 16, 1000);
    let segments = split_all(&vnet, &packet).unwrap();
    assert_eq!(segments.len(), 3);
    let mut payload = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        assert!(verifies(segment), "segment {i}");
        let ip = Ipv4Packet::new_checked(&segment[..]).unwrap();
        assert_eq!(usize::from(ip.total_len()), segment.len());
        assert_eq!(ip.ident(), 100 + i as u16);
        assert!(ip.dont_frag());
        let tcp = TcpPacket::new_checked(&segment[20..]).unwrap();
        // The sequence space wraps within this burst.
        assert_eq!(
            tcp.seq_number(),
            0xffff_fc00u32.wrapping_add(1000 * i as u32)
        );
        assert_eq!(tcp.ack_number(), flow.ack);
        assert_eq!(tcp.options(), TIMESTAMPS);
        let expected = match i {
            0 => tcp::flags::ACK | tcp::flags::CWR,
            1 => tcp::flags::ACK,
            _ => tcp::flags::ACK | tcp::flags::PSH | tcp::flags::FIN,
        };
        assert_eq!(tcp.flags(), expected, "segment {i}");
        payload.extend_from_slice(tcp.payload());
    }
    assert_eq!(
        segments.iter().map(Vec::len).collect::<Vec<_>>(),
        [1052, 1052, 552]
    );
    assert_eq!(payload, data);
}

#[test]
fn tso_v6_and_uso_both_families() {
    let flow = Flow::new(true, 40000);
    let data = pattern(4000, 2);
    let packet = flow.partial(0, 7, tcp::flags::ACK, &data);
    let segments = split_all(&gso_header(GsoType::TcpV6, 40, 16, 1428), &packet).unwrap();
    assert_eq!(segments.len(), 3);
    for (i, segment) in segments.iter().enumerate() {
        assert!(verifies(segment));
        let ip = Ipv6Packet::new_checked(&segment[..]).unwrap();
        assert_eq!(usize::from(ip.payload_len()) + 40, segment.len());
        assert_eq!(ip.flow_label(), 0x12345);
        let tcp = TcpPacket::new_checked(&segment[40..]).unwrap();
        assert_eq!(tcp.seq_number(), 7 + 1428 * i as u32);
    }

    for v6 in [false, true] {
        let l3 = if v6 { 40 } else { 20 };
        let data = pattern(3000, 3);
        let packet = udp(v6, 9, &data, true);
        let segments = split_all(&gso_header(GsoType::UdpL4, l3, 6, 1200), &packet).unwrap();
        let mut joined = Vec::new();
        for segment in &segments {
            assert!(verifies(segment), "v6={v6}");
            let udp = UdpPacket::new_checked(&segment[l3..]).unwrap();
            assert_eq!(usize::from(udp.len()), segment.len() - l3);
            assert_eq!((udp.src_port(), udp.dst_port()), (4500, 4501));
            joined.extend_from_slice(udp.payload());
        }
        assert_eq!(segments.len(), 3);
        assert_eq!(joined, data);
    }
}

#[test]
fn plain_packets_get_their_partial_checksum_completed() {
    let flow = Flow::new(false, 40000);
    let data = pattern(700, 4);
    let expected = flow.segment(5, 1, tcp::flags::ACK, &data);
    let partial = flow.partial(5, 1, tcp::flags::ACK, &data);
    assert_ne!(partial, expected);
    let vnet = VirtioRepr {
        csum: Some(PartialChecksum {
            start: 20,
            offset: 16,
        }),
        ..VirtioRepr::default()
    };
    assert_eq!(split_all(&vnet, &partial).unwrap(), [expected]);
    // Without NEEDS_CSUM the packet is handed over as it is, whatever it holds.
    assert_eq!(
        split_all(&VirtioRepr::default(), &partial).unwrap(),
        [partial]
    );

    for v6 in [false, true] {
        let l3 = if v6 { 40 } else { 20 };
        let mut packet = udp(v6, 1, b"hello", true);
        let csum = PartialChecksum {
            start: l3 as u16,
            offset: 6,
        };
        complete_checksum(csum, &mut packet).unwrap();
        assert_eq!(packet, udp(v6, 1, b"hello", false));
    }
}

#[test]
fn a_computed_zero_is_stored_as_all_ones() {
    // Transport bytes that sum to 0xffff with the field zero: the inverted sum is 0.
    let mut packet = vec![0xff, 0xff, 0, 0];
    complete_checksum(
        PartialChecksum {
            start: 0,
            offset: 2,
        },
        &mut packet,
    )
    .unwrap();
    assert_eq!(packet, [0xff, 0xff, 0xff, 0xff]);
}

#[test]
fn malformed_super_packets_are_refused_before_any_output() {
    let flow = Flow::new(false, 40000);
    let packet = flow.partial(1, 1, tcp::flags::ACK, &pattern(3000, 5));
    let refused = |vnet: VirtioRepr, packet: &[u8]| {
        let mut packet = packet.to_vec();
        let mut calls = 0;
        let error = split(&vnet, &mut packet, |_| calls += 1).unwrap_err();
        assert_eq!(calls, 0);
        error
    };
    let tso4 = gso_header(GsoType::TcpV4, 20, 16, 1000);
    assert_eq!(
        refused(gso_header(GsoType::TcpV6, 20, 16, 1000), &packet),
        OffloadError::GsoMismatch
    );
    assert_eq!(
        refused(gso_header(GsoType::UdpL4, 20, 6, 1000), &packet),
        OffloadError::GsoMismatch
    );
    assert_eq!(
        refused(gso_header(GsoType::TcpV4, 20, 6, 1000), &packet),
        OffloadError::ChecksumOffsets
    );
    assert_eq!(
        refused(gso_header(GsoType::TcpV4, 24, 16, 1000), &packet),
        OffloadError::ChecksumOffsets
    );
    assert_eq!(
        refused(
            VirtioRepr {
                gso_size: 0,
                ..tso4
            },
            &packet
        ),
        OffloadError::ZeroSegmentSize
    );
    let mut fragment = packet.clone();
    Ipv4Packet::new_unchecked(&mut fragment[..]).set_more_frags(true);
    assert_eq!(refused(tso4, &fragment), OffloadError::Fragment);
    let mut icmp = packet.clone();
    Ipv4Packet::new_unchecked(&mut icmp[..]).set_protocol(ip_proto::ICMP);
    assert_eq!(
        refused(tso4, &icmp),
        OffloadError::Unsupported {
            protocol: ip_proto::ICMP
        }
    );
    assert_eq!(
        refused(tso4, &packet[..30]),
        OffloadError::Malformed(wire::Error::BadLength)
    );
    assert_eq!(
        refused(tso4, &[]),
        OffloadError::Malformed(wire::Error::Truncated)
    );
    let plain_past_end = VirtioRepr {
        csum: Some(PartialChecksum {
            start: 20,
            // The field's second byte would be one past the end.
            offset: (packet.len() - 1 - 20) as u16,
        }),
        ..VirtioRepr::default()
    };
    assert_eq!(
        refused(plain_past_end, &packet),
        OffloadError::ChecksumOffsets
    );
    let error: Box<dyn std::error::Error> =
        Box::new(OffloadError::Malformed(wire::Error::Truncated));
    assert_eq!(
        error.to_string(),
        "malformed packet behind virtio-net header: truncated packet"
    );
    assert!(error.source().is_some());
}

/// `count` full segments of `mss` bytes and a last one of `last` bytes, IDs and sequence
/// numbers counting up.
fn burst(flow: &Flow, count: usize, mss: usize, last: usize, last_flags: u8) -> Vec<Vec<u8>> {
    (0..=count)
        .filter(|&i| i < count || last > 0)
        .map(|i| {
            let len = if i < count { mss } else { last };
            let flags = if i == count || (last == 0 && i + 1 == count) {
                last_flags
            } else {
                tcp::flags::ACK
            };
            flow.segment(
                1000 + i as u16,
                10_000 + (i * mss) as u32,
                flags,
                &pattern(len, i as u8),
            )
        })
        .collect()
}

#[test]
fn forty_four_segments_become_one_write() {
    for v6 in [false, true] {
        let flow = Flow::new(v6, 40000);
        let packets = burst(&flow, 43, 1448, 1000, tcp::flags::ACK | tcp::flags::PSH);
        let mut coalescer = Coalescer::default();
        for packet in &packets {
            coalescer.push(packet);
        }
        let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
        assert_eq!((coalescer.packets(), frames.len()), (44, 1));
        let frame = &frames[0];
        let vnet = VirtioRepr::parse(&virtio::Packet::new_checked(&frame[..]).unwrap()).unwrap();
        let l3 = flow.l3_len();
        assert_eq!(
            vnet,
            VirtioRepr {
                csum: Some(PartialChecksum {
                    start: l3 as u16,
                    offset: 16
                }),
                data_valid: false,
                gso_type: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
                ecn: false,
                hdr_len: flow.header_len() as u16,
                gso_size: 1448,
            }
        );
        let packet = &frame[virtio::HEADER_LEN..];
        assert_eq!(packet.len(), flow.header_len() + 43 * 1448 + 1000);
        let tcp = TcpPacket::new_checked(&packet[l3..]).unwrap();
        assert_eq!(tcp.flags(), tcp::flags::ACK | tcp::flags::PSH);
        let tcp_len = (packet.len() - l3) as u32;
        let pseudo = if v6 {
            let ip = Ipv6Packet::new_checked(packet).unwrap();
            assert_eq!(usize::from(ip.payload_len()), packet.len() - 40);
            checksum::pseudo_header_v6(&SRC6, &DST6, ip_proto::TCP, tcp_len)
        } else {
            let ip = Ipv4Packet::new_checked(packet).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(
                (usize::from(ip.total_len()), ip.ident()),
                (packet.len(), 1000)
            );
            checksum::pseudo_header_v4(&SRC4, &DST4, ip_proto::TCP, tcp_len)
        };
        assert_eq!(tcp.checksum(), pseudo);
        assert_eq!(split_frames(&mut coalescer), packets);
    }
}

#[test]
fn flows_interleave_and_non_tcp_passes_through() {
    let a = Flow::new(false, 1);
    let b = Flow::new(true, 2);
    let a_packets = burst(&a, 4, 1000, 0, tcp::flags::ACK);
    let b_packets = burst(&b, 4, 1200, 0, tcp::flags::ACK);
    let datagram = udp(false, 3, b"ping", false);
    let mut coalescer = Coalescer::default();
    for i in 0..4 {
        coalescer.push(&a_packets[i]);
        coalescer.push(&b_packets[i]);
        if i == 1 {
            coalescer.push(&datagram);
        }
    }
    let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
    assert_eq!(frames.len(), 3);
    // Started in the order a, b, datagram.
    assert_eq!(&frames[2][..virtio::HEADER_LEN], [0; virtio::HEADER_LEN]);
    assert_eq!(&frames[2][virtio::HEADER_LEN..], datagram);
    let out = split_frames(&mut coalescer);
    assert_eq!(out[..4], a_packets[..]);
    assert_eq!(out[4..8], b_packets[..]);
    assert_eq!(out[8], datagram);
}

/// The packets of each flow (family, protocol, source port), in order.
fn by_flow(packets: &[Vec<u8>]) -> std::collections::BTreeMap<(u8, u8, u16), Vec<Vec<u8>>> {
    let mut flows = std::collections::BTreeMap::new();
    for p in packets {
        let (l3, protocol) = if p[0] >> 4 == 6 {
            (40, p[6])
        } else {
            (20, p[9])
        };
        let port = u16::from_be_bytes([p[l3], p[l3 + 1]]);
        flows
            .entry((p[0] >> 4, protocol, port))
            .or_insert_with(Vec::new)
            .push(p.clone());
    }
    flows
}

/// Frames for `packets`, each reduced to how many input packets it holds.
fn frame_sizes(coalescer: &mut Coalescer, packets: &[Vec<u8>]) -> Vec<usize> {
    coalescer.clear();
    for packet in packets {
        coalescer.push(packet);
    }
    let sizes = coalescer
        .flush()
        .map(|frame| {
            let vnet = VirtioRepr::parse(&virtio::Packet::new_checked(frame).unwrap()).unwrap();
            let mut packet = frame[virtio::HEADER_LEN..].to_vec();
            split(&vnet, &mut packet, |_| ()).unwrap()
        })
        .collect();
    assert_eq!(
        by_flow(&split_frames(coalescer)),
        by_flow(packets),
        "order or bytes changed"
    );
    sizes
}

#[test]
fn anything_split_could_not_recreate_ends_the_super_packet() {
    let flow = Flow::new(false, 7);
    let mut coalescer = Coalescer::default();
    let base = burst(&flow, 6, 500, 0, tcp::flags::ACK);
    assert_eq!(frame_sizes(&mut coalescer, &base), [6]);

    let with = |at: usize, change: &dyn Fn(&mut Vec<u8>)| {
        let mut packets = base.clone();
        change(&mut packets[at]);
        packets
    };
    let refill = |packet: &mut Vec<u8>| {
        let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
        ip.fill_checksum();
        TcpPacket::new_unchecked(&mut packet[20..]).fill_checksum_v4(&SRC4, &DST4);
    };
    // PSH ends a burst after the segment carrying it.
    let psh = with(2, &|p| {
        p[33] |= tcp::flags::PSH;
        refill(p);
    });
    assert_eq!(frame_sizes(&mut coalescer, &psh), [3, 3]);
    // From a segment on, a different acknowledgment, window, TTL, TOS or identification
    // series: a new super-packet starts there.
    for (field, flip) in [(28usize, 0x40u8), (34, 1), (8, 0x20), (1, 4), (4, 0x10)] {
        let mut changed = base.clone();
        for packet in &mut changed[3..] {
            packet[field] ^= flip;
            refill(packet);
        }
        assert_eq!(
            frame_sizes(&mut coalescer, &changed),
            [3, 3],
            "byte {field}"
        );
    }
    // A corrupt segment is passed on alone, for the receiver to drop.
    let corrupt = with(3, &|p| *p.last_mut().unwrap() ^= 1);
    assert_eq!(frame_sizes(&mut coalescer, &corrupt), [3, 1, 2]);
    // FIN travels alone, and after it the flow starts over.
    let fin = with(3, &|p| {
        p[33] |= tcp::flags::FIN;
        refill(p);
    });
    assert_eq!(frame_sizes(&mut coalescer, &fin), [3, 1, 2]);
    // A gap in the sequence, a retransmission: new super-packet.
    let mut gap = base.clone();
    gap.remove(3);
    assert_eq!(frame_sizes(&mut coalescer, &gap), [3, 2]);
    // A short segment is the last one.
    let mut short = base.clone();
    short[2] = flow.segment(1002, 10_000 + 1000, tcp::flags::ACK, &pattern(100, 2));
    let rest: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            flow.segment(
                1003 + i,
                11_100 + 500 * u32::from(i),
                tcp::flags::ACK,
                &[1; 500],
            )
        })
        .collect();
    short.splice(3.., rest);
    assert_eq!(frame_sizes(&mut coalescer, &short), [3, 3]);
    // A bare ACK is no data to merge.
    let mut ack = base.clone();
    ack.insert(2, flow.segment(0, 0, tcp::flags::ACK, &[]));
    assert_eq!(frame_sizes(&mut coalescer, &ack), [2, 1, 4]);
}

#[test]
fn the_size_limit_closes_super_packets() {
    let flow = Flow::new(true, 7);
    let packets = burst(&flow, 10, 1000, 0, tcp::flags::ACK);
    // Room for the header and three segments.
    let mut coalescer = Coalescer::new(flow.header_len() + 3000);
    assert_eq!(frame_sizes(&mut coalescer, &packets), [3, 3, 3, 1]);
    // 64 KiB at most, whatever is asked for.
    let mut coalescer = Coalescer::new(usize::MAX);
    let packets = burst(&flow, 100, 1000, 0, tcp::flags::ACK);
    let sizes = frame_sizes(&mut coalescer, &packets);
    assert_eq!(sizes, [65, 35]);
    coalescer.clear();
    for packet in &packets {
        coalescer.push(packet);
    }
    assert!(
        coalescer
            .flush()
            .all(|f| f.len() <= virtio::HEADER_LEN + MAX_SUPER_PACKET)
    );
}

#[test]
fn more_flows_than_slots_close_the_oldest() {
    // The first segment of every flow, then the second of every flow.
    let interleaved = |flows: usize| -> Vec<Vec<u8>> {
        let bursts: Vec<Vec<Vec<u8>>> = (0..flows)
            .map(|port| burst(&Flow::new(false, port as u16), 2, 300, 0, tcp::flags::ACK))
            .collect();
        (0..2)
            .flat_map(|i| bursts.iter().map(move |b| b[i].clone()))
            .collect()
    };
    let mut coalescer = Coalescer::default();
    assert_eq!(
        frame_sizes(&mut coalescer, &interleaved(MAX_OPEN_FLOWS)),
        [2; MAX_OPEN_FLOWS]
    );
    // One flow more, and each second segment finds its flow displaced by the one before.
    assert_eq!(
        frame_sizes(&mut coalescer, &interleaved(MAX_OPEN_FLOWS + 1)),
        [1; 2 * (MAX_OPEN_FLOWS + 1)]
    );
}

#[test]
fn reused_buffers_leak_nothing() {
    let flow = Flow::new(false, 9);
    let big = burst(&flow, 40, 1400, 0, tcp::flags::ACK);
    let small = burst(&Flow::new(true, 10), 2, 100, 50, tcp::flags::ACK);
    let mut fresh = Coalescer::default();
    for packet in &small {
        fresh.push(packet);
    }
    let expected: Vec<Vec<u8>> = fresh.flush().map(<[u8]>::to_vec).collect();

    let mut reused = Coalescer::default();
    for packet in &big {
        reused.push(packet);
    }
    let _ = reused.flush().count();
    reused.clear();
    assert!(reused.is_empty());
    for packet in &small {
        reused.push(packet);
    }
    let again: Vec<Vec<u8>> = reused.flush().map(<[u8]>::to_vec).collect();
    assert_eq!(again, expected);
    assert_eq!(reused.len(), 1);
}

/// A generated flow: its constants, segment size and how its segments end.
fn any_flow() -> impl Strategy<Value = (Flow, usize, Vec<(usize, u8)>)> {
    (
        any::<bool>(),
        any::<u16>(),
        prop_oneof![Just(vec![]), Just(TIMESTAMPS.to_vec())],
        1usize..1500,
        proptest::collection::vec((0usize..4, 0u8..8), 1..50),
    )
        .prop_map(|(v6, port, options, mss, shapes)| {
            let mut flow = Flow::new(v6, port);
            flow.options = options;
            (flow, mss, shapes)
        })
}

/// The segments of a flow: mostly `mss` long, sometimes shorter, with PSH, a new ack or a
/// gap now and then, as `shapes` says.
fn segments_of(flow: &mut Flow, mss: usize, shapes: &[(usize, u8)], seed: u32) -> Vec<Vec<u8>> {
    let mut seq = seed;
    let mut ident = seed as u16;
    let mut out = Vec::new();
    for (i, &(shape, extra)) in shapes.iter().enumerate() {
        let len = match shape {
            0 => (mss / 2).max(1),
            _ => mss,
        };
        let mut flags = tcp::flags::ACK;
        match extra {
            0 => flags |= tcp::flags::PSH,
            1 => flow.ack = flow.ack.wrapping_add(1),
            2 => seq = seq.wrapping_add(1),
            3 => ident = ident.wrapping_add(1),
            _ => {}
        }
        out.push(flow.segment(ident, seq, flags, &pattern(len, i as u8)));
        seq = seq.wrapping_add(len as u32);
        ident = ident.wrapping_add(1);
    }
    out
}

/// A flow's burst as the receiving NIC's GRO leaves it: one packet of `payload` bytes with
/// lengths for the whole and the pseudo-header sum in the checksum field.
fn merged(flow: &Flow, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    flow.partial(0x4000, seq, flags, payload)
}

/// The virtio-net header of a frame, and its packet.
fn frame_parts(frame: &[u8]) -> (VirtioRepr, &[u8]) {
    let vnet = VirtioRepr::parse(&virtio::Packet::new_checked(frame).unwrap()).unwrap();
    (vnet, &frame[virtio::HEADER_LEN..])
}

#[test]
fn a_gro_merged_packet_leaves_as_segments_that_fit_the_mtu() {
    for v6 in [false, true] {
        let flow = Flow::new(v6, 5201);
        let mtu = 1460usize;
        let mss = mtu - flow.header_len();
        let data = pattern(43 * mss + 777, 3);
        let packet = merged(&flow, 0xffff_f000, tcp::flags::ACK | tcp::flags::PSH, &data);
        let mut coalescer = Coalescer::with_mtu(mtu as u16);
        coalescer.push(&packet);
        let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
        assert_eq!(frames.len(), 1);
        let (vnet, bytes) = frame_parts(&frames[0]);
        assert_eq!(
            vnet,
            VirtioRepr {
                csum: Some(PartialChecksum {
                    start: flow.l3_len() as u16,
                    offset: 16,
                }),
                data_valid: false,
                gso_type: if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 },
                ecn: false,
                hdr_len: flow.header_len() as u16,
                gso_size: mss as u16,
            }
        );
        // The packet itself goes out as it came: GRO already wrote what segmentation needs.
        assert_eq!(bytes, &packet[..]);

        let segments = split_frames(&mut coalescer);
        assert_eq!(segments.len(), 44);
        let mut joined = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            assert_eq!(
                segment.len(),
                if last { flow.header_len() + 777 } else { mtu }
            );
            assert!(verifies(segment), "segment {i}");
            let tcp = TcpPacket::new_checked(&segment[flow.l3_len()..]).unwrap();
            // Sequence numbers wrap across the burst.
            assert_eq!(
                tcp.seq_number(),
                0xffff_f000u32.wrapping_add((i * mss) as u32)
            );
            let psh = tcp.flags() & tcp::flags::PSH != 0;
            assert_eq!(psh, last, "segment {i}");
            joined.extend_from_slice(tcp.payload());
        }
        assert_eq!(joined, data);
    }
}

#[test]
fn a_partial_packet_within_the_mtu_only_gets_its_checksum_completed() {
    for v6 in [false, true] {
        let flow = Flow::new(v6, 1);
        // Two small segments GRO merged, still shorter than the MTU.
        let packet = merged(&flow, 1, tcp::flags::ACK, &pattern(400, 1));
        let mut coalescer = Coalescer::with_mtu(1460);
        coalescer.push(&packet);
        let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
        let (vnet, bytes) = frame_parts(&frames[0]);
        assert_eq!(vnet.gso_type, GsoType::None);
        assert_eq!(
            vnet.csum,
            Some(PartialChecksum {
                start: flow.l3_len() as u16,
                offset: 16
            })
        );
        assert_eq!(bytes, &packet[..]);
        let out = split_frames(&mut coalescer);
        assert_eq!(
            out,
            vec![flow.segment(0x4000, 1, tcp::flags::ACK, &pattern(400, 1))]
        );
    }
}

#[test]
fn without_an_mtu_a_merged_packet_is_completed_but_not_segmented() {
    let flow = Flow::new(false, 1);
    let packet = merged(&flow, 1, tcp::flags::ACK, &pattern(30_000, 1));
    let mut coalescer = Coalescer::default();
    assert_eq!(coalescer.mtu(), MAX_SUPER_PACKET);
    coalescer.push(&packet);
    let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
    let (vnet, _) = frame_parts(&frames[0]);
    assert_eq!(vnet.gso_type, GsoType::None);
    let out = split_frames(&mut coalescer);
    assert_eq!(out.len(), 1);
    assert!(verifies(&out[0]));
}

#[test]
fn a_merged_packet_keeps_its_place_in_the_flow() {
    let flow = Flow::new(false, 7);
    let before = burst(&flow, 3, 1000, 0, tcp::flags::ACK);
    let big = merged(&flow, 13_000, tcp::flags::ACK, &pattern(5000, 2));
    let after = flow.segment(1003, 18_000, tcp::flags::ACK, &pattern(1000, 4));
    let mut coalescer = Coalescer::with_mtu(1500);
    for packet in before.iter().chain([&big, &after]) {
        coalescer.push(packet);
    }
    // The open super-packet closes before the merged one; the next segment starts anew.
    let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
    assert_eq!(frames.len(), 3);
    assert_eq!(&frames[1][virtio::HEADER_LEN..], &big[..]);
    let out = split_frames(&mut coalescer);
    assert_eq!(out.len(), 3 + 4 + 1);
    let seqs: Vec<u32> = out
        .iter()
        .map(|p| TcpPacket::new_checked(&p[20..]).unwrap().seq_number())
        .collect();
    // 1500 less 52 bytes of IPv4 and TCP headers with timestamps: 1448 per segment.
    assert_eq!(
        seqs,
        [
            10_000, 11_000, 12_000, 13_000, 14_448, 15_896, 17_344, 18_000
        ]
    );
    assert!(out.iter().all(|p| verifies(p) && p.len() <= 1500));
}

#[test]
fn a_corrupt_oversized_segment_passes_through_untouched() {
    let flow = Flow::new(true, 1);
    let mut packet = merged(&flow, 1, tcp::flags::ACK, &pattern(5000, 1));
    // Neither a checksum nor the pseudo-header sum: nothing to complete, nothing to vouch for.
    packet[flow.l3_len() + 16] ^= 0x40;
    let mut coalescer = Coalescer::with_mtu(1280);
    coalescer.push(&packet);
    let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
    assert_eq!(&frames[0][..virtio::HEADER_LEN], [0; virtio::HEADER_LEN]);
    assert_eq!(&frames[0][virtio::HEADER_LEN..], &packet[..]);
}

#[test]
fn either_zero_of_ones_complement_reads_as_the_pseudo_header_sum() {
    // Source and destination chosen so the pseudo-header sum folds to 0xffff: a stack may
    // store it as 0x0000.
    let flow = Flow::new(false, 1);
    let payload = pattern(3000, 5);
    let packet = merged(&flow, 1, tcp::flags::ACK, &payload);
    let tcp_len = (packet.len() - 20) as u32;
    let pseudo = checksum::pseudo_header_v4(&SRC4, &DST4, ip_proto::TCP, tcp_len);
    // Rewrite the source address so that the sum becomes 0xffff exactly.
    let mut packet = packet;
    let src = u32::from(SRC4);
    let adjusted = Ipv4Addr::from(src.wrapping_add(u32::from(0xffff - pseudo)));
    let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
    ip.set_src_addr(adjusted);
    ip.fill_checksum();
    assert_eq!(
        checksum::pseudo_header_v4(&adjusted, &DST4, ip_proto::TCP, tcp_len),
        0xffff
    );
    for field in [0xffff, 0x0000] {
        TcpPacket::new_unchecked(&mut packet[20..]).set_checksum(field);
        let mut coalescer = Coalescer::with_mtu(1500);
        coalescer.push(&packet);
        let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
        assert_eq!(
            frame_parts(&frames[0]).0.gso_type,
            GsoType::TcpV4,
            "{field:#x}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn gro_merged_packets_split_back_into_valid_segments_of_the_mtu(
        v6 in any::<bool>(),
        options in prop_oneof![Just(Vec::new()), Just(TIMESTAMPS.to_vec()), Just(vec![1u8; 40])],
        mtu in 576u16..9001,
        payload in 1usize..63_000,
        seq in any::<u32>(),
        flags in proptest::sample::subsequence(
            vec![tcp::flags::PSH, tcp::flags::FIN, tcp::flags::CWR, tcp::flags::ECE], 0..4),
        junk in any::<u8>(),
    ) {
        let mut flow = Flow::new(v6, 9);
        flow.options = options;
        let mtu = usize::from(mtu).max(flow.header_len() + 1);
        let flags = flags.into_iter().fold(tcp::flags::ACK, |a, f| a | f);
        let data = pattern(payload, junk);
        let packet = merged(&flow, seq, flags, &data);
        let mut coalescer = Coalescer::with_mtu(mtu as u16);
        // A reused coalescer: what an earlier batch left must not show through.
        coalescer.push(&pattern(3000, junk));
        coalescer.clear();
        coalescer.push(&packet);
        let segments = split_frames(&mut coalescer);
        let mss = mtu - flow.header_len();
        prop_assert_eq!(segments.len(), payload.div_ceil(mss));
        let mut joined = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            prop_assert!(segment.len() <= mtu);
            prop_assert!(verifies(segment), "segment {}", i);
            let tcp = TcpPacket::new_checked(&segment[flow.l3_len()..]).unwrap();
            prop_assert_eq!(tcp.seq_number(), seq.wrapping_add((i * mss) as u32));
            if i + 1 < segments.len() {
                prop_assert_eq!(tcp.payload().len(), mss);
                prop_assert_eq!(tcp.flags() & (tcp::flags::PSH | tcp::flags::FIN), 0);
            } else {
                prop_assert_eq!(tcp.flags() & !tcp::flags::CWR, flags & !tcp::flags::CWR);
            }
            prop_assert_eq!(tcp.flags() & tcp::flags::CWR != 0, i == 0 && flags & tcp::flags::CWR != 0);
            joined.extend_from_slice(tcp.payload());
        }
        prop_assert_eq!(joined, data);
    }

    #[test]
    fn split_undoes_coalesce(
        flows in proptest::collection::vec(any_flow(), 1..4),
        order in proptest::collection::vec(any::<prop::sample::Index>(), 0..200),
        max_len in prop_oneof![Just(MAX_SUPER_PACKET), 1000usize..20000],
        seed in any::<u32>(),
    ) {
        let mut queues: Vec<Vec<Vec<u8>>> = flows
            .into_iter()
            .enumerate()
            .map(|(port, (mut flow, mss, shapes))| {
                flow.src_port = port as u16;
                segments_of(&mut flow, mss, &shapes, seed)
            })
            .collect();
        queues.push((0..5u8).map(|i| udp(i % 2 == 0, u16::from(i), &[i; 30], false)).collect());
        for queue in &mut queues {
            queue.reverse();
        }
        // Interleave the flows in a random order, each flow's own order kept.
        let mut input = Vec::new();
        let mut pick = order.into_iter();
        while queues.iter().any(|q| !q.is_empty()) {
            let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            let at = pick.next().map_or(0, |index| index.index(live.len()));
            input.push(queues[live[at]].pop().unwrap());
        }
        let mut coalescer = Coalescer::new(max_len);
        for packet in &input {
            coalescer.push(packet);
        }
        let largest = input.iter().map(Vec::len).max().unwrap_or(0);
        prop_assert!(coalescer.flush().all(|f| f.len() <= virtio::HEADER_LEN + max_len.max(largest)));
        prop_assert!(coalescer.len() <= input.len());
        let output = split_frames(&mut coalescer);
        // Per flow, the same packets in the same order.
        prop_assert!(by_flow(&output) == by_flow(&input));
        prop_assert_eq!(output.len(), input.len());
    }

    #[test]
    fn split_output_is_valid_packets(
        v6 in any::<bool>(),
        is_tcp in any::<bool>(),
        mss in 1u16..2000,
        len in 0usize..20000,
        flags in proptest::sample::subsequence(
            vec![tcp::flags::PSH, tcp::flags::FIN, tcp::flags::CWR, tcp::flags::ECE], 0..4),
        seq in any::<u32>(),
        ident in any::<u16>(),
    ) {
        let data = pattern(len, mss as u8);
        let l3 = if v6 { 40 } else { 20 };
        let flow = Flow::new(v6, 1);
        let flags = flags.into_iter().fold(tcp::flags::ACK, |a, f| a | f);
        let (packet, vnet) = if is_tcp {
            let gso_type = if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 };
            (flow.partial(ident, seq, flags, &data), gso_header(gso_type, l3, 16, mss))
        } else {
            prop_assume!(len <= 65000);
            (udp(v6, ident, &data, true), gso_header(GsoType::UdpL4, l3, 6, mss))
        };
        let segments = split_all(&vnet, &packet).unwrap();
        prop_assert_eq!(segments.len(), len.div_ceil(usize::from(mss)).max(1));
        let mut joined = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            prop_assert!(verifies(segment), "segment {}", i);
            let last = i + 1 == segments.len();
            let payload = if is_tcp {
                let tcp = TcpPacket::new_checked(&segment[l3..]).unwrap();
                prop_assert_eq!(tcp.seq_number(), seq.wrapping_add((i * usize::from(mss)) as u32));
                let mut expected = flags;
                if !last {
                    expected &= !(tcp::flags::FIN | tcp::flags::PSH);
                }
                if i > 0 {
                    expected &= !tcp::flags::CWR;
                }
                prop_assert_eq!(tcp.flags(), expected);
                tcp.payload().to_vec()
            } else {
                UdpPacket::new_checked(&segment[l3..]).unwrap().payload().to_vec()
            };
            prop_assert!(payload.len() <= usize::from(mss));
            if !last {
                prop_assert_eq!(payload.len(), usize::from(mss));
            }
            if !v6 {
                let ip = Ipv4Packet::new_checked(&segment[..]).unwrap();
                prop_assert_eq!(ip.ident(), ident.wrapping_add(i as u16));
            }
            joined.extend_from_slice(&payload);
        }
        prop_assert_eq!(joined, data);
    }

    #[test]
    fn split_never_panics(
        gso_type in prop_oneof![
            Just(GsoType::None), Just(GsoType::TcpV4), Just(GsoType::TcpV6), Just(GsoType::UdpL4)
        ],
        csum in proptest::option::of((0u16..100, 0u16..40)),
        gso_size in 0u16..3000,
        version in prop_oneof![Just(0x45u8), Just(0x60), any::<u8>()],
        packet in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        let vnet = VirtioRepr {
            csum: csum.map(|(start, offset)| PartialChecksum { start, offset }),
            data_valid: false,
            gso_type,
            ecn: false,
            hdr_len: 0,
            gso_size,
        };
        let mut packet = packet;
        if let Some(first) = packet.first_mut() {
            *first = version;
        }
        let len = packet.len();
        let mut out = 0;
        if split(&vnet, &mut packet, |segment| out += segment.len()).is_ok() {
            prop_assert!(out >= len.min(1));
        } else {
            prop_assert_eq!(out, 0);
        }
    }

    #[test]
    fn damaged_super_packets_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        v6 in any::<bool>(),
        mss in 1u16..3000,
        cut in any::<prop::sample::Index>(),
    ) {
        let flow = Flow::new(v6, 1);
        let l3 = flow.l3_len();
        let gso_type = if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 };
        let mut packet = flow.partial(1, 1, tcp::flags::ACK, &pattern(5000, 9));
        for (at, value) in flips {
            // Headers are where damage matters.
            let at = at.index(80);
            packet[at] = value;
        }
        packet.truncate(cut.index(packet.len() + 1));
        let mut out = 0;
        let result = split(&gso_header(gso_type, l3, 16, mss), &mut packet, |segment| {
            out += segment.len();
        });
        if result.is_err() {
            prop_assert_eq!(out, 0);
        }
        let mut coalescer = Coalescer::default();
        coalescer.push(&packet);
        coalescer.push(&packet);
        let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
        prop_assert!(!frames.is_empty());
    }

    #[test]
    fn coalescer_passes_arbitrary_bytes_through(packets in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let mut coalescer = Coalescer::default();
        for packet in &packets {
            coalescer.push(packet);
        }
        let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
        // Random bytes are never valid TCP segments with the right checksums, so each is a
        // frame of its own, byte for byte.
        prop_assert_eq!(frames.len(), packets.len());
        for (frame, packet) in frames.iter().zip(&packets) {
            prop_assert_eq!(&frame[virtio::HEADER_LEN..], &packet[..]);
        }
    }
}

/// The one frame `coalescer` makes of `packet` alone: its virtio header and what it carries.
fn only_frame(coalescer: &mut Coalescer, packet: &[u8]) -> (VirtioRepr, Vec<u8>) {
    coalescer.push(packet);
    let frames: Vec<Vec<u8>> = coalescer.flush().map(<[u8]>::to_vec).collect();
    assert_eq!(frames.len(), 1);
    let (vnet, bytes) = frame_parts(&frames[0]);
    (vnet, bytes.to_vec())
}

/// `packet` leaves in a frame of its own with an empty virtio header, byte for byte.
fn assert_passes_as_it_came(packet: &[u8]) {
    let (vnet, bytes) = only_frame(&mut Coalescer::with_mtu(1460), packet);
    assert_eq!(vnet, VirtioRepr::default());
    assert_eq!(bytes, packet);
}

#[test]
fn a_partial_udp_datagram_gets_its_checksum_completed() {
    for v6 in [false, true] {
        let l3 = if v6 { 40 } else { 20 };
        let packet = udp(v6, 4, &pattern(700, 2), true);
        assert!(!verifies(&packet));
        let mut coalescer = Coalescer::with_mtu(1460);
        let (vnet, bytes) = only_frame(&mut coalescer, &packet);
        assert_eq!(
            vnet,
            VirtioRepr {
                csum: Some(PartialChecksum {
                    start: l3,
                    offset: 6,
                }),
                ..VirtioRepr::default()
            }
        );
        assert_eq!(bytes, &packet[..]);
        let out = split_frames(&mut coalescer);
        assert_eq!(out, vec![udp(v6, 4, &pattern(700, 2), false)]);
        assert!(verifies(&out[0]));
    }
}

#[test]
fn complete_and_unchecked_udp_datagrams_pass_as_they_came() {
    let mut none = udp(false, 5, b"no checksum", false);
    UdpPacket::new_unchecked(&mut none[20..]).set_checksum(0);
    for packet in [
        udp(false, 5, b"filled in", false),
        udp(true, 5, b"filled in", false),
        none,
    ] {
        assert_passes_as_it_came(&packet);
    }
}

#[test]
fn a_partial_udp_datagram_beyond_the_mtu_passes_as_it_came() {
    assert_passes_as_it_came(&udp(false, 6, &pattern(3000, 3), true));
}

#[test]
fn a_partial_syn_gets_its_checksum_completed() {
    // A SYN from a host behind a veth, through a peer's kernel path: the pseudo-header sum
    // in the field, and (as the TUN dataplane's clamping leaves it) a lowered MSS option.
    for v6 in [false, true] {
        let mut flow = Flow::new(v6, 40000);
        flow.options = vec![2, 4, 0x05, 0x8c, 1, 1, 4, 2];
        let syn = flow.partial(9, 77, tcp::flags::SYN, b"");
        let mut coalescer = Coalescer::with_mtu(1460);
        coalescer.push(&syn);
        let out = split_frames(&mut coalescer);
        assert_eq!(out, vec![flow.segment(9, 77, tcp::flags::SYN, b"")]);
        assert!(verifies(&out[0]));
    }
}
