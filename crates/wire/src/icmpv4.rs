//! ICMP for IPv4 (RFC 792), with the Path MTU Discovery next-hop MTU (RFC 1191 §4).

use core::fmt;

use crate::field::be16;
use crate::{Error, Result, checksum};

/// ICMPv4 message types this crate represents.
pub mod msg_type {
    /// Echo Reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination Unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Echo Request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time Exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
}

/// Destination Unreachable code "fragmentation needed and DF set" (RFC 792), the PMTUD signal
/// whose next-hop MTU field RFC 1191 §4 defines.
pub const CODE_FRAG_NEEDED: u8 = 4;

mod field {
    use crate::field::{Field, Rest};

    pub(crate) const TYPE: usize = 0;
    pub(crate) const CODE: usize = 1;
    pub(crate) const CHECKSUM: Field = 2..4;
    pub(crate) const ECHO_IDENT: Field = 4..6;
    pub(crate) const ECHO_SEQNO: Field = 6..8;
    /// RFC 1191 §4: bytes 4..6 stay unused, bytes 6..8 carry the next-hop MTU.
    pub(crate) const UNUSED: Field = 4..6;
    pub(crate) const NEXT_HOP_MTU: Field = 6..8;
    pub(crate) const DATA: Rest = 8..;
}

/// Length of the ICMPv4 header (type, code, checksum and the 4-byte rest-of-header).
pub const HEADER_LEN: usize = field::DATA.start;

/// A view over an ICMPv4 message. The buffer must be the message exactly (the IPv4 payload): the
/// checksum covers all of it.
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

    /// Echo identifier.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// Echo sequence number.
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191 §4); 0 from pre-RFC 1191
    /// routers.
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::NEXT_HOP_MTU.start)
    }

    /// Everything after the 8-byte header (echo data, or the invoking packet of an error).
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// Whether the checksum over the whole message verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
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

    /// Sets the echo identifier.
    pub fn set_echo_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the echo sequence number.
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_SEQNO].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the next-hop MTU and zeroes the unused bytes before it.
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.buffer.as_mut()[field::UNUSED].fill(0);
        self.buffer.as_mut()[field::NEXT_HOP_MTU].copy_from_slice(&value.to_be_bytes());
    }

    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum);
    }

    /// Everything after the header, mutable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }
}

/// The meaning of an ICMPv4 message of a type v6gate handles.
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
    /// Destination Unreachable; `next_hop_mtu` is meaningful for [`CODE_FRAG_NEEDED`].
    DstUnreachable {
        /// Code (RFC 792, RFC 1812 §5.2.7.1).
        code: u8,
        /// Next-hop MTU (RFC 1191 §4).
        next_hop_mtu: u16,
        /// The invoking packet's header and leading payload.
        data: &'a [u8],
    },
    /// Time Exceeded.
    TimeExceeded {
        /// 0: TTL exceeded in transit, 1: reassembly time exceeded.
        code: u8,
        /// The invoking packet's header and leading payload.
        data: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a message, verifying its checksum. Other types, and echo messages with a nonzero
    /// code, are [`Error::Unrecognized`].
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum() {
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
            (msg_type::DST_UNREACHABLE, code) => Ok(Self::DstUnreachable {
                code,
                next_hop_mtu: packet.next_hop_mtu(),
                data,
            }),
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
                | Self::DstUnreachable { data, .. }
                | Self::TimeExceeded { data, .. } => data.len(),
            }
    }

    /// Writes the message and its checksum. The packet's buffer must be exactly
    /// [`buffer_len`](Self::buffer_len) bytes, since the checksum covers all of it.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
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
            Self::DstUnreachable {
                code,
                next_hop_mtu,
                data,
            } => {
                packet.set_msg_type(msg_type::DST_UNREACHABLE);
                packet.set_code(code);
                packet.set_next_hop_mtu(next_hop_mtu);
                data
            }
            Self::TimeExceeded { code, data } => {
                packet.set_msg_type(msg_type::TIME_EXCEEDED);
                packet.set_code(code);
                packet.buffer.as_mut()[field::UNUSED.start..field::NEXT_HOP_MTU.end].fill(0);
                data
            }
        };
        packet.data_mut()[..data.len()].copy_from_slice(data);
        packet.fill_checksum();
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
                "ICMPv4 echo request id={ident} seq={seq_no} len={}",
                data.len()
            ),
            Self::EchoReply {
                ident,
                seq_no,
                data,
            } => write!(
                f,
                "ICMPv4 echo reply id={ident} seq={seq_no} len={}",
                data.len()
            ),
            Self::DstUnreachable {
                code,
                next_hop_mtu,
                data,
            } => write!(
                f,
                "ICMPv4 destination unreachable code={code} mtu={next_hop_mtu} len={}",
                data.len()
            ),
            Self::TimeExceeded { code, data } => {
                write!(f, "ICMPv4 time exceeded code={code} len={}", data.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;
    use proptest::prelude::*;

    const ECHO_REQUEST: [u8; 19] = hex!("0800e92cbeef00077636676174652d70696e67");
    /// Fragmentation needed, next-hop MTU 1280, quoting a 1500-byte TCP packet's header.
    const FRAG_NEEDED: [u8; 28] = hex!("03041b0c00000500 450005dc000040004006abcdc6336401cb007109");
    const TIME_EXCEEDED: [u8; 12] = hex!("0b00afe3000000004500001c");

    fn round_trip(bytes: &[u8], expected: Repr<'_>) {
        let p = Packet::new_checked(bytes).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p).unwrap(), expected);
        assert_eq!(expected.buffer_len(), bytes.len());
        let mut buf = vec![0xa5u8; expected.buffer_len()];
        expected.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf, bytes);
    }

    #[test]
    fn echo_request_known_bytes() {
        let p = Packet::new_checked(&ECHO_REQUEST[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.code(), p.checksum()),
            (msg_type::ECHO_REQUEST, 0, 0xe92c)
        );
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0xbeef, 7));
        assert_eq!(p.data(), b"v6gate-ping");
        round_trip(
            &ECHO_REQUEST,
            Repr::EchoRequest {
                ident: 0xbeef,
                seq_no: 7,
                data: b"v6gate-ping",
            },
        );
    }

    #[test]
    fn frag_needed_known_bytes() {
        let p = Packet::new_checked(&FRAG_NEEDED[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.code()),
            (msg_type::DST_UNREACHABLE, CODE_FRAG_NEEDED)
        );
        assert_eq!(p.next_hop_mtu(), 1280);
        round_trip(
            &FRAG_NEEDED,
            Repr::DstUnreachable {
                code: CODE_FRAG_NEEDED,
                next_hop_mtu: 1280,
                data: &FRAG_NEEDED[8..],
            },
        );
    }

    #[test]
    fn time_exceeded_known_bytes() {
        round_trip(
            &TIME_EXCEEDED,
            Repr::TimeExceeded {
                code: 0,
                data: &TIME_EXCEEDED[8..],
            },
        );
    }

    #[test]
    fn echo_reply_is_request_with_type_zero() {
        let repr = Repr::EchoReply {
            ident: 0xbeef,
            seq_no: 7,
            data: b"v6gate-ping",
        };
        let mut buf = [0xa5u8; 19];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[0], msg_type::ECHO_REPLY);
        assert_eq!(buf[4..], ECHO_REQUEST[4..]);
        // Changing type 8 to 0 changes the first word by 0x0800.
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 0xe92c + 0x0800);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(),
            repr
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&ECHO_REQUEST[..len]),
                Err(Error::Truncated)
            );
        }
        // Longer truncations are well-formed views but fail the checksum.
        for len in HEADER_LEN..ECHO_REQUEST.len() {
            let p = Packet::new_checked(&ECHO_REQUEST[..len]).unwrap();
            assert_eq!(Repr::parse(&p), Err(Error::BadChecksum), "len {len}");
        }
    }

    #[test]
    fn rejects_unknown_types_and_codes() {
        let mut redirect = [5u8, 1, 0, 0, 198, 51, 100, 1];
        let mut p = Packet::new_unchecked(&mut redirect[..]);
        p.fill_checksum();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&redirect[..]).unwrap()),
            Err(Error::Unrecognized)
        );
        let mut echo = ECHO_REQUEST;
        let mut p = Packet::new_unchecked(&mut echo[..]);
        p.set_code(1);
        p.fill_checksum();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&echo[..]).unwrap()),
            Err(Error::Unrecognized)
        );
    }

    #[test]
    fn display_names_the_message() {
        let repr = Repr::DstUnreachable {
            code: 4,
            next_hop_mtu: 1280,
            data: &[],
        };
        assert_eq!(
            repr.to_string(),
            "ICMPv4 destination unreachable code=4 mtu=1280 len=0"
        );
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            kind in 0u8..4, a in any::<u16>(), b in any::<u16>(), code in any::<u8>(),
            data in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let data = &data[..];
            let repr = match kind {
                0 => Repr::EchoRequest { ident: a, seq_no: b, data },
                1 => Repr::EchoReply { ident: a, seq_no: b, data },
                2 => Repr::DstUnreachable { code, next_hop_mtu: a, data },
                _ => Repr::TimeExceeded { code, data },
            };
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let parsed = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
            prop_assert_eq!(parsed, repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
            }
        }
    }
}
