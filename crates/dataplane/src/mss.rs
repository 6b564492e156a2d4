//! TCP MSS clamping on SYN and SYN-ACK segments.
//!
//! Lowering the MSS that each end announces keeps TCP segments inside the
//! tunnel MTU without relying on ICMP reaching the sender, which many
//! firewalls drop (the "PMTUD black hole").

use wire::{Ipv4Packet, Ipv6Packet, TcpPacket, ip_proto, ipv6, ipv6_ext};

use crate::inner::Family;

/// Lowers the MSS option of an unfragmented TCP SYN in `packet` to `max`.
///
/// `packet` must have passed [`Inner::parse`](crate::inner::Inner::parse) and
/// be cut to its own length. Returns true if the option was lowered. Segments
/// that cannot be read (bad options, truncated header) are left as they are:
/// clamping is a courtesy, and the receiving stack decides what is malformed.
pub(crate) fn clamp(packet: &mut [u8], family: Family, max: u16) -> bool {
    let segment = match family {
        Family::V4 => {
            let view = Ipv4Packet::new_unchecked(&*packet);
            if view.protocol() != ip_proto::TCP || view.more_frags() || view.frag_offset() != 0 {
                return false;
            }
            let start = view.header_len();
            &mut packet[start..]
        }
        Family::V6 => {
            let view = Ipv6Packet::new_unchecked(&*packet);
            let Ok(walk) = ipv6_ext::walk(view.next_header(), view.payload()) else {
                return false;
            };
            if walk.upper_protocol != ip_proto::TCP || walk.fragmented {
                return false;
            }
            &mut packet[ipv6::HEADER_LEN + walk.offset..]
        }
    };
    let Ok(mut tcp) = TcpPacket::new_checked(segment) else {
        return false;
    };
    if !tcp.syn() {
        return false;
    }
    matches!(tcp.clamp_mss(max), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use wire::{Ipv4Repr, Ipv6Repr, TcpRepr, tcp::flags};

    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    const DST4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 10);
    const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 20);

    fn segment(flags: u8, mss: Option<u16>) -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40000,
            dst_port: 443,
            seq_number: 0x0102_0304,
            ack_number: 0,
            flags,
            window: 64240,
            mss,
            payload: b"",
        }
    }

    fn v4(tcp: &TcpRepr<'_>) -> Vec<u8> {
        let tcp_len = tcp.buffer_len();
        let ip = Ipv4Repr {
            src_addr: SRC4,
            dst_addr: DST4,
            protocol: ip_proto::TCP,
            payload_len: tcp_len,
            ttl: 64,
            dscp_ecn: 0,
            ident: 1,
            dont_frag: true,
        };
        let mut buf = vec![0xA5; 20 + tcp_len];
        ip.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..]));
        let mut seg = TcpPacket::new_unchecked(&mut buf[20..]);
        tcp.emit(&mut seg);
        seg.fill_checksum_v4(&SRC4, &DST4);
        buf
    }

    fn v6(tcp: &TcpRepr<'_>) -> Vec<u8> {
        let tcp_len = tcp.buffer_len();
        let ip = Ipv6Repr {
            src_addr: SRC6,
            dst_addr: DST6,
            next_header: ip_proto::TCP,
            payload_len: tcp_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        };
        let mut buf = vec![0xA5; 40 + tcp_len];
        ip.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
        let mut seg = TcpPacket::new_unchecked(&mut buf[40..]);
        tcp.emit(&mut seg);
        seg.fill_checksum_v6(&SRC6, &DST6);
        buf
    }

    fn mss_v4(packet: &[u8]) -> Option<u16> {
        let tcp = TcpPacket::new_checked(&packet[20..]).unwrap();
        assert!(tcp.verify_checksum_v4(&SRC4, &DST4));
        tcp.mss().unwrap()
    }

    fn mss_v6(packet: &[u8]) -> Option<u16> {
        let tcp = TcpPacket::new_checked(&packet[40..]).unwrap();
        assert!(tcp.verify_checksum_v6(&SRC6, &DST6));
        tcp.mss().unwrap()
    }

    #[test]
    fn lowers_syn_and_syn_ack_in_both_families() {
        for flags in [flags::SYN, flags::SYN | flags::ACK] {
            let mut packet = v4(&segment(flags, Some(1460)));
            assert!(clamp(&mut packet, Family::V4, 1420));
            assert_eq!(mss_v4(&packet), Some(1420));

            let mut packet = v6(&segment(flags, Some(1440)));
            assert!(clamp(&mut packet, Family::V6, 1400));
            assert_eq!(mss_v6(&packet), Some(1400));
        }
    }

    #[test]
    fn leaves_smaller_mss_and_non_syn_alone() {
        let mut packet = v4(&segment(flags::SYN, Some(1200)));
        let before = packet.clone();
        assert!(!clamp(&mut packet, Family::V4, 1420));
        assert_eq!(packet, before);

        let mut packet = v4(&segment(flags::ACK, Some(1460)));
        let before = packet.clone();
        assert!(!clamp(&mut packet, Family::V4, 1420));
        assert_eq!(packet, before);

        let mut packet = v6(&segment(flags::SYN, None));
        let before = packet.clone();
        assert!(!clamp(&mut packet, Family::V6, 1400));
        assert_eq!(packet, before);
    }

    #[test]
    fn leaves_fragments_alone() {
        let mut packet = v4(&segment(flags::SYN, Some(1460)));
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
            ip.set_more_frags(true);
            ip.fill_checksum();
        }
        let before = packet.clone();
        assert!(!clamp(&mut packet, Family::V4, 1000));
        assert_eq!(packet, before);

        // An IPv6 SYN behind a (first) Fragment header.
        let tcp = segment(flags::SYN, Some(1440));
        let plain = v6(&tcp);
        let mut packet = plain[..40].to_vec();
        packet[6] = ip_proto::FRAGMENT;
        packet.extend_from_slice(&[ip_proto::TCP, 0, 0, 0, 0, 0, 0, 7]);
        packet.extend_from_slice(&plain[40..]);
        let len = (packet.len() - 40) as u16;
        Ipv6Packet::new_unchecked(&mut packet[..]).set_payload_len(len);
        let before = packet.clone();
        assert!(!clamp(&mut packet, Family::V6, 1000));
        assert_eq!(packet, before);
    }

    #[test]
    fn finds_tcp_behind_ipv6_destination_options() {
        let tcp = segment(flags::SYN, Some(1440));
        let plain = v6(&tcp);
        let mut packet = plain[..40].to_vec();
        packet[6] = ip_proto::DSTOPTS;
        packet.extend_from_slice(&[ip_proto::TCP, 0, 1, 4, 0, 0, 0, 0]);
        packet.extend_from_slice(&plain[40..]);
        let len = (packet.len() - 40) as u16;
        Ipv6Packet::new_unchecked(&mut packet[..]).set_payload_len(len);
        assert!(clamp(&mut packet, Family::V6, 1300));
        let tcp = TcpPacket::new_checked(&packet[48..]).unwrap();
        assert_eq!(tcp.mss(), Ok(Some(1300)));
        assert!(tcp.verify_checksum_v6(&SRC6, &DST6));
    }

    #[test]
    fn leaves_non_tcp_and_truncated_tcp_alone() {
        let mut packet = v4(&segment(flags::SYN, Some(1460)));
        packet.truncate(30);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
            ip.set_total_len(30);
            ip.fill_checksum();
        }
        assert!(!clamp(&mut packet, Family::V4, 1000));

        let mut packet = v4(&segment(flags::SYN, Some(1460)));
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
            ip.set_protocol(ip_proto::UDP);
            ip.fill_checksum();
        }
        assert!(!clamp(&mut packet, Family::V4, 1000));
    }
}
