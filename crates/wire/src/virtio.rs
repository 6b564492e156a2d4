//! The virtio-net header (`struct virtio_net_hdr`, virtio 1.x §5.1.6) that prefixes every
//! packet on a TUN device opened with `IFF_VNET_HDR`.
//!
//! It tells the reader of a TUN device that a packet is a TCP or UDP "super-packet" to be cut
//! into `gso_size` pieces (segmentation offload), or that its transport checksum is still
//! partial; and tells the kernel the same about a packet written to it (receive coalescing).
//! Only the 10-byte legacy layout is described here: the 12-byte variant adds `num_buffers`,
//! which TUN devices never use.
//!
//! Fields are little-endian, the virtio 1.x byte order. Legacy virtio used the host's order; a
//! TUN device speaks little-endian on every host once `TUNSETVNETLE` is set, which the `sys`
//! crate does when it enables the header.

use core::fmt;

use crate::{Error, Result};

mod field {
    use crate::field::Field;

    pub(crate) const FLAGS: usize = 0;
    pub(crate) const GSO_TYPE: usize = 1;
    pub(crate) const HDR_LEN: Field = 2..4;
    pub(crate) const GSO_SIZE: Field = 4..6;
    pub(crate) const CSUM_START: Field = 6..8;
    pub(crate) const CSUM_OFFSET: Field = 8..10;
}

/// Length of the header (`sizeof(struct virtio_net_hdr)`).
pub const HEADER_LEN: usize = field::CSUM_OFFSET.end;

/// Bits of the `flags` byte.
pub mod flags {
    /// The checksum at `csum_start + csum_offset` holds only the pseudo-header sum; the rest
    /// is still to be added over `csum_start..` (`VIRTIO_NET_HDR_F_NEEDS_CSUM`).
    pub const NEEDS_CSUM: u8 = 0x01;
    /// The checksum was verified by whoever handed over the packet
    /// (`VIRTIO_NET_HDR_F_DATA_VALID`).
    pub const DATA_VALID: u8 = 0x02;
    /// Coalescing statistics are carried (`VIRTIO_NET_HDR_F_RSC_INFO`); device-to-driver
    /// only, never on a TUN device.
    pub const RSC_INFO: u8 = 0x04;
}

/// Values of the `gso_type` byte.
pub mod gso {
    /// Not a super-packet.
    pub const NONE: u8 = 0;
    /// TCP over IPv4, cut at `gso_size` payload bytes (TSO).
    pub const TCPV4: u8 = 1;
    /// UDP fragmentation offload: IP fragments of one datagram. Obsolete and refused here.
    pub const UDP: u8 = 3;
    /// TCP over IPv6 (TSO).
    pub const TCPV6: u8 = 4;
    /// UDP over IPv4 or IPv6, cut into datagrams of `gso_size` payload bytes (USO, Linux 6.2).
    pub const UDP_L4: u8 = 5;
    /// Added to a TCP type: the first segment carries CWR and only it keeps it.
    pub const ECN: u8 = 0x80;
}

/// A view over a virtio-net header.
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

    /// Checks for the 10 header bytes. Whatever follows is the packet, not part of the view.
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

    fn le16(&self, range: crate::field::Field) -> u16 {
        let b = &self.buffer.as_ref()[range];
        u16::from_le_bytes([b[0], b[1]])
    }

    /// The `flags` byte, see [`flags`].
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The `gso_type` byte, see [`gso`].
    pub fn gso_type(&self) -> u8 {
        self.buffer.as_ref()[field::GSO_TYPE]
    }

    /// Bytes of headers before the first payload byte, as the sender claims. Linux fills in
    /// the length of its linear buffer instead, so readers should not rely on it.
    pub fn hdr_len(&self) -> u16 {
        self.le16(field::HDR_LEN)
    }

    /// Payload bytes per segment of a super-packet (the MSS for TCP).
    pub fn gso_size(&self) -> u16 {
        self.le16(field::GSO_SIZE)
    }

    /// Offset from the start of the packet where checksumming starts (the transport header).
    pub fn csum_start(&self) -> u16 {
        self.le16(field::CSUM_START)
    }

    /// Offset from `csum_start` of the 16-bit checksum field.
    pub fn csum_offset(&self) -> u16 {
        self.le16(field::CSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_le16(&mut self, range: crate::field::Field, value: u16) {
        self.buffer.as_mut()[range].copy_from_slice(&value.to_le_bytes());
    }

    /// Sets the `flags` byte.
    pub fn set_flags(&mut self, value: u8) {
        self.buffer.as_mut()[field::FLAGS] = value;
    }

    /// Sets the `gso_type` byte.
    pub fn set_gso_type(&mut self, value: u8) {
        self.buffer.as_mut()[field::GSO_TYPE] = value;
    }

    /// Sets the header length.
    pub fn set_hdr_len(&mut self, value: u16) {
        self.set_le16(field::HDR_LEN, value);
    }

    /// Sets the segment payload size.
    pub fn set_gso_size(&mut self, value: u16) {
        self.set_le16(field::GSO_SIZE, value);
    }

    /// Sets where checksumming starts.
    pub fn set_csum_start(&mut self, value: u16) {
        self.set_le16(field::CSUM_START, value);
    }

    /// Sets the checksum field's offset from `csum_start`.
    pub fn set_csum_offset(&mut self, value: u16) {
        self.set_le16(field::CSUM_OFFSET, value);
    }
}

/// What kind of super-packet a header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum GsoType {
    /// One packet as it is.
    #[default]
    None,
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP over IPv4 or IPv6, one datagram per segment.
    UdpL4,
}

impl GsoType {
    fn from_byte(value: u8) -> Result<Self> {
        match value {
            gso::NONE => Ok(Self::None),
            gso::TCPV4 => Ok(Self::TcpV4),
            gso::TCPV6 => Ok(Self::TcpV6),
            gso::UDP_L4 => Ok(Self::UdpL4),
            _ => Err(Error::Unrecognized),
        }
    }

    const fn byte(self) -> u8 {
        match self {
            Self::None => gso::NONE,
            Self::TcpV4 => gso::TCPV4,
            Self::TcpV6 => gso::TCPV6,
            Self::UdpL4 => gso::UDP_L4,
        }
    }

    /// Whether this is a TCP type (the ones [`gso::ECN`] may be added to).
    pub const fn is_tcp(self) -> bool {
        matches!(self, Self::TcpV4 | Self::TcpV6)
    }
}

/// Where a partial transport checksum is to be completed (`NEEDS_CSUM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartialChecksum {
    /// Offset of the first byte to sum: the transport header.
    pub start: u16,
    /// Offset of the checksum field from `start` (16 for TCP, 6 for UDP).
    pub offset: u16,
}

/// The meaning of a virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Repr {
    /// The transport checksum is partial and where to finish it; `None` when it is complete
    /// (or absent).
    pub csum: Option<PartialChecksum>,
    /// The sender verified the checksum.
    pub data_valid: bool,
    /// Super-packet kind.
    pub gso_type: GsoType,
    /// [`gso::ECN`]: CWR belongs to the first segment only. Only with a TCP `gso_type`.
    pub ecn: bool,
    /// Claimed header bytes before the payload; 0 when the sender gives no hint.
    pub hdr_len: u16,
    /// Payload bytes per segment; nonzero for a super-packet, 0 otherwise.
    pub gso_size: u16,
}

impl Repr {
    /// Parses a header. Refused as [`Error::Unrecognized`]: flag bits other than
    /// `NEEDS_CSUM`/`DATA_VALID`, UDP fragmentation offload and unknown GSO types, and ECN on a
    /// non-TCP type. A super-packet with `gso_size` 0 is [`Error::BadLength`]. Checksum
    /// offsets are kept only with `NEEDS_CSUM`, and `gso_size` only for a super-packet, since
    /// both mean nothing otherwise.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self> {
        packet.check_len()?;
        let flags = packet.flags();
        if flags & !(flags::NEEDS_CSUM | flags::DATA_VALID) != 0 {
            return Err(Error::Unrecognized);
        }
        let raw = packet.gso_type();
        let ecn = raw & gso::ECN != 0;
        let gso_type = GsoType::from_byte(raw & !gso::ECN)?;
        if ecn && !gso_type.is_tcp() {
            return Err(Error::Unrecognized);
        }
        let gso_size = match gso_type {
            GsoType::None => 0,
            _ if packet.gso_size() == 0 => return Err(Error::BadLength),
            _ => packet.gso_size(),
        };
        let csum = (flags & flags::NEEDS_CSUM != 0).then(|| PartialChecksum {
            start: packet.csum_start(),
            offset: packet.csum_offset(),
        });
        Ok(Self {
            csum,
            data_valid: flags & flags::DATA_VALID != 0,
            gso_type,
            ecn,
            hdr_len: packet.hdr_len(),
            gso_size,
        })
    }

    /// Length of the header this emits.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes all ten bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let mut flags = 0;
        if self.csum.is_some() {
            flags |= flags::NEEDS_CSUM;
        }
        if self.data_valid {
            flags |= flags::DATA_VALID;
        }
        packet.set_flags(flags);
        let ecn = if self.ecn { gso::ECN } else { 0 };
        packet.set_gso_type(self.gso_type.byte() | ecn);
        packet.set_hdr_len(self.hdr_len);
        packet.set_gso_size(self.gso_size);
        let csum = self.csum.unwrap_or(PartialChecksum {
            start: 0,
            offset: 0,
        });
        packet.set_csum_start(csum.start);
        packet.set_csum_offset(csum.offset);
    }

    /// Whether the packet behind the header is a super-packet to be segmented.
    pub const fn is_gso(&self) -> bool {
        !matches!(self.gso_type, GsoType::None)
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "virtio-net gso={:?}", self.gso_type)?;
        if self.ecn {
            f.write_str("+ecn")?;
        }
        if self.is_gso() {
            write!(f, " size={}", self.gso_size)?;
        }
        write!(f, " hdr_len={}", self.hdr_len)?;
        if let Some(csum) = self.csum {
            write!(f, " csum={}+{}", csum.start, csum.offset)?;
        }
        if self.data_valid {
            f.write_str(" data-valid")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;
    use proptest::prelude::*;

    /// A TCP/IPv4 super-packet as Linux hands it out: NEEDS_CSUM, TSO v4, hdr_len 66,
    /// MSS 1448, checksum at 20 + 16.
    const TSO4: [u8; 10] = hex!("0101 4200 a805 1400 1000");
    /// A plain packet the sender verified.
    const VALID: [u8; 10] = hex!("0200 0000 0000 0000 0000");

    #[test]
    fn parses_known_headers() {
        let p = Packet::new_checked(&TSO4[..]).unwrap();
        assert_eq!(
            (
                p.flags(),
                p.gso_type(),
                p.hdr_len(),
                p.gso_size(),
                p.csum_start(),
                p.csum_offset()
            ),
            (1, 1, 66, 1448, 20, 16)
        );
        assert_eq!(
            Repr::parse(&p),
            Ok(Repr {
                csum: Some(PartialChecksum {
                    start: 20,
                    offset: 16
                }),
                data_valid: false,
                gso_type: GsoType::TcpV4,
                ecn: false,
                hdr_len: 66,
                gso_size: 1448,
            })
        );
        let repr = Repr::parse(&Packet::new_checked(&VALID[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                data_valid: true,
                ..Repr::default()
            }
        );
        assert!(!repr.is_gso());
    }

    #[test]
    fn emits_known_bytes_over_junk() {
        for known in [TSO4, VALID] {
            let repr = Repr::parse(&Packet::new_checked(&known[..]).unwrap()).unwrap();
            let mut buf = [0xa5u8; HEADER_LEN];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            assert_eq!(buf, known);
        }
    }

    #[test]
    fn ecn_rides_on_tcp_only() {
        let mut buf = TSO4;
        buf[1] = gso::TCPV6 | gso::ECN;
        let repr = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!((repr.gso_type, repr.ecn), (GsoType::TcpV6, true));
        assert_eq!(
            repr.to_string(),
            "virtio-net gso=TcpV6+ecn size=1448 hdr_len=66 csum=20+16"
        );
        buf[1] = gso::UDP_L4 | gso::ECN;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()),
            Err(Error::Unrecognized)
        );
    }

    #[test]
    fn refuses_what_it_cannot_mean() {
        let refused = |flags: u8, gso_type: u8, gso_size: u16| {
            let mut buf = TSO4;
            buf[0] = flags;
            buf[1] = gso_type;
            buf[4..6].copy_from_slice(&gso_size.to_le_bytes());
            Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap_err()
        };
        assert_eq!(refused(flags::RSC_INFO, 0, 0), Error::Unrecognized);
        assert_eq!(refused(0x80, 0, 0), Error::Unrecognized);
        assert_eq!(refused(0, gso::UDP, 1400), Error::Unrecognized);
        assert_eq!(refused(0, 2, 1400), Error::Unrecognized);
        assert_eq!(refused(0, 6, 1400), Error::Unrecognized);
        assert_eq!(refused(0, gso::ECN, 0), Error::Unrecognized);
        assert_eq!(refused(1, gso::TCPV4, 0), Error::BadLength);
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&TSO4[..len]), Err(Error::Truncated));
        }
    }

    #[test]
    fn meaningless_fields_are_dropped() {
        // No NEEDS_CSUM: the offsets are noise. No GSO: so is the segment size.
        let buf = hex!("0000 4200 a805 1400 1000");
        let repr = Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap();
        assert_eq!(
            repr,
            Repr {
                hdr_len: 66,
                ..Repr::default()
            }
        );
        let mut out = [0xffu8; HEADER_LEN];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, hex!("0000 4200 0000 0000 0000"));
    }

    fn any_repr() -> impl Strategy<Value = Repr> {
        let gso_type = prop_oneof![
            Just(GsoType::None),
            Just(GsoType::TcpV4),
            Just(GsoType::TcpV6),
            Just(GsoType::UdpL4),
        ];
        let csum = proptest::option::of((any::<u16>(), any::<u16>()));
        (
            gso_type,
            any::<bool>(),
            any::<bool>(),
            any::<u16>(),
            1..=u16::MAX,
            csum,
        )
            .prop_map(|(gso_type, ecn, data_valid, hdr_len, size, csum)| Repr {
                csum: csum.map(|(start, offset)| PartialChecksum { start, offset }),
                data_valid,
                gso_type,
                ecn: ecn && gso_type.is_tcp(),
                hdr_len,
                gso_size: if gso_type == GsoType::None { 0 } else { size },
            })
    }

    proptest! {
        #[test]
        fn every_repr_survives_emit_over_junk(repr in any_repr(), junk in any::<u8>()) {
            let mut buf = [junk; HEADER_LEN];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
        }

        #[test]
        fn parse_never_panics_and_accepted_headers_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let Ok(packet) = Packet::new_checked(&bytes[..]) else {
                prop_assert!(bytes.len() < HEADER_LEN);
                return Ok(());
            };
            if let Ok(repr) = Repr::parse(&packet) {
                let mut buf = [0x5au8; HEADER_LEN];
                repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
                prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Ok(repr));
                // Emitting drops only what parse declared meaningless.
                prop_assert_eq!(&buf[..2], &bytes[..2]);
                prop_assert_eq!(&buf[2..4], &bytes[2..4]);
                if repr.is_gso() {
                    prop_assert_eq!(&buf[4..6], &bytes[4..6]);
                }
                if repr.csum.is_some() {
                    prop_assert_eq!(&buf[6..10], &bytes[6..10]);
                }
            }
        }
    }
}
