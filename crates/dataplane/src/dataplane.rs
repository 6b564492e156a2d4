//! The set of tunnels and the entry points the shell drives.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::time::Instant;

use wire::{Icmpv6Packet, icmpv6};

use crate::event::PathMtuReason;
use crate::pmtu::{PathMtu, Update};
use crate::ratelimit::IcmpRateLimit;
use crate::tunnel::{Idents, Tunnel, quoted_tunnel_packet};
use crate::{
    Batch, ConfigError, DropCounters, DropReason, Event, TunnelConfig, TunnelId, TunnelStats,
    Verdict, encap,
};

/// What the shell knows about an outer packet besides its payload: the fields
/// of the outer IPv6 header (from `recvmsg` ancillary data) and the Tunnel
/// Encapsulation Limit if the packet carried one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterMeta {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    /// The protocol of the payload handed over: 4 or 41 once the kernel has
    /// consumed the extension headers. Extension headers still in the payload
    /// are skipped.
    pub next_header: u8,
    pub traffic_class: u8,
    /// Accepted whatever its value: we are the tunnel exit point, and the limit
    /// only matters to a node that encapsulates again (RFC 2473 §4.1.1).
    pub encap_limit: Option<u8>,
}

/// Events waiting beyond this are dropped oldest first: a shell that never
/// polls must not make the core grow without bound.
const MAX_EVENTS: usize = 1024;

/// The sans-IO tunnel core.
///
/// It performs no I/O and reads no clock. The shell calls, in any order:
/// - `handle_inner` with each packet read from a tunnel's TUN device,
///   `handle_outer` with each payload received on the raw IPv6 sockets
///   (protocols 4 and 41), `handle_icmpv6` with each ICMPv6 message from the
///   raw ICMPv6 socket;
/// - then sends every packet the handlers appended to the [`Batch`]:
///   [`Destination::Underlay`](crate::Destination::Underlay) packets are whole
///   IPv6 packets for an `IPV6_HDRINCL` socket,
///   [`Destination::Tun`](crate::Destination::Tun) packets are written to that
///   tunnel's TUN device;
/// - `poll_event` until it returns `None`, and `poll_timeout` to know when to
///   call `handle_timeout` next (after any handler or configuration change).
#[derive(Debug)]
pub struct Dataplane {
    tunnels: BTreeMap<TunnelId, Tunnel>,
    by_endpoints: HashMap<(Ipv6Addr, Ipv6Addr), TunnelId>,
    next_id: u32,
    unattributed: DropCounters,
    events: VecDeque<Event>,
    icmp_rate: IcmpRateLimit,
    idents: Idents,
}

impl Default for Dataplane {
    fn default() -> Self {
        Self::new()
    }
}

impl Dataplane {
    pub fn new() -> Self {
        Self::with_icmp_rate_limit(IcmpRateLimit::default())
    }

    /// A dataplane whose tunnels each send at most this many ICMP errors.
    pub fn with_icmp_rate_limit(icmp_rate: IcmpRateLimit) -> Self {
        Self {
            tunnels: BTreeMap::new(),
            by_endpoints: HashMap::new(),
            next_id: 0,
            unattributed: DropCounters::default(),
            events: VecDeque::new(),
            icmp_rate,
            idents: Idents::default(),
        }
    }

    pub fn add_tunnel(&mut self, config: TunnelConfig) -> Result<TunnelId, ConfigError> {
        config.validate()?;
        let endpoints = (config.local, config.remote);
        if let Some(&existing) = self.by_endpoints.get(&endpoints) {
            return Err(ConfigError::DuplicateEndpoints {
                existing,
                local: config.local,
                remote: config.remote,
            });
        }
        let id = TunnelId(self.next_id);
        self.next_id = self
            .next_id
            .checked_add(1)
            .ok_or(ConfigError::IdsExhausted)?;
        self.by_endpoints.insert(endpoints, id);
        self.tunnels
            .insert(id, Tunnel::new(id, config, self.icmp_rate));
        Ok(id)
    }

    /// Changes a tunnel in place, keeping its id and counters, for a reload.
    /// A learnt path MTU survives unless the MTU or the option changed, since
    /// it was measured for the old framing.
    pub fn update_tunnel(&mut self, id: TunnelId, config: TunnelConfig) -> Result<(), ConfigError> {
        if !self.tunnels.contains_key(&id) {
            return Err(ConfigError::NoSuchTunnel { id });
        }
        config.validate()?;
        let endpoints = (config.local, config.remote);
        if let Some(&existing) = self.by_endpoints.get(&endpoints)
            && existing != id
        {
            return Err(ConfigError::DuplicateEndpoints {
                existing,
                local: config.local,
                remote: config.remote,
            });
        }
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return Err(ConfigError::NoSuchTunnel { id });
        };
        let old = &tunnel.config;
        let framing_changed = old.mtu != config.mtu || old.encap_limit != config.encap_limit;
        self.by_endpoints.remove(&(old.local, old.remote));
        self.by_endpoints.insert(endpoints, id);
        let before = tunnel.pmtu.current();
        if framing_changed {
            tunnel.pmtu = PathMtu::new(config.mtu);
            tunnel.stats.path_mtu = config.mtu;
        }
        tunnel.config = config;
        let after = tunnel.pmtu.current();
        if after != before {
            self.push_event(Event::PathMtuChanged {
                tunnel: id,
                mtu: after,
                reason: PathMtuReason::Reconfigured,
            });
        }
        Ok(())
    }

    pub fn remove_tunnel(&mut self, id: TunnelId) -> bool {
        let Some(tunnel) = self.tunnels.remove(&id) else {
            return false;
        };
        self.by_endpoints
            .remove(&(tunnel.config.local, tunnel.config.remote));
        true
    }

    pub fn tunnel(&self, id: TunnelId) -> Option<&TunnelConfig> {
        self.tunnels.get(&id).map(|t| &t.config)
    }

    pub fn stats(&self, id: TunnelId) -> Option<&TunnelStats> {
        self.tunnels.get(&id).map(|t| &t.stats)
    }

    pub fn tunnels(&self) -> impl Iterator<Item = TunnelId> + '_ {
        self.tunnels.keys().copied()
    }

    /// The tunnel running between these outer addresses.
    pub fn tunnel_by_endpoints(&self, local: Ipv6Addr, remote: Ipv6Addr) -> Option<TunnelId> {
        self.by_endpoints.get(&(local, remote)).copied()
    }

    /// Drops that belong to no tunnel: unknown tunnel ids, outer packets and
    /// ICMPv6 messages that match no tunnel or cannot be read.
    pub fn unattributed_drops(&self) -> &DropCounters {
        &self.unattributed
    }

    fn drop_unattributed(&mut self, reason: DropReason) -> Verdict {
        self.unattributed.bump(reason);
        Verdict::Dropped(reason)
    }

    /// An inner packet read from `tunnel`'s TUN device. Mutable so that MSS
    /// clamping happens in place; the packet is otherwise left as it was.
    pub fn handle_inner(
        &mut self,
        now: Instant,
        tunnel: TunnelId,
        packet: &mut [u8],
        out: &mut Batch,
    ) -> Verdict {
        match self.tunnels.get_mut(&tunnel) {
            Some(t) => t.encap(now, packet, out, &mut self.idents),
            None => self.drop_unattributed(DropReason::NoTunnel),
        }
    }

    /// The payload of an outer packet from the underlay, after the outer header
    /// and the extension headers the kernel processed.
    pub fn handle_outer(
        &mut self,
        now: Instant,
        meta: &OuterMeta,
        payload: &mut [u8],
        out: &mut Batch,
    ) -> Verdict {
        // Nothing on this path depends on time yet; the parameter keeps the
        // signature stable for per-packet timers (e.g. rate limits) later.
        let _ = now;
        if let Some(id) = self.tunnel_by_endpoints(meta.dst, meta.src)
            && let Some(tunnel) = self.tunnels.get_mut(&id)
        {
            return tunnel.decap(meta, payload, out);
        }
        // Addressed to one of our tunnel ends, but not from its peer: spoofed or
        // a peer whose address changed. Either way the tunnel's owner wants to know.
        if let Some(tunnel) = self
            .tunnels
            .values_mut()
            .find(|t| t.config.local == meta.dst)
        {
            tunnel.stats.drops.bump(DropReason::SpoofedOuterSource);
            return Verdict::Dropped(DropReason::SpoofedOuterSource);
        }
        self.drop_unattributed(DropReason::NoTunnel)
    }

    /// An ICMPv6 message from the underlay, from its ICMPv6 header on. Packet
    /// Too Big messages about our outer packets lower that tunnel's path MTU;
    /// everything else is left to the kernel.
    pub fn handle_icmpv6(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        message: &[u8],
    ) -> Verdict {
        let Ok(packet) = Icmpv6Packet::new_checked(message) else {
            return self.drop_unattributed(DropReason::Malformed);
        };
        if !packet.verify_checksum(&src, &dst) {
            return self.drop_unattributed(DropReason::Malformed);
        }
        if packet.msg_type() != icmpv6::msg_type::PACKET_TOO_BIG {
            return self.drop_unattributed(DropReason::UnhandledIcmp);
        }
        let Some((local, remote)) = quoted_tunnel_packet(packet.data()) else {
            return self.drop_unattributed(DropReason::NoTunnel);
        };
        let Some(id) = self.tunnel_by_endpoints(local, remote) else {
            return self.drop_unattributed(DropReason::NoTunnel);
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return self.drop_unattributed(DropReason::NoTunnel);
        };
        let reported = packet.mtu();
        // Links below 1280 are not IPv6 links; such a report only means that
        // the path needs fragmentation headers, which we never rely on.
        let link = reported.clamp(1280, u32::from(u16::MAX)) as u16;
        let inner_mtu = link - encap::overhead(&tunnel.config) as u16;
        if tunnel.pmtu.lower(now, inner_mtu) == Update::Lowered {
            let mtu = tunnel.pmtu.current();
            tunnel.stats.path_mtu = mtu;
            self.push_event(Event::PathMtuChanged {
                tunnel: id,
                mtu,
                reason: PathMtuReason::PacketTooBig {
                    from: src,
                    reported,
                },
            });
        }
        Verdict::Consumed
    }

    /// When `handle_timeout` should next be called, if anything is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tunnels.values().filter_map(|t| t.pmtu.expires()).min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for tunnel in self.tunnels.values_mut() {
            if tunnel.pmtu.expire(now) {
                tunnel.stats.path_mtu = tunnel.pmtu.current();
                expired.push(Event::PathMtuChanged {
                    tunnel: tunnel.id,
                    mtu: tunnel.pmtu.current(),
                    reason: PathMtuReason::Expired,
                });
            }
        }
        for event in expired {
            self.push_event(event);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Mode;

    fn config() -> TunnelConfig {
        TunnelConfig::new(
            "t",
            Mode::Ipip6,
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    }

    #[test]
    fn event_queue_is_bounded_and_keeps_the_newest() {
        let mut dp = Dataplane::new();
        for mtu in 0..(MAX_EVENTS as u16 + 10) {
            dp.push_event(Event::PathMtuChanged {
                tunnel: TunnelId(0),
                mtu,
                reason: PathMtuReason::Expired,
            });
        }
        let mtus: Vec<u16> = std::iter::from_fn(|| dp.poll_event())
            .map(|Event::PathMtuChanged { mtu, .. }| mtu)
            .collect();
        assert_eq!(mtus.len(), MAX_EVENTS);
        assert_eq!(mtus[0], 10);
        assert_eq!(*mtus.last().unwrap(), MAX_EVENTS as u16 + 9);
    }

    #[test]
    fn update_keeps_id_and_counters_and_checks_endpoints() {
        let mut dp = Dataplane::new();
        let id = dp.add_tunnel(config()).unwrap();
        dp.tunnels.get_mut(&id).unwrap().stats.rx_packets = 7;
        let mut other = config();
        other.remote = "2001:db8::3".parse().unwrap();
        let other_id = dp.add_tunnel(other.clone()).unwrap();

        let mut changed = config();
        changed.name = "renamed".into();
        changed.remote = "2001:db8::4".parse().unwrap();
        dp.update_tunnel(id, changed.clone()).unwrap();
        assert_eq!(dp.tunnel(id), Some(&changed));
        assert_eq!(dp.stats(id).unwrap().rx_packets, 7);
        assert_eq!(
            dp.tunnel_by_endpoints(changed.local, changed.remote),
            Some(id)
        );
        assert_eq!(
            dp.tunnel_by_endpoints(changed.local, "2001:db8::2".parse().unwrap()),
            None
        );

        assert!(matches!(
            dp.update_tunnel(id, other),
            Err(ConfigError::DuplicateEndpoints { existing, .. }) if existing == other_id
        ));
        let mut bad = changed.clone();
        bad.mtu = 10;
        assert!(matches!(
            dp.update_tunnel(id, bad),
            Err(ConfigError::MtuOutOfRange { .. })
        ));
        assert_eq!(
            dp.update_tunnel(TunnelId(99), changed),
            Err(ConfigError::NoSuchTunnel { id: TunnelId(99) })
        );
        assert_eq!(dp.poll_event(), None);
    }

    #[test]
    fn update_resets_the_path_mtu_when_the_framing_changes() {
        let mut dp = Dataplane::new();
        let id = dp.add_tunnel(config()).unwrap();
        let now = Instant::now();
        let tunnel = dp.tunnels.get_mut(&id).unwrap();
        tunnel.pmtu.lower(now, 1300);
        tunnel.stats.path_mtu = 1300;

        // Same framing: the learnt value stays.
        let mut renamed = config();
        renamed.name = "x".into();
        dp.update_tunnel(id, renamed).unwrap();
        assert_eq!(dp.stats(id).unwrap().path_mtu, 1300);
        assert_eq!(dp.poll_timeout(), Some(now + crate::PMTU_EXPIRY));

        let mut smaller = config();
        smaller.mtu = 1400;
        dp.update_tunnel(id, smaller).unwrap();
        assert_eq!(dp.stats(id).unwrap().path_mtu, 1400);
        assert_eq!(dp.poll_timeout(), None);
        assert_eq!(
            dp.poll_event(),
            Some(Event::PathMtuChanged {
                tunnel: id,
                mtu: 1400,
                reason: PathMtuReason::Reconfigured
            })
        );
    }
}
