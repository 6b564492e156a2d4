//! One tunnel's per-packet work: encapsulation on the way out, decapsulation
//! on the way in, and what it takes to keep packets within the path MTU.

use std::time::Instant;

use wire::{ip_proto, ipv6, ipv6_ext};

use crate::icmp;
use crate::inner::{Family, Inner, mark_congestion};
use crate::pmtu::PathMtu;
use crate::ratelimit::{IcmpRateLimit, TokenBucket};
use crate::{
    Batch, Destination, DropReason, MIN_IPV4_MTU, MIN_IPV6_MTU, MssClamp, OuterMeta, TunnelConfig,
    TunnelId, TunnelStats, Verdict, encap, fragment, mss,
};

/// IPv4 + TCP headers without options, subtracted from the MTU for the MSS.
const TCP_IPV4_OVERHEAD: u16 = 40;
/// IPv6 + TCP headers without options.
const TCP_IPV6_OVERHEAD: u16 = 60;

const ECN_MASK: u8 = 0b11;
const ECN_CE: u8 = 0b11;

/// Identification values for packets the core originates, shared by all
/// tunnels so that fragments of different tunnels never collide at a host
/// that terminates several of them.
#[derive(Debug, Default)]
pub(crate) struct Idents {
    /// ICMPv4 errors.
    pub(crate) ipv4: u16,
    /// Outer IPv6 Fragment headers.
    pub(crate) ipv6: u32,
}

#[derive(Debug)]
pub(crate) struct Tunnel {
    pub(crate) id: TunnelId,
    pub(crate) config: TunnelConfig,
    pub(crate) stats: TunnelStats,
    pub(crate) pmtu: PathMtu,
    icmp_bucket: TokenBucket,
}

impl Tunnel {
    pub(crate) fn new(id: TunnelId, config: TunnelConfig, icmp_rate: IcmpRateLimit) -> Self {
        let stats = TunnelStats {
            path_mtu: config.mtu,
            ..TunnelStats::default()
        };
        Self {
            id,
            pmtu: PathMtu::new(config.mtu),
            config,
            stats,
            icmp_bucket: TokenBucket::new(icmp_rate),
        }
    }

    /// The largest inner packet of `family` that goes out unfragmented.
    ///
    /// IPv6 links must carry 1280-byte packets (RFC 8200 §5), so an IPv6 inner
    /// packet is never refused below that, whatever the path reported; like
    /// ip6tnl, IPv4 goes down to the 68-byte minimum.
    pub(crate) fn mtu(&self, family: Family) -> u16 {
        let current = self.pmtu.current();
        match family {
            Family::V4 => current.max(MIN_IPV4_MTU),
            Family::V6 => current.max(MIN_IPV6_MTU),
        }
    }

    fn mss(&self, family: Family) -> Option<u16> {
        match self.config.mss_clamp {
            MssClamp::Off => None,
            MssClamp::Fixed(mss) => Some(mss),
            MssClamp::Auto => Some(match family {
                Family::V4 => self.mtu(family) - TCP_IPV4_OVERHEAD,
                Family::V6 => self.mtu(family) - TCP_IPV6_OVERHEAD,
            }),
        }
    }

    fn carries(&self, family: Family) -> bool {
        match family {
            Family::V4 => self.config.carries_ipv4(),
            Family::V6 => self.config.carries_ipv6(),
        }
    }

    fn clamp(&mut self, packet: &mut [u8], family: Family) {
        if let Some(max) = self.mss(family)
            && mss::clamp(packet, family, max)
        {
            self.stats.mss_clamped += 1;
        }
    }

    fn drop(&mut self, reason: DropReason) -> Verdict {
        self.stats.drops.bump(reason);
        Verdict::Dropped(reason)
    }

    /// An inner packet from the TUN device.
    pub(crate) fn encap(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        out: &mut Batch,
        idents: &mut Idents,
    ) -> Verdict {
        let inner = match Inner::parse(packet, false) {
            Ok(inner) => inner,
            Err(reason) => return self.drop(reason),
        };
        let packet = &mut packet[..inner.len];
        if !self.carries(inner.family) {
            return self.drop(DropReason::WrongFamily);
        }
        if !self
            .config
            .routes
            .iter()
            .any(|net| net.contains(&inner.dst))
        {
            return self.drop(DropReason::NotRouted);
        }
        let remote = std::net::IpAddr::V6(self.config.remote);
        if inner.src == remote || inner.dst == remote {
            return self.drop(DropReason::RoutingLoop);
        }
        self.clamp(packet, inner.family);

        let mtu = self.mtu(inner.family);
        if inner.len > usize::from(mtu) {
            return self.too_big(now, packet, inner.family, mtu, out, idents);
        }
        let path = self.pmtu.current();
        if inner.len > usize::from(path) {
            // Only IPv6 at its 1280 floor gets here: the path is narrower
            // than IPv6 allows a link to be, so the outer packet is split.
            idents.ipv6 = idents.ipv6.wrapping_add(1);
            let link_mtu = path + encap::overhead(&self.config) as u16;
            let count = fragment::fragment_outer(
                &self.config,
                inner.family.protocol(),
                inner.traffic_class,
                packet,
                link_mtu,
                idents.ipv6,
                out,
            );
            self.stats.tx_packets += count as u64;
            self.stats.fragmented += 1;
            self.stats.fragments_sent += count as u64;
        } else {
            encap::encapsulate(
                &self.config,
                inner.family.protocol(),
                inner.traffic_class,
                packet,
                out,
            );
            self.stats.tx_packets += 1;
        }
        self.stats.tx_bytes += inner.len as u64;
        Verdict::Forwarded
    }

    fn too_big(
        &mut self,
        now: Instant,
        packet: &[u8],
        family: Family,
        mtu: u16,
        out: &mut Batch,
        idents: &mut Idents,
    ) -> Verdict {
        if family == Family::V4 && !wire::Ipv4Packet::new_unchecked(packet).dont_frag() {
            return match fragment::fragment_into(&self.config, packet, mtu, out) {
                Ok(count) => {
                    self.stats.tx_packets += count as u64;
                    self.stats.tx_bytes +=
                        fragmented_bytes(out, count, encap::overhead(&self.config));
                    self.stats.fragmented += 1;
                    self.stats.fragments_sent += count as u64;
                    Verdict::Forwarded
                }
                Err(reason) => self.drop(reason),
            };
        }
        let reason = self.answer_too_big(now, packet, family, mtu, out, idents);
        self.drop(reason)
    }

    /// Sends the ICMP error for an oversized packet where the rules allow one,
    /// and says which drop reason applies.
    fn answer_too_big(
        &mut self,
        now: Instant,
        packet: &[u8],
        family: Family,
        mtu: u16,
        out: &mut Batch,
        idents: &mut Idents,
    ) -> DropReason {
        let destination = Destination::Tun(self.id);
        match family {
            Family::V4 => {
                let Some(source) = self.config.icmp_source_v4 else {
                    return DropReason::TooBig;
                };
                if !icmp::may_answer_v4(packet) {
                    return DropReason::TooBig;
                }
                if !self.icmp_bucket.take(now) {
                    return DropReason::IcmpRateLimited;
                }
                idents.ipv4 = idents.ipv4.wrapping_add(1);
                let buf = out.push(destination, icmp::frag_needed_len(packet));
                icmp::emit_frag_needed(source, idents.ipv4, mtu, packet, buf);
            }
            Family::V6 => {
                let Some(source) = self.config.icmp_source_v6 else {
                    return DropReason::TooBig;
                };
                if !icmp::may_answer_v6(packet) {
                    return DropReason::TooBig;
                }
                if !self.icmp_bucket.take(now) {
                    return DropReason::IcmpRateLimited;
                }
                let buf = out.push(destination, icmp::packet_too_big_len(packet));
                icmp::emit_packet_too_big(source, u32::from(mtu), packet, buf);
            }
        }
        self.stats.icmp_sent += 1;
        DropReason::TooBig
    }

    /// The payload of an outer packet addressed from this tunnel's remote to
    /// its local address.
    pub(crate) fn decap(
        &mut self,
        meta: &OuterMeta,
        payload: &mut [u8],
        out: &mut Batch,
    ) -> Verdict {
        // Normally the shell has consumed the extension headers already; if not,
        // skip them here rather than misread them as the inner packet.
        let walk = match ipv6_ext::walk(meta.next_header, payload) {
            Ok(walk) if !walk.fragmented => walk,
            _ => return self.drop(DropReason::Malformed),
        };
        let Some(family) = Family::from_protocol(walk.upper_protocol) else {
            return self.drop(DropReason::Malformed);
        };
        if !self.carries(family) {
            return self.drop(DropReason::WrongFamily);
        }
        let payload = &mut payload[walk.offset..];
        let inner = match Inner::parse(payload, true) {
            Ok(inner) if inner.family == family => inner,
            _ => return self.drop(DropReason::Malformed),
        };
        let packet = &mut payload[..inner.len];
        if !self
            .config
            .allowed_sources
            .iter()
            .any(|net| net.contains(&inner.src))
        {
            return self.drop(DropReason::InnerSourceNotAllowed);
        }
        // RFC 6040 §4.2 as Linux applies it: a congestion mark on the outer
        // header must reach the inner one, or the packet is dropped.
        if meta.traffic_class & ECN_MASK == ECN_CE {
            if inner.traffic_class & ECN_MASK == 0 {
                return self.drop(DropReason::CongestionNotEct);
            }
            mark_congestion(packet, family);
        }
        self.clamp(packet, family);
        out.push(Destination::Tun(self.id), packet.len())
            .copy_from_slice(packet);
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += packet.len() as u64;
        Verdict::Forwarded
    }
}

/// Inner bytes of the last `count` outer packets in `out`.
fn fragmented_bytes(out: &Batch, count: usize, overhead: usize) -> u64 {
    (out.len() - count..out.len())
        .filter_map(|i| out.get(i))
        .map(|(_, bytes)| (bytes.len() - overhead) as u64)
        .sum()
}

/// Reads the invoking packet quoted by an ICMPv6 Packet Too Big: whether it is
/// one of our outer packets (IPv4 or IPv6 behind at most extension headers), and
/// between which endpoints.
pub(crate) fn quoted_tunnel_packet(
    quote: &[u8],
) -> Option<(std::net::Ipv6Addr, std::net::Ipv6Addr)> {
    if quote.len() < ipv6::HEADER_LEN || quote[0] >> 4 != 6 {
        return None;
    }
    let header = wire::Ipv6Packet::new_unchecked(&quote[..ipv6::HEADER_LEN]);
    let walk = ipv6_ext::walk(header.next_header(), &quote[ipv6::HEADER_LEN..]).ok()?;
    matches!(walk.upper_protocol, ip_proto::IPIP | ip_proto::IPV6)
        .then(|| (header.src_addr(), header.dst_addr()))
}
