//! ICMP "too big" reports from the underlay, read once for every kind of tunnel: an ICMPv6
//! Packet Too Big (RFC 8201) or an ICMPv4 Fragmentation Needed (RFC 1191), with the quoted
//! packet's endpoints, protocol and first bytes. Whether the quote is one of ours, and whose,
//! is the caller's question: RFC 2473/2003 tunnels quote protocol 4 or 41, ESP 50 or UDP.

use std::net::{IpAddr, Ipv6Addr};

use wire::{
    Icmpv4Packet, Icmpv6Packet, Ipv4Packet, Ipv6Packet, icmpv4, icmpv6, ip_proto, ipv4, ipv6,
    ipv6_ext,
};

use crate::tunnel::Ipv4Outer;
use crate::{DropReason, PathMtuReason};

/// What a router said about a packet we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Report<'a> {
    /// The quoted packet's source: our end.
    pub(crate) local: IpAddr,
    /// The quoted packet's destination: the peer.
    pub(crate) remote: IpAddr,
    /// The quoted packet's upper-layer protocol (behind IPv6 extension headers).
    pub(crate) protocol: u8,
    /// What the quote holds of that upper layer (at least 8 bytes from a conforming router).
    pub(crate) upper: &'a [u8],
    /// The link MTU reported, raised to the family's minimum (IPv6 1280, IPv4 68); `None`
    /// from IPv4 routers before RFC 1191, which report 0: without a value there is nothing
    /// to lower to safely, and the kernel's plateau guess is not ours to make.
    pub(crate) link_mtu: Option<u16>,
    /// Who reported what, for events and logs.
    pub(crate) reason: PathMtuReason,
}

/// An ICMPv6 message from its header on, from `src` to `dst`. Errors say why it is not a
/// usable Packet Too Big: `Malformed` (does not parse or verify), `UnhandledIcmp` (another
/// type), `NoTunnel` (the quote is no IPv6 packet).
pub(crate) fn parse_v6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    message: &[u8],
) -> Result<Report<'_>, DropReason> {
    let packet = Icmpv6Packet::new_checked(message).map_err(|_| DropReason::Malformed)?;
    if !packet.verify_checksum(&src, &dst) {
        return Err(DropReason::Malformed);
    }
    if packet.msg_type() != icmpv6::msg_type::PACKET_TOO_BIG {
        return Err(DropReason::UnhandledIcmp);
    }
    // The quote, borrowed from the message itself so that the report may outlive the view.
    let quote = &message[icmpv6::HEADER_LEN..];
    if quote.len() < ipv6::HEADER_LEN || quote[0] >> 4 != 6 {
        return Err(DropReason::NoTunnel);
    }
    // A quote is cut short, so its payload length promises more than is there: only the
    // fixed header is read as such.
    let header = Ipv6Packet::new_unchecked(&quote[..ipv6::HEADER_LEN]);
    let rest = &quote[ipv6::HEADER_LEN..];
    let walk = ipv6_ext::walk(header.next_header(), rest).map_err(|_| DropReason::NoTunnel)?;
    let reported = packet.mtu();
    Ok(Report {
        local: IpAddr::V6(header.src_addr()),
        remote: IpAddr::V6(header.dst_addr()),
        protocol: walk.upper_protocol,
        upper: rest.get(walk.offset..).unwrap_or(&[]),
        // Links below 1280 are not IPv6 links; such a report only means that the path
        // needs fragmentation headers, which we never rely on.
        link_mtu: Some(reported.clamp(1280, u32::from(u16::MAX)) as u16),
        reason: PathMtuReason::PacketTooBig {
            from: src,
            reported,
        },
    })
}

/// A whole ICMPv4 datagram, IPv4 header included, as a raw ICMP socket delivers it. Errors
/// as for [`parse_v6`].
pub(crate) fn parse_v4(datagram: &[u8]) -> Result<Report<'_>, DropReason> {
    let outer = Ipv4Outer::parse(datagram).ok_or(DropReason::Malformed)?;
    if outer.protocol != ip_proto::ICMP {
        return Err(DropReason::UnhandledIcmp);
    }
    let message = &datagram[outer.payload];
    let packet = Icmpv4Packet::new_checked(message).map_err(|_| DropReason::Malformed)?;
    if !packet.verify_checksum() {
        return Err(DropReason::Malformed);
    }
    if packet.msg_type() != icmpv4::msg_type::DST_UNREACHABLE
        || packet.code() != icmpv4::CODE_FRAG_NEEDED
    {
        return Err(DropReason::UnhandledIcmp);
    }
    let quote = &message[icmpv4::HEADER_LEN..];
    let header = quote.get(..ipv4::HEADER_LEN).ok_or(DropReason::NoTunnel)?;
    let quoted = Ipv4Packet::new_unchecked(header);
    if quoted.version() != 4 {
        return Err(DropReason::NoTunnel);
    }
    let reported = packet.next_hop_mtu();
    Ok(Report {
        local: IpAddr::V4(quoted.src_addr()),
        remote: IpAddr::V4(quoted.dst_addr()),
        protocol: quoted.protocol(),
        upper: quote.get(quoted.header_len()..).unwrap_or(&[]),
        // 68 is the least every IPv4 link carries (RFC 791).
        link_mtu: (reported != 0).then(|| reported.max(68)),
        reason: PathMtuReason::FragmentationNeeded {
            from: outer.src,
            reported,
        },
    })
}
