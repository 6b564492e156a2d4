//! Cutting a super-packet into the packets a NIC would have sent.

use std::net::{Ipv4Addr, Ipv6Addr};

use wire::virtio::{GsoType, PartialChecksum, Repr as VirtioRepr};
use wire::{Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket, checksum, ipv6, tcp};

use super::{Layout, OffloadError, Transport};

/// Longest header a segment repeats: IPv4 with 40 bytes of options and TCP with 40.
const MAX_HEADER_LEN: usize = 120;

/// Hands `out` the packets that `packet`, read from a TUN device behind the header `vnet`,
/// stands for, in order, and returns how many.
///
/// A super-packet (TCP or UDP GSO) becomes packets of `gso_size` payload bytes (the last one
/// shorter), each with its own IP length, IPv4 identification (counting up from the
/// original's, as Linux's TSO does), TCP sequence number, UDP length and freshly computed
/// checksums; FIN and PSH stay only on the last TCP segment and CWR only on the first. Any
/// other packet is handed over whole, its partial checksum completed first if the header says
/// `NEEDS_CSUM`.
///
/// Works in place: segment *n*'s headers are written over the tail of segment *n − 1*'s
/// payload once `out` has returned from it, so nothing is copied but headers and the
/// caller's buffer is consumed. The slice given to `out` may be changed (the tunnel core
/// clamps MSS in place).
///
/// Headers are read from the packet itself; `hdr_len` in `vnet` is not trusted, since Linux
/// puts its linear buffer length there. Nothing is handed to `out` when an error is returned.
pub fn split<F>(vnet: &VirtioRepr, packet: &mut [u8], mut out: F) -> Result<usize, OffloadError>
where
    F: FnMut(&mut [u8]),
{
    if !vnet.is_gso() {
        if let Some(csum) = vnet.csum {
            complete_checksum(csum, packet)?;
        }
        out(packet);
        return Ok(1);
    }
    let layout = Layout::parse(packet)?;
    let matches = match vnet.gso_type {
        GsoType::TcpV4 => !layout.v6 && layout.transport == Transport::Tcp,
        GsoType::TcpV6 => layout.v6 && layout.transport == Transport::Tcp,
        GsoType::UdpL4 => layout.transport == Transport::Udp,
        GsoType::None => unreachable!("handled above"),
    };
    if !matches {
        return Err(OffloadError::GsoMismatch);
    }
    if let Some(csum) = vnet.csum
        && (usize::from(csum.start) != layout.l3_len
            || usize::from(csum.offset) != layout.transport.checksum_offset())
    {
        return Err(OffloadError::ChecksumOffsets);
    }
    let header_len = layout.header_len;
    if header_len > MAX_HEADER_LEN {
        // Unreachable while IPv6 extension headers are refused; kept so that changing that
        // cannot turn into a panic.
        return Err(wire::Error::BadHeaderLen.into());
    }
    if vnet.gso_size == 0 {
        return Err(OffloadError::ZeroSegmentSize);
    }
    let mut template = [0u8; MAX_HEADER_LEN];
    template[..header_len].copy_from_slice(&packet[..header_len]);
    let template = &template[..header_len];
    let packet = &mut packet[..layout.len];

    let payload = layout.len - header_len;
    let mss = usize::from(vnet.gso_size);
    let count = payload.div_ceil(mss).max(1);
    let first = First::read(template, &layout);
    for index in 0..count {
        let start = index * mss;
        let chunk = mss.min(payload - start);
        let segment = &mut packet[start..start + header_len + chunk];
        if index > 0 {
            segment[..header_len].copy_from_slice(template);
        }
        first.fix(segment, &layout, index, mss, index + 1 == count);
        out(segment);
    }
    Ok(count)
}

/// Completes a partial checksum (`NEEDS_CSUM`): the field at `start + offset` holds the
/// pseudo-header sum, to which the sum of everything from `start` is added before the result
/// is inverted and stored, as a NIC does on transmit.
///
/// A result of zero is stored as `0xffff`, the same value in one's complement: UDP needs it
/// (zero means "no checksum") and TCP does not mind.
pub fn complete_checksum(csum: PartialChecksum, packet: &mut [u8]) -> Result<(), OffloadError> {
    let start = usize::from(csum.start);
    let at = start + usize::from(csum.offset);
    if at + 2 > packet.len() {
        return Err(OffloadError::ChecksumOffsets);
    }
    let sum = match !checksum::data(&packet[start..]) {
        0 => 0xffff,
        sum => sum,
    };
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// What the first segment's headers say, from which every segment's are derived.
struct First {
    ident: u16,
    seq: u32,
    flags: u8,
    addrs: Addrs,
}

enum Addrs {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl First {
    fn read(header: &[u8], layout: &Layout) -> Self {
        let (ident, addrs) = if layout.v6 {
            let ip = Ipv6Packet::new_unchecked(header);
            (0, Addrs::V6(ip.src_addr(), ip.dst_addr()))
        } else {
            let ip = Ipv4Packet::new_unchecked(header);
            (ip.ident(), Addrs::V4(ip.src_addr(), ip.dst_addr()))
        };
        let (seq, flags) = match layout.transport {
            Transport::Tcp => {
                let tcp = TcpPacket::new_unchecked(&header[layout.l3_len..]);
                (tcp.seq_number(), tcp.flags())
            }
            Transport::Udp => (0, 0),
        };
        Self {
            ident,
            seq,
            flags,
            addrs,
        }
    }

    /// Rewrites the headers of segment `index` (which start as a copy of the first's) for
    /// its length and place in the stream.
    fn fix(&self, segment: &mut [u8], layout: &Layout, index: usize, mss: usize, last: bool) {
        let len = segment.len();
        let (ip, l4) = segment.split_at_mut(layout.l3_len);
        match &self.addrs {
            Addrs::V4(..) => {
                let mut ip = Ipv4Packet::new_unchecked(&mut *ip);
                ip.set_total_len(len as u16);
                ip.set_ident(self.ident.wrapping_add(index as u16));
                ip.fill_checksum();
            }
            Addrs::V6(..) => {
                let mut ip = Ipv6Packet::new_unchecked(&mut *ip);
                ip.set_payload_len((len - ipv6::HEADER_LEN) as u16);
            }
        }
        match layout.transport {
            Transport::Tcp => {
                let mut tcp = TcpPacket::new_unchecked(l4);
                // Sequence numbers wrap modulo 2^32 (RFC 9293 §3.4), so truncating is right.
                tcp.set_seq_number(self.seq.wrapping_add((index * mss) as u32));
                let mut flags = self.flags;
                if !last {
                    flags &= !(tcp::flags::FIN | tcp::flags::PSH);
                }
                if index > 0 {
                    flags &= !tcp::flags::CWR;
                }
                tcp.set_flags(flags);
                match &self.addrs {
                    Addrs::V4(src, dst) => tcp.fill_checksum_v4(src, dst),
                    Addrs::V6(src, dst) => tcp.fill_checksum_v6(src, dst),
                }
            }
            Transport::Udp => {
                let mut udp = UdpPacket::new_unchecked(l4);
                udp.set_len((len - layout.l3_len) as u16);
                match &self.addrs {
                    Addrs::V4(src, dst) => udp.fill_checksum_v4(src, dst),
                    Addrs::V6(src, dst) => udp.fill_checksum_v6(src, dst),
                }
            }
        }
    }
}
