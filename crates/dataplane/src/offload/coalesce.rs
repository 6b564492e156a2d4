//! Merging TCP segments on their way to a TUN device into super-packets (receive coalescing).

use wire::virtio::{self, GsoType, PartialChecksum, Repr as VirtioRepr};
use wire::{Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, checksum, ip_proto, ipv4, ipv6, tcp};

use super::MAX_SUPER_PACKET;

/// Flows a [`Coalescer`] keeps merging at once; a further flow closes the oldest one's
/// super-packet. A receive batch rarely holds more distinct bulk flows.
pub const MAX_OPEN_FLOWS: usize = 16;

/// Flags after which nothing may be merged into a segment, or which merging would lose:
/// connection set-up and tear-down, urgent data, and CWR, which belongs to one segment only.
const UNMERGEABLE: u8 =
    tcp::flags::SYN | tcp::flags::FIN | tcp::flags::RST | tcp::flags::URG | tcp::flags::CWR;

/// Collects the packets of one batch bound for one TUN device and merges consecutive,
/// in-order TCP segments of a flow into super-packets, each ready for one write to a TUN
/// device with `IFF_VNET_HDR` (virtio-net header included).
///
/// A segment joins the super-packet of its flow when everything split would recreate
/// matches: addresses and ports, IP header fields (TOS/traffic class, TTL/hop limit, DF,
/// flow label, and for IPv4 the next identification), TCP header length, options,
/// acknowledgment, window and flags (PSH aside), and its sequence number follows on. Every
/// segment but the last must be as long as the first. A segment with PSH, a shorter one, or
/// one that fills the size limit ends the super-packet. Only segments whose IPv4 and TCP
/// checksums verify are merged: the super-packet goes out with a fresh partial checksum, so
/// merging a corrupt one would launder it. Anything else (other protocols, IPv4 options, IPv6
/// extension headers, SYN/FIN/RST/URG/CWR, bare ACKs) passes through unchanged in a frame
/// of its own and ends its flow's super-packet, so no packet overtakes another of its flow.
///
/// A TCP packet whose checksum field holds only its pseudo-header sum is what the kernel's
/// GRO hands a raw socket after merging a flow's segments on the underlay (the inner packet of
/// a tunnel, up to 64 KiB); it goes out in a frame of its own with `NEEDS_CSUM`, and, when it
/// is longer than the device MTU given to [`with_mtu`](Self::with_mtu), as a TCP GSO frame of
/// MTU-sized segments, so the kernel forwards it as the segments it was made of. The same
/// field is what a peer's kernel path sends when the TCP or UDP packet left a host behind a
/// veth with `CHECKSUM_PARTIAL` and nothing on the way filled it in; a UDP datagram with it
/// also gets `NEEDS_CSUM` (one that does not fit the MTU passes as it came: a raw socket
/// does not say where its segments were).
///
/// Frames come out in the order they were started. Buffers are kept across
/// [`clear`](Self::clear), so after the largest batch nothing allocates.
///
/// ```text
/// for packet in decapsulated { coalescer.push(packet) }
/// for frame in coalescer.flush() { tun.write(frame)? }
/// coalescer.clear();
/// ```
#[derive(Debug, Clone)]
pub struct Coalescer {
    frames: Vec<Frame>,
    /// Frames in use: `frames[..used]`.
    used: usize,
    /// Indexes of frames still merging, oldest first.
    open: Vec<usize>,
    max_len: usize,
    /// Largest IP packet the device sends unsegmented; longer merged packets become GSO frames.
    mtu: usize,
    packets: usize,
}

#[derive(Debug, Clone, Default)]
struct Frame {
    /// The virtio-net header, then the IP packet.
    bytes: Vec<u8>,
    /// Set for a TCP segment that others may join.
    flow: Option<Flow>,
}

#[derive(Debug, Clone, Copy)]
struct Flow {
    key: FlowKey,
    l3_len: usize,
    header_len: usize,
    /// Payload bytes of the first segment, which every further one but the last matches.
    mss: usize,
    next_seq: u32,
    segments: usize,
    /// The last segment merged carried PSH.
    psh: bool,
}

/// Addresses (IPv4 in the first 8 bytes) and ports of a TCP flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    v6: bool,
    addrs: [u8; 32],
    ports: [u8; 4],
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new(MAX_SUPER_PACKET)
    }
}

impl Coalescer {
    /// A coalescer that builds IP packets of at most `max_len` bytes (capped at
    /// [`MAX_SUPER_PACKET`]); the virtio-net header comes on top.
    pub fn new(max_len: usize) -> Self {
        Self {
            frames: Vec::new(),
            used: 0,
            open: Vec::with_capacity(MAX_OPEN_FLOWS),
            max_len: max_len.min(MAX_SUPER_PACKET),
            mtu: MAX_SUPER_PACKET,
            packets: 0,
        }
    }

    /// A coalescer for a device of `mtu` bytes: packets the underlay's GRO merged beyond it
    /// leave as GSO frames of segments that fit. Without it nothing is segmented.
    pub fn with_mtu(mtu: u16) -> Self {
        Self {
            mtu: usize::from(mtu),
            ..Self::default()
        }
    }

    /// The device MTU that merged packets are segmented for.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Adds one IP packet bound for the TUN device.
    pub fn push(&mut self, packet: &[u8]) {
        self.packets += 1;
        match Segment::read(packet, self.max_len) {
            Read::Segment(segment) => self.push_segment(packet, segment),
            Read::Partial(partial) => {
                self.close_flow(&partial.key);
                let mtu = self.mtu;
                let frame = self.start_frame();
                frame.bytes.extend_from_slice(packet);
                frame.finish_partial(&partial, mtu);
            }
            Read::PartialUdp { l3_len } if packet.len() <= self.mtu => {
                let frame = self.start_frame();
                frame.bytes.extend_from_slice(packet);
                frame.finish_partial_udp(l3_len);
            }
            Read::PartialUdp { .. } => {
                let frame = self.start_frame();
                frame.bytes.extend_from_slice(packet);
            }
            Read::Other(key) => {
                if let Some(key) = key {
                    self.close_flow(&key);
                }
                let frame = self.start_frame();
                frame.bytes.extend_from_slice(packet);
            }
        }
    }

    fn push_segment(&mut self, packet: &[u8], segment: Segment) {
        let position = self
            .open
            .iter()
            .position(|&i| self.frames[i].flow.is_some_and(|f| f.key == segment.key));
        if let Some(position) = position {
            let index = self.open[position];
            let frame = &mut self.frames[index];
            if frame.joins(packet, &segment, self.max_len) {
                frame.append(packet, &segment);
                let flow = frame.flow.as_ref().expect("open frames have a flow");
                let room = self.max_len - (frame.bytes.len() - virtio::HEADER_LEN);
                if segment.psh || segment.payload_len < flow.mss || room < flow.mss {
                    self.close(position);
                }
                return;
            }
            self.close(position);
        }
        if self.open.len() == MAX_OPEN_FLOWS {
            self.close(0);
        }
        let index = self.used;
        let frame = self.start_frame();
        frame.bytes.extend_from_slice(packet);
        frame.flow = Some(Flow {
            key: segment.key,
            l3_len: segment.l3_len,
            header_len: segment.header_len,
            mss: segment.payload_len,
            next_seq: segment.seq.wrapping_add(segment.payload_len as u32),
            segments: 1,
            psh: segment.psh,
        });
        // A PSH segment ends its burst; one that already fills the limit cannot grow.
        if !segment.psh && packet.len() + segment.payload_len <= self.max_len {
            self.open.push(index);
        } else {
            self.frames[index].finish();
        }
    }

    /// Ends every super-packet still open and returns the frames of this batch in order,
    /// each a virtio-net header and an IP packet.
    pub fn flush(&mut self) -> Frames<'_> {
        while !self.open.is_empty() {
            self.close(0);
        }
        Frames {
            frames: self.frames[..self.used].iter(),
        }
    }

    /// Forgets all frames, keeping their buffers.
    pub fn clear(&mut self) {
        self.used = 0;
        self.open.clear();
        self.packets = 0;
    }

    /// Packets pushed since the last [`clear`](Self::clear).
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Frames since the last [`clear`](Self::clear): one TUN write each.
    pub fn len(&self) -> usize {
        self.used
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    fn start_frame(&mut self) -> &mut Frame {
        if self.used == self.frames.len() {
            self.frames.push(Frame::default());
        }
        let frame = &mut self.frames[self.used];
        self.used += 1;
        frame.bytes.clear();
        // Until finished, a frame says "one plain packet", which is right for pass-through.
        frame.bytes.resize(virtio::HEADER_LEN, 0);
        frame.flow = None;
        frame
    }

    fn close_flow(&mut self, key: &FlowKey) {
        if let Some(position) = self
            .open
            .iter()
            .position(|&i| self.frames[i].flow.is_some_and(|f| f.key == *key))
        {
            self.close(position);
        }
    }

    fn close(&mut self, position: usize) {
        let index = self.open.remove(position);
        self.frames[index].finish();
    }
}

impl Frame {
    fn packet(&self) -> &[u8] {
        &self.bytes[virtio::HEADER_LEN..]
    }

    /// Whether `segment` (of this frame's flow) can be merged as it is.
    fn joins(&self, packet: &[u8], segment: &Segment, max_len: usize) -> bool {
        let Some(flow) = &self.flow else {
            return false;
        };
        let first = self.packet();
        if segment.header_len != flow.header_len
            || segment.seq != flow.next_seq
            || segment.payload_len > flow.mss
            || first.len() + segment.payload_len > max_len
        {
            return false;
        }
        let same_ip = if flow.key.v6 {
            // Version, traffic class, flow label; hop limit.
            first[..4] == packet[..4] && first[7] == packet[7]
        } else {
            let ident = u16::from_be_bytes([first[4], first[5]]).wrapping_add(flow.segments as u16);
            // TOS; identification; DF; TTL.
            first[1] == packet[1]
                && u16::from_be_bytes([packet[4], packet[5]]) == ident
                && first[6..9] == packet[6..9]
        };
        let l3 = flow.l3_len;
        let (a, b) = (&first[l3..flow.header_len], &packet[l3..flow.header_len]);
        // Acknowledgment, data offset; flags but PSH; window; urgent pointer; options.
        same_ip
            && a[8..13] == b[8..13]
            && a[13] == b[13] & !tcp::flags::PSH
            && a[14..16] == b[14..16]
            && a[18..] == b[18..]
    }

    fn append(&mut self, packet: &[u8], segment: &Segment) {
        self.bytes.extend_from_slice(&packet[segment.header_len..]);
        let flow = self.flow.as_mut().expect("only flows are appended to");
        flow.segments += 1;
        flow.next_seq = flow.next_seq.wrapping_add(segment.payload_len as u32);
        flow.psh = segment.psh;
    }

    /// Writes the final headers: for a merged super-packet its lengths, PSH if the last
    /// segment had it, a partial TCP checksum and the GSO header; a lone segment stays as it
    /// came, marked as verified.
    fn finish(&mut self) {
        let Some(flow) = self.flow else {
            return;
        };
        let (header, packet) = self.bytes.split_at_mut(virtio::HEADER_LEN);
        let mut vnet = VirtioRepr {
            data_valid: true,
            ..VirtioRepr::default()
        };
        if flow.segments > 1 {
            let len = packet.len();
            let tcp_len = (len - flow.l3_len) as u32;
            let pseudo = if flow.key.v6 {
                let mut ip = Ipv6Packet::new_unchecked(&mut *packet);
                ip.set_payload_len((len - ipv6::HEADER_LEN) as u16);
                checksum::pseudo_header_v6(&ip.src_addr(), &ip.dst_addr(), ip_proto::TCP, tcp_len)
            } else {
                let mut ip = Ipv4Packet::new_unchecked(&mut *packet);
                ip.set_total_len(len as u16);
                ip.fill_checksum();
                checksum::pseudo_header_v4(&ip.src_addr(), &ip.dst_addr(), ip_proto::TCP, tcp_len)
            };
            let mut tcp = TcpPacket::new_unchecked(&mut packet[flow.l3_len..]);
            if flow.psh {
                tcp.set_flags(tcp.flags() | tcp::flags::PSH);
            }
            // What a stack leaves for the NIC under CHECKSUM_PARTIAL: the pseudo-header sum,
            // not inverted, which Linux's GSO adjusts per segment.
            tcp.set_checksum(pseudo);
            vnet = VirtioRepr {
                csum: Some(PartialChecksum {
                    start: flow.l3_len as u16,
                    offset: 16,
                }),
                data_valid: false,
                gso_type: if flow.key.v6 {
                    GsoType::TcpV6
                } else {
                    GsoType::TcpV4
                },
                ecn: false,
                hdr_len: flow.header_len as u16,
                gso_size: flow.mss as u16,
            };
        }
        vnet.emit(&mut virtio::Packet::new_unchecked(header));
    }
}

impl Frame {
    /// Writes the virtio-net header of a packet that left GRO with a partial checksum: the
    /// checksum to be completed, and segmentation if it exceeds `mtu`. The packet's headers
    /// are already right (GRO rewrote the lengths and left the pseudo-header sum in place).
    fn finish_partial(&mut self, partial: &Partial, mtu: usize) {
        let len = self.bytes.len() - virtio::HEADER_LEN;
        let (gso_type, gso_size) = match partial.gso_size(len, mtu) {
            Some(size) if partial.key.v6 => (GsoType::TcpV6, size),
            Some(size) => (GsoType::TcpV4, size),
            None => (GsoType::None, 0),
        };
        VirtioRepr {
            csum: Some(PartialChecksum {
                start: partial.l3_len as u16,
                offset: 16,
            }),
            data_valid: false,
            gso_type,
            // CWR travels on the first segment only, which Linux's GSO knows to do for ECN.
            ecn: gso_type != GsoType::None && partial.cwr,
            hdr_len: partial.header_len as u16,
            gso_size,
        }
        .emit(&mut virtio::Packet::new_unchecked(
            &mut self.bytes[..virtio::HEADER_LEN],
        ));
    }
}

impl Frame {
    /// Writes the virtio-net header of a UDP datagram whose checksum a sender left to be
    /// completed.
    fn finish_partial_udp(&mut self, l3_len: usize) {
        VirtioRepr {
            csum: Some(PartialChecksum {
                start: l3_len as u16,
                offset: 6,
            }),
            data_valid: false,
            gso_type: GsoType::None,
            ecn: false,
            hdr_len: 0,
            gso_size: 0,
        }
        .emit(&mut virtio::Packet::new_unchecked(
            &mut self.bytes[..virtio::HEADER_LEN],
        ));
    }
}

/// A pushed packet as the coalescer sees it.
enum Read {
    /// A TCP segment that may be merged.
    Segment(Segment),
    /// A TCP packet with a partial checksum: usually several segments GRO already merged.
    Partial(Partial),
    /// A UDP datagram whose checksum field holds the pseudo-header sum, with the length of
    /// its IP header.
    PartialUdp { l3_len: usize },
    /// Anything else; for TCP, the flow whose merging it must end.
    Other(Option<FlowKey>),
}

/// A TCP packet carrying the pseudo-header sum in its checksum field, as GRO leaves it
/// (or a sender's stack, when nothing completed it on the way).
struct Partial {
    key: FlowKey,
    l3_len: usize,
    header_len: usize,
    cwr: bool,
}

impl Partial {
    /// Payload bytes per segment for a device of `mtu` bytes, if a packet of `len` bytes
    /// needs segmenting at all.
    fn gso_size(&self, len: usize, mtu: usize) -> Option<u16> {
        if len <= mtu || mtu <= self.header_len {
            return None;
        }
        u16::try_from(mtu - self.header_len).ok()
    }
}

struct Segment {
    key: FlowKey,
    l3_len: usize,
    header_len: usize,
    payload_len: usize,
    seq: u32,
    psh: bool,
}

impl Segment {
    fn read(packet: &[u8], max_len: usize) -> Read {
        let mut key = FlowKey {
            v6: false,
            addrs: [0; 32],
            ports: [0; 4],
        };
        let l3_len = match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let Ok(ip) = Ipv4Packet::new_checked(packet) else {
                    return Read::Other(None);
                };
                if ip.more_frags() || ip.frag_offset() != 0 {
                    return Read::Other(None);
                }
                if ip.protocol() == ip_proto::UDP && usize::from(ip.total_len()) == packet.len() {
                    let (src, dst) = (ip.src_addr(), ip.dst_addr());
                    return partial_udp(packet, ip.header_len(), |len| {
                        checksum::pseudo_header_v4(&src, &dst, ip_proto::UDP, len)
                    });
                }
                if ip.protocol() != ip_proto::TCP {
                    return Read::Other(None);
                }
                key.addrs[..8].copy_from_slice(&packet[12..20]);
                // Options would have to be compared too; they are too rare to be worth it.
                if ip.header_len() != ipv4::HEADER_LEN
                    || usize::from(ip.total_len()) != packet.len()
                    || !ip.verify_checksum()
                {
                    return Read::Other(key_with_ports(key, packet, ip.header_len()));
                }
                ipv4::HEADER_LEN
            }
            Some(6) => {
                let Ok(ip) = Ipv6Packet::new_checked(packet) else {
                    return Read::Other(None);
                };
                if ip.next_header() == ip_proto::UDP
                    && ipv6::HEADER_LEN + usize::from(ip.payload_len()) == packet.len()
                {
                    let (src, dst) = (ip.src_addr(), ip.dst_addr());
                    return partial_udp(packet, ipv6::HEADER_LEN, |len| {
                        checksum::pseudo_header_v6(&src, &dst, ip_proto::UDP, len)
                    });
                }
                if ip.next_header() != ip_proto::TCP {
                    return Read::Other(None);
                }
                key.v6 = true;
                key.addrs.copy_from_slice(&packet[8..40]);
                if ipv6::HEADER_LEN + usize::from(ip.payload_len()) != packet.len() {
                    return Read::Other(key_with_ports(key, packet, ipv6::HEADER_LEN));
                }
                ipv6::HEADER_LEN
            }
            _ => return Read::Other(None),
        };
        let Some(key) = key_with_ports(key, packet, l3_len) else {
            return Read::Other(None);
        };
        let Ok(tcp) = TcpPacket::new_checked(&packet[l3_len..]) else {
            return Read::Other(Some(key));
        };
        let header_len = l3_len + tcp.header_len();
        let payload_len = packet.len() - header_len;
        let tcp_len = (packet.len() - l3_len) as u32;
        let field = tcp.checksum();
        let partial = || {
            Read::Partial(Partial {
                key,
                l3_len,
                header_len,
                cwr: tcp.flags() & tcp::flags::CWR != 0,
            })
        };
        // The pseudo-header sum is checked first, as it costs nothing: GRO verified every
        // segment it merged, so such a packet needs no pass over its 64 KiB here. A real
        // checksum that equals the pseudo-header sum (one in 65,536) comes to no harm:
        // completing it gives it back.
        let verified = if key.v6 {
            let ip = Ipv6Packet::new_unchecked(packet);
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let pseudo = checksum::pseudo_header_v6(&src, &dst, ip_proto::TCP, tcp_len);
            if checksum::holds_pseudo_header(field, pseudo) {
                return partial();
            }
            tcp.verify_checksum_v6(&src, &dst)
        } else {
            let ip = Ipv4Packet::new_unchecked(packet);
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let pseudo = checksum::pseudo_header_v4(&src, &dst, ip_proto::TCP, tcp_len);
            if checksum::holds_pseudo_header(field, pseudo) {
                return partial();
            }
            tcp.verify_checksum_v4(&src, &dst)
        };
        if tcp.flags() & UNMERGEABLE != 0 || payload_len == 0 || packet.len() > max_len || !verified
        {
            return Read::Other(Some(key));
        }
        Read::Segment(Self {
            key,
            l3_len,
            header_len,
            payload_len,
            seq: tcp.seq_number(),
            psh: tcp.flags() & tcp::flags::PSH != 0,
        })
    }
}

/// A UDP datagram behind an IP header of `l3_len` bytes: [`Read::PartialUdp`] when its
/// checksum field holds the pseudo-header sum (given by `pseudo` for the UDP length). A zero
/// field is "no checksum" over IPv4 and never a pseudo-header sum here, so it stays as it is.
fn partial_udp(packet: &[u8], l3_len: usize, pseudo: impl FnOnce(u32) -> u16) -> Read {
    let Some(Ok(udp)) = packet.get(l3_len..).map(UdpPacket::new_checked) else {
        return Read::Other(None);
    };
    let len = packet.len() - l3_len;
    let field = udp.checksum();
    if usize::from(udp.len()) != len || field == 0 {
        return Read::Other(None);
    }
    if checksum::holds_pseudo_header(field, pseudo(len as u32)) {
        Read::PartialUdp { l3_len }
    } else {
        Read::Other(None)
    }
}

/// Completes a flow key with the ports, if the packet is long enough to have them.
fn key_with_ports(mut key: FlowKey, packet: &[u8], l3_len: usize) -> Option<FlowKey> {
    key.ports.copy_from_slice(packet.get(l3_len..l3_len + 4)?);
    Some(key)
}

/// The frames of a batch, in order: each a virtio-net header and an IP packet, for one write
/// to a TUN device.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    frames: core::slice::Iter<'a, Frame>,
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<Self::Item> {
        self.frames.next().map(|frame| frame.bytes.as_slice())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.frames.size_hint()
    }
}

impl ExactSizeIterator for Frames<'_> {}
