//! The inner packet: what family it is and the few header fields the tunnel
//! decides on.

use std::net::IpAddr;

use wire::{Ipv4Packet, Ipv6Packet, ip_proto, ipv6};

use crate::DropReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    /// The outer Next Header that announces this family (RFC 2473 §3).
    pub(crate) const fn protocol(self) -> u8 {
        match self {
            Self::V4 => ip_proto::IPIP,
            Self::V6 => ip_proto::IPV6,
        }
    }

    pub(crate) const fn from_protocol(protocol: u8) -> Option<Self> {
        match protocol {
            ip_proto::IPIP => Some(Self::V4),
            ip_proto::IPV6 => Some(Self::V6),
            _ => None,
        }
    }
}

/// Header fields of a structurally valid inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Inner {
    pub(crate) family: Family,
    /// The packet's own length (IPv4 total length, or 40 + IPv6 payload length);
    /// any bytes past it are not part of the packet.
    pub(crate) len: usize,
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    /// IPv4 TOS / IPv6 traffic class, ECN bits included.
    pub(crate) traffic_class: u8,
}

impl Inner {
    /// Reads the version nibble and checks the header of that version.
    ///
    /// The IPv4 header checksum is only verified when asked: packets from the
    /// TUN device come from the local stack, packets from the underlay do not.
    pub(crate) fn parse(bytes: &[u8], verify_checksum: bool) -> Result<Self, DropReason> {
        match bytes.first().map(|b| b >> 4) {
            Some(4) => {
                let packet = Ipv4Packet::new_checked(bytes).map_err(|_| DropReason::Malformed)?;
                if verify_checksum && !packet.verify_checksum() {
                    return Err(DropReason::Malformed);
                }
                Ok(Self {
                    family: Family::V4,
                    len: usize::from(packet.total_len()),
                    src: packet.src_addr().into(),
                    dst: packet.dst_addr().into(),
                    traffic_class: packet.dscp_ecn(),
                })
            }
            Some(6) => {
                let packet = Ipv6Packet::new_checked(bytes).map_err(|_| DropReason::Malformed)?;
                Ok(Self {
                    family: Family::V6,
                    len: ipv6::HEADER_LEN + usize::from(packet.payload_len()),
                    src: packet.src_addr().into(),
                    dst: packet.dst_addr().into(),
                    traffic_class: packet.traffic_class(),
                })
            }
            _ => Err(DropReason::Malformed),
        }
    }
}

/// Sets the inner ECN field to Congestion Experienced, keeping the IPv4 header
/// checksum valid.
pub(crate) fn mark_congestion(packet: &mut [u8], family: Family) {
    const CE: u8 = 0b11;
    match family {
        Family::V4 => {
            let mut packet = Ipv4Packet::new_unchecked(packet);
            let tos = packet.dscp_ecn();
            packet.set_dscp_ecn(tos | CE);
            packet.fill_checksum();
        }
        Family::V6 => {
            let mut packet = Ipv6Packet::new_unchecked(packet);
            let tc = packet.traffic_class();
            packet.set_traffic_class(tc | CE);
        }
    }
}

/// The transport protocol of an inner packet [`Inner::parse`] accepted: IPv4's protocol
/// field, or IPv6's next header (a transport behind extension headers does not count).
pub(crate) fn inner_protocol(packet: &[u8], family: Family) -> u8 {
    match family {
        Family::V4 => Ipv4Packet::new_unchecked(packet).protocol(),
        Family::V6 => Ipv6Packet::new_unchecked(packet).next_header(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    // ICMP echo request 198.51.100.1 -> 203.0.113.1, TOS 0x2e, with a valid checksum.
    const V4: [u8; 28] = hex!(
        "45 2e 00 1c 12 34 40 00 40 01 c2 48 c6 33 64 01 cb 00 71 01"
        "08 00 f7 ff 00 00 00 00"
    );

    #[test]
    fn parses_both_families() {
        let inner = Inner::parse(&V4, true).unwrap();
        assert_eq!(inner.family, Family::V4);
        assert_eq!(inner.len, 28);
        assert_eq!(inner.src, "198.51.100.1".parse::<IpAddr>().unwrap());
        assert_eq!(inner.dst, "203.0.113.1".parse::<IpAddr>().unwrap());
        assert_eq!(inner.traffic_class, 0x2e);

        let mut v6 = [0u8; 48];
        v6[0] = 0x6b; // version 6, traffic class 0xb0
        v6[1] = 0x00;
        v6[5] = 8;
        v6[6] = ip_proto::NONE;
        v6[23] = 1;
        v6[39] = 2;
        let inner = Inner::parse(&v6, true).unwrap();
        assert_eq!(inner.family, Family::V6);
        assert_eq!(inner.len, 48);
        assert_eq!(inner.traffic_class, 0xb0);
        assert_eq!(inner.dst, "::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rejects_bad_checksum_only_when_asked() {
        let mut bad = V4;
        bad[10] ^= 1;
        assert_eq!(Inner::parse(&bad, true), Err(DropReason::Malformed));
        assert!(Inner::parse(&bad, false).is_ok());
    }

    #[test]
    fn rejects_every_truncation_and_other_versions() {
        for len in 0..V4.len() {
            assert_eq!(Inner::parse(&V4[..len], false), Err(DropReason::Malformed));
        }
        let mut v5 = V4;
        v5[0] = 0x55;
        assert_eq!(Inner::parse(&v5, false), Err(DropReason::Malformed));
    }

    #[test]
    fn congestion_mark_keeps_the_checksum_valid() {
        let mut packet = V4;
        mark_congestion(&mut packet, Family::V4);
        let view = Ipv4Packet::new_checked(&packet[..]).unwrap();
        assert_eq!(view.dscp_ecn(), 0x2f);
        assert!(view.verify_checksum());
    }
}
