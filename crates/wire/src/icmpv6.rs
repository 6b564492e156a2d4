//! ICMP for IPv6 (RFC 4443).

use core::fmt;
use std::net::Ipv6Addr;

use crate::field::{be16, be32};
use crate::{Error, Result, checksum, ip_proto};

/// ICMPv6 message types this crate knows.
pub mod msg_type {
    /// Destination Unreachable (RFC 4443 §3.1).
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet Too Big (RFC 4443 §3.2).
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time Exceeded (RFC 4443 §3.3).
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter Problem (RFC 4443 §3.4).
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo Request (RFC 4443 §4.1).
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo Reply (RFC 4443 §4.2).
    pub const ECHO_REPLY: u8 = 129;
}

mod field {
    use crate::field::{Field, Rest};

    pub(crate) const TYPE: usize = 0;
    pub(crate) const CODE: usize = 1;
    pub(crate) const CHECKSUM: Field = 2..4;
    /// Message body's first word: MTU, pointer, echo ident/seq, or unused.
    pub(crate) const BODY: Field = 4..8;
    pub(crate) const MTU: Field = 4..8;
    pub(crate) const ECHO_IDENT: Field = 4..6;
    pub(crate) const ECHO_SEQNO: Field = 6..8;
    pub(crate) const DATA: Rest = 8..;
}

/// Length of the ICMPv6 header including the first 4 bytes of message body.
pub const HEADER_LEN: usize = field::DATA.start;

/// A view over an ICMPv6 message. The buffer must be the message exactly (the upper-layer
/// payload): the checksum covers all of it plus the IPv6 pseudo-header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; getters may panic on a short one.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks for the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type, see [`msg_type`].
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    /// Message code.
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// Checksum field as stored.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// MTU of a Packet Too Big message (RFC 4443 §3.2).
    pub fn mtu(&self) -> u32 {
        be32(self.buffer.as_ref(), field::MTU.start)
    }

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// Everything after the 8-byte header (echo data, or as much of the invoking packet as fits).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// Whether the checksum over the pseudo-header (RFC 8200 §8.1) and message verifies.
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        sum(src, dst, self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    pub fn set_msg_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::TYPE] = value;
    }

    /// Sets the code.
    pub fn set_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field as stored.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the MTU of a Packet Too Big message.
    pub fn set_mtu(&mut self, value: u32) {
        self.buffer.as_mut()[field::MTU].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_SEQNO].copy_from_slice(&value.to_be_bytes());
    }

    /// Computes and stores the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let sum = sum(src, dst, self.buffer.as_ref());
        self.set_checksum(!sum);
    }

    /// Everything after the header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }
}

fn sum(src: &Ipv6Addr, dst: &Ipv6Addr, message: &[u8]) -> u16 {
    // Messages longer than u32::MAX cannot exist; saturating keeps this total anyway.
    let len = u32::try_from(message.len()).unwrap_or(u32::MAX);
    checksum::combine(&[
        checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, len),
        checksum::data(message),
    ])
}

/// The meaning of an ICMPv6 message of a type v6gate handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr<'a> {
    /// Echo Request (code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Echo Reply (code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Echo data.
        data: &'a [u8],
    },
    /// Packet Too Big (code 0), the IPv6 PMTUD signal (RFC 8201).
    PacketTooBig {
        /// MTU of the next-hop link.
        mtu: u32,
        /// As much of the invoking packet as fits.
        data: &'a [u8],
    },
    /// Destination Unreachable.
    DstUnreachable {
        /// Code (RFC 4443 §3.1).
        code: u8,
        /// As much of the invoking packet as fits.
        data: &'a [u8],
    },
    /// Time Exceeded.
    TimeExceeded {
        /// 0: hop limit exceeded in transit, 1: reassembly time exceeded.
        code: u8,
        /// As much of the invoking packet as fits.
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a message, verifying its checksum against the given addresses. Other types, and
    /// echo or Packet Too Big messages with a nonzero code, are [`Error::Unrecognized`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        packet: &Packet<&'a T>,
    ) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum(src, dst) {
            return Err(Error::BadChecksum);
        }
        let data = &packet.buffer.as_ref()[field::DATA];
        match (packet.msg_type(), packet.code()) {
            (msg_type::ECHO_REQUEST, 0) => Ok(Self::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (msg_type::ECHO_REPLY, 0) => Ok(Self::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            (msg_type::PACKET_TOO_BIG, 0) => Ok(Self::PacketTooBig {
                mtu: packet.mtu(),
                data,
            }),
            (msg_type::DST_UNREACHABLE, code) => Ok(Self::DstUnreachable { code, data }),
            (msg_type::TIME_EXCEEDED, code) => Ok(Self::TimeExceeded { code, data }),
            _ => Err(Error::Unrecognized),
        }
    }

    /// Length of the message this emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Self::EchoRequest { data, .. }
                | Self::EchoReply { data, .. }
                | Self::PacketTooBig { data, .. }
                | Self::DstUnreachable { data, .. }
                | Self::TimeExceeded { data, .. } => data.len(),
            }
    }

    /// Writes the message and its checksum. The packet's buffer must be exactly
    /// [`buffer_len`](Self::buffer_len) bytes, since the checksum covers all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        src: &Ipv6Addr,
        dst: &Ipv6Addr,
        packet: &mut Packet<T>,
    ) {
        let data = match *self {
            Self::EchoRequest {
                ident,
                seq_no,
                data,
            }
            | Self::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let kind = if matches!(self, Self::EchoRequest { .. }) {
                    msg_type::ECHO_REQUEST
                } else {
                    msg_type::ECHO_REPLY
                };
                packet.set_msg_type(kind);
                packet.set_code(0);
                packet.set_echo_ident(ident);
                packet.set_echo_seq_no(seq_no);
                data
            }
            Self::PacketTooBig { mtu, data } => {
                packet.set_msg_type(msg_type::PACKET_TOO_BIG);
                packet.set_code(0);
                packet.set_mtu(mtu);
                data
            }
            Self::DstUnreachable { code, data } | Self::TimeExceeded { code, data } => {
                let kind = if matches!(self, Self::DstUnreachable { .. }) {
                    msg_type::DST_UNREACHABLE
                } else {
                    msg_type::TIME_EXCEEDED
                };
                packet.set_msg_type(kind);
                packet.set_code(code);
                packet.buffer.as_mut()[field::BODY].fill(0);
                data
            }
        };
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum(src, dst);
    }
}

impl fmt::Display for Repr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EchoRequest {
                ident,
                seq_no,
                data,
            } => write!(
                f,
                "ICMPv6 echo request id={ident} seq={seq_no} len={}",
                data.len()
            ),
            Self::EchoReply {
                ident,
                seq_no,
                data,
            } => write!(
                f,
                "ICMPv6 echo reply id={ident} seq={seq_no} len={}",
                data.len()
            ),
            Self::PacketTooBig { mtu, data } => {
                write!(f, "ICMPv6 packet too big mtu={mtu} len={}", data.len())
            }
            Self::DstUnreachable { code, data } => write!(
                f,
                "ICMPv6 destination unreachable code={code} len={}",
                data.len()
            ),
            Self::TimeExceeded { code, data } => {
                write!(f, "ICMPv6 time exceeded code={code} len={}", data.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;
    use proptest::prelude::*;

    fn src() -> Ipv6Addr {
        "2001:db8:1::1".parse().unwrap()
    }

    fn dst() -> Ipv6Addr {
        "2001:db8:2::2".parse().unwrap()
    }

    // ICMPv6 payloads of captures from 2001:db8:1::1 to 2001:db8:2::2.
    const PACKET_TOO_BIG: [u8; 16] = hex!("020002f500000500 6000000000083a40");
    const ECHO_REQUEST: [u8; 13] = hex!("8000cd2942420003 70696e6736");
    const UNREACHABLE: [u8; 12] = hex!("0103433e00000000 60000000");

    fn round_trip(bytes: &[u8], expected: Repr<'_>) {
        let p = Packet::new_checked(bytes).unwrap();
        assert!(p.verify_checksum(&src(), &dst()));
        assert_eq!(Repr::parse(&src(), &dst(), &p).unwrap(), expected);
        assert_eq!(expected.buffer_len(), bytes.len());
        let mut buf = vec![0xa5u8; expected.buffer_len()];
        expected.emit(&src(), &dst(), &mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
    }

    #[test]
    fn packet_too_big_known_bytes() {
        let p = Packet::new_checked(&PACKET_TOO_BIG[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.code(), p.checksum()),
            (msg_type::PACKET_TOO_BIG, 0, 0x02f5)
        );
        assert_eq!(p.mtu(), 1280);
        round_trip(
            &PACKET_TOO_BIG,
            Repr::PacketTooBig {
                mtu: 1280,
                data: &PACKET_TOO_BIG[8..],
            },
        );
    }

    #[test]
    fn echo_request_known_bytes() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(
            (p.echo_ident(), p.echo_seq_no(), p.data()),
            (0x4242, 3, &b"ping6"[..])
        );
        round_trip(
            &ECHO_REQUEST,
            Repr::EchoRequest {
                ident: 0x4242,
                seq_no: 3,
                data: b"ping6",
            },
        );
    }

    #[test]
    fn unreachable_known_bytes() {
        round_trip(
            &UNREACHABLE,
            Repr::DstUnreachable {
                code: 3,
                data: &UNREACHABLE[8..],
            },
        );
    }

    #[test]
    fn checksum_covers_the_pseudo_header() {
        let p = Packet::new_checked(&PACKET_TOO_BIG[..]).unwrap();
        assert!(!p.verify_checksum(&dst(), &"2001:db8:2::3".parse().unwrap()));
        assert_eq!(
            Repr::parse(&src(), &"2001:db8:2::3".parse().unwrap(), &p),
            Err(Error::BadChecksum)
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET_TOO_BIG[..len]),
                Err(Error::Truncated)
            );
        }
        for len in HEADER_LEN..PACKET_TOO_BIG.len() {
            let p = Packet::new_checked(&PACKET_TOO_BIG[..len]).unwrap();
            assert_eq!(
                Repr::parse(&src(), &dst(), &p),
                Err(Error::BadChecksum),
                "len {len}"
            );
        }
    }

    #[test]
    fn rejects_unrepresented_types() {
        let mut param = [msg_type::PARAM_PROBLEM, 0, 0, 0, 0, 0, 0, 6];
        Packet::new_unchecked(&mut param[..]).fill_checksum(&src(), &dst());
        let p = Packet::new_checked(&param[..]).unwrap();
        assert_eq!(Repr::parse(&src(), &dst(), &p), Err(Error::Unrecognized));
        let mut ptb = PACKET_TOO_BIG;
        let mut p = Packet::new_unchecked(&mut ptb[..]);
        p.set_code(1);
        p.fill_checksum(&src(), &dst());
        let p = Packet::new_checked(&ptb[..]).unwrap();
        assert_eq!(Repr::parse(&src(), &dst(), &p), Err(Error::Unrecognized));
    }

    #[test]
    fn display_names_the_message() {
        let repr = Repr::PacketTooBig {
            mtu: 1280,
            data: &[0; 4],
        };
        assert_eq!(repr.to_string(), "ICMPv6 packet too big mtu=1280 len=4");
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            kind in 0u8..5, a in any::<u16>(), b in any::<u16>(), code in any::<u8>(),
            mtu in any::<u32>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
            let data = &data[..];
            let repr = match kind {
                0 => Repr::EchoRequest { ident: a, seq_no: b, data },
                1 => Repr::EchoReply { ident: a, seq_no: b, data },
                2 => Repr::PacketTooBig { mtu, data },
                3 => Repr::DstUnreachable { code, data },
                _ => Repr::TimeExceeded { code, data },
            };
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&s, &d, &mut Packet::new_unchecked(&mut buf[..]));
            let parsed = Repr::parse(&s, &d, &Packet::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(parsed, repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&src(), &dst(), &p);
            }
        }
    }
}
