//! What the core sends through a path to check it, and how it recognises the
//! answers.
//!
//! Between v6gate peers the probe is a keepalive: an inner IPv4 packet no host
//! would take for its own, protocol 253 (RFC 3692, for experimentation), from
//! 0.0.0.0 to 0.0.0.0 with TTL 1. A foreign router that gets one decapsulates
//! it and drops it (martian source, TTL exhausted), so probing the wrong kind
//! of peer costs nothing. Its payload:
//!
//! ```text
//!  0       4      5      6        10                  18
//!  | v6gK  | kind | path |  seq   |   timestamp (ns)   |
//! ```
//!
//! `kind` is 1 for a request, 2 for a reply; `path` is the requester's index
//! of the path, `seq` the requester's probe number, `timestamp` nanoseconds
//! since the requester's core first saw the clock, all big-endian. A reply is
//! the request with `kind` changed, sent back on the path the request came in
//! on, so it checks both directions of exactly that path.
//!
//! Foreign peers are checked with an ICMP echo to an inner address they
//! answer for, sent through the path; the echo identifier says which path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::{
    Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr,
    icmpv4, icmpv6, ip_proto, ipv4, ipv6, ipv6_ext,
};

/// RFC 3692's first experimental protocol number.
pub(crate) const KEEPALIVE_PROTOCOL: u8 = 253;
pub(crate) const MAGIC: [u8; 4] = *b"v6gK";
const PAYLOAD_LEN: usize = 18;
/// A keepalive's inner packet: the IPv4 header and the payload.
pub(crate) const KEEPALIVE_LEN: usize = ipv4::HEADER_LEN + PAYLOAD_LEN;

mod field {
    use core::ops::Range;

    pub(super) const MAGIC: Range<usize> = 0..4;
    pub(super) const KIND: usize = 4;
    pub(super) const PATH: usize = 5;
    pub(super) const SEQ: Range<usize> = 6..10;
    pub(super) const TIMESTAMP: Range<usize> = 10..18;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Request,
    Reply,
}

impl Kind {
    const fn code(self) -> u8 {
        match self {
            Self::Request => 1,
            Self::Reply => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    pub(crate) kind: Kind,
    pub(crate) path: u8,
    pub(crate) seq: u32,
    pub(crate) timestamp: u64,
}

impl Keepalive {
    /// Reads a keepalive out of an inner packet; `None` for anything else,
    /// including a keepalive with a broken header checksum.
    pub(crate) fn parse(inner: &[u8]) -> Option<Self> {
        let packet = Ipv4Packet::new_checked(inner).ok()?;
        if packet.protocol() != KEEPALIVE_PROTOCOL
            || packet.src_addr() != Ipv4Addr::UNSPECIFIED
            || packet.dst_addr() != Ipv4Addr::UNSPECIFIED
            || packet.more_frags()
            || packet.frag_offset() != 0
            || !packet.verify_checksum()
        {
            return None;
        }
        // Longer payloads are accepted, so later versions may append fields.
        let payload = packet.payload().get(..PAYLOAD_LEN)?;
        if payload[field::MAGIC] != MAGIC {
            return None;
        }
        let kind = match payload[field::KIND] {
            1 => Kind::Request,
            2 => Kind::Reply,
            _ => return None,
        };
        Some(Self {
            kind,
            path: payload[field::PATH],
            seq: u32::from_be_bytes(payload[field::SEQ].try_into().ok()?),
            timestamp: u64::from_be_bytes(payload[field::TIMESTAMP].try_into().ok()?),
        })
    }

    /// Writes the whole inner packet.
    pub(crate) fn emit(&self, buf: &mut [u8; KEEPALIVE_LEN]) {
        let (header, payload) = buf.split_at_mut(ipv4::HEADER_LEN);
        Ipv4Repr {
            src_addr: Ipv4Addr::UNSPECIFIED,
            dst_addr: Ipv4Addr::UNSPECIFIED,
            protocol: KEEPALIVE_PROTOCOL,
            payload_len: PAYLOAD_LEN,
            ttl: 1,
            dscp_ecn: 0,
            ident: 0,
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(header));
        payload[field::MAGIC].copy_from_slice(&MAGIC);
        payload[field::KIND] = self.kind.code();
        payload[field::PATH] = self.path;
        payload[field::SEQ].copy_from_slice(&self.seq.to_be_bytes());
        payload[field::TIMESTAMP].copy_from_slice(&self.timestamp.to_be_bytes());
    }
}

/// Echo data: the timestamp, so a capture shows when each probe left.
const ECHO_DATA_LEN: usize = 8;
const ECHO_TTL: u8 = 64;

/// Length of the inner echo request towards `target`.
pub(crate) fn echo_request_len(target: IpAddr) -> usize {
    let ip = match target {
        IpAddr::V4(_) => ipv4::HEADER_LEN,
        IpAddr::V6(_) => ipv6::HEADER_LEN,
    };
    ip + icmpv4::HEADER_LEN + ECHO_DATA_LEN
}

/// Writes an inner ICMP or ICMPv6 echo request from `source` to `target`
/// (one family, checked by validation) into `buf` of [`echo_request_len`]
/// bytes. Returns false, writing nothing useful, if the families differ.
pub(crate) fn emit_echo_request(
    source: IpAddr,
    target: IpAddr,
    ident: u16,
    seq_no: u16,
    timestamp: u64,
    ip_ident: u16,
    buf: &mut [u8],
) -> bool {
    let data = timestamp.to_be_bytes();
    match (source, target) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let icmp = Icmpv4Repr::EchoRequest {
                ident,
                seq_no,
                data: &data,
            };
            let (header, body) = buf.split_at_mut(ipv4::HEADER_LEN);
            Ipv4Repr {
                src_addr: src,
                dst_addr: dst,
                protocol: ip_proto::ICMP,
                payload_len: icmp.buffer_len(),
                ttl: ECHO_TTL,
                dscp_ecn: 0,
                ident: ip_ident,
                dont_frag: true,
            }
            .emit(&mut Ipv4Packet::new_unchecked(header));
            icmp.emit(&mut Icmpv4Packet::new_unchecked(body));
            true
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let icmp = Icmpv6Repr::EchoRequest {
                ident,
                seq_no,
                data: &data,
            };
            let (header, body) = buf.split_at_mut(ipv6::HEADER_LEN);
            Ipv6Repr {
                src_addr: src,
                dst_addr: dst,
                next_header: ip_proto::ICMPV6,
                payload_len: icmp.buffer_len(),
                hop_limit: ECHO_TTL,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut Ipv6Packet::new_unchecked(header));
            icmp.emit(&src, &dst, &mut Icmpv6Packet::new_unchecked(body));
            true
        }
        _ => false,
    }
}

/// An ICMP or ICMPv6 echo reply found in an inner packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EchoReply {
    pub(crate) src: IpAddr,
    pub(crate) dst: IpAddr,
    pub(crate) ident: u16,
    pub(crate) seq_no: u16,
}

impl EchoReply {
    /// Reads an echo reply with a valid checksum out of an inner packet that
    /// has passed [`Inner::parse`](crate::inner::Inner::parse) and is cut to
    /// its own length; `None` for anything else.
    pub(crate) fn parse(inner: &[u8]) -> Option<Self> {
        match inner.first()? >> 4 {
            4 => {
                let ip = Ipv4Packet::new_checked(inner).ok()?;
                if ip.protocol() != ip_proto::ICMP || ip.more_frags() || ip.frag_offset() != 0 {
                    return None;
                }
                let icmp = Icmpv4Packet::new_checked(ip.payload()).ok()?;
                if icmp.msg_type() != icmpv4::msg_type::ECHO_REPLY
                    || icmp.code() != 0
                    || !icmp.verify_checksum()
                {
                    return None;
                }
                Some(Self {
                    src: ip.src_addr().into(),
                    dst: ip.dst_addr().into(),
                    ident: icmp.echo_ident(),
                    seq_no: icmp.echo_seq_no(),
                })
            }
            6 => {
                let ip = Ipv6Packet::new_checked(inner).ok()?;
                let walk = ipv6_ext::walk(ip.next_header(), ip.payload()).ok()?;
                if walk.upper_protocol != ip_proto::ICMPV6 || walk.fragmented {
                    return None;
                }
                let (src, dst): (Ipv6Addr, Ipv6Addr) = (ip.src_addr(), ip.dst_addr());
                let icmp = Icmpv6Packet::new_checked(ip.payload().get(walk.offset..)?).ok()?;
                if icmp.msg_type() != icmpv6::msg_type::ECHO_REPLY
                    || icmp.code() != 0
                    || !icmp.verify_checksum(&src, &dst)
                {
                    return None;
                }
                Some(Self {
                    src: src.into(),
                    dst: dst.into(),
                    ident: icmp.echo_ident(),
                    seq_no: icmp.echo_seq_no(),
                })
            }
            _ => None,
        }
    }
}

/// The full sequence number of the probe a 16-bit echo sequence number
/// answers, given the last one sent: exact for any of the last 32768 probes,
/// far more than can be in flight.
pub(crate) fn widen_seq(last_sent: u32, seq_no: u16) -> u32 {
    let behind = (last_sent as u16).wrapping_sub(seq_no);
    last_sent.wrapping_sub(u32::from(behind))
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    #[test]
    fn keepalive_bytes_are_as_documented() {
        let keepalive = Keepalive {
            kind: Kind::Request,
            path: 2,
            seq: 0x0102_0304,
            timestamp: 0x1122_3344_5566_7788,
        };
        let mut buf = [0xA5; KEEPALIVE_LEN];
        keepalive.emit(&mut buf);
        // Header checksum worked out by hand: 0x4500 + 0x0026 + 0x4000 +
        // 0x01fd = 0x8723, complemented 0x78dc.
        assert_eq!(
            buf,
            hex!(
                "45 00 00 26 00 00 40 00 01 fd 78 dc 00 00 00 00 00 00 00 00"
                "76 36 67 4b 01 02 01 02 03 04 11 22 33 44 55 66 77 88"
            )
        );
        assert_eq!(Keepalive::parse(&buf), Some(keepalive));
        let reply = Keepalive {
            kind: Kind::Reply,
            ..keepalive
        };
        reply.emit(&mut buf);
        assert_eq!(buf[24], 2);
        assert_eq!(Keepalive::parse(&buf), Some(reply));
    }

    #[test]
    fn only_exact_keepalives_are_recognised() {
        let mut good = [0u8; KEEPALIVE_LEN];
        Keepalive {
            kind: Kind::Request,
            path: 0,
            seq: 1,
            timestamp: 2,
        }
        .emit(&mut good);
        let refill = |mut p: [u8; KEEPALIVE_LEN]| {
            Ipv4Packet::new_unchecked(&mut p[..]).fill_checksum();
            p
        };
        let mut bad_checksum = good;
        bad_checksum[10] ^= 1;
        let mut other_protocol = good;
        other_protocol[9] = 254;
        let mut from_somewhere = good;
        from_somewhere[15] = 1;
        let mut to_somewhere = good;
        to_somewhere[19] = 1;
        let mut magic = good;
        magic[20] = b'V';
        let mut kind = good;
        kind[24] = 3;
        let mut fragment = good;
        fragment[6] = 0x20;
        for (what, packet) in [
            ("checksum", bad_checksum),
            ("protocol", refill(other_protocol)),
            ("source", refill(from_somewhere)),
            ("destination", refill(to_somewhere)),
            ("magic", magic),
            ("kind", kind),
            ("fragment", refill(fragment)),
        ] {
            assert_eq!(Keepalive::parse(&packet), None, "{what}");
        }
        for len in 0..KEEPALIVE_LEN {
            let mut short = good[..len].to_vec();
            if len >= ipv4::HEADER_LEN {
                let mut view = Ipv4Packet::new_unchecked(&mut short[..]);
                view.set_total_len(len as u16);
                view.fill_checksum();
            }
            assert_eq!(Keepalive::parse(&short), None, "{len} bytes");
        }
        // A longer payload is a later version's, and still read.
        let mut longer = good.to_vec();
        longer.extend_from_slice(&[9, 9]);
        let mut view = Ipv4Packet::new_unchecked(&mut longer[..]);
        view.set_total_len(40);
        view.fill_checksum();
        assert!(Keepalive::parse(&longer).is_some());
    }

    #[test]
    fn echo_requests_and_replies_in_both_families() {
        for (source, target) in [
            (
                IpAddr::from([198, 51, 100, 254]),
                IpAddr::from([203, 0, 113, 1]),
            ),
            (
                "2001:db8:a::fe".parse().unwrap(),
                "2001:db8:b::1".parse().unwrap(),
            ),
        ] {
            let mut request = vec![0xA5; echo_request_len(target)];
            assert!(emit_echo_request(
                source,
                target,
                0x7606,
                9,
                42,
                5,
                &mut request
            ));
            // The target answers: addresses swapped, type changed, checksum redone.
            let mut reply = request.clone();
            let (ip_len, reply_type) = match target {
                IpAddr::V4(_) => {
                    let ip = Ipv4Packet::new_checked(&request[..]).unwrap();
                    assert!(ip.verify_checksum());
                    assert_eq!(ip.ttl(), 64);
                    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
                    assert!(icmp.verify_checksum());
                    assert_eq!(icmp.msg_type(), icmpv4::msg_type::ECHO_REQUEST);
                    assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x7606, 9));
                    assert_eq!(icmp.data(), &42u64.to_be_bytes());
                    (20, icmpv4::msg_type::ECHO_REPLY)
                }
                IpAddr::V6(_) => {
                    let ip = Ipv6Packet::new_checked(&request[..]).unwrap();
                    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
                    assert!(icmp.verify_checksum(&ip.src_addr(), &ip.dst_addr()));
                    assert_eq!(icmp.msg_type(), icmpv6::msg_type::ECHO_REQUEST);
                    (40, icmpv6::msg_type::ECHO_REPLY)
                }
            };
            assert_eq!(EchoReply::parse(&request), None, "a request is no reply");
            let addr_len = if ip_len == 20 { 4 } else { 16 };
            let (src_at, dst_at) = if ip_len == 20 { (12, 16) } else { (8, 24) };
            let src = reply[src_at..src_at + addr_len].to_vec();
            let dst = reply[dst_at..dst_at + addr_len].to_vec();
            reply[src_at..src_at + addr_len].copy_from_slice(&dst);
            reply[dst_at..dst_at + addr_len].copy_from_slice(&src);
            reply[ip_len] = reply_type;
            match target {
                IpAddr::V4(_) => {
                    Ipv4Packet::new_unchecked(&mut reply[..]).fill_checksum();
                    Icmpv4Packet::new_unchecked(&mut reply[20..]).fill_checksum();
                }
                IpAddr::V6(t) => {
                    let s = match source {
                        IpAddr::V6(s) => s,
                        IpAddr::V4(_) => unreachable!(),
                    };
                    Icmpv6Packet::new_unchecked(&mut reply[40..]).fill_checksum(&t, &s);
                }
            }
            assert_eq!(
                EchoReply::parse(&reply),
                Some(EchoReply {
                    src: target,
                    dst: source,
                    ident: 0x7606,
                    seq_no: 9
                })
            );
            let mut broken = reply.clone();
            *broken.last_mut().unwrap() ^= 1;
            assert_eq!(EchoReply::parse(&broken), None);
        }
        assert!(!emit_echo_request(
            IpAddr::from([198, 51, 100, 254]),
            "2001:db8::1".parse().unwrap(),
            1,
            1,
            1,
            1,
            &mut [0; 64]
        ));
    }

    #[test]
    fn sequence_numbers_widen_across_wraps() {
        assert_eq!(widen_seq(70_000, 70_000u32 as u16), 70_000);
        assert_eq!(widen_seq(70_000, (69_998u32) as u16), 69_998);
        assert_eq!(widen_seq(65_537, 65_535), 65_535);
        assert_eq!(widen_seq(3, u16::MAX), u32::MAX);
    }
}
