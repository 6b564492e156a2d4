//! IPv6 fixed header (RFC 8200 §3).

use core::fmt;
use std::net::Ipv6Addr;

use crate::field::{be16, be32};
use crate::{Error, Result};

mod field {
    use crate::field::Field;

    /// Version (4 bits), Traffic Class (8 bits), Flow Label (20 bits).
    pub(crate) const VER_TC_FLOW: Field = 0..4;
    pub(crate) const LENGTH: Field = 4..6;
    pub(crate) const NXT_HDR: usize = 6;
    pub(crate) const HOP_LIMIT: usize = 7;
    pub(crate) const SRC_ADDR: Field = 8..24;
    pub(crate) const DST_ADDR: Field = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = field::DST_ADDR.end;

const FLOW_MASK: u32 = 0x000f_ffff;

/// A view over an IPv6 packet.
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

    /// Checks for a 40-byte header, version 6, and a payload length inside the buffer. Bytes past
    /// the payload are allowed and ignored. A zero payload length is taken literally: Jumbograms
    /// (RFC 2675) are not supported.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::BadVersion);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW.start)
    }

    /// Version nibble.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic Class: DSCP in the upper six bits, ECN in the lower two (RFC 8200 §7).
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// Flow Label (20 bits).
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & FLOW_MASK
    }

    /// Payload length: everything after the fixed header, extension headers included.
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Next Header, see [`crate::ip_proto`].
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    /// Hop Limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// Source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// Destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The fixed header.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// The payload (extension headers included), without trailing bytes past the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_ver_tc_flow(&mut self, value: u32) {
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the version nibble.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[0];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the Traffic Class.
    pub fn set_traffic_class(&mut self, value: u8) {
        let word = (self.ver_tc_flow() & 0xf00f_ffff) | (u32::from(value) << 20);
        self.set_ver_tc_flow(word);
    }

    /// Sets the Flow Label; bits above the 20-bit field are ignored.
    pub fn set_flow_label(&mut self, value: u32) {
        let word = (self.ver_tc_flow() & !FLOW_MASK) | (value & FLOW_MASK);
        self.set_ver_tc_flow(word);
    }

    /// Sets the payload length.
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the Next Header.
    pub fn set_next_header(&mut self, value: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = value;
    }

    /// Sets the Hop Limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&value.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, value: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&value.octets());
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

/// The meaning of an IPv6 fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// Next Header of the fixed header (an extension header or the upper layer).
    pub next_header: u8,
    /// Payload length in bytes, extension headers included.
    pub payload_len: usize,
    /// Hop Limit.
    pub hop_limit: u8,
    /// Traffic Class.
    pub traffic_class: u8,
    /// Flow Label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// Parses the fixed header.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self> {
        packet.check_len()?;
        Ok(Self {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.payload_len()),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Length of the header this emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header. The payload is not touched; `payload_len` must fit in 16 bits
    /// and `flow_label` in 20.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX));
        packet.set_ver_tc_flow(
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & FLOW_MASK),
        );
        packet.set_payload_len(self.payload_len as u16);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IPv6 src={} dst={} nxt={} len={} hop_limit={} tc={:#04x} flow={:#07x}",
            self.src_addr,
            self.dst_addr,
            self.next_header,
            self.payload_len,
            self.hop_limit,
            self.traffic_class,
            self.flow_label
        )
    }
}

fn addr(bytes: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(bytes);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_proto;
    use hex_literal::hex;
    use proptest::prelude::*;

    /// UDP 5353 -> 53 "hello", 2001:db8:1::1 -> 2001:db8:2::2, TC 0xb8, flow 0x12345.
    const UDP: [u8; 53] = hex!(
        "6b812345000d1140"
        "20010db8000100000000000000000001"
        "20010db8000200000000000000000002"
        "14e90035000d4b6c68656c6c6f"
    );

    fn udp_repr() -> Repr {
        Repr {
            src_addr: "2001:db8:1::1".parse().unwrap(),
            dst_addr: "2001:db8:2::2".parse().unwrap(),
            next_header: ip_proto::UDP,
            payload_len: 13,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        }
    }

    #[test]
    fn parses_known_packet() {
        let p = Packet::new_checked(&UDP[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 13);
        assert_eq!(p.next_header(), ip_proto::UDP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.header(), &UDP[..40]);
        assert_eq!(p.payload(), &UDP[40..]);
        assert_eq!(Repr::parse(&p).unwrap(), udp_repr());
    }

    #[test]
    fn emits_known_bytes_over_junk() {
        let repr = udp_repr();
        let mut buf = [0xa5u8; 53];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&UDP[40..]);
        assert_eq!(buf, UDP);
        assert_eq!(repr.buffer_len(), HEADER_LEN);
    }

    #[test]
    fn setters_keep_neighbouring_bits() {
        let mut buf = UDP;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_traffic_class(0x03);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0x03, 0x12345)
        );
        p.set_flow_label(0xfff_ffff);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0x03, 0xf_ffff)
        );
        p.set_version(4);
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (4, 0x03, 0xf_ffff)
        );
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..UDP.len() {
            assert!(Packet::new_checked(&UDP[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn rejects_bad_fields_with_their_error() {
        assert_eq!(Packet::new_checked(&UDP[..39]), Err(Error::Truncated));
        assert_eq!(Packet::new_checked(&UDP[..52]), Err(Error::BadLength));
        let mut buf = UDP;
        buf[0] = 0x4b;
        assert_eq!(Packet::new_checked(&buf[..]), Err(Error::BadVersion));
    }

    #[test]
    fn trailing_bytes_are_not_payload() {
        let mut buf = UDP.to_vec();
        buf.extend_from_slice(&[0xee; 5]);
        assert_eq!(Packet::new_checked(&buf[..]).unwrap().payload(), &UDP[40..]);
    }

    #[test]
    fn display_names_the_fields() {
        let text = udp_repr().to_string();
        assert!(
            text.contains("2001:db8:1::1") && text.contains("nxt=17"),
            "{text}"
        );
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), next_header in any::<u8>(),
            payload_len in 0usize..100, hop_limit in any::<u8>(), traffic_class in any::<u8>(),
            flow_label in 0u32..=0xf_ffff,
        ) {
            let repr = Repr {
                src_addr: src.into(), dst_addr: dst.into(), next_header, payload_len, hop_limit,
                traffic_class, flow_label,
            };
            let mut buf = vec![0xa5; repr.buffer_len() + payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some(b) = bytes.first_mut() {
                *b = 0x60 | (*b & 0x0f);
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                prop_assert_eq!(p.payload().len(), usize::from(p.payload_len()));
            }
        }
    }
}
