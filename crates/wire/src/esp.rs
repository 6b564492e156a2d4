//! ESP header (RFC 4303 §2) and the UDP encapsulation of ESP and IKE on port 4500
//! (RFC 3948).
//!
//! Only the cleartext part of ESP is described here: SPI and sequence number. IV, padding,
//! next header and ICV depend on the SA's algorithms and live with the SA in the dataplane;
//! how much room they take is [`Framing`]'s, the one place config checks and the dataplane
//! both reckon ESP overhead with.

use core::fmt;

/// ESP's cleartext header: SPI and sequence number.
pub const HEADER_LEN: usize = 8;

/// Pad length and next header, behind the padding (§2.4).
pub const TRAILER_LEN: usize = 2;

/// The sizes a cipher suite gives an ESP packet: IV in front of the payload, ICV behind
/// it, and the block the encrypted part (payload, padding, trailer) is padded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub iv_len: usize,
    pub icv_len: usize,
    /// The cipher block, and at least 4 bytes (§2.4).
    pub align: usize,
}

impl Framing {
    /// `block` is the cipher's block size (1 for a stream or counter mode).
    pub const fn new(iv_len: usize, icv_len: usize, block: usize) -> Self {
        Self {
            iv_len,
            icv_len,
            align: if block > 4 { block } else { 4 },
        }
    }

    /// The largest payload whose ESP packet fits in `room` bytes (what the outer headers
    /// leave of a link MTU): `rounddown(room - 8 - IV - ICV, align) - 2`.
    pub const fn max_payload(self, room: usize) -> usize {
        let body = room.saturating_sub(HEADER_LEN + self.iv_len + self.icv_len);
        (body / self.align * self.align).saturating_sub(TRAILER_LEN)
    }

    /// Bytes ESP adds around a payload of `len` bytes: header, IV, padding, trailer, ICV.
    pub const fn overhead(self, len: usize) -> usize {
        let body = (len + TRAILER_LEN).div_ceil(self.align) * self.align;
        HEADER_LEN + self.iv_len + (body - len) + self.icv_len
    }
}

/// RFC 3948 §2.2: the four zero octets that mark an IKE message (not ESP) on UDP 4500.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// RFC 3948 §2.3: a NAT-keepalive is a single 0xFF octet on UDP 4500.
pub const NAT_KEEPALIVE: [u8; 1] = [0xff];

/// UDP port for IKE and ESP once NAT traversal is in use.
pub const NAT_T_PORT: u16 = 4500;

/// Why ESP bytes were rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the 8-byte header.
    Truncated,
    /// SPI 0 is reserved for local use and never appears on the wire (§2.1); values 1-255
    /// are reserved by IANA.
    ReservedSpi,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => f.write_str("ESP packet truncated"),
            Self::ReservedSpi => f.write_str("ESP SPI in the reserved range 0-255"),
        }
    }
}

impl std::error::Error for Error {}

mod field {
    use core::ops::Range;
    pub const SPI: Range<usize> = 0..4;
    pub const SEQ: Range<usize> = 4..8;
}

/// A zero-copy view of an ESP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Checks the buffer holds the header and the SPI is not reserved.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        if p.spi() < 256 {
            return Err(Error::ReservedSpi);
        }
        Ok(p)
    }

    pub fn check_len(&self) -> Result<(), Error> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn spi(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SPI];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The low 32 bits of the sequence number (the high half of an ESN is never sent, §2.2.1).
    pub fn seq_number(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SEQ];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Header bytes (SPI and sequence number): part of what the ICV covers.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// IV, encrypted payload, padding, trailer and ICV.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_spi(&mut self, spi: u32) {
        self.buffer.as_mut()[field::SPI].copy_from_slice(&spi.to_be_bytes());
    }

    pub fn set_seq_number(&mut self, seq: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

/// The cleartext ESP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub spi: u32,
    pub seq_number: u32,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        packet.check_len()?;
        if packet.spi() < 256 {
            return Err(Error::ReservedSpi);
        }
        Ok(Self {
            spi: packet.spi(),
            seq_number: packet.seq_number(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_spi(self.spi);
        packet.set_seq_number(self.seq_number);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ESP spi={:#010x} seq={}", self.spi, self.seq_number)
    }
}

/// What a UDP datagram on port 4500 carries (RFC 3948 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Udp4500<'a> {
    /// A NAT-keepalive: nothing to process.
    Keepalive,
    /// An IKE message, with the non-ESP marker already removed.
    Ike(&'a [u8]),
    /// An ESP packet, starting at its SPI.
    Esp(&'a [u8]),
}

/// Classifies a UDP 4500 payload. `None` for bytes that are neither: too short to be ESP, or
/// an ESP packet with a reserved SPI.
pub fn classify_udp4500(payload: &[u8]) -> Option<Udp4500<'_>> {
    if payload == NAT_KEEPALIVE {
        return Some(Udp4500::Keepalive);
    }
    if let Some(rest) = payload.strip_prefix(&NON_ESP_MARKER) {
        return Some(Udp4500::Ike(rest));
    }
    Packet::new_checked(payload)
        .ok()
        .map(|_| Udp4500::Esp(payload))
}

/// Writes the non-ESP marker in front of an IKE message for UDP 4500. Returns the number of
/// bytes written, or `None` if `out` is too short.
pub fn emit_non_esp_marker(ike: &[u8], out: &mut [u8]) -> Option<usize> {
    let n = NON_ESP_MARKER.len() + ike.len();
    let out = out.get_mut(..n)?;
    out[..4].copy_from_slice(&NON_ESP_MARKER);
    out[4..].copy_from_slice(ike);
    Some(n)
}

#[cfg(test)]
mod tests {

    #[test]
    fn framing_by_rfc_4303_arithmetic() {
        // AES-GCM-16 (RFC 4106): IV 8, ICV 16, 4-byte alignment. 1452 bytes of room:
        // 1452 - 8 - 8 - 16 = 1420, a multiple of 4, less the 2-byte trailer.
        let gcm = Framing::new(8, 16, 1);
        assert_eq!(gcm.max_payload(1452), 1418);
        assert_eq!(gcm.overhead(1418), 1452 - 1418);
        // AES-CBC with HMAC-SHA1-96 (RFC 3602, 2404): IV 16, ICV 12, 16-byte blocks.
        // 1452 - 8 - 16 - 12 = 1416 = 88 * 16 + 8 -> 1408, less 2.
        let cbc = Framing::new(16, 12, 16);
        assert_eq!(cbc.max_payload(1452), 1406);
        // A 1-byte payload still fills one block: 8 + 16 + 16 + 12.
        assert_eq!(cbc.overhead(1), 8 + 16 + 15 + 12);
        assert_eq!(cbc.max_payload(10), 0);
    }

    use super::*;
    use hex_literal::hex;
    use proptest::prelude::*;

    const ESP: [u8; 12] = hex!("c0ffee01 0000002a deadbeef");

    #[test]
    fn parses_known_header() {
        let p = Packet::new_checked(&ESP[..]).unwrap();
        assert_eq!(p.spi(), 0xc0ff_ee01);
        assert_eq!(p.seq_number(), 42);
        assert_eq!(p.payload(), hex!("deadbeef"));
        assert_eq!(
            Repr::parse(&p).unwrap(),
            Repr {
                spi: 0xc0ff_ee01,
                seq_number: 42
            }
        );
    }

    #[test]
    fn emits_into_junk() {
        let mut buf = [0xa5u8; 12];
        let repr = Repr {
            spi: 0xc0ff_ee01,
            seq_number: 42,
        };
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..8], ESP[..8]);
        assert_eq!(buf[8..], [0xa5; 4]);
    }

    #[test]
    fn truncation_and_reserved_spi_rejected() {
        for n in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&ESP[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let zero = hex!("000000ff 00000001");
        assert_eq!(
            Packet::new_checked(&zero[..]).unwrap_err(),
            Error::ReservedSpi
        );
    }

    #[test]
    fn classifies_udp4500() {
        assert_eq!(classify_udp4500(&[0xff]), Some(Udp4500::Keepalive));
        assert_eq!(
            classify_udp4500(&hex!("00000000 0102")),
            Some(Udp4500::Ike(&[1, 2]))
        );
        assert_eq!(classify_udp4500(&ESP), Some(Udp4500::Esp(&ESP)));
        assert_eq!(classify_udp4500(&[1, 2, 3]), None);
        assert_eq!(classify_udp4500(&[]), None);

        let mut out = [0xa5u8; 8];
        assert_eq!(emit_non_esp_marker(&[7, 8], &mut out), Some(6));
        assert_eq!(out[..6], [0, 0, 0, 0, 7, 8]);
        assert_eq!(emit_non_esp_marker(&[0; 5], &mut out), None);
    }

    proptest! {
        #[test]
        fn round_trip(spi in 256u32.., seq in any::<u32>(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
            let repr = Repr { spi, seq_number: seq };
            let mut buf = vec![0xa5u8; HEADER_LEN + tail.len()];
            buf[HEADER_LEN..].copy_from_slice(&tail);
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
            prop_assert_eq!(p.payload(), &tail[..]);
            prop_assert_eq!(classify_udp4500(&buf), Some(Udp4500::Esp(&buf[..])));
        }
    }
}
