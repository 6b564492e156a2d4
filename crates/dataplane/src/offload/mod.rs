//! Segmentation and coalescing for TUN devices with offloads (`IFF_VNET_HDR` + `TUNSETOFFLOAD`).
//!
//! With offloads on, the kernel hands a TUN reader TCP (and UDP) "super-packets" of up to
//! 64 KiB behind a [virtio-net header](wire::virtio), and accepts the same from a writer. One
//! read or write then moves what would otherwise take some forty system calls. The tunnel core
//! still works on wire-sized packets, so this module converts at the edges:
//!
//! * [`split`] cuts a super-packet read from the TUN into the packets a NIC would have sent
//!   (lengths, IPv4 identification, TCP sequence numbers and flags, checksums), in place, and
//!   completes the partial checksum of a packet that is not a super-packet.
//! * [`Coalescer`] collects decapsulated packets on their way to the TUN and merges in-order TCP
//!   segments of a flow back into super-packets, as the kernel's GRO does, so a whole receive
//!   batch becomes a handful of TUN writes.
//!
//! Both are sans-IO: bytes in, bytes out; the shell owns the TUN descriptor and the header
//! bytes' place in its buffers.

mod coalesce;
mod segment;

#[cfg(test)]
mod tests;

use core::fmt;

use wire::{Ipv4Packet, Ipv6Packet, TcpPacket, ip_proto, ipv4, ipv6, udp};

pub use coalesce::{Coalescer, Frames, MAX_OPEN_FLOWS};
pub use segment::{complete_checksum, split};

/// Largest IP packet (headers included) a [`Coalescer`] builds by default: the most an IPv4
/// total length can say, and as much as Linux takes in one TUN write.
pub const MAX_SUPER_PACKET: usize = 65535;

/// Why a packet behind a virtio-net header could not be segmented or completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffloadError {
    /// The IP or transport header does not parse.
    Malformed(wire::Error),
    /// A super-packet of a transport other than TCP and UDP, or an IPv6 one whose transport
    /// header is behind extension headers; the number is the protocol or next header.
    Unsupported { protocol: u8 },
    /// The GSO type names another IP version or transport than the packet carries.
    GsoMismatch,
    /// A super-packet that is an IPv4 fragment.
    Fragment,
    /// A super-packet with a segment size of 0.
    ZeroSegmentSize,
    /// The partial checksum lies outside the packet, or for a super-packet is not the
    /// transport header's checksum field.
    ChecksumOffsets,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(error) => {
                write!(f, "malformed packet behind virtio-net header: {error}")
            }
            Self::Unsupported { protocol } => {
                write!(f, "no segmentation for protocol {protocol}")
            }
            Self::GsoMismatch => f.write_str("GSO type does not match the packet"),
            Self::Fragment => f.write_str("super-packet is an IPv4 fragment"),
            Self::ZeroSegmentSize => f.write_str("super-packet with segment size 0"),
            Self::ChecksumOffsets => f.write_str("partial checksum offsets outside the packet"),
        }
    }
}

impl std::error::Error for OffloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Malformed(error) => Some(error),
            _ => None,
        }
    }
}

impl From<wire::Error> for OffloadError {
    fn from(error: wire::Error) -> Self {
        Self::Malformed(error)
    }
}

/// Transport of a packet that can be segmented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// Offset of the checksum field in the transport header.
    const fn checksum_offset(self) -> usize {
        match self {
            Self::Tcp => 16,
            Self::Udp => 6,
        }
    }
}

/// Where the headers of a TCP or UDP packet end, read from the packet itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    v6: bool,
    transport: Transport,
    /// Length of the IP header (with IPv4 options).
    l3_len: usize,
    /// IP header plus transport header.
    header_len: usize,
    /// Length of the IP packet as its header says; bytes beyond are not part of it.
    len: usize,
}

impl Layout {
    /// Parses the IP header and finds the TCP or UDP header right behind it.
    fn parse(packet: &[u8]) -> Result<Self, OffloadError> {
        let (v6, l3_len, len, protocol) = match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let ip = Ipv4Packet::new_checked(packet)?;
                if ip.more_frags() || ip.frag_offset() != 0 {
                    return Err(OffloadError::Fragment);
                }
                (
                    false,
                    ip.header_len(),
                    usize::from(ip.total_len()),
                    ip.protocol(),
                )
            }
            Some(6) => {
                let ip = Ipv6Packet::new_checked(packet)?;
                let len = ipv6::HEADER_LEN + usize::from(ip.payload_len());
                (true, ipv6::HEADER_LEN, len, ip.next_header())
            }
            Some(_) => return Err(wire::Error::BadVersion.into()),
            None => return Err(wire::Error::Truncated.into()),
        };
        let (transport, l4_len) = match protocol {
            ip_proto::TCP => {
                let tcp = TcpPacket::new_checked(&packet[l3_len..len])?;
                (Transport::Tcp, tcp.header_len())
            }
            ip_proto::UDP if len - l3_len >= udp::HEADER_LEN => (Transport::Udp, udp::HEADER_LEN),
            ip_proto::UDP => return Err(wire::Error::Truncated.into()),
            protocol => return Err(OffloadError::Unsupported { protocol }),
        };
        debug_assert!(l3_len >= ipv4::HEADER_LEN);
        Ok(Self {
            v6,
            transport,
            l3_len,
            header_len: l3_len + l4_len,
            len,
        })
    }
}
