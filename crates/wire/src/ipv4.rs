//! IPv4 header (RFC 791).

use core::fmt;
use std::net::Ipv4Addr;

use crate::field::be16;
use crate::{Error, Result, checksum};

mod field {
    use crate::field::Field;

    pub(crate) const VER_IHL: usize = 0;
    pub(crate) const DSCP_ECN: usize = 1;
    pub(crate) const LENGTH: Field = 2..4;
    pub(crate) const IDENT: Field = 4..6;
    pub(crate) const FLG_OFF: Field = 6..8;
    pub(crate) const TTL: usize = 8;
    pub(crate) const PROTOCOL: usize = 9;
    pub(crate) const CHECKSUM: Field = 10..12;
    pub(crate) const SRC_ADDR: Field = 12..16;
    pub(crate) const DST_ADDR: Field = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view over an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; getters may panic on a malformed one.
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Self> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that every accessor is in bounds: a 20-byte header, version 4, an IHL of at least
    /// 5 words inside the buffer, and a total length covering the header and inside the buffer.
    /// Bytes past the total length (link-layer padding) are allowed and ignored.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::BadVersion);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::BadHeaderLen);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len || total_len > len {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The former TOS byte: DSCP in the upper six bits, ECN in the lower two (RFC 2474, RFC 3168).
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    /// Total length of header and payload in bytes.
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification field.
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_DF != 0
    }

    /// More Fragments flag.
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLG_OFF.start) & OFFSET_MASK) * 8
    }

    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Protocol of the payload, see [`crate::ip_proto`].
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Header checksum field as stored.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// Whether the header checksum (options included) verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.header()) == 0xffff
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The payload: from the end of the header to the total length, without link padding.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes; it is stored in 4-byte words.
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the DSCP/ECN byte.
    pub fn set_dscp_ecn(&mut self, value: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = value;
    }

    /// Sets the total length.
    pub fn set_total_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the identification field.
    pub fn set_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&value.to_be_bytes());
    }

    fn set_flag(&mut self, flag: u16, on: bool) {
        let old = be16(self.buffer.as_ref(), field::FLG_OFF.start);
        let new = if on { old | flag } else { old & !flag };
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&new.to_be_bytes());
    }

    /// Sets the Don't Fragment flag.
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flag(FLAG_DF, value);
    }

    /// Sets the More Fragments flag.
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flag(FLAG_MF, value);
    }

    /// Sets the fragment offset, given in bytes (a multiple of 8); the reserved flag is cleared.
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let old = be16(self.buffer.as_ref(), field::FLG_OFF.start);
        let new = (old & (FLAG_DF | FLAG_MF)) | ((bytes / 8) & OFFSET_MASK);
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&new.to_be_bytes());
    }

    /// Sets the time to live.
    pub fn set_ttl(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, value: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = value;
    }

    /// Sets the checksum field as stored.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// Computes and stores the header checksum over the header as its IHL says.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.header());
        self.set_checksum(!sum);
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// The meaning of an unfragmented IPv4 header without options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Payload protocol, see [`crate::ip_proto`].
    pub protocol: u8,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// DSCP/ECN byte.
    pub dscp_ecn: u8,
    /// Identification field.
    pub ident: u16,
    /// Don't Fragment flag.
    pub dont_frag: bool,
}

impl Repr {
    /// Parses a header, verifying its checksum.
    ///
    /// Options are accepted and skipped (`payload_len` excludes them). Fragments (MF set or a
    /// nonzero offset) are [`Error::Unrecognized`]: a `Repr` says its payload starts with a
    /// `protocol` header, which is false for non-first fragments; forward fragments through the
    /// [`Packet`] view instead.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::BadChecksum);
        }
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(Error::Unrecognized);
        }
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dscp_ecn: packet.dscp_ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
        })
    }

    /// Length of the header this emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with fragment offset 0 and a valid checksum. The payload is not
    /// touched; `payload_len` must not exceed `65535 - 20`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp_ecn(self.dscp_ecn);
        packet.set_total_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_ident(self.ident);
        packet.buffer.as_mut()[field::FLG_OFF].fill(0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv4 src={} dst={} proto={} len={} ttl={} tos={:#04x} id={:#06x}{}",
            self.src_addr,
            self.dst_addr,
            self.protocol,
            self.payload_len,
            self.ttl,
            self.dscp_ecn,
            self.ident,
            if self.dont_frag { " DF" } else { "" }
        )
    }
}

fn addr(bytes: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_proto;
    use hex_literal::hex;
    use proptest::prelude::*;

    /// ICMP echo request 198.51.100.1 -> 203.0.113.9, TOS 0xb8, id 0x1234, DF, TTL 64.
    const ECHO: [u8; 39] = hex!(
        "45b80027123440004001c1ab c6336401 cb007109"
        "0800e92cbeef00077636676174652d70696e67"
    );
    /// UDP with a Router Alert option (IHL 6).
    const WITH_OPTIONS: [u8; 35] = hex!(
        "460000230abc0000011129bcc6336407c6120001 94040000"
        "03e807d0000b20616f7074"
    );
    /// Non-first fragment: MF, offset 185 × 8.
    const FRAGMENT: [u8; 28] = hex!("4500001c0abc20b940005f1fc6336407c61200017878787878787878");

    fn echo_repr() -> Repr {
        Repr {
            src_addr: Ipv4Addr::new(198, 51, 100, 1),
            dst_addr: Ipv4Addr::new(203, 0, 113, 9),
            protocol: ip_proto::ICMP,
            payload_len: 19,
            ttl: 64,
            dscp_ecn: 0xb8,
            ident: 0x1234,
            dont_frag: true,
        }
    }

    #[test]
    fn parses_known_packet() {
        let p = Packet::new_checked(&ECHO[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0xb8);
        assert_eq!(p.total_len(), 39);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), ip_proto::ICMP);
        assert_eq!(p.checksum(), 0xc1ab);
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(203, 0, 113, 9));
        assert!(p.verify_checksum());
        assert_eq!(p.header(), &ECHO[..20]);
        assert_eq!(p.payload(), &ECHO[20..]);
        assert_eq!(Repr::parse(&p).unwrap(), echo_repr());
    }

    #[test]
    fn emits_known_bytes_over_junk() {
        let repr = echo_repr();
        let mut buf = [0xa5u8; 39];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&ECHO[20..]);
        assert_eq!(buf, ECHO);
        assert_eq!(repr.buffer_len(), 20);
    }

    #[test]
    fn options_are_skipped() {
        let p = Packet::new_checked(&WITH_OPTIONS[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &WITH_OPTIONS[24..]);
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 11);
        assert_eq!(repr.protocol, ip_proto::UDP);
        assert_eq!(repr.ttl, 1);
    }

    #[test]
    fn fragment_fields_and_repr_refusal() {
        let p = Packet::new_checked(&FRAGMENT[..]).unwrap();
        assert!(p.more_frags());
        assert!(!p.dont_frag());
        assert_eq!(p.frag_offset(), 1480);
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p), Err(Error::Unrecognized));
    }

    #[test]
    fn flag_and_offset_setters_are_independent() {
        let mut buf = FRAGMENT;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_dont_frag(true);
        p.set_more_frags(false);
        assert_eq!(p.frag_offset(), 1480);
        p.set_frag_offset(8 * 0x1fff);
        assert!(p.dont_frag() && !p.more_frags());
        assert_eq!(p.frag_offset(), 8 * 0x1fff);
        p.set_frag_offset(0);
        assert!(p.dont_frag());
        p.set_header_len(24);
        assert_eq!((p.version(), p.header_len()), (4, 24));
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..ECHO.len() {
            assert!(Packet::new_checked(&ECHO[..len]).is_err(), "len {len}");
        }
        for len in 0..WITH_OPTIONS.len() {
            assert!(
                Packet::new_checked(&WITH_OPTIONS[..len]).is_err(),
                "len {len}"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_not_payload() {
        let mut buf = ECHO.to_vec();
        buf.extend_from_slice(&[0; 7]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload(), &ECHO[20..]);
    }

    #[test]
    fn rejects_bad_fields_with_their_error() {
        let mut buf = ECHO;
        buf[0] = 0x65;
        assert_eq!(Packet::new_checked(&buf[..]), Err(Error::BadVersion));
        buf[0] = 0x44;
        assert_eq!(Packet::new_checked(&buf[..]), Err(Error::BadHeaderLen));
        buf[0] = 0x4f;
        assert_eq!(Packet::new_checked(&buf[..20]), Err(Error::BadHeaderLen));
        buf[0] = 0x45;
        buf[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&buf[..]), Err(Error::BadLength));
        buf[2..4].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&buf[..]), Err(Error::BadLength));

        let mut buf = ECHO;
        buf[8] = 63;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p), Err(Error::BadChecksum));
    }

    #[test]
    fn display_names_the_fields() {
        let text = echo_repr().to_string();
        assert!(
            text.contains("198.51.100.1") && text.contains("203.0.113.9"),
            "{text}"
        );
        assert!(text.contains("DF"), "{text}");
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), protocol in any::<u8>(),
            payload_len in 0usize..200, ttl in any::<u8>(), dscp_ecn in any::<u8>(),
            ident in any::<u16>(), dont_frag in any::<bool>(),
        ) {
            let repr = Repr {
                src_addr: src.into(), dst_addr: dst.into(), protocol, payload_len, ttl,
                dscp_ecn, ident, dont_frag,
            };
            let mut buf = vec![0xa5; repr.buffer_len() + payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum());
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.payload().len(), p.header().len(), p.verify_checksum());
                let _ = Repr::parse(&p);
            }
        }
    }
}
