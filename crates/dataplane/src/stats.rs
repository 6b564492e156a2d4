//! What happened to each packet, and the counters that add it up.

use core::fmt;
use std::time::{Duration, Instant};

use crate::health::Loss;
use crate::{HealthState, PathId};

/// What the core did with an input packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum Verdict {
    /// Passed on: encapsulated (possibly as several fragments) or decapsulated.
    Forwarded,
    /// Used by the core itself and not passed on: an ICMPv6 Packet Too Big about
    /// a path, a keepalive (a request is answered in the batch), or the echo
    /// reply to one of the core's ICMP probes.
    Consumed,
    Dropped(DropReason),
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Does not parse: truncated, bad header, bad IPv4 header checksum, outer
    /// next header that is not IPv4 or IPv6, or one that disagrees with the
    /// inner version.
    Malformed,
    /// The inner address family is not carried by this tunnel.
    WrongFamily,
    /// The inner destination is not in the tunnel's routes; the kernel may route
    /// stray IPv6 ND/MLD into the TUN device.
    NotRouted,
    /// The inner packet is addressed from or to the tunnel's own remote endpoint,
    /// so the tunnel would carry itself (the kernel's `ip6_tnl_addr_conflict`).
    RoutingLoop,
    /// The outer source is not the remote of any path of the tunnel that owns
    /// the outer destination.
    SpoofedOuterSource,
    /// The inner source is outside the tunnel's allowed sources.
    InnerSourceNotAllowed,
    /// Larger than the tunnel's path MTU and may not be fragmented; an ICMP error
    /// went back to the sender where one was allowed.
    TooBig,
    /// No tunnel for this packet (or no such path, for
    /// [`handle_inner_on_path`](crate::Dataplane::handle_inner_on_path)).
    NoTunnel,
    /// Too big, and the ICMP error for it was over the tunnel's rate limit.
    IcmpRateLimited,
    /// The outer header says Congestion Experienced but the inner packet is not
    /// ECN-capable, so the mark cannot be passed on (RFC 6040 §4.2).
    CongestionNotEct,
    /// An ICMPv6 message of a type the core does not act on.
    UnhandledIcmp,
}

impl DropReason {
    pub const ALL: [Self; 11] = [
        Self::Malformed,
        Self::WrongFamily,
        Self::NotRouted,
        Self::RoutingLoop,
        Self::SpoofedOuterSource,
        Self::InnerSourceNotAllowed,
        Self::TooBig,
        Self::NoTunnel,
        Self::IcmpRateLimited,
        Self::CongestionNotEct,
        Self::UnhandledIcmp,
    ];

    /// A stable snake_case name for metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::WrongFamily => "wrong_family",
            Self::NotRouted => "not_routed",
            Self::RoutingLoop => "routing_loop",
            Self::SpoofedOuterSource => "spoofed_outer_source",
            Self::InnerSourceNotAllowed => "inner_source_not_allowed",
            Self::TooBig => "too_big",
            Self::NoTunnel => "no_tunnel",
            Self::IcmpRateLimited => "icmp_rate_limited",
            Self::CongestionNotEct => "congestion_not_ect",
            Self::UnhandledIcmp => "unhandled_icmp",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One counter per [`DropReason`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    pub malformed: u64,
    pub wrong_family: u64,
    pub not_routed: u64,
    pub routing_loop: u64,
    pub spoofed_outer_source: u64,
    pub inner_source_not_allowed: u64,
    pub too_big: u64,
    pub no_tunnel: u64,
    pub icmp_rate_limited: u64,
    pub congestion_not_ect: u64,
    pub unhandled_icmp: u64,
}

impl DropCounters {
    pub fn get(&self, reason: DropReason) -> u64 {
        *self.slot(reason)
    }

    pub fn total(&self) -> u64 {
        DropReason::ALL.iter().map(|&r| self.get(r)).sum()
    }

    /// Every reason with its count, in [`DropReason::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.iter().map(|&r| (r, self.get(r)))
    }

    pub(crate) fn bump(&mut self, reason: DropReason) {
        *self.slot_mut(reason) += 1;
    }

    fn slot(&self, reason: DropReason) -> &u64 {
        match reason {
            DropReason::Malformed => &self.malformed,
            DropReason::WrongFamily => &self.wrong_family,
            DropReason::NotRouted => &self.not_routed,
            DropReason::RoutingLoop => &self.routing_loop,
            DropReason::SpoofedOuterSource => &self.spoofed_outer_source,
            DropReason::InnerSourceNotAllowed => &self.inner_source_not_allowed,
            DropReason::TooBig => &self.too_big,
            DropReason::NoTunnel => &self.no_tunnel,
            DropReason::IcmpRateLimited => &self.icmp_rate_limited,
            DropReason::CongestionNotEct => &self.congestion_not_ect,
            DropReason::UnhandledIcmp => &self.unhandled_icmp,
        }
    }

    fn slot_mut(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::Malformed => &mut self.malformed,
            DropReason::WrongFamily => &mut self.wrong_family,
            DropReason::NotRouted => &mut self.not_routed,
            DropReason::RoutingLoop => &mut self.routing_loop,
            DropReason::SpoofedOuterSource => &mut self.spoofed_outer_source,
            DropReason::InnerSourceNotAllowed => &mut self.inner_source_not_allowed,
            DropReason::TooBig => &mut self.too_big,
            DropReason::NoTunnel => &mut self.no_tunnel,
            DropReason::IcmpRateLimited => &mut self.icmp_rate_limited,
            DropReason::CongestionNotEct => &mut self.congestion_not_ect,
            DropReason::UnhandledIcmp => &mut self.unhandled_icmp,
        }
    }
}

/// Counters of one tunnel.
///
/// `tx_*` count outer packets sent to the underlay (each fragment counts) and
/// the inner bytes they carry, like the counters of a Linux ip6tnl device;
/// `rx_*` count inner packets written to the TUN device after decapsulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelStats {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub drops: DropCounters,
    /// The active path's effective inner MTU: the configured MTU, or less after
    /// an ICMPv6 Packet Too Big. MSS clamping and oversize decisions use it.
    pub path_mtu: u16,
    /// The path traffic leaves on.
    pub active_path: PathId,
    /// SYN segments whose MSS option was lowered.
    pub mss_clamped: u64,
    /// ICMP errors generated towards inner senders.
    pub icmp_sent: u64,
    /// Inner IPv4 packets fragmented to fit, and the fragments they became.
    pub fragmented: u64,
    pub fragments_sent: u64,
    /// Inner TCP packets from the underlay longer than the tunnel MTU: segments that the
    /// receiving NIC's GRO merged before the raw socket saw them (each also counts once in
    /// `rx_packets`). They reach the TUN device to be segmented again, not refused.
    pub outer_gro_packets: u64,
    /// Moves of the traffic to another path by health (failovers and failbacks).
    pub failovers: u64,
}

/// Counters and health of one path of a tunnel.
///
/// `tx_*` and `rx_*` count what the tunnel's counters count, for this path
/// alone; probes and their answers are counted apart and in neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Always [`Up`](HealthState::Up) for a path that is not probed.
    pub state: HealthState,
    pub srtt: Option<Duration>,
    pub loss: Loss,
    /// When `state` last changed; the shell renders it against its own clock.
    pub last_change: Option<Instant>,
    /// This path's effective inner MTU.
    pub path_mtu: u16,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Keepalive requests or ICMP echo requests sent on this path.
    pub probes_sent: u64,
    /// Replies to them, in time.
    pub probes_answered: u64,
    /// The peer's keepalive requests answered on this path.
    pub keepalives_answered: u64,
    /// When the peer was last heard on this path: a packet forwarded or a keepalive.
    pub last_received: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        let mut counters = DropCounters::default();
        for (i, &reason) in DropReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                counters.bump(reason);
            }
        }
        for (i, (reason, count)) in counters.iter().enumerate() {
            assert_eq!(count, i as u64 + 1, "{reason}");
        }
        let n = DropReason::ALL.len() as u64;
        assert_eq!(counters.total(), n * (n + 1) / 2);
    }

    #[test]
    fn reason_names_are_distinct() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        assert_eq!(DropReason::TooBig.to_string(), "too_big");
    }
}
