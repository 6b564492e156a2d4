//! UDP header (RFC 768).

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::field::be16;
use crate::{Error, Result, checksum, ip_proto};

mod field {
    use crate::field::Field;

    pub(crate) const SRC_PORT: Field = 0..2;
    pub(crate) const DST_PORT: Field = 2..4;
    pub(crate) const LENGTH: Field = 4..6;
    pub(crate) const CHECKSUM: Field = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::CHECKSUM.end;

/// A view over a UDP datagram.
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

    /// Checks for the 8-byte header and a length field between 8 and the buffer length. Bytes
    /// past the length field are ignored.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN || field_len > len {
            return Err(Error::BadLength);
        }
        Ok(())
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// Length field: header plus payload.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Checksum field as stored; 0 means "not computed", allowed over IPv4 only.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The payload, up to the length field.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// Whether the checksum verifies over the IPv4 pseudo-header; a zero checksum means the
    /// sender did not compute one and is accepted (RFC 768).
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let data = self.datagram();
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, ip_proto::UDP, u32::from(self.len())),
            checksum::data(data),
        ]) == 0xffff
    }

    /// Whether the checksum verifies over the IPv6 pseudo-header; a zero checksum is invalid
    /// over IPv6 (RFC 8200 §8.1).
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        if self.checksum() == 0 {
            return false;
        }
        let data = self.datagram();
        checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, ip_proto::UDP, u32::from(self.len())),
            checksum::data(data),
        ]) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    pub fn set_src_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, value: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the length field.
    pub fn set_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the checksum field as stored.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// The payload, up to the length field, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    fn store_checksum(&mut self, pseudo_header: u16) {
        self.set_checksum(0);
        let sum = checksum::combine(&[pseudo_header, checksum::data(self.datagram())]);
        // A computed zero is sent as all ones, since zero means "no checksum" (RFC 768).
        self.set_checksum(match !sum {
            0 => 0xffff,
            sum => sum,
        });
    }

    /// Computes and stores the checksum over the IPv4 pseudo-header and the datagram.
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        let len = u32::from(self.len());
        self.store_checksum(checksum::pseudo_header_v4(src, dst, ip_proto::UDP, len));
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header and the datagram.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let len = u32::from(self.len());
        self.store_checksum(checksum::pseudo_header_v6(src, dst, ip_proto::UDP, len));
    }
}

/// The meaning of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl Repr {
    /// Parses the header. The checksum is not verified here because it needs the IP addresses;
    /// use `verify_checksum_v4`/`_v6` on the packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self> {
        packet.check_len()?;
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: usize::from(packet.len()) - HEADER_LEN,
        })
    }

    /// Length of the header this emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with a zero checksum; write the payload, then call
    /// `fill_checksum_v4`/`_v6` (mandatory over IPv6). `payload_len` must not exceed
    /// `65535 - 8`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        debug_assert!(self.payload_len <= usize::from(u16::MAX) - HEADER_LEN);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len((HEADER_LEN + self.payload_len) as u16);
        packet.set_checksum(0);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UDP src={} dst={} len={}",
            self.src_port, self.dst_port, self.payload_len
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;
    use proptest::prelude::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const DST4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

    fn src6() -> Ipv6Addr {
        "2001:db8:1::1".parse().unwrap()
    }

    fn dst6() -> Ipv6Addr {
        "2001:db8:2::2".parse().unwrap()
    }

    /// NAT-T keepalive (RFC 3948 §2.3) over IPv4.
    const KEEPALIVE4: [u8; 9] = hex!("1194119400097774ff");
    /// The same datagram over IPv6.
    const KEEPALIVE6: [u8; 9] = hex!("119411940009823bff");
    /// DNS-ish datagram over IPv6 carrying "hello".
    const HELLO6: [u8; 13] = hex!("14e90035000d4b6c68656c6c6f");

    #[test]
    fn parses_known_datagrams() {
        let p = Packet::new_checked(&KEEPALIVE4[..]).unwrap();
        assert_eq!(
            (p.src_port(), p.dst_port(), p.len(), p.checksum()),
            (4500, 4500, 9, 0x7774)
        );
        assert_eq!(p.payload(), [0xff]);
        assert!(p.verify_checksum_v4(&SRC4, &DST4));
        let p = Packet::new_checked(&KEEPALIVE6[..]).unwrap();
        assert!(p.verify_checksum_v6(&src6(), &dst6()));
        let p = Packet::new_checked(&HELLO6[..]).unwrap();
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum_v6(&src6(), &dst6()));
        assert_eq!(
            Repr::parse(&p),
            Ok(Repr {
                src_port: 5353,
                dst_port: 53,
                payload_len: 5
            })
        );
    }

    #[test]
    fn emits_known_bytes_over_junk() {
        let repr = Repr {
            src_port: 4500,
            dst_port: 4500,
            payload_len: 1,
        };
        for (addrs_v6, expected) in [(false, KEEPALIVE4), (true, KEEPALIVE6)] {
            let mut buf = [0xa5u8; 9];
            let mut p = Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut p);
            p.payload_mut()[0] = 0xff;
            if addrs_v6 {
                p.fill_checksum_v6(&src6(), &dst6());
            } else {
                p.fill_checksum_v4(&SRC4, &DST4);
            }
            assert_eq!(buf, expected);
        }
        assert_eq!(repr.to_string(), "UDP src=4500 dst=4500 len=1");
    }

    #[test]
    fn zero_checksum_means_none_over_ipv4_only() {
        let mut buf = KEEPALIVE4;
        buf[6..8].fill(0);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum_v4(&SRC4, &DST4));
        assert!(!p.verify_checksum_v6(&src6(), &dst6()));
    }

    #[test]
    fn computed_zero_is_sent_as_all_ones() {
        // Pick the payload word so the datagram's sum is exactly 0xffff.
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        Repr {
            src_port: 1,
            dst_port: 2,
            payload_len: 2,
        }
        .emit(&mut p);
        let partial = checksum::combine(&[
            checksum::pseudo_header_v4(&SRC4, &DST4, ip_proto::UDP, 10),
            checksum::data(&buf),
        ]);
        buf[8..10].copy_from_slice(&(!partial).to_be_bytes());
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(&SRC4, &DST4));
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..HELLO6.len() {
            assert!(Packet::new_checked(&HELLO6[..len]).is_err(), "len {len}");
        }
        let mut short = HELLO6;
        short[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&short[..]), Err(Error::BadLength));
    }

    #[test]
    fn trailing_bytes_are_not_payload() {
        let mut buf = HELLO6.to_vec();
        buf.extend_from_slice(&[0; 3]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.payload(), b"hello");
        assert!(p.verify_checksum_v6(&src6(), &dst6()));
    }

    proptest! {
        #[test]
        fn repr_round_trip(
            src_port in any::<u16>(), dst_port in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let repr = Repr { src_port, dst_port, payload_len: payload.len() };
            let mut buf = vec![0xa5u8; repr.buffer_len() + payload.len()];
            let mut p = Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut p);
            p.payload_mut().copy_from_slice(&payload);
            p.fill_checksum_v6(&src6(), &dst6());
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum_v6(&src6(), &dst6()));
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.payload().len(), p.verify_checksum_v4(&SRC4, &DST4), Repr::parse(&p));
            }
        }
    }
}
