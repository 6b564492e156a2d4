//! ISAKMP messages as IKEv1 uses them (RFC 2408 §3, RFC 2409, RFC 2407 for the IPsec DOI,
//! RFC 3947 for NAT traversal): the fixed header, the generic payload chain, and owned
//! representations of the payloads main mode, quick mode and informational exchanges carry.
//!
//! The 28-byte header has the same layout as IKEv2's, so the zero-copy [`Header`] view is
//! shared with [`crate::ike`]; [`HeaderRepr::parse`] is where the versions part: it accepts
//! major version 1 only. When the header's encryption flag is set, everything after the header
//! is ciphertext that only the key owner can open; the caller decrypts it and then walks the
//! plaintext with [`parse_payloads`]. Encrypted bodies end in padding, so a chain may be
//! followed by bytes that belong to no payload.
//!
//! Several IKEv1 hashes cover payloads exactly as they were sent (the SA body in HASH_I, the
//! payloads after HASH in quick mode), so each parsed payload keeps the byte range it came
//! from ([`Parsed::span`]).

use core::fmt;
use core::ops::Range;

mod payload;

use crate::ike::generic::{Failure, emit_chain, payload_header};
pub use crate::ike::{HEADER_LEN, Header, PAYLOAD_HEADER_LEN};
pub use payload::{
    Attribute, Delete, Id, NatOa, Notify, Payload, Proposal, Sa, Transform, attr, id_type,
};

/// Exchange types (RFC 2408 §3.1, RFC 2409 §9).
pub mod exchange {
    /// Identity protection: main mode.
    pub const MAIN_MODE: u8 = 2;
    /// Aggressive mode: recognised only to be refused (it exposes a PSK-derived hash).
    pub const AGGRESSIVE: u8 = 4;
    pub const INFORMATIONAL: u8 = 5;
    pub const QUICK_MODE: u8 = 32;
}

/// Header flags (RFC 2408 §3.1).
pub mod flags {
    /// Everything after the header is encrypted.
    pub const ENCRYPTION: u8 = 0x01;
    pub const COMMIT: u8 = 0x02;
    pub const AUTH_ONLY: u8 = 0x04;
}

/// Payload type numbers (RFC 2408 §3.1, RFC 3947 §3).
pub mod payload_type {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 1;
    pub const PROPOSAL: u8 = 2;
    pub const TRANSFORM: u8 = 3;
    pub const KE: u8 = 4;
    pub const ID: u8 = 5;
    pub const CERT: u8 = 6;
    pub const CR: u8 = 7;
    pub const HASH: u8 = 8;
    pub const SIG: u8 = 9;
    pub const NONCE: u8 = 10;
    pub const NOTIFY: u8 = 11;
    pub const DELETE: u8 = 12;
    pub const VENDOR: u8 = 13;
    pub const NAT_D: u8 = 20;
    pub const NAT_OA: u8 = 21;
}

/// Protocol identifiers of the IPsec DOI (RFC 2407 §4.4.1).
pub mod protocol {
    pub const ISAKMP: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// The IPsec domain of interpretation (RFC 2407 §4.2) and its only situation v6gate uses.
pub const DOI_IPSEC: u32 = 1;
pub const SIT_IDENTITY_ONLY: u32 = 1;

/// Notify message types: ISAKMP errors (RFC 2408 §3.14.1), IPsec DOI status (RFC 2407
/// §4.6.3) and dead peer detection (RFC 3706 §5).
pub mod notify {
    pub const INVALID_PAYLOAD_TYPE: u16 = 1;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_EXCHANGE_TYPE: u16 = 7;
    pub const INVALID_FLAGS: u16 = 8;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const PAYLOAD_MALFORMED: u16 = 16;
    pub const INVALID_KEY_INFORMATION: u16 = 17;
    pub const INVALID_ID_INFORMATION: u16 = 18;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const INVALID_HASH_INFORMATION: u16 = 23;

    pub const RESPONDER_LIFETIME: u16 = 24576;
    pub const REPLAY_STATUS: u16 = 24577;
    pub const INITIAL_CONTACT: u16 = 24578;

    pub const R_U_THERE: u16 = 36136;
    pub const R_U_THERE_ACK: u16 = 36137;
}

/// Vendor IDs whose presence announces a capability.
pub mod vendor {
    /// RFC 3706 §5: dead peer detection, version 1.0.
    pub const DPD: [u8; 16] = [
        0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01,
        0x00,
    ];
    /// RFC 3947 §3: MD5("RFC 3947"), NAT traversal.
    pub const NAT_T_RFC3947: [u8; 16] = [
        0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45,
        0x2f,
    ];
}

/// Why an ISAKMP message was rejected. Each variant names the notify that reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before a length field says it should.
    Truncated,
    /// A length field is impossible (shorter than its own header, or overruns its container).
    BadLength,
    /// Major version is not 1.
    BadVersion(u8),
    /// A payload's contents are malformed (attribute overrun, bad ID length, ...).
    BadPayload(u8),
    /// A proposal or transform payload where only an SA body may hold one, or more nesting
    /// than a message of bounded size can legitimately carry.
    Misplaced(u8),
}

impl Error {
    /// The notify message type that reports this error to the peer (RFC 2408 §3.14.1).
    pub const fn notify_type(self) -> u16 {
        match self {
            Self::BadVersion(_) => notify::INVALID_MAJOR_VERSION,
            Self::Misplaced(_) => notify::INVALID_PAYLOAD_TYPE,
            Self::Truncated | Self::BadLength | Self::BadPayload(_) => notify::PAYLOAD_MALFORMED,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("ISAKMP message truncated"),
            Self::BadLength => f.write_str("ISAKMP length field out of range"),
            Self::BadVersion(v) => write!(f, "ISAKMP major version {v} is not 1"),
            Self::BadPayload(t) => write!(f, "malformed ISAKMP payload of type {t}"),
            Self::Misplaced(t) => write!(f, "ISAKMP payload of type {t} out of place"),
        }
    }
}

impl std::error::Error for Error {}

impl Failure for Error {
    fn truncated() -> Self {
        Self::Truncated
    }

    fn bad_length() -> Self {
        Self::BadLength
    }

    fn bad_payload(kind: u8) -> Self {
        Self::BadPayload(kind)
    }
}

impl Error {
    /// The shared header view's verdict, in ISAKMP's terms.
    const fn from_header(e: crate::ike::Error) -> Self {
        match e {
            crate::ike::Error::Truncated => Self::Truncated,
            _ => Self::BadLength,
        }
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// The parsed ISAKMP header. The cookies are the SPIs of the ISAKMP SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    pub initiator_cookie: u64,
    pub responder_cookie: u64,
    pub next_payload: u8,
    pub exchange_type: u8,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
}

impl HeaderRepr {
    /// Parses the header; a major version other than 1 is rejected (an IKEv2 message on the
    /// same port belongs to the other core).
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<Self> {
        header.check_len().map_err(Error::from_header)?;
        if header.major_version() != 1 {
            return Err(Error::BadVersion(header.major_version()));
        }
        Ok(Self {
            initiator_cookie: header.initiator_spi(),
            responder_cookie: header.responder_spi(),
            next_payload: header.next_payload(),
            exchange_type: header.exchange_type(),
            flags: header.flags(),
            message_id: header.message_id(),
            length: header.length(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with version 1.0; `length` is written as given.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_initiator_spi(self.initiator_cookie);
        header.set_responder_spi(self.responder_cookie);
        header.set_next_payload(self.next_payload);
        header.set_version(1, 0);
        header.set_exchange_type(self.exchange_type);
        header.set_flags(self.flags);
        header.set_message_id(self.message_id);
        header.set_length(self.length);
    }

    pub const fn is_encrypted(&self) -> bool {
        self.flags & flags::ENCRYPTION != 0
    }

    /// The header followed by `body`, with the length field set to match.
    pub fn emit_message(&self, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN + body.len()];
        let mut repr = *self;
        repr.length = u32::try_from(out.len()).unwrap_or(u32::MAX);
        repr.emit(&mut Header::new_unchecked(&mut out[..HEADER_LEN]));
        out[HEADER_LEN..].copy_from_slice(body);
        out
    }
}

/// A whole datagram: the header and the bytes after it (ciphertext when encrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: HeaderRepr,
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let view = Header::new_checked(bytes).map_err(Error::from_header)?;
        let header = HeaderRepr::parse(&view)?;
        Ok(Self {
            header,
            body: &bytes[HEADER_LEN..header.length as usize],
        })
    }
}

/// One payload of a chain and where its bytes (generic header included) lie in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub payload: Payload,
    pub span: Range<usize>,
}

/// The most payloads one message may carry. Real exchanges carry under a dozen; the bound
/// keeps a hostile chain of empty payloads from costing more than its bytes.
pub const MAX_PAYLOADS: usize = 64;

/// Parses a generic payload chain starting with a payload of type `first`. The chain ends at
/// a payload whose next-payload field is NONE; bytes after it (cipher padding) are ignored.
pub fn parse_payloads(first: u8, bytes: &[u8]) -> Result<Vec<Parsed>> {
    let mut out = Vec::new();
    let mut kind = first;
    let mut at = 0usize;
    while kind != payload_type::NONE {
        if out.len() == MAX_PAYLOADS {
            return Err(Error::BadPayload(kind));
        }
        if matches!(kind, payload_type::PROPOSAL | payload_type::TRANSFORM) {
            return Err(Error::Misplaced(kind));
        }
        let rest = &bytes[at..];
        let (next, _, len) = payload_header::<Error>(rest)?;
        let payload = Payload::parse(kind, &rest[PAYLOAD_HEADER_LEN..len])?;
        out.push(Parsed {
            payload,
            span: at..at + len,
        });
        at += len;
        kind = next;
    }
    Ok(out)
}

/// Appends the payloads as a chain to `out`; returns the type of the first (for the header).
pub fn emit_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
    emit_chain(payloads, Payload::kind, Payload::emit_body, out)
}

#[cfg(test)]
mod tests;
