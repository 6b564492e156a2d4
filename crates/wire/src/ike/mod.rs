//! IKEv2 messages (RFC 7296 §3): the fixed header, the generic payload chain and owned
//! representations of the payloads v6gate understands.
//!
//! Parsing is in two layers, like the rest of this crate: [`Header`] is a zero-copy view over
//! the 28-byte IKE header with a checked constructor, and [`Message`] is the parsed form of a
//! whole datagram. IKE messages are control-plane traffic of a few hundred bytes, so payload
//! representations own their bytes; that keeps the state machine free of borrow plumbing.
//!
//! An Encrypted payload (SK, §3.14) must be the last payload of a message; [`Message::parse`]
//! stops there and hands back the still-encrypted body with the type of the first inner payload,
//! so the caller can verify and decrypt it and then call [`parse_payloads`] on the plaintext.

use core::fmt;

pub(crate) mod generic;
mod payload;

pub use payload::{
    Attribute, Delete, Id, Ke, Notify, Payload, Proposal, TrafficSelector, Transform, id_type,
    ts_type,
};

/// Exchange types (RFC 7296 §3.1).
pub mod exchange {
    pub const IKE_SA_INIT: u8 = 34;
    pub const IKE_AUTH: u8 = 35;
    pub const CREATE_CHILD_SA: u8 = 36;
    pub const INFORMATIONAL: u8 = 37;
}

/// Header flags (RFC 7296 §3.1).
pub mod flags {
    /// Set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// "Version": the sender could speak a higher major version.
    pub const VERSION: u8 = 0x10;
    pub const RESPONSE: u8 = 0x20;
}

/// Payload type numbers (RFC 7296 §3.2).
pub mod payload_type {
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
    pub const CP: u8 = 47;
    pub const EAP: u8 = 48;
    /// Encrypted fragment (RFC 7383).
    pub const SKF: u8 = 53;
}

/// Security protocol identifiers used in SA, Notify and Delete payloads.
pub mod protocol {
    pub const IKE: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// Transform types and the transform IDs v6gate knows (RFC 7296 §3.3.2, IANA registry).
pub mod transform {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;

    pub const ENCR_3DES: u16 = 3;
    pub const ENCR_AES_CBC: u16 = 12;
    pub const ENCR_AES_GCM_16: u16 = 20;

    pub const PRF_HMAC_SHA1: u16 = 2;
    pub const PRF_HMAC_SHA2_256: u16 = 5;
    pub const PRF_HMAC_SHA2_384: u16 = 6;
    pub const PRF_HMAC_SHA2_512: u16 = 7;

    pub const AUTH_NONE: u16 = 0;
    pub const AUTH_HMAC_SHA1_96: u16 = 2;
    pub const AUTH_HMAC_SHA2_256_128: u16 = 12;
    pub const AUTH_HMAC_SHA2_384_192: u16 = 13;
    pub const AUTH_HMAC_SHA2_512_256: u16 = 14;

    pub const DH_NONE: u16 = 0;
    pub const DH_MODP1024: u16 = 2;
    pub const DH_MODP2048: u16 = 14;
    pub const DH_ECP256: u16 = 19;
    pub const DH_ECP384: u16 = 20;
    pub const DH_CURVE25519: u16 = 31;

    pub const ESN_NO: u16 = 0;
    pub const ESN_YES: u16 = 1;

    /// Transform attribute type "Key Length" (in bits), always TV format (§3.3.5).
    pub const ATTR_KEY_LENGTH: u16 = 14;
}

/// Notify message types (RFC 7296 §3.10.1). Values below 16384 are errors.
pub mod notify {
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    pub const INVALID_IKE_SPI: u16 = 4;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_SYNTAX: u16 = 7;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    pub const FAILED_CP_REQUIRED: u16 = 37;
    pub const TS_UNACCEPTABLE: u16 = 38;
    pub const INVALID_SELECTORS: u16 = 39;
    pub const TEMPORARY_FAILURE: u16 = 43;
    pub const CHILD_SA_NOT_FOUND: u16 = 44;

    pub const INITIAL_CONTACT: u16 = 16384;
    pub const SET_WINDOW_SIZE: u16 = 16385;
    pub const ADDITIONAL_TS_POSSIBLE: u16 = 16386;
    pub const IPCOMP_SUPPORTED: u16 = 16387;
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    pub const COOKIE: u16 = 16390;
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    pub const HTTP_CERT_LOOKUP_SUPPORTED: u16 = 16392;
    pub const REKEY_SA: u16 = 16393;
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    pub const MOBIKE_SUPPORTED: u16 = 16396;
    pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;

    /// Whether a notify type reports an error (§3.10.1: types 0..16383).
    pub const fn is_error(notify_type: u16) -> bool {
        notify_type < 16384
    }
}

/// Authentication methods (RFC 7296 §3.8).
pub mod auth_method {
    pub const RSA_SIG: u8 = 1;
    pub const SHARED_KEY_MIC: u8 = 2;
    pub const DSS_SIG: u8 = 3;
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// Why an IKE message was rejected. Each variant maps to the Notify a responder sends back
/// (see [`Error::notify_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before a length field says it should.
    Truncated,
    /// A length field is impossible (shorter than its own header, or overruns its container).
    BadLength,
    /// Major version is not 2 (§3.1: answer with INVALID_MAJOR_VERSION).
    BadVersion(u8),
    /// A payload whose type we do not know had the critical bit set (§2.5).
    UnsupportedCritical(u8),
    /// A payload's contents are malformed (bad selector type, attribute overrun, ...).
    BadPayload(u8),
    /// An SK payload that is not the last payload of the message.
    MisplacedEncrypted,
}

impl Error {
    /// The Notify message type that reports this error to the peer (§2.21.1).
    pub const fn notify_type(self) -> u16 {
        match self {
            Self::BadVersion(_) => notify::INVALID_MAJOR_VERSION,
            Self::UnsupportedCritical(_) => notify::UNSUPPORTED_CRITICAL_PAYLOAD,
            Self::Truncated | Self::BadLength | Self::BadPayload(_) | Self::MisplacedEncrypted => {
                notify::INVALID_SYNTAX
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("IKE message truncated"),
            Self::BadLength => f.write_str("IKE length field out of range"),
            Self::BadVersion(v) => write!(f, "IKE major version {v} is not 2"),
            Self::UnsupportedCritical(t) => write!(f, "unsupported critical payload type {t}"),
            Self::BadPayload(t) => write!(f, "malformed payload of type {t}"),
            Self::MisplacedEncrypted => f.write_str("encrypted payload is not the last payload"),
        }
    }
}

impl std::error::Error for Error {}

impl generic::Failure for Error {
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

pub type Result<T> = core::result::Result<T, Error>;

/// Byte ranges of the IKE header (RFC 7296 §3.1).
mod field {
    use core::ops::Range;
    pub const SPI_I: Range<usize> = 0..8;
    pub const SPI_R: Range<usize> = 8..16;
    pub const NEXT_PAYLOAD: usize = 16;
    pub const VERSION: usize = 17;
    pub const EXCHANGE: usize = 18;
    pub const FLAGS: usize = 19;
    pub const MESSAGE_ID: Range<usize> = 20..24;
    pub const LENGTH: Range<usize> = 24..28;
}

/// Length of the fixed IKE header.
pub const HEADER_LEN: usize = 28;
/// Length of the generic payload header (§3.2).
pub const PAYLOAD_HEADER_LEN: usize = 4;
/// The critical bit in the generic payload header.
pub const CRITICAL: u8 = 0x80;

/// A zero-copy view of an IKE header followed by its payloads.
#[derive(Debug, Clone)]
pub struct Header<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Header<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks that the buffer holds the 28-byte header and the whole message its length field
    /// announces. Trailing bytes after the message are tolerated (and ignored by `message`).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let header = Self::new_unchecked(buffer);
        header.check_len()?;
        Ok(header)
    }

    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let total = self.length() as usize;
        if total < HEADER_LEN {
            return Err(Error::BadLength);
        }
        if total > len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn initiator_spi(&self) -> u64 {
        be_u64(&self.buffer.as_ref()[field::SPI_I])
    }

    pub fn responder_spi(&self) -> u64 {
        be_u64(&self.buffer.as_ref()[field::SPI_R])
    }

    pub fn next_payload(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_PAYLOAD]
    }

    pub fn major_version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] >> 4
    }

    pub fn minor_version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION] & 0x0f
    }

    pub fn exchange_type(&self) -> u8 {
        self.buffer.as_ref()[field::EXCHANGE]
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn is_response(&self) -> bool {
        self.flags() & flags::RESPONSE != 0
    }

    pub fn is_initiator(&self) -> bool {
        self.flags() & flags::INITIATOR != 0
    }

    pub fn message_id(&self) -> u32 {
        be_u32(&self.buffer.as_ref()[field::MESSAGE_ID])
    }

    pub fn length(&self) -> u32 {
        be_u32(&self.buffer.as_ref()[field::LENGTH])
    }

    /// The whole message as its length field delimits it (header included).
    pub fn message(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.length() as usize]
    }

    /// The payload chain after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.length() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Header<T> {
    pub fn set_initiator_spi(&mut self, spi: u64) {
        self.buffer.as_mut()[field::SPI_I].copy_from_slice(&spi.to_be_bytes());
    }

    pub fn set_responder_spi(&mut self, spi: u64) {
        self.buffer.as_mut()[field::SPI_R].copy_from_slice(&spi.to_be_bytes());
    }

    pub fn set_next_payload(&mut self, value: u8) {
        self.buffer.as_mut()[field::NEXT_PAYLOAD] = value;
    }

    pub fn set_version(&mut self, major: u8, minor: u8) {
        self.buffer.as_mut()[field::VERSION] = (major << 4) | (minor & 0x0f);
    }

    pub fn set_exchange_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::EXCHANGE] = value;
    }

    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    pub fn set_message_id(&mut self, value: u32) {
        self.buffer.as_mut()[field::MESSAGE_ID].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_length(&mut self, value: u32) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }
}

/// The parsed IKE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRepr {
    pub initiator_spi: u64,
    pub responder_spi: u64,
    pub next_payload: u8,
    pub exchange_type: u8,
    pub flags: u8,
    pub message_id: u32,
    pub length: u32,
}

impl HeaderRepr {
    /// Parses the header; a major version other than 2 is rejected so that the caller can
    /// answer INVALID_MAJOR_VERSION (§2.5). The minor version is ignored as §2.5 asks.
    pub fn parse<T: AsRef<[u8]>>(header: &Header<T>) -> Result<Self> {
        header.check_len()?;
        if header.major_version() != 2 {
            return Err(Error::BadVersion(header.major_version()));
        }
        Ok(Self {
            initiator_spi: header.initiator_spi(),
            responder_spi: header.responder_spi(),
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

    /// Writes the header with version 2.0; `length` is written as given.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, header: &mut Header<T>) {
        header.set_initiator_spi(self.initiator_spi);
        header.set_responder_spi(self.responder_spi);
        header.set_next_payload(self.next_payload);
        header.set_version(2, 0);
        header.set_exchange_type(self.exchange_type);
        header.set_flags(self.flags);
        header.set_message_id(self.message_id);
        header.set_length(self.length);
    }

    pub fn is_response(&self) -> bool {
        self.flags & flags::RESPONSE != 0
    }

    pub fn is_initiator(&self) -> bool {
        self.flags & flags::INITIATOR != 0
    }
}

impl fmt::Display for HeaderRepr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IKE spi_i={:016x} spi_r={:016x} exch={} flags={:#04x} mid={} len={}",
            self.initiator_spi,
            self.responder_spi,
            self.exchange_type,
            self.flags,
            self.message_id,
            self.length
        )
    }
}

/// One payload of a chain, before its body is interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPayload<'a> {
    pub kind: u8,
    pub critical: bool,
    pub body: &'a [u8],
}

/// Iterates a generic payload chain (§3.2), starting with a payload of type `first`.
///
/// Yields each payload with its body; stops after a payload whose next-payload field is NONE,
/// or after an SK payload (whose next-payload names the first *inner* payload, not a sibling).
/// Bytes after the last payload are an error: a well-formed chain fills its container exactly.
#[derive(Debug, Clone)]
pub struct RawPayloads<'a> {
    next: u8,
    rest: &'a [u8],
    failed: bool,
}

impl<'a> RawPayloads<'a> {
    pub const fn new(first: u8, bytes: &'a [u8]) -> Self {
        Self {
            next: first,
            rest: bytes,
            failed: false,
        }
    }
}

impl<'a> Iterator for RawPayloads<'a> {
    /// `(payload, next-payload field)`
    type Item = Result<(RawPayload<'a>, u8)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.next == payload_type::NONE {
            if self.rest.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(Error::BadLength));
        }
        let kind = self.next;
        let step = generic::payload_header(self.rest).map(|(next, flags, len)| {
            let body = &self.rest[PAYLOAD_HEADER_LEN..len];
            self.rest = &self.rest[len..];
            let critical = flags & CRITICAL != 0;
            (
                RawPayload {
                    kind,
                    critical,
                    body,
                },
                next,
            )
        });
        match step {
            Ok((payload, next)) => {
                if kind == payload_type::SK {
                    // Nothing may follow SK; its next-payload describes the plaintext.
                    if !self.rest.is_empty() {
                        self.failed = true;
                        return Some(Err(Error::MisplacedEncrypted));
                    }
                    self.next = payload_type::NONE;
                } else {
                    self.next = next;
                }
                Some(Ok((payload, next)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// An Encrypted payload (§3.14) as found on the wire: IV, ciphertext and ICV, not yet split
/// (their sizes depend on the negotiated algorithms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encrypted {
    /// Type of the first payload inside the plaintext.
    pub first_payload: u8,
    /// Offset of the SK payload's generic header within the message: everything before the
    /// IV is authenticated (§3.14), so the caller needs it to check the ICV.
    pub offset: usize,
    /// IV || ciphertext || ICV.
    pub body: Vec<u8>,
}

/// A parsed IKE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: HeaderRepr,
    /// Unencrypted payloads, in wire order.
    pub payloads: Vec<Payload>,
    /// The SK payload, if the message has one (it is then the last payload).
    pub encrypted: Option<Encrypted>,
}

impl Message {
    /// Parses a datagram holding one IKE message (bytes after its length are ignored).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let view = Header::new_checked(bytes)?;
        let header = HeaderRepr::parse(&view)?;
        let mut payloads = Vec::new();
        let mut encrypted = None;
        let chain = view.payload();
        let mut iter = RawPayloads::new(header.next_payload, chain);
        while let Some(item) = iter.next() {
            let (raw, next) = item?;
            if raw.kind == payload_type::SK {
                let consumed = chain.len() - iter.rest.len();
                let offset = HEADER_LEN + consumed - raw.body.len() - PAYLOAD_HEADER_LEN;
                encrypted = Some(Encrypted {
                    first_payload: next,
                    offset,
                    body: raw.body.to_vec(),
                });
            } else if let Some(p) = Payload::parse(raw)? {
                payloads.push(p);
            }
        }
        Ok(Self {
            header,
            payloads,
            encrypted,
        })
    }

    /// Emits a message without an SK payload, fixing up next-payload and length fields.
    pub fn emit_plain(header: &HeaderRepr, payloads: &[Payload]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_LEN];
        let first = emit_payloads(payloads, &mut out);
        finish_header(header, first, &mut out);
        out
    }

    /// Notify payloads of the given type, in order.
    pub fn notifies(&self, notify_type: u16) -> impl Iterator<Item = &Notify> {
        notifies(&self.payloads, notify_type)
    }
}

/// Notify payloads of the given type within a payload list.
pub fn notifies(payloads: &[Payload], notify_type: u16) -> impl Iterator<Item = &Notify> {
    payloads.iter().filter_map(move |p| match p {
        Payload::Notify(n) if n.notify_type == notify_type => Some(n),
        _ => None,
    })
}

/// Writes `header` into `out[..HEADER_LEN]` with the given first payload and the length of `out`.
///
/// # Panics
/// If `out` is shorter than the header or longer than `u32::MAX` (messages are built by us).
pub fn finish_header(header: &HeaderRepr, first_payload: u8, out: &mut [u8]) {
    let len = u32::try_from(out.len()).expect("IKE message fits u32");
    let repr = HeaderRepr {
        next_payload: first_payload,
        length: len,
        ..*header
    };
    repr.emit(&mut Header::new_unchecked(&mut out[..HEADER_LEN]));
}

/// Appends the payload chain to `out`, returning the type of the first payload (NONE if empty).
pub fn emit_payloads(payloads: &[Payload], out: &mut Vec<u8>) -> u8 {
    generic::emit_chain(payloads, Payload::kind, Payload::emit_body, out)
}

/// Parses a plaintext payload chain (e.g. the decrypted contents of an SK payload).
pub fn parse_payloads(first: u8, bytes: &[u8]) -> Result<Vec<Payload>> {
    let mut out = Vec::new();
    for item in RawPayloads::new(first, bytes) {
        let (raw, _) = item?;
        if raw.kind == payload_type::SK {
            return Err(Error::MisplacedEncrypted);
        }
        if let Some(p) = Payload::parse(raw)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// Appends the generic header of an SK payload whose body (`body_len` bytes: IV, ciphertext,
/// ICV) the caller writes next. Returns the header's offset.
pub fn emit_encrypted_header(first_inner: u8, body_len: usize, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    let len = u16::try_from(PAYLOAD_HEADER_LEN + body_len).unwrap_or(u16::MAX);
    out.push(first_inner);
    out.push(0);
    out.extend_from_slice(&len.to_be_bytes());
    start
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Bounds-checked reader for payload bodies, failing with [`Error::BadPayload`].
pub(crate) type Reader<'a> = generic::Reader<'a, Error>;

#[cfg(test)]
mod tests;
