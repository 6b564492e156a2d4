//! The ICMP errors a tunnel entry point sends back to inner senders whose
//! packets do not fit: Fragmentation Needed for IPv4, Packet Too Big for IPv6.

use std::net::{Ipv4Addr, Ipv6Addr};

use wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    icmpv4, icmpv6, ip_proto, ipv4, ipv6, ipv6_ext,
};

/// RFC 1812 §4.3.2.3: an ICMPv4 error quotes as much of the invoking packet as
/// keeps the whole error within 576 bytes.
const IPV4_ERROR_MAX: usize = 576;
/// RFC 4443 §2.4 (c): an ICMPv6 error stays within the minimum IPv6 MTU.
const IPV6_ERROR_MAX: usize = 1280;
/// RFC 1812 §4.3.2.5: errors other than Source Quench SHOULD have precedence 6
/// (Internetwork Control).
const ERROR_TOS: u8 = 0xc0;
const ERROR_TTL: u8 = 64;

/// Whether RFC 1812 §4.3.2.7 lets us answer this IPv4 packet with an error.
/// `packet` has passed [`Inner::parse`](crate::inner::Inner::parse).
pub(crate) fn may_answer_v4(packet: &[u8]) -> bool {
    let view = Ipv4Packet::new_unchecked(packet);
    if view.frag_offset() != 0 {
        return false;
    }
    if view.protocol() == ip_proto::ICMP {
        // Only queries may be answered; anything unreadable counts as an error.
        let is_query = matches!(
            view.payload().first(),
            Some(&(icmpv4::msg_type::ECHO_REQUEST | icmpv4::msg_type::ECHO_REPLY))
                | Some(&(13..=18))
        );
        if !is_query {
            return false;
        }
    }
    let src = view.src_addr();
    let dst = view.dst_addr();
    let src_is_host = !(src.octets()[0] == 0
        || src.is_loopback()
        || src.is_multicast()
        || src.octets()[0] >= 240);
    let dst_is_host = !(dst.is_multicast() || dst.is_broadcast());
    src_is_host && dst_is_host
}

/// Whether RFC 4443 §2.4 (e) lets us answer this IPv6 packet with an error.
/// Packet Too Big may answer multicast destinations (e.3), so only the source
/// and the payload matter.
pub(crate) fn may_answer_v6(packet: &[u8]) -> bool {
    let view = Ipv6Packet::new_unchecked(packet);
    let src = view.src_addr();
    if src.is_unspecified() || src.is_multicast() {
        return false;
    }
    let Ok(walk) = ipv6_ext::walk(view.next_header(), view.payload()) else {
        return false;
    };
    if walk.upper_protocol == ip_proto::ICMPV6 {
        // Behind a Fragment header the type may not be there to read.
        if walk.fragmented {
            return false;
        }
        let is_informational = view
            .payload()
            .get(walk.offset)
            .is_some_and(|&msg_type| msg_type >= 128);
        return is_informational;
    }
    true
}

pub(crate) fn frag_needed_len(invoking: &[u8]) -> usize {
    let quote = invoking
        .len()
        .min(IPV4_ERROR_MAX - ipv4::HEADER_LEN - icmpv4::HEADER_LEN);
    ipv4::HEADER_LEN + icmpv4::HEADER_LEN + quote
}

/// Writes an ICMPv4 Destination Unreachable / Fragmentation Needed and DF Set
/// (RFC 1191 §4) from `source` to the invoking packet's source into `buf`, which
/// must be [`frag_needed_len`] bytes.
pub(crate) fn emit_frag_needed(
    source: Ipv4Addr,
    ident: u16,
    next_hop_mtu: u16,
    invoking: &[u8],
    buf: &mut [u8],
) {
    let quote = &invoking[..buf.len() - ipv4::HEADER_LEN - icmpv4::HEADER_LEN];
    let icmp = Icmpv4Repr::DstUnreachable {
        code: icmpv4::CODE_FRAG_NEEDED,
        next_hop_mtu,
        data: quote,
    };
    let ip = Ipv4Repr {
        src_addr: source,
        dst_addr: Ipv4Packet::new_unchecked(invoking).src_addr(),
        protocol: ip_proto::ICMP,
        payload_len: icmp.buffer_len(),
        ttl: ERROR_TTL,
        dscp_ecn: ERROR_TOS,
        ident,
        dont_frag: false,
    };
    let (header, body) = buf.split_at_mut(ipv4::HEADER_LEN);
    ip.emit(&mut Ipv4Packet::new_unchecked(header));
    icmp.emit(&mut Icmpv4Packet::new_unchecked(body));
}

pub(crate) fn packet_too_big_len(invoking: &[u8]) -> usize {
    let quote = invoking
        .len()
        .min(IPV6_ERROR_MAX - ipv6::HEADER_LEN - icmpv6::HEADER_LEN);
    ipv6::HEADER_LEN + icmpv6::HEADER_LEN + quote
}

/// Writes an ICMPv6 Packet Too Big (RFC 4443 §3.2) from `source` to the
/// invoking packet's source into `buf`, which must be [`packet_too_big_len`]
/// bytes.
pub(crate) fn emit_packet_too_big(source: Ipv6Addr, mtu: u32, invoking: &[u8], buf: &mut [u8]) {
    let quote = &invoking[..buf.len() - ipv6::HEADER_LEN - icmpv6::HEADER_LEN];
    let dst = Ipv6Packet::new_unchecked(invoking).src_addr();
    let icmp = Icmpv6Repr::PacketTooBig { mtu, data: quote };
    let ip = Ipv6Repr {
        src_addr: source,
        dst_addr: dst,
        next_header: ip_proto::ICMPV6,
        payload_len: icmp.buffer_len(),
        hop_limit: ERROR_TTL,
        traffic_class: 0,
        flow_label: 0,
    };
    let (header, body) = buf.split_at_mut(ipv6::HEADER_LEN);
    ip.emit(&mut Ipv6Packet::new_unchecked(header));
    icmp.emit(&source, &dst, &mut Icmpv6Packet::new_unchecked(body));
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    // UDP 198.51.100.1:1234 -> 203.0.113.1:53, DF clear; the header checksum is
    // irrelevant to these checks.
    const UDP4: [u8; 28] = hex!(
        "45 00 00 1c 00 01 00 00 40 11 00 00 c6 33 64 01 cb 00 71 01"
        "04 d2 00 35 00 08 00 00"
    );

    fn with(mut packet: [u8; 28], edit: impl FnOnce(&mut [u8; 28])) -> [u8; 28] {
        edit(&mut packet);
        packet
    }

    #[test]
    fn v4_answers_ordinary_packets_and_queries() {
        assert!(may_answer_v4(&UDP4));
        let echo = with(UDP4, |p| {
            p[9] = ip_proto::ICMP;
            p[20] = icmpv4::msg_type::ECHO_REQUEST;
        });
        assert!(may_answer_v4(&echo));
    }

    #[test]
    fn v4_never_answers_errors_fragments_or_non_hosts() {
        let error = with(UDP4, |p| {
            p[9] = ip_proto::ICMP;
            p[20] = icmpv4::msg_type::DST_UNREACHABLE;
        });
        assert!(!may_answer_v4(&error));
        let later_fragment = with(UDP4, |p| p[7] = 1);
        assert!(!may_answer_v4(&later_fragment));
        let first_fragment = with(UDP4, |p| p[6] = 0x20);
        assert!(may_answer_v4(&first_fragment));
        for src in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [224, 0, 0, 5],
            [255, 255, 255, 255],
        ] {
            let p = with(UDP4, |p| p[12..16].copy_from_slice(&src));
            assert!(!may_answer_v4(&p), "{src:?}");
        }
        for dst in [[224, 0, 0, 5], [255, 255, 255, 255]] {
            let p = with(UDP4, |p| p[16..20].copy_from_slice(&dst));
            assert!(!may_answer_v4(&p), "{dst:?}");
        }
    }

    fn v6(next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut packet = vec![0u8; 40];
        let mut view = Ipv6Packet::new_unchecked(&mut packet[..]);
        view.set_version(6);
        view.set_payload_len(payload.len() as u16);
        view.set_next_header(next_header);
        view.set_hop_limit(64);
        view.set_src_addr("2001:db8:1::10".parse().unwrap());
        view.set_dst_addr("2001:db8:2::20".parse().unwrap());
        packet.extend_from_slice(payload);
        packet
    }

    #[test]
    fn v6_answers_all_but_errors_and_non_unicast_sources() {
        assert!(may_answer_v6(&v6(ip_proto::UDP, &[0; 8])));
        assert!(may_answer_v6(&v6(ip_proto::ICMPV6, &[128, 0, 0, 0])));
        assert!(!may_answer_v6(&v6(ip_proto::ICMPV6, &[1, 0, 0, 0])));
        assert!(!may_answer_v6(&v6(ip_proto::ICMPV6, &[])));
        let mut behind_options = vec![ip_proto::ICMPV6, 0, 1, 4, 0, 0, 0, 0];
        behind_options.extend_from_slice(&[2, 0, 0, 0]);
        assert!(!may_answer_v6(&v6(ip_proto::DSTOPTS, &behind_options)));
        let mut unspecified = v6(ip_proto::UDP, &[0; 8]);
        unspecified[8..24].fill(0);
        assert!(!may_answer_v6(&unspecified));
        let mut multicast = v6(ip_proto::UDP, &[0; 8]);
        multicast[8] = 0xff;
        assert!(!may_answer_v6(&multicast));
        // Multicast destinations do get Packet Too Big (RFC 4443 §2.4 (e.3)).
        let mut to_group = v6(ip_proto::UDP, &[0; 8]);
        to_group[24] = 0xff;
        assert!(may_answer_v6(&to_group));
    }

    #[test]
    fn frag_needed_quotes_up_to_576_bytes() {
        let big = vec![0x45u8; 1500];
        assert_eq!(frag_needed_len(&big), 576);
        assert_eq!(frag_needed_len(&UDP4), 20 + 8 + 28);
        let mut buf = vec![0xA5; frag_needed_len(&big)];
        emit_frag_needed(Ipv4Addr::new(198, 51, 100, 254), 7, 1400, &big, &mut buf);
        let ip = Ipv4Packet::new_checked(&buf[..]).unwrap();
        let repr = Ipv4Repr::parse(&ip).unwrap();
        assert_eq!(repr.protocol, ip_proto::ICMP);
        assert_eq!(repr.ttl, 64);
        assert_eq!(repr.dscp_ecn, 0xc0);
        assert_eq!(usize::from(ip.total_len()), 576);
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), icmpv4::msg_type::DST_UNREACHABLE);
        assert_eq!(icmp.code(), icmpv4::CODE_FRAG_NEEDED);
        assert_eq!(icmp.next_hop_mtu(), 1400);
        assert_eq!(icmp.data(), &big[..548]);
    }

    #[test]
    fn packet_too_big_quotes_up_to_1280_bytes() {
        let big = v6(ip_proto::UDP, &[0x33; 1460]);
        assert_eq!(packet_too_big_len(&big), 1280);
        let source: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
        let mut buf = vec![0xA5; packet_too_big_len(&big)];
        emit_packet_too_big(source, 1280, &big, &mut buf);
        let ip = Ipv6Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(ip.src_addr(), source);
        assert_eq!(ip.dst_addr(), "2001:db8:1::10".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.next_header(), ip_proto::ICMPV6);
        assert_eq!(ip.payload_len(), 1240);
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
        assert_eq!(icmp.msg_type(), icmpv6::msg_type::PACKET_TOO_BIG);
        assert_eq!(icmp.mtu(), 1280);
        assert_eq!(icmp.data(), &big[..1232]);
    }
}
