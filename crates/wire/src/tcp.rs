//! TCP header (RFC 9293 §3.1) and the Maximum Segment Size option (RFC 9293 §3.7.1), for MSS
//! clamping on tunnel ingress.

use core::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::field::{be16, be32};
use crate::{Error, Result, checksum, ip_proto};

/// End of Option List.
pub const OPT_END: u8 = 0;
/// No-Operation (padding between options).
pub const OPT_NOP: u8 = 1;
/// Maximum Segment Size; length 4.
pub const OPT_MSS: u8 = 2;

/// Length of the MSS option.
const MSS_OPT_LEN: usize = 4;

/// Control bits in byte 13 of the header.
pub mod flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field is significant.
    pub const URG: u8 = 0x20;
    /// ECN-Echo (RFC 3168).
    pub const ECE: u8 = 0x40;
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: u8 = 0x80;
}

mod field {
    use crate::field::Field;

    pub(crate) const SRC_PORT: Field = 0..2;
    pub(crate) const DST_PORT: Field = 2..4;
    pub(crate) const SEQ_NUM: Field = 4..8;
    pub(crate) const ACK_NUM: Field = 8..12;
    /// Data offset in the upper nibble; the lower nibble is reserved (and the old NS bit).
    pub(crate) const DATA_OFF: usize = 12;
    pub(crate) const FLAGS: usize = 13;
    pub(crate) const WIN_SIZE: Field = 14..16;
    pub(crate) const CHECKSUM: Field = 16..18;
    pub(crate) const URGENT: Field = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::URGENT.end;

/// A view over a TCP segment. The buffer must be the segment exactly (the IP payload): the
/// checksum covers all of it.
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

    /// Checks for a 20-byte header and a data offset of at least 5 words inside the buffer.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(Error::BadHeaderLen);
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

    /// Sequence number.
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    /// Acknowledgment number.
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset × 4), options included.
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The eight control bits of byte 13, see [`flags`].
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// SYN flag.
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    /// ACK flag.
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    /// RST flag.
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    /// FIN flag.
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    /// Receive window.
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    /// Checksum field as stored.
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Urgent pointer.
    pub fn urgent(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT.start)
    }

    /// The option bytes between the fixed header and the payload.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The MSS option's value, if the segment has one.
    ///
    /// Walks the options: End of Option List stops, NOP is skipped, every other option needs a
    /// length of at least 2 that stays in bounds, and MSS needs length 4; anything else is
    /// [`Error::BadOption`]. With several MSS options the first is returned.
    pub fn mss(&self) -> Result<Option<u16>> {
        let mut first = None;
        for_each_mss(self.options(), |_, value| {
            first.get_or_insert(value);
        })?;
        Ok(first)
    }

    /// Whether the checksum verifies over the IPv4 pseudo-header and the whole segment.
    pub fn verify_checksum_v4(&self, src: &Ipv4Addr, dst: &Ipv4Addr) -> bool {
        let data = self.buffer.as_ref();
        let len = length_u32(data);
        checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, ip_proto::TCP, len),
            checksum::data(data),
        ]) == 0xffff
    }

    /// Whether the checksum verifies over the IPv6 pseudo-header and the whole segment.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let data = self.buffer.as_ref();
        let len = length_u32(data);
        checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, ip_proto::TCP, len),
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

    /// Sets the sequence number.
    pub fn set_seq_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    pub fn set_ack_number(&mut self, value: u32) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the header length in bytes (stored in 4-byte words) and clears the reserved bits.
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    /// Sets the eight control bits, see [`flags`].
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the receive window.
    pub fn set_window(&mut self, value: u16) {
        self.buffer.as_mut()[field::WIN_SIZE].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the checksum field as stored.
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the urgent pointer.
    pub fn set_urgent(&mut self, value: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&value.to_be_bytes());
    }

    /// The option bytes, mutable.
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The payload, mutable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }

    /// Computes and stores the checksum over the IPv4 pseudo-header and the whole segment.
    pub fn fill_checksum_v4(&mut self, src: &Ipv4Addr, dst: &Ipv4Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(src, dst, ip_proto::TCP, length_u32(data)),
            checksum::data(data),
        ]);
        self.set_checksum(!sum);
    }

    /// Computes and stores the checksum over the IPv6 pseudo-header and the whole segment.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        self.set_checksum(0);
        let data = self.buffer.as_ref();
        let sum = checksum::combine(&[
            checksum::pseudo_header_v6(src, dst, ip_proto::TCP, length_u32(data)),
            checksum::data(data),
        ]);
        self.set_checksum(!sum);
    }

    /// Lowers the MSS option to `max` if it is larger, fixing the checksum incrementally (RFC
    /// 1624) so this works on any segment length without touching the payload. Ok(Some(old))
    /// when changed.
    ///
    /// Only SYN segments are touched: MSS is meaningful only there (RFC 9293 §3.7.1), so any
    /// other segment is `Ok(None)`. Every MSS option above `max` is lowered, because receivers
    /// differ in whether the first or the last duplicate wins; `old` is the first one changed.
    /// The options are validated as in [`mss`](Self::mss) before anything is written, so an
    /// error leaves the segment untouched. A correct checksum stays correct and a wrong one
    /// stays wrong, without the addresses being needed.
    pub fn clamp_mss(&mut self, max: u16) -> Result<Option<u16>> {
        if !self.syn() {
            return Ok(None);
        }
        // 40 option bytes hold at most ten 4-byte MSS options.
        let mut changes = [(0usize, 0u16); 10];
        let mut count = 0;
        for_each_mss(self.options(), |at, value| {
            if value > max && count < changes.len() {
                changes[count] = (at, value);
                count += 1;
            }
        })?;
        let mut sum = self.checksum();
        for &(at, old) in &changes[..count] {
            let offset = HEADER_LEN + at;
            self.buffer.as_mut()[offset..offset + 2].copy_from_slice(&max.to_be_bytes());
            // The checksum sums 16-bit words aligned to the segment start; a value at an odd
            // offset straddles two words and enters the sum byte-swapped (RFC 1071 §2(B)).
            sum = if offset % 2 == 0 {
                checksum::update(sum, old, max)
            } else {
                checksum::update(sum, old.swap_bytes(), max.swap_bytes())
            };
        }
        self.set_checksum(sum);
        Ok(changes[..count].first().map(|&(_, old)| old))
    }
}

/// Validates `options` and calls `found(offset of the MSS value within options, value)` for
/// every MSS option.
fn for_each_mss(options: &[u8], mut found: impl FnMut(usize, u16)) -> Result<()> {
    let mut at = 0;
    while let Some(&kind) = options.get(at) {
        match kind {
            OPT_END => break,
            OPT_NOP => at += 1,
            _ => {
                let len = usize::from(*options.get(at + 1).ok_or(Error::BadOption)?);
                if len < 2 || at + len > options.len() {
                    return Err(Error::BadOption);
                }
                if kind == OPT_MSS {
                    if len != MSS_OPT_LEN {
                        return Err(Error::BadOption);
                    }
                    found(at + 2, be16(options, at + 2));
                }
                at += len;
            }
        }
    }
    Ok(())
}

fn length_u32(data: &[u8]) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

/// A TCP segment as a test or a generated reply needs it: fixed fields, an optional MSS option
/// and the payload. Other options are not represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Control bits, see [`flags`].
    pub flags: u8,
    /// Receive window.
    pub window: u16,
    /// MSS option value.
    pub mss: Option<u16>,
    /// Payload.
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Parses a segment's structure. The checksum is not verified here because it needs the IP
    /// addresses; use `verify_checksum_v4`/`_v6` on the packet.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Self> {
        packet.check_len()?;
        let buffer: &'a [u8] = packet.buffer.as_ref();
        Ok(Self {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window: packet.window(),
            mss: packet.mss()?,
            payload: &buffer[packet.header_len()..],
        })
    }

    /// Length of the header this emits, options included.
    pub const fn header_len(&self) -> usize {
        if self.mss.is_some() {
            HEADER_LEN + MSS_OPT_LEN
        } else {
            HEADER_LEN
        }
    }

    /// Length of the segment this emits.
    pub const fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the whole segment with a zero checksum and urgent pointer; follow with
    /// `fill_checksum_v4`/`_v6`. The packet's buffer must be exactly
    /// [`buffer_len`](Self::buffer_len) bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(self.header_len());
        packet.set_flags(self.flags);
        packet.set_window(self.window);
        packet.set_checksum(0);
        packet.set_urgent(0);
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            packet
                .options_mut()
                .copy_from_slice(&[OPT_MSS, MSS_OPT_LEN as u8, hi, lo]);
        }
        packet.payload_mut()[..self.payload.len()].copy_from_slice(self.payload);
    }
}

impl fmt::Display for Repr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TCP src={} dst={}", self.src_port, self.dst_port)?;
        for (bit, name) in [
            (flags::SYN, " syn"),
            (flags::ACK, " ack"),
            (flags::FIN, " fin"),
            (flags::RST, " rst"),
            (flags::PSH, " psh"),
            (flags::URG, " urg"),
            (flags::ECE, " ece"),
            (flags::CWR, " cwr"),
        ] {
            if self.flags & bit != 0 {
                f.write_str(name)?;
            }
        }
        write!(
            f,
            " seq={} ack={} win={}",
            self.seq_number, self.ack_number, self.window
        )?;
        if let Some(mss) = self.mss {
            write!(f, " mss={mss}")?;
        }
        write!(f, " len={}", self.payload.len())
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

    /// A Linux-style SYN over IPv4: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
    const SYN4: [u8; 40] = hex!(
        "9c4001bb0102030400000000a002faf014960000"
        "020405b40402080a000030390000000001030307"
    );
    /// SYN over IPv6 whose MSS (1440) follows a NOP, so its value sits at an odd offset.
    const SYN6_ODD: [u8; 32] = hex!(
        "9c4001bb01020304000000008002fd20db260000"
        "01020405a004020303070000"
    );
    /// PSH/ACK over IPv4 carrying a request line.
    const DATA4: [u8; 36] = hex!(
        "9c4001bb0000000500000009501801f6d7e70000"
        "474554202f20485454502f312e310d0a"
    );
    /// SYN over IPv4 with nothing but MSS 1460.
    const SYN4_MSS_ONLY: [u8; 24] = hex!("9c4001bb01020304000000006002faf094f50000020405b4");

    #[test]
    fn parses_known_syn() {
        let p = Packet::new_checked(&SYN4[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (40000, 443));
        assert_eq!((p.seq_number(), p.ack_number()), (0x0102_0304, 0));
        assert_eq!(p.header_len(), 40);
        assert!(p.syn() && !p.ack() && !p.rst() && !p.fin());
        assert_eq!(p.window(), 64240);
        assert_eq!(p.checksum(), 0x1496);
        assert_eq!(p.urgent(), 0);
        assert_eq!(p.options(), &SYN4[20..]);
        assert!(p.payload().is_empty());
        assert_eq!(p.mss(), Ok(Some(1460)));
        assert!(p.verify_checksum_v4(&SRC4, &DST4));
        assert!(!p.verify_checksum_v4(&DST4, &SRC4.octets().map(|b| b ^ 1).into()));
    }

    #[test]
    fn parses_known_data_segment() {
        let p = Packet::new_checked(&DATA4[..]).unwrap();
        assert!(p.ack() && !p.syn());
        assert_eq!(p.flags(), flags::PSH | flags::ACK);
        assert_eq!(p.payload(), b"GET / HTTP/1.1\r\n");
        assert_eq!(p.mss(), Ok(None));
        assert!(p.verify_checksum_v4(&SRC4, &DST4));
    }

    #[test]
    fn repr_emits_known_bytes_over_junk() {
        let repr = Repr {
            src_port: 40000,
            dst_port: 443,
            seq_number: 0x0102_0304,
            ack_number: 0,
            flags: flags::SYN,
            window: 64240,
            mss: Some(1460),
            payload: &[],
        };
        let mut buf = [0xa5u8; 24];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(buf, SYN4_MSS_ONLY);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Ok(repr)
        );
        assert_eq!(
            repr.to_string(),
            "TCP src=40000 dst=443 syn seq=16909060 ack=0 win=64240 mss=1460 len=0"
        );
    }

    #[test]
    fn checksum_v6_known_answer() {
        let p = Packet::new_checked(&SYN6_ODD[..]).unwrap();
        assert!(p.verify_checksum_v6(&src6(), &dst6()));
        assert_eq!(p.mss(), Ok(Some(1440)));
        let mut buf = SYN6_ODD;
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum_v6(&src6(), &dst6());
        assert_eq!(buf, SYN6_ODD);
    }

    #[test]
    fn every_truncation_is_rejected() {
        for len in 0..SYN4.len() {
            assert!(Packet::new_checked(&SYN4[..len]).is_err(), "len {len}");
        }
        assert_eq!(Packet::new_checked(&SYN4[..19]), Err(Error::Truncated));
        assert_eq!(Packet::new_checked(&SYN4[..39]), Err(Error::BadHeaderLen));
        let mut low = SYN4;
        low[12] = 0x40;
        assert_eq!(Packet::new_checked(&low[..]), Err(Error::BadHeaderLen));
    }

    #[test]
    fn clamp_lowers_mss_at_even_offset() {
        let mut buf = SYN4;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.clamp_mss(1412), Ok(Some(1460)));
        assert_eq!(p.mss(), Ok(Some(1412)));
        assert!(p.verify_checksum_v4(&SRC4, &DST4));
        assert_eq!(buf[22..24], 1412u16.to_be_bytes());
        let mut expect = SYN4;
        expect[22..24].copy_from_slice(&1412u16.to_be_bytes());
        Packet::new_unchecked(&mut expect[..]).fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(buf, expect);
    }

    #[test]
    fn clamp_lowers_mss_at_odd_offset() {
        let mut buf = SYN6_ODD;
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        assert_eq!(p.clamp_mss(1220), Ok(Some(1440)));
        assert_eq!(p.mss(), Ok(Some(1220)));
        assert!(p.verify_checksum_v6(&src6(), &dst6()));
    }

    #[test]
    fn clamp_leaves_small_mss_and_non_syn_alone() {
        let mut buf = SYN4;
        assert_eq!(
            Packet::new_checked(&mut buf[..]).unwrap().clamp_mss(1460),
            Ok(None)
        );
        assert_eq!(
            Packet::new_checked(&mut buf[..]).unwrap().clamp_mss(9000),
            Ok(None)
        );
        assert_eq!(buf, SYN4);
        // A non-SYN with an MSS option is not clamped: MSS means nothing there.
        let mut ack = SYN4;
        ack[13] = flags::ACK;
        assert_eq!(
            Packet::new_checked(&mut ack[..]).unwrap().clamp_mss(500),
            Ok(None)
        );
        assert_eq!(ack[22..24], 1460u16.to_be_bytes());
    }

    #[test]
    fn clamp_lowers_every_duplicate_mss() {
        let mut seg = hex!("9c4001bb0102030400000000 7002faf00000 0000 020405b4 0204ffff").to_vec();
        let mut p = Packet::new_checked(&mut seg[..]).unwrap();
        p.fill_checksum_v4(&SRC4, &DST4);
        assert_eq!(p.clamp_mss(1400), Ok(Some(1460)));
        assert_eq!(p.options(), hex!("02040578 02040578"));
        assert!(p.verify_checksum_v4(&SRC4, &DST4));
    }

    #[test]
    fn malformed_options_are_errors_and_leave_the_segment_untouched() {
        for options in [
            hex!("02030578 01010101"), // MSS with length 3
            hex!("020405b4 08ff0000"), // option runs past the header
            hex!("020405b4 01010108"), // kind in the last byte, no length
            hex!("020405b4 05000000"), // length 0
            hex!("020405b4 05010000"), // length 1
        ] {
            let mut seg = SYN4_MSS_ONLY[..20].to_vec();
            seg.extend_from_slice(&options);
            seg[12] = 0x70;
            let before = seg.clone();
            let mut p = Packet::new_checked(&mut seg[..]).unwrap();
            assert_eq!(p.mss(), Err(Error::BadOption), "{options:02x?}");
            assert_eq!(p.clamp_mss(1000), Err(Error::BadOption), "{options:02x?}");
            assert_eq!(seg, before);
        }
    }

    #[test]
    fn end_of_option_list_stops_the_walk() {
        let mut seg = SYN4_MSS_ONLY[..20].to_vec();
        seg.extend_from_slice(&hex!("00 020405b4 ffffff"));
        seg[12] = 0x70;
        assert_eq!(Packet::new_checked(&seg[..]).unwrap().mss(), Ok(None));
    }

    /// Options other than MSS that a real SYN carries.
    fn other_option() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(vec![OPT_NOP]),
            Just(vec![4, 2]),
            any::<u8>().prop_map(|s| vec![3, 3, s]),
            any::<[u8; 8]>().prop_map(|t| [&[8u8, 10][..], &t].concat()),
        ]
    }

    proptest! {
        #[test]
        fn clamp_keeps_checksum_valid(
            before in proptest::collection::vec(other_option(), 0..3),
            after in proptest::collection::vec(other_option(), 0..3),
            mss in any::<u16>(),
            max in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..1500),
            v6 in any::<bool>(),
            a4 in any::<[u8; 4]>(), b4 in any::<[u8; 4]>(),
            a6 in any::<[u8; 16]>(), b6 in any::<[u8; 16]>(),
        ) {
            let mut options: Vec<u8> = before.concat();
            options.extend([OPT_MSS, 4]);
            options.extend(mss.to_be_bytes());
            options.extend(after.concat());
            while options.len() % 4 != 0 {
                options.push(OPT_END);
            }
            // The 4-bit data offset caps options at 40 bytes.
            prop_assume!(options.len() <= 40);
            let header_len = HEADER_LEN + options.len();
            let mut seg = vec![0xa5u8; header_len];
            seg[field::DATA_OFF] = ((header_len / 4) as u8) << 4;
            seg[field::FLAGS] = flags::SYN;
            seg[HEADER_LEN..].copy_from_slice(&options);
            seg.extend(&payload);
            let (a4, b4, a6, b6) = (a4.into(), b4.into(), a6.into(), b6.into());
            let mut p = Packet::new_checked(&mut seg[..]).unwrap();
            if v6 { p.fill_checksum_v6(&a6, &b6) } else { p.fill_checksum_v4(&a4, &b4) }

            let changed = p.clamp_mss(max).unwrap();
            prop_assert_eq!(changed, (mss > max).then_some(mss));
            prop_assert_eq!(p.mss().unwrap(), Some(mss.min(max)));
            let valid = if v6 { p.verify_checksum_v6(&a6, &b6) } else { p.verify_checksum_v4(&a4, &b4) };
            prop_assert!(valid);
            let clamped = p.checksum();
            if v6 { p.fill_checksum_v6(&a6, &b6) } else { p.fill_checksum_v4(&a4, &b4) }
            prop_assert_eq!(clamped, p.checksum(), "incremental equals recomputed");
            prop_assert_eq!(p.payload(), &payload[..]);
        }

        #[test]
        fn repr_round_trip(
            src_port in any::<u16>(), dst_port in any::<u16>(), seq_number in any::<u32>(),
            ack_number in any::<u32>(), flags in any::<u8>(), window in any::<u16>(),
            mss in proptest::option::of(any::<u16>()),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let repr = Repr { src_port, dst_port, seq_number, ack_number, flags, window, mss, payload: &payload };
            let mut buf = vec![0xa5u8; repr.buffer_len()];
            let mut p = Packet::new_unchecked(&mut buf[..]);
            repr.emit(&mut p);
            p.fill_checksum_v4(&SRC4, &DST4);
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(p.verify_checksum_v4(&SRC4, &DST4));
            prop_assert_eq!(Repr::parse(&p).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = (p.mss(), p.options().len(), p.payload().len(), Repr::parse(&p));
            }
            if let Ok(mut p) = Packet::new_checked(&mut bytes[..]) {
                let _ = p.clamp_mss(536);
            }
        }
    }
}
