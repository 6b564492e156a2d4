//! The outer IPv6 header, written byte for byte as Linux ip6tnl writes it.

use wire::{Ipv6Packet, Ipv6Repr, ip_proto, ipv6, ipv6_ext};

use crate::{Batch, Destination, EncapLimit, TrafficClass, TunnelConfig};

const ECN_MASK: u8 = 0b11;

/// Bytes in front of the inner packet.
pub(crate) fn overhead(config: &TunnelConfig) -> usize {
    ipv6::HEADER_LEN + config.encap_limit.overhead()
}

/// The outer traffic class for an inner packet with this TOS / traffic class.
pub(crate) fn traffic_class(config: &TunnelConfig, inner_traffic_class: u8) -> u8 {
    // The ECN field always follows the inner packet (RFC 6040 §4.1, normal
    // mode, as ip6tnl does), so congestion marks can be carried back inside.
    match config.traffic_class {
        TrafficClass::Fixed(tc) => (tc & !ECN_MASK) | (inner_traffic_class & ECN_MASK),
        TrafficClass::Inherit => inner_traffic_class,
    }
}

/// Writes the outer header, and the Destination Options header carrying the
/// Tunnel Encapsulation Limit when configured, in front of an inner packet of
/// `inner_len` bytes whose own protocol is `inner_protocol` (4 or 41).
///
/// `buf` must hold at least [`overhead`] bytes, and `inner_len` plus the option
/// must fit the 16-bit payload length; the MTU bounds of a validated
/// [`TunnelConfig`] guarantee both for every packet the tunnel sends.
pub(crate) fn emit_outer(
    config: &TunnelConfig,
    inner_protocol: u8,
    inner_traffic_class: u8,
    inner_len: usize,
    buf: &mut [u8],
) -> usize {
    let traffic_class = traffic_class(config, inner_traffic_class);
    let (next_header, ext_len) = match config.encap_limit {
        EncapLimit::None => (inner_protocol, 0),
        EncapLimit::Limit(_) => (ip_proto::DSTOPTS, ipv6_ext::ENCAP_LIMIT_HEADER_LEN),
    };
    let repr = Ipv6Repr {
        src_addr: config.local,
        dst_addr: config.remote,
        next_header,
        payload_len: ext_len + inner_len,
        hop_limit: config.hop_limit,
        traffic_class,
        // ip6tnl sends flow label 0 unless told to copy or hash it.
        flow_label: 0,
    };
    repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..ipv6::HEADER_LEN]));
    if let EncapLimit::Limit(limit) = config.encap_limit {
        // Cannot fail: the slice is exactly the header's length.
        let _ = ipv6_ext::emit_encap_limit(
            inner_protocol,
            limit,
            &mut buf[ipv6::HEADER_LEN..ipv6::HEADER_LEN + ext_len],
        );
    }
    ipv6::HEADER_LEN + ext_len
}

/// Appends `inner` wrapped in the tunnel's outer header to `out`.
pub(crate) fn encapsulate(
    config: &TunnelConfig,
    inner_protocol: u8,
    inner_traffic_class: u8,
    inner: &[u8],
    out: &mut Batch,
) {
    let header_len = overhead(config);
    let buf = out.push(
        Destination::Underlay {
            remote: config.remote,
        },
        header_len + inner.len(),
    );
    emit_outer(
        config,
        inner_protocol,
        inner_traffic_class,
        inner.len(),
        buf,
    );
    buf[header_len..].copy_from_slice(inner);
}
