//! ESP security associations (RFC 4303): sealing and opening packets into caller buffers.
//!
//! Suites: AES-GCM with a 16-byte ICV (RFC 4106: 4-byte salt from the key material,
//! 8-byte explicit IV), and AES-CBC (RFC 3602) or, for old peers only, 3DES-CBC (RFC 2451)
//! with HMAC-SHA1-96 (RFC 2404) or HMAC-SHA2-256-128 (RFC 4868). Keys come from IKE; this
//! module only frames and protects.
//!
//! The IV is derived from the sequence number, so sealing needs no randomness: for GCM the
//! 64-bit sequence number itself (unique per key, RFC 4106 §3.1); for CBC the encryption of
//! a block holding it (unpredictable without the key, NIST SP 800-38A Appendix C).

mod drops;
pub mod paths;
mod replay;
mod too_big;
pub mod tunnel;

use core::fmt;
use std::collections::HashMap;

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, block_padding::NoPadding};
use des::TdesEde3;
use hmac::{Hmac, Mac};
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use sha1::Sha1;
use sha2::Sha256;
use wire::esp::Framing;

pub use paths::{EspPathConfig, EspPathEvent, EspPaths};
pub use replay::{ReplayWindow, WINDOW};
pub use too_big::{TooBig, too_big_v4, too_big_v6};
pub use tunnel::{
    EspBatch, EspDestination, EspDrop, EspEvent, EspStats, EspTunnel, EspTunnelConfig, UdpKind,
    classify_udp,
};

const HEADER_LEN: usize = wire::esp::HEADER_LEN;

/// Integrity algorithm for CBC suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integrity {
    HmacSha1_96,
    HmacSha256_128,
}

impl Integrity {
    pub const fn key_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 20,
            Self::HmacSha256_128 => 32,
        }
    }

    pub const fn icv_len(self) -> usize {
        match self {
            Self::HmacSha1_96 => 12,
            Self::HmacSha256_128 => 16,
        }
    }
}

/// The protection an SA applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-GCM-16 with a 128- or 256-bit key.
    AesGcm16 { key_bits: u16 },
    /// AES-CBC with a 128-, 192- or 256-bit key, plus HMAC.
    AesCbc { key_bits: u16, integrity: Integrity },
    /// 3DES-CBC (RFC 2451) plus HMAC, for peers that know nothing better; its 8-byte block
    /// wears out after some GB under one key (SWEET32), which rekeying by time bounds.
    TripleDesCbc { integrity: Integrity },
}

impl Suite {
    /// Encryption key material: the AES key, plus the 4-byte salt for GCM.
    pub const fn encr_key_len(self) -> usize {
        match self {
            Self::AesGcm16 { key_bits } => key_bits as usize / 8 + 4,
            Self::AesCbc { key_bits, .. } => key_bits as usize / 8,
            Self::TripleDesCbc { .. } => 24,
        }
    }

    pub const fn integ_key_len(self) -> usize {
        match self {
            Self::AesGcm16 { .. } => 0,
            Self::AesCbc { integrity, .. } | Self::TripleDesCbc { integrity } => {
                integrity.key_len()
            }
        }
    }

    pub const fn iv_len(self) -> usize {
        match self {
            Self::AesGcm16 { .. } | Self::TripleDesCbc { .. } => 8,
            Self::AesCbc { .. } => 16,
        }
    }

    pub const fn icv_len(self) -> usize {
        match self {
            Self::AesGcm16 { .. } => 16,
            Self::AesCbc { integrity, .. } | Self::TripleDesCbc { integrity } => {
                integrity.icv_len()
            }
        }
    }

    /// The cipher block: what the encrypted part is padded to (AES-GCM is a counter mode).
    const fn block_len(self) -> usize {
        match self {
            Self::AesGcm16 { .. } => 1,
            Self::AesCbc { .. } => 16,
            Self::TripleDesCbc { .. } => 8,
        }
    }

    /// How the suite sizes its packets.
    pub const fn framing(self) -> Framing {
        Framing::new(self.iv_len(), self.icv_len(), self.block_len())
    }

    /// What the encrypted part (payload, padding, pad length, next header) must align to.
    const fn align(self) -> usize {
        self.framing().align
    }

    /// The largest payload whose ESP packet fits `room` bytes (what the outer headers leave
    /// of a link MTU).
    pub const fn max_payload(self, room: usize) -> usize {
        self.framing().max_payload(room)
    }

    /// Bytes ESP adds around a payload of `len` bytes.
    pub const fn overhead(self, len: usize) -> usize {
        self.framing().overhead(len)
    }
}

/// Why an ESP operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EspError {
    /// Key material of the wrong length for the suite.
    BadKey,
    /// The output buffer cannot hold the result.
    BufferTooSmall,
    /// Shorter than header, IV, one block and ICV; or ciphertext not block aligned.
    Malformed,
    /// The packet's SPI is not this SA's (or not in the table).
    UnknownSpi(u32),
    /// Sequence number zero, older than the window, or already received.
    Replay,
    /// The ICV did not verify: tampered, or keys do not match.
    Authentication,
    /// Padding bytes or pad length inconsistent after successful authentication.
    BadPadding,
    /// The 32-bit sequence space is used up without ESN: the SA must be rekeyed.
    SequenceExhausted,
}

impl fmt::Display for EspError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadKey => f.write_str("ESP key material has the wrong length"),
            Self::BufferTooSmall => f.write_str("output buffer too small for ESP packet"),
            Self::Malformed => f.write_str("malformed ESP packet"),
            Self::UnknownSpi(spi) => write!(f, "no ESP SA for SPI {spi:#010x}"),
            Self::Replay => f.write_str("ESP sequence number replayed or outside the window"),
            Self::Authentication => f.write_str("ESP integrity check failed"),
            Self::BadPadding => f.write_str("ESP padding is inconsistent"),
            Self::SequenceExhausted => f.write_str("ESP sequence numbers exhausted; rekey needed"),
        }
    }
}

impl std::error::Error for EspError {}

/// Cipher state built once per SA.
#[derive(Clone)]
enum Cipher {
    /// AES-GCM from ring, whose assembly (AES-NI with aggregated CLMUL GHASH) seals several
    /// times faster than a block-at-a-time GHASH: at tunnel speeds GCM was most of the
    /// packet thread's own time.
    Gcm(Box<LessSafeKey>, [u8; 4]),
    /// Key schedule and keyed HMAC state are built once; each packet clones them.
    Cbc { key: Box<CbcKey>, mac: Box<MacKey> },
}

/// An expanded block cipher key for CBC and for deriving CBC IVs.
#[derive(Clone)]
enum CbcKey {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
    Tdes(TdesEde3),
}

macro_rules! with_cipher {
    ($key:expr, $c:ident => $body:expr) => {
        match $key {
            CbcKey::A128($c) => $body,
            CbcKey::A192($c) => $body,
            CbcKey::A256($c) => $body,
            CbcKey::Tdes($c) => $body,
        }
    };
}

/// The longest cipher block here (AES).
const MAX_BLOCK: usize = 16;

impl CbcKey {
    fn new(suite: Suite, key: &[u8]) -> Result<Self, EspError> {
        let bad = |_| EspError::BadKey;
        Ok(match suite {
            Suite::AesCbc { key_bits: 128, .. } => {
                Self::A128(Aes128::new_from_slice(key).map_err(bad)?)
            }
            Suite::AesCbc { key_bits: 192, .. } => {
                Self::A192(Aes192::new_from_slice(key).map_err(bad)?)
            }
            Suite::AesCbc { key_bits: 256, .. } => {
                Self::A256(Aes256::new_from_slice(key).map_err(bad)?)
            }
            Suite::TripleDesCbc { .. } => Self::Tdes(TdesEde3::new_from_slice(key).map_err(bad)?),
            _ => return Err(EspError::BadKey),
        })
    }

    /// The CBC IV for a sequence number: for AES the block "ESP\0" 0000 seq, for 3DES the
    /// sequence number alone, encrypted under the key; unpredictable without the key and never
    /// repeated under it. Returns the buffer and the IV's length.
    fn iv(&self, seq: u64) -> ([u8; MAX_BLOCK], usize) {
        let mut out = [0u8; MAX_BLOCK];
        let mut block = aes::Block::default();
        block[..4].copy_from_slice(b"ESP\0");
        block[8..].copy_from_slice(&seq.to_be_bytes());
        match self {
            Self::A128(c) => c.encrypt_block(&mut block),
            Self::A192(c) => c.encrypt_block(&mut block),
            Self::A256(c) => c.encrypt_block(&mut block),
            Self::Tdes(c) => {
                let mut block = des::cipher::Block::<TdesEde3>::from(seq.to_be_bytes());
                c.encrypt_block(&mut block);
                out[..8].copy_from_slice(&block);
                return (out, 8);
            }
        }
        out.copy_from_slice(&block);
        (out, MAX_BLOCK)
    }

    /// CBC-encrypts whole blocks in place.
    fn encrypt(&self, iv: &[u8], buf: &mut [u8]) -> Result<(), EspError> {
        let len = buf.len();
        with_cipher!(self, c => cbc::Encryptor::inner_iv_slice_init(c.clone(), iv)
            .map_err(|_| EspError::Malformed)?
            .encrypt_padded_mut::<NoPadding>(buf, len)
            .map(|_| ())
            .map_err(|_| EspError::Malformed))
    }

    /// CBC-decrypts whole blocks in place.
    fn decrypt(&self, iv: &[u8], buf: &mut [u8]) -> Result<(), EspError> {
        with_cipher!(self, c => cbc::Decryptor::inner_iv_slice_init(c.clone(), iv)
            .map_err(|_| EspError::Malformed)?
            .decrypt_padded_mut::<NoPadding>(buf)
            .map(|_| ())
            .map_err(|_| EspError::Malformed))
    }
}

/// A keyed HMAC, truncated to the ICV length.
#[derive(Clone)]
enum MacKey {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
}

/// Longest ICV of the suites here (HMAC-SHA2-256-128 and AES-GCM-16).
const MAX_ICV: usize = 16;

impl MacKey {
    fn new(integrity: Integrity, key: &[u8]) -> Result<Self, EspError> {
        let bad = |_| EspError::BadKey;
        Ok(match integrity {
            Integrity::HmacSha1_96 => {
                Self::Sha1(<Hmac<Sha1> as Mac>::new_from_slice(key).map_err(bad)?)
            }
            Integrity::HmacSha256_128 => {
                Self::Sha256(<Hmac<Sha256> as Mac>::new_from_slice(key).map_err(bad)?)
            }
        })
    }

    /// The untruncated-then-truncated MAC over `parts`; the first `icv_len` bytes count.
    fn icv(&self, parts: &[&[u8]]) -> [u8; MAX_ICV] {
        let mut out = [0u8; MAX_ICV];
        macro_rules! run {
            ($m:expr) => {{
                let mut m = $m.clone();
                for p in parts {
                    m.update(p);
                }
                let full = m.finalize().into_bytes();
                out.copy_from_slice(&full[..MAX_ICV]);
            }};
        }
        match self {
            Self::Sha1(m) => run!(m),
            Self::Sha256(m) => run!(m),
        }
        out
    }
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(..)")
    }
}

impl Cipher {
    fn new(suite: Suite, encr: &[u8], integ: &[u8]) -> Result<Self, EspError> {
        if encr.len() != suite.encr_key_len() || integ.len() != suite.integ_key_len() {
            return Err(EspError::BadKey);
        }
        Ok(match suite {
            Suite::AesGcm16 { key_bits } => {
                let (key, salt) = encr.split_at(encr.len() - 4);
                let salt = [salt[0], salt[1], salt[2], salt[3]];
                let algorithm = match key_bits {
                    128 => &AES_128_GCM,
                    256 => &AES_256_GCM,
                    _ => return Err(EspError::BadKey),
                };
                let key = UnboundKey::new(algorithm, key).map_err(|_| EspError::BadKey)?;
                Self::Gcm(Box::new(LessSafeKey::new(key)), salt)
            }
            Suite::AesCbc { integrity, .. } | Suite::TripleDesCbc { integrity } => Self::Cbc {
                key: Box::new(CbcKey::new(suite, encr)?),
                mac: Box::new(MacKey::new(integrity, integ)?),
            },
        })
    }
}

/// Outbound SA: seals packets with increasing sequence numbers.
#[derive(Debug, Clone)]
pub struct OutboundSa {
    spi: u32,
    suite: Suite,
    esn: bool,
    /// Last sequence number used; the first packet carries 1.
    seq: u64,
    cipher: Cipher,
}

/// A packet opened by an [`InboundSa`].
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The inner protocol (4 for IPv4, 41 for IPv6 in tunnel mode; 59 for a dummy packet).
    pub next_header: u8,
    pub payload: &'a [u8],
    /// The full (ESN-inferred) sequence number.
    pub seq: u64,
}

/// Inbound SA: verifies, replay-checks and decrypts.
#[derive(Debug, Clone)]
pub struct InboundSa {
    spi: u32,
    suite: Suite,
    esn: bool,
    replay: ReplayWindow,
    cipher: Cipher,
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl OutboundSa {
    pub fn new(
        spi: u32,
        suite: Suite,
        encr: &[u8],
        integ: &[u8],
        esn: bool,
    ) -> Result<Self, EspError> {
        Ok(Self {
            spi,
            suite,
            esn,
            seq: 0,
            cipher: Cipher::new(suite, encr, integ)?,
        })
    }

    pub const fn spi(&self) -> u32 {
        self.spi
    }

    pub const fn suite(&self) -> Suite {
        self.suite
    }

    /// Sequence number of the last packet sealed.
    pub const fn seq(&self) -> u64 {
        self.seq
    }

    /// Continue from a given sequence number (the next packet carries `seq + 1`).
    pub fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Length of the ESP packet that sealing `payload_len` bytes produces.
    pub const fn sealed_len(&self, payload_len: usize) -> usize {
        payload_len + self.suite.overhead(payload_len)
    }

    /// Writes the ESP packet protecting `payload` into `out`; returns its length.
    pub fn seal(
        &mut self,
        next_header: u8,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, EspError> {
        let total = self.sealed_len(payload.len());
        let out = out.get_mut(..total).ok_or(EspError::BufferTooSmall)?;
        let max = if self.esn {
            u64::MAX
        } else {
            u64::from(u32::MAX)
        };
        if self.seq >= max {
            return Err(EspError::SequenceExhausted);
        }
        let seq = self.seq + 1;
        let iv_len = self.suite.iv_len();
        let icv_len = self.suite.icv_len();
        let body_start = HEADER_LEN + iv_len;
        let body_end = total - icv_len;
        out[..4].copy_from_slice(&self.spi.to_be_bytes());
        out[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
        // Payload, then padding 1, 2, 3, ... (§2.4), pad length, next header.
        let body = &mut out[body_start..body_end];
        body[..payload.len()].copy_from_slice(payload);
        let pad = body.len() - payload.len() - 2;
        for (i, b) in body[payload.len()..payload.len() + pad]
            .iter_mut()
            .enumerate()
        {
            *b = (i + 1) as u8;
        }
        body[pad + payload.len()] = pad as u8;
        body[pad + payload.len() + 1] = next_header;
        let seq_hi = ((seq >> 32) as u32).to_be_bytes();
        match &self.cipher {
            Cipher::Gcm(..) => {
                let iv = seq.to_be_bytes();
                out[HEADER_LEN..body_start].copy_from_slice(&iv);
                let (head, rest) = out.split_at_mut(body_start);
                let (body, icv) = rest.split_at_mut(body_end - body_start);
                let (aad, aad_len) = aad(&head[..HEADER_LEN], self.esn, seq_hi);
                let tag = gcm_seal(&self.cipher, &iv, &aad[..aad_len], body)?;
                icv.copy_from_slice(&tag);
            }
            Cipher::Cbc { key, mac } => {
                let (iv, iv_len) = key.iv(seq);
                let iv = &iv[..iv_len];
                out[HEADER_LEN..body_start].copy_from_slice(iv);
                key.encrypt(iv, &mut out[body_start..body_end])?;
                let hi: &[u8] = if self.esn { &seq_hi } else { &[] };
                let icv = mac.icv(&[&out[..body_end], hi]);
                out[body_end..].copy_from_slice(&icv[..icv_len]);
            }
        }
        self.seq = seq;
        Ok(total)
    }
}

/// AAD for GCM (RFC 4106 §5): SPI and sequence number, with the high half for ESN.
fn aad(header: &[u8], esn: bool, seq_hi: [u8; 4]) -> ([u8; 12], usize) {
    let mut a = [0u8; 12];
    a[..4].copy_from_slice(&header[..4]);
    if esn {
        a[4..8].copy_from_slice(&seq_hi);
        a[8..].copy_from_slice(&header[4..8]);
        (a, 12)
    } else {
        a[4..8].copy_from_slice(&header[4..8]);
        (a, 8)
    }
}

fn gcm_nonce(salt: &[u8; 4], iv: &[u8]) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(salt);
    n[4..].copy_from_slice(iv);
    n
}

fn gcm_seal(cipher: &Cipher, iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Result<[u8; 16], EspError> {
    let Cipher::Gcm(key, salt) = cipher else {
        return Err(EspError::BadKey);
    };
    let nonce = Nonce::assume_unique_for_key(gcm_nonce(salt, iv));
    let tag = key
        .seal_in_place_separate_tag(nonce, Aad::from(aad), buf)
        .map_err(|_| EspError::BufferTooSmall)?;
    let mut out = [0u8; 16];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

fn gcm_open(
    cipher: &Cipher,
    iv: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), EspError> {
    let Cipher::Gcm(key, salt) = cipher else {
        return Err(EspError::BadKey);
    };
    let tag = Tag::try_from(tag).map_err(|_| EspError::Authentication)?;
    let nonce = Nonce::assume_unique_for_key(gcm_nonce(salt, iv));
    key.open_in_place_separate_tag(nonce, Aad::from(aad), tag, buf, 0..)
        .map(drop)
        .map_err(|_| EspError::Authentication)
}

impl InboundSa {
    pub fn new(
        spi: u32,
        suite: Suite,
        encr: &[u8],
        integ: &[u8],
        esn: bool,
    ) -> Result<Self, EspError> {
        Ok(Self {
            spi,
            suite,
            esn,
            replay: ReplayWindow::new(),
            cipher: Cipher::new(suite, encr, integ)?,
        })
    }

    pub const fn spi(&self) -> u32 {
        self.spi
    }

    pub const fn suite(&self) -> Suite {
        self.suite
    }

    pub const fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }

    /// Verifies and decrypts `packet` (starting at the SPI) into `out`.
    ///
    /// The replay window is consulted before any cryptography and advanced only after the
    /// ICV verified, so neither replays nor forgeries cost more than a lookup or move it.
    pub fn open<'o>(&mut self, packet: &[u8], out: &'o mut [u8]) -> Result<Opened<'o>, EspError> {
        let iv_len = self.suite.iv_len();
        let icv_len = self.suite.icv_len();
        let min = HEADER_LEN + iv_len + self.suite.align() + icv_len;
        if packet.len() < min {
            return Err(EspError::Malformed);
        }
        let view = wire::esp::Packet::new_unchecked(packet);
        if view.spi() != self.spi {
            return Err(EspError::UnknownSpi(view.spi()));
        }
        let seq = self.replay.infer(view.seq_number(), self.esn);
        if !self.replay.check(seq) {
            return Err(EspError::Replay);
        }
        let body_start = HEADER_LEN + iv_len;
        let body_end = packet.len() - icv_len;
        let body = &packet[body_start..body_end];
        if body.len() % self.suite.align() != 0 {
            return Err(EspError::Malformed);
        }
        let iv = &packet[HEADER_LEN..body_start];
        let icv = &packet[body_end..];
        let out = out.get_mut(..body.len()).ok_or(EspError::BufferTooSmall)?;
        out.copy_from_slice(body);
        let seq_hi = ((seq >> 32) as u32).to_be_bytes();
        match &self.cipher {
            Cipher::Gcm(..) => {
                let (aad, aad_len) = aad(&packet[..HEADER_LEN], self.esn, seq_hi);
                gcm_open(&self.cipher, iv, &aad[..aad_len], out, icv)?;
            }
            Cipher::Cbc { key, mac } => {
                let hi: &[u8] = if self.esn { &seq_hi } else { &[] };
                let expect = mac.icv(&[&packet[..body_end], hi]);
                if !ct_eq(&expect[..icv_len], icv) {
                    return Err(EspError::Authentication);
                }
                key.decrypt(iv, out)?;
            }
        }
        // Authenticated: from here on the packet is genuine.
        self.replay.mark(seq);
        let n = out.len();
        let next_header = out[n - 1];
        let pad = usize::from(out[n - 2]);
        if pad + 2 > n {
            return Err(EspError::BadPadding);
        }
        let payload_len = n - 2 - pad;
        let padding_ok = out[payload_len..n - 2]
            .iter()
            .enumerate()
            .all(|(i, b)| usize::from(*b) == i + 1);
        if !padding_ok {
            return Err(EspError::BadPadding);
        }
        Ok(Opened {
            next_header,
            payload: &out[..payload_len],
            seq,
        })
    }
}

/// Inbound SAs by SPI, for demultiplexing received ESP.
#[derive(Debug, Default)]
pub struct SpiTable {
    inbound: HashMap<u32, InboundSa>,
}

impl SpiTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs an SA, returning the one it replaces with the same SPI, if any.
    pub fn insert(&mut self, sa: InboundSa) -> Option<InboundSa> {
        self.inbound.insert(sa.spi, sa)
    }

    pub fn remove(&mut self, spi: u32) -> Option<InboundSa> {
        self.inbound.remove(&spi)
    }

    pub fn get(&self, spi: u32) -> Option<&InboundSa> {
        self.inbound.get(&spi)
    }

    pub fn len(&self) -> usize {
        self.inbound.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inbound.is_empty()
    }

    /// Opens a packet with the SA its SPI names.
    pub fn open<'o>(&mut self, packet: &[u8], out: &'o mut [u8]) -> Result<Opened<'o>, EspError> {
        let view = wire::esp::Packet::new_checked(packet).map_err(|_| EspError::Malformed)?;
        let spi = view.spi();
        self.inbound
            .get_mut(&spi)
            .ok_or(EspError::UnknownSpi(spi))?
            .open(packet, out)
    }
}

#[cfg(test)]
mod tests;
