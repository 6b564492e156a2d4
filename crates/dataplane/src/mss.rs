//! TCP MSS clamping on SYN and SYN-ACK segments.
//!
//! Lowering the MSS that each end announces keeps TCP segments inside the
//! tunnel MTU without relying on ICMP reaching the sender, which many
//! firewalls drop (the "PMTUD black hole").

use wire::{Ipv4Packet, Ipv6Packet, TcpPacket, checksum, ip_proto, ipv6, ipv6_ext};

use crate::inner::Family;

/// Lowers the MSS option of an unfragmented TCP SYN in `packet` to `max`.
///
/// `packet` must have passed [`Inner::parse`](crate::inner::Inner::parse) and
/// be cut to its own length. Returns true if the option was lowered. Segments
/// that cannot be read (bad options, truncated header) are left as they are:
/// clamping is a courtesy, and the receiving stack decides what is malformed.
///
/// A checksum field that holds only the pseudo-header sum stays as it is: the
/// segment's checksum was never filled in (a sender's `CHECKSUM_PARTIAL` that
/// crossed a veth and a tc-BPF encapsulation), and whoever completes it later
/// sums the new option. Adjusting it would make it neither a checksum nor a
/// pseudo-header sum, and the SYN would be dropped behind the tunnel.
pub(crate) fn clamp(packet: &mut [u8], family: Family, max: u16) -> bool {
    let (start, pseudo) = match family {
        Family::V4 => {
            let view = Ipv4Packet::new_unchecked(&*packet);
            if view.protocol() != ip_proto::TCP || view.more_frags() || view.frag_offset() != 0 {
                return false;
            }
            let start = view.header_len();
            let (src, dst) = (view.src_addr(), view.dst_addr());
            let len = tcp_len(packet, start);
            let pseudo = checksum::pseudo_header_v4(&src, &dst, ip_proto::TCP, len);
            (start, pseudo)
        }
        Family::V6 => {
            let view = Ipv6Packet::new_unchecked(&*packet);
            let Ok(walk) = ipv6_ext::walk(view.next_header(), view.payload()) else {
                return false;
            };
            if walk.upper_protocol != ip_proto::TCP || walk.fragmented {
                return false;
            }
            let start = ipv6::HEADER_LEN + walk.offset;
            let (src, dst) = (view.src_addr(), view.dst_addr());
            let len = tcp_len(packet, start);
            let pseudo = checksum::pseudo_header_v6(&src, &dst, ip_proto::TCP, len);
            (start, pseudo)
        }
    };
    let Some(segment) = packet.get_mut(start..) else {
        return false;
    };
    let Ok(mut tcp) = TcpPacket::new_checked(segment) else {
        return false;
    };
    if !tcp.syn() {
        return false;
    }
    let field = tcp.checksum();
    let clamped = matches!(tcp.clamp_mss(max), Ok(Some(_)));
    if clamped && checksum::holds_pseudo_header(field, pseudo) {
        tcp.set_checksum(field);
    }
    clamped
}

fn tcp_len(packet: &[u8], start: usize) -> u32 {
    u32::try_from(packet.len().saturating_sub(start)).unwrap_or(u32::MAX)
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

    /// A SYN as a sender's stack leaves it under `CHECKSUM_PARTIAL`: the pseudo-header sum in
    /// the checksum field, the rest for the NIC.
    fn partial(mut packet: Vec<u8>, family: Family) -> Vec<u8> {
        let (start, pseudo) = match family {
            Family::V4 => {
                let len = (packet.len() - 20) as u32;
                (
                    20,
                    checksum::pseudo_header_v4(&SRC4, &DST4, ip_proto::TCP, len),
                )
            }
            Family::V6 => {
                let len = (packet.len() - 40) as u32;
                (
                    40,
                    checksum::pseudo_header_v6(&SRC6, &DST6, ip_proto::TCP, len),
                )
            }
        };
        TcpPacket::new_unchecked(&mut packet[start..]).set_checksum(pseudo);
        packet
    }

    /// What a NIC (or the kernel for a TUN frame with `NEEDS_CSUM`) does with the field.
    fn complete(packet: &mut [u8], start: usize) {
        let sum = checksum::data(&packet[start..]);
        TcpPacket::new_unchecked(&mut packet[start..]).set_checksum(!sum);
    }

    #[test]
    fn a_partial_checksum_stays_partial_and_completes_to_the_clamped_segment() {
        for flags in [flags::SYN, flags::SYN | flags::ACK] {
            let mut packet = partial(v4(&segment(flags, Some(1460))), Family::V4);
            let field = TcpPacket::new_checked(&packet[20..]).unwrap().checksum();
            assert!(clamp(&mut packet, Family::V4, 1420));
            let tcp = TcpPacket::new_checked(&packet[20..]).unwrap();
            assert_eq!(tcp.checksum(), field);
            assert_eq!(tcp.mss(), Ok(Some(1420)));
            complete(&mut packet, 20);
            assert_eq!(mss_v4(&packet), Some(1420));

            let mut packet = partial(v6(&segment(flags, Some(1440))), Family::V6);
            let field = TcpPacket::new_checked(&packet[40..]).unwrap().checksum();
            assert!(clamp(&mut packet, Family::V6, 1400));
            assert_eq!(
                TcpPacket::new_checked(&packet[40..]).unwrap().checksum(),
                field
            );
            complete(&mut packet, 40);
            assert_eq!(mss_v6(&packet), Some(1400));
        }
    }

    #[test]
    fn a_full_checksum_is_adjusted_not_kept() {
        // The control for the test above: the same segment with its checksum filled in.
        let mut packet = v4(&segment(flags::SYN, Some(1460)));
        let field = TcpPacket::new_checked(&packet[20..]).unwrap().checksum();
        assert!(clamp(&mut packet, Family::V4, 1420));
        assert_ne!(
            TcpPacket::new_checked(&packet[20..]).unwrap().checksum(),
            field
        );
        assert_eq!(mss_v4(&packet), Some(1420));
    }
}
