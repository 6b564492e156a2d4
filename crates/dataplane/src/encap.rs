//! The outer header of a path: IPv6 written byte for byte as Linux ip6tnl
//! writes it, IPv4 as Linux ipip and sit write it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::{Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, ip_proto, ipv4, ipv6, ipv6_ext};

use crate::ident::Idents;
use crate::{Batch, Destination, EncapLimit, PathConfig, TrafficClass, TunnelConfig};

const ECN_MASK: u8 = 0b11;

/// The two ends of an IPv6 path and the option it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct V6Ends {
    pub(crate) local: Ipv6Addr,
    pub(crate) remote: Ipv6Addr,
    pub(crate) encap_limit: EncapLimit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outer {
    V6(V6Ends),
    V4 { local: Ipv4Addr, remote: Ipv4Addr },
}

/// Everything needed to put one path's outer header in front of a packet,
/// taken once from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Framing {
    pub(crate) outer: Outer,
    pub(crate) hop_limit: u8,
    pub(crate) traffic_class: TrafficClass,
}

impl Framing {
    /// `path` has passed validation, so both ends are of one family.
    pub(crate) fn new(config: &TunnelConfig, path: &PathConfig) -> Self {
        let outer = match (path.local, path.remote) {
            (IpAddr::V4(local), IpAddr::V4(remote)) => Outer::V4 { local, remote },
            (local, remote) => Outer::V6(V6Ends {
                local: v6(local),
                remote: v6(remote),
                encap_limit: config.encap_limit,
            }),
        };
        Self {
            outer,
            hop_limit: config.hop_limit,
            traffic_class: config.traffic_class,
        }
    }

    /// Bytes in front of the inner packet.
    pub(crate) fn overhead(&self) -> usize {
        match self.outer {
            Outer::V6(ends) => ipv6::HEADER_LEN + ends.encap_limit.overhead(),
            Outer::V4 { .. } => ipv4::HEADER_LEN,
        }
    }

    pub(crate) fn remote(&self) -> IpAddr {
        match self.outer {
            Outer::V6(ends) => ends.remote.into(),
            Outer::V4 { remote, .. } => remote.into(),
        }
    }

    pub(crate) fn destination(&self) -> Destination {
        Destination::Underlay {
            remote: self.remote(),
        }
    }

    /// The outer traffic class for an inner packet with this TOS / traffic class.
    pub(crate) fn traffic_class(&self, inner_traffic_class: u8) -> u8 {
        // The ECN field always follows the inner packet (RFC 6040 §4.1, normal
        // mode, as ip6tnl and ipip do), so congestion marks can be carried back
        // inside.
        match self.traffic_class {
            TrafficClass::Fixed(tc) => (tc & !ECN_MASK) | (inner_traffic_class & ECN_MASK),
            TrafficClass::Inherit => inner_traffic_class,
        }
    }

    /// Writes the outer header in front of an inner packet of `inner_len`
    /// bytes whose own protocol is `inner_protocol` (4 or 41): for IPv6, the
    /// fixed header and the Destination Options header carrying the Tunnel
    /// Encapsulation Limit when configured; for IPv4, a 20-byte header with
    /// `dont_frag` and the next identification from `idents`. Returns the
    /// header length.
    ///
    /// `buf` must hold at least [`overhead`](Self::overhead) bytes, and the
    /// inner packet must fit the 16-bit length field; the MTU bounds of a
    /// validated [`TunnelConfig`] guarantee both for every packet the tunnel
    /// sends.
    pub(crate) fn emit(
        &self,
        inner_protocol: u8,
        inner_traffic_class: u8,
        inner_len: usize,
        dont_frag: bool,
        idents: &mut Idents,
        buf: &mut [u8],
    ) -> usize {
        let traffic_class = self.traffic_class(inner_traffic_class);
        match self.outer {
            Outer::V6(ends) => {
                let (next_header, ext_len) = match ends.encap_limit {
                    EncapLimit::None => (inner_protocol, 0),
                    EncapLimit::Limit(_) => (ip_proto::DSTOPTS, ipv6_ext::ENCAP_LIMIT_HEADER_LEN),
                };
                let repr = Ipv6Repr {
                    src_addr: ends.local,
                    dst_addr: ends.remote,
                    next_header,
                    payload_len: ext_len + inner_len,
                    hop_limit: self.hop_limit,
                    traffic_class,
                    // ip6tnl sends flow label 0 unless told to copy or hash it.
                    flow_label: 0,
                };
                repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..ipv6::HEADER_LEN]));
                if let EncapLimit::Limit(limit) = ends.encap_limit {
                    // Cannot fail: the slice is exactly the header's length.
                    let _ = ipv6_ext::emit_encap_limit(
                        inner_protocol,
                        limit,
                        &mut buf[ipv6::HEADER_LEN..ipv6::HEADER_LEN + ext_len],
                    );
                }
                ipv6::HEADER_LEN + ext_len
            }
            Outer::V4 { local, remote } => {
                // One counter for every datagram, DF or not, as Linux does:
                // RFC 6864 would allow anything on atomic datagrams, but
                // middleboxes that reassemble or deduplicate are happier with
                // values that change.
                let ident = idents.next_ipv4();
                let repr = Ipv4Repr {
                    src_addr: local,
                    dst_addr: remote,
                    protocol: inner_protocol,
                    payload_len: inner_len,
                    ttl: self.hop_limit,
                    dscp_ecn: traffic_class,
                    ident,
                    dont_frag,
                };
                repr.emit(&mut Ipv4Packet::new_unchecked(&mut buf[..ipv4::HEADER_LEN]));
                ipv4::HEADER_LEN
            }
        }
    }

    /// Appends `inner` wrapped in the path's outer header to `out`.
    ///
    /// An outer IPv4 header has DF when the inner IPv4 packet has it (RFC 2003
    /// §3.1, and what Linux ipip's default path MTU discovery amounts to once
    /// the inner packet fits), and never for inner IPv6 (RFC 4213 §3.2.1: with
    /// a static tunnel MTU the encapsulator must not set it, and routers on
    /// the way may fragment).
    pub(crate) fn encapsulate(
        &self,
        inner_protocol: u8,
        inner_traffic_class: u8,
        inner: &[u8],
        idents: &mut Idents,
        out: &mut Batch,
    ) {
        let header_len = self.overhead();
        let dont_frag = inner_protocol == ip_proto::IPIP
            && inner.len() >= ipv4::HEADER_LEN
            && Ipv4Packet::new_unchecked(inner).dont_frag();
        let buf = out.push(self.destination(), header_len + inner.len());
        self.emit(
            inner_protocol,
            inner_traffic_class,
            inner.len(),
            dont_frag,
            idents,
            buf,
        );
        buf[header_len..].copy_from_slice(inner);
    }
}

/// Both ends of a validated path are of one family; an IPv4 address here can
/// only come from a configuration that skipped validation, and is mapped
/// rather than trusted to panic.
fn v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mode, PathConfig};

    #[test]
    fn ipv4_headers_take_idents_from_the_shared_counter() {
        let mut config = TunnelConfig::new(
            "t",
            Mode::Ipip6,
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        config.paths = vec![PathConfig::new(
            "v4",
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 0, 2),
        )];
        let framing = Framing::new(&config, &config.paths[0]);
        assert_eq!(framing.overhead(), 20);
        let mut idents = Idents::default();
        let mut buf = [0xA5u8; 20];
        framing.emit(ip_proto::IPIP, 0, 100, true, &mut idents, &mut buf);
        let header = Ipv4Packet::new_checked(&buf[..]);
        assert!(header.is_err(), "total length covers the absent payload");
        let view = Ipv4Packet::new_unchecked(&buf[..]);
        assert!(view.verify_checksum());
        assert_eq!((view.ident(), view.dont_frag()), (1, true));
        framing.emit(ip_proto::IPV6, 0, 100, false, &mut idents, &mut buf);
        let view = Ipv4Packet::new_unchecked(&buf[..]);
        assert_eq!((view.ident(), view.dont_frag()), (2, false));
        assert_eq!(view.protocol(), ip_proto::IPV6);
        assert_eq!(view.total_len(), 120);
        assert!(view.verify_checksum());
    }
}
