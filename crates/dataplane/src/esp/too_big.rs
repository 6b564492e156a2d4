//! ICMP "too big" errors about our own ESP: an ICMPv6 Packet Too Big (RFC 8201) or an ICMPv4
//! Fragmentation Needed (RFC 1191) whose quote is an ESP packet we sent, raw or in UDP from
//! port 4500. The shell finds the tunnel by the quoted peer and lowers its path MTU.

use std::net::{IpAddr, Ipv6Addr};

use wire::ip_proto;

use crate::PathMtuReason;
use crate::too_big::{self, Report};

/// The NAT-T port our ESP-in-UDP leaves from.
const NAT_T_PORT: u16 = 4500;

/// What a router said about an ESP packet of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooBig {
    /// Our end, the quoted packet's source.
    pub local: IpAddr,
    /// The peer, the quoted packet's destination.
    pub remote: IpAddr,
    /// The link MTU the router reported (IPv6 reports below 1280 read as 1280).
    pub link_mtu: u16,
    /// Who reported it, for the log.
    pub reason: PathMtuReason,
}

/// An ICMPv6 message (from its header on) from `src` to `dst`, as the raw ICMPv6 socket
/// hands it over: a Packet Too Big about ESP we sent, or `None`.
pub fn too_big_v6(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> Option<TooBig> {
    about_our_esp(too_big::parse_v6(src, dst, message).ok()?)
}

/// A whole ICMPv4 datagram, IPv4 header included, as a raw ICMP socket hands it over: a
/// Fragmentation Needed about ESP we sent, or `None`. A next-hop MTU of 0 (routers from
/// before RFC 1191) says nothing to lower to and is `None` too.
pub fn too_big_v4(datagram: &[u8]) -> Option<TooBig> {
    about_our_esp(too_big::parse_v4(datagram).ok()?)
}

/// The report, if its quote is raw ESP or UDP from our NAT-T port (whose first 8 bytes a
/// quote always holds).
fn about_our_esp(report: Report<'_>) -> Option<TooBig> {
    let ours = match report.protocol {
        ip_proto::ESP => true,
        ip_proto::UDP => report
            .upper
            .get(..2)
            .is_some_and(|port| u16::from_be_bytes([port[0], port[1]]) == NAT_T_PORT),
        _ => false,
    };
    if !ours {
        return None;
    }
    Some(TooBig {
        local: report.local,
        remote: report.remote,
        link_mtu: report.link_mtu?,
        reason: report.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Built byte by byte outside Rust (checksums included); also the fuzz target's seeds.
    const PTB_RAW_ESP: &[u8] = include_bytes!("../../../../fuzz/seeds/esp_too_big/ptb_raw_esp");
    const FRAG_NEEDED_ESP: &[u8] =
        include_bytes!("../../../../fuzz/seeds/esp_too_big/frag_needed_esp");

    #[test]
    fn independent_reports_read_as_ours() {
        let router: Ipv6Addr = "2001:db8:0:ff::1".parse().unwrap();
        let us: Ipv6Addr = "2001:db8:0:1::1".parse().unwrap();
        let v6 = too_big_v6(router, us, PTB_RAW_ESP).expect("PTB about raw ESP");
        assert_eq!(v6.local, IpAddr::V6(us));
        assert_eq!(v6.remote, "2001:db8:0:2::1".parse::<IpAddr>().unwrap());
        assert_eq!(v6.link_mtu, 1400);
        assert_eq!(
            v6.reason,
            PathMtuReason::PacketTooBig {
                from: router,
                reported: 1400
            }
        );
        // The checksum covers the addresses: the same bytes from another router do not verify.
        let elsewhere: Ipv6Addr = "2001:db8:0:fe::1".parse().unwrap();
        assert_eq!(too_big_v6(elsewhere, us, PTB_RAW_ESP), None);
        let v4 = too_big_v4(FRAG_NEEDED_ESP).expect("frag-needed about raw ESP");
        assert_eq!(
            (v4.local, v4.remote, v4.link_mtu),
            (
                "198.18.1.1".parse().unwrap(),
                "198.18.2.1".parse().unwrap(),
                1400
            )
        );
        for cut in 0..FRAG_NEEDED_ESP.len() {
            assert_eq!(too_big_v4(&FRAG_NEEDED_ESP[..cut]), None, "cut at {cut}");
        }
    }
}
