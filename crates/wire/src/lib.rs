//! Zero-copy views and `Repr` parse/emit for the packet formats v6gate speaks.
//!
//! The contract follows smoltcp's wire module:
//!
//! * A `Packet<T: AsRef<[u8]>>` is a view over a buffer. `new_checked` validates every length
//!   field against the buffer, after which no getter can panic; `new_unchecked` skips that and is
//!   meant for emitting into buffers the caller sized with `Repr::buffer_len`.
//! * Getters live on `T: AsRef<[u8]>`, setters on `T: AsMut<[u8]>`; both use the byte ranges in
//!   each module's private `field` module.
//! * A `Repr` is the owned, validated meaning of a packet: `Repr::parse` checks semantics
//!   (checksums, supported types), `Repr::emit` writes every field it owns so that junk already in
//!   the buffer never leaks onto the wire.
//!
//! Parsers reject malformed input with a typed error and never panic. The IP-layer views
//! (everything but the IKE messages) never allocate, so the forwarding path can use them per
//! packet.
#![forbid(unsafe_code)]

use core::fmt;

pub mod checksum;
pub mod esp;
pub mod icmpv4;
pub mod icmpv6;
pub mod ike;
pub mod ikev1;
pub mod ipv4;
pub mod ipv6;
pub mod ipv6_ext;
pub mod tcp;
pub mod udp;
pub mod virtio;

pub use icmpv4::{Packet as Icmpv4Packet, Repr as Icmpv4Repr};
pub use icmpv6::{Packet as Icmpv6Packet, Repr as Icmpv6Repr};
pub use ipv4::{Packet as Ipv4Packet, Repr as Ipv4Repr};
pub use ipv6::{Packet as Ipv6Packet, Repr as Ipv6Repr};
pub use tcp::{Packet as TcpPacket, Repr as TcpRepr};
pub use udp::{Packet as UdpPacket, Repr as UdpRepr};

/// Why a buffer was not accepted as a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before a fixed-size header or a declared length does.
    Truncated,
    /// The IP version nibble is not the one this view expects.
    BadVersion,
    /// A header-length field is below its minimum or runs past the buffer.
    BadHeaderLen,
    /// A total/payload length field is inconsistent with the header or the buffer.
    BadLength,
    /// The checksum does not verify.
    BadChecksum,
    /// A TLV option (IPv6 extension header option, TCP option) is malformed.
    BadOption,
    /// Well-formed, but a message type or layout this crate does not represent.
    Unrecognized,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Truncated => "truncated packet",
            Self::BadVersion => "wrong IP version",
            Self::BadHeaderLen => "bad header length",
            Self::BadLength => "bad length field",
            Self::BadChecksum => "bad checksum",
            Self::BadOption => "malformed option",
            Self::Unrecognized => "unrecognized packet type",
        })
    }
}

impl std::error::Error for Error {}

/// Shorthand for results whose error is a wire [`Error`].
pub type Result<T> = core::result::Result<T, Error>;

/// IANA "Assigned Internet Protocol Numbers", as carried in the IPv4 Protocol and IPv6 Next
/// Header fields.
pub mod ip_proto {
    /// IPv6 Hop-by-Hop Options (RFC 8200 §4.3).
    pub const HOPOPTS: u8 = 0;
    /// ICMP for IPv4 (RFC 792).
    pub const ICMP: u8 = 1;
    /// IPv4 encapsulation (RFC 2003; the inner family of RFC 2473 `ipip6`).
    pub const IPIP: u8 = 4;
    /// TCP (RFC 9293).
    pub const TCP: u8 = 6;
    /// UDP (RFC 768).
    pub const UDP: u8 = 17;
    /// IPv6 encapsulation (RFC 2473).
    pub const IPV6: u8 = 41;
    /// IPv6 Routing header (RFC 8200 §4.4).
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header (RFC 8200 §4.5).
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating Security Payload (RFC 4303).
    pub const ESP: u8 = 50;
    /// Authentication Header (RFC 4302).
    pub const AH: u8 = 51;
    /// ICMP for IPv6 (RFC 4443).
    pub const ICMPV6: u8 = 58;
    /// No next header (RFC 8200 §4.7).
    pub const NONE: u8 = 59;
    /// IPv6 Destination Options (RFC 8200 §4.6).
    pub const DSTOPTS: u8 = 60;
}

/// Byte ranges of fixed-position header fields.
mod field {
    pub(crate) type Field = core::ops::Range<usize>;
    pub(crate) type Rest = core::ops::RangeFrom<usize>;

    pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([buf[at], buf[at + 1]])
    }

    pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_distinct_messages() {
        let all = [
            Error::Truncated,
            Error::BadVersion,
            Error::BadHeaderLen,
            Error::BadLength,
            Error::BadChecksum,
            Error::BadOption,
            Error::Unrecognized,
        ];
        let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
        for (i, a) in texts.iter().enumerate() {
            assert!(!a.is_empty());
            for b in &texts[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let boxed: Box<dyn std::error::Error> = Box::new(Error::BadChecksum);
        assert_eq!(boxed.to_string(), "bad checksum");
    }
}
