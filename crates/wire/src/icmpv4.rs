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
