//! The set of tunnels and the entry points the shell drives.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use wire::{ip_proto, ipv6_ext};

use crate::event::EventQueue;
use crate::ident::Idents;
use crate::ratelimit::IcmpRateLimit;
use crate::selection::{Clock, earliest};
use crate::too_big;
use crate::tunnel::{Ipv4Outer, Tunnel};
use crate::{
    Batch, ConfigError, DropCounters, DropReason, Event, PathId, PathStats, Probe, TunnelConfig,
    TunnelId, TunnelStats, Verdict,
};

/// What the shell knows about an outer IPv6 packet besides its payload: the
/// fields of the outer header (from `recvmsg` ancillary data) and the Tunnel
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

/// The sans-IO tunnel core.
///
/// It performs no I/O and reads no clock. The shell calls, in any order:
/// - `handle_inner` with each packet read from a tunnel's TUN device (or
///   `handle_inner_on_path` with each packet read from a path's own device,
///   see [`TunnelConfig::device_per_path`]), `handle_outer` with each payload
///   received on the raw IPv6 sockets (protocols 4 and 41),
///   `handle_outer_ipv4` with each whole datagram received on the raw IPv4
///   sockets (protocols 4 and 41), `handle_icmpv6` with each ICMPv6 message
///   from the raw ICMPv6 socket, and `handle_timeout` when `poll_timeout`
///   says;
/// - then sends every packet the handlers appended to the [`Batch`]:
///   [`Destination::Underlay`](crate::Destination::Underlay) packets are whole
///   IPv6 packets for an `IPV6_HDRINCL` socket or whole IPv4 datagrams for an
///   `IP_HDRINCL` socket, by the family of `remote`;
///   [`Destination::Tun`](crate::Destination::Tun) and
///   [`Destination::TunPath`](crate::Destination::TunPath) packets are written
///   to that TUN device;
/// - `poll_event` until it returns `None`, and `poll_timeout` to know when to
///   call `handle_timeout` next (after any handler or configuration change).
///
/// Tunnels added before the core has seen any `now` start probing at the first
/// `handle_timeout`; call it once after adding them.
#[derive(Debug)]
pub struct Dataplane {
    tunnels: BTreeMap<TunnelId, Tunnel>,
    by_endpoints: HashMap<(IpAddr, IpAddr), (TunnelId, PathId)>,
    /// The tunnels with a path from each local address, so that an outer packet from an
    /// unknown source is blamed on one without visiting every tunnel of a hub.
    by_local: HashMap<IpAddr, BTreeSet<TunnelId>>,
    next_id: u32,
    unattributed: DropCounters,
    events: EventQueue,
    icmp_rate: IcmpRateLimit,
    idents: Idents,
    /// Echo identifiers in use by ICMP-probed paths, unique over all tunnels
    /// so a capture tells them apart.
    icmp_idents: HashSet<u16>,
    next_icmp_ident: u16,
    /// Keepalives carry nanoseconds since the first `now`; a tunnel added before any probe
    /// wants its first one at the latest.
    clock: Clock,
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
            by_local: HashMap::new(),
            next_id: 0,
            unattributed: DropCounters::default(),
            events: EventQueue::default(),
            icmp_rate,
            idents: Idents::default(),
            icmp_idents: HashSet::new(),
            next_icmp_ident: 0,
            clock: Clock::default(),
        }
    }

    /// Refuses endpoints another tunnel's path already has.
    fn check_endpoints(
        &self,
        id: Option<TunnelId>,
        config: &TunnelConfig,
    ) -> Result<(), ConfigError> {
        for path in &config.paths {
            if let Some(&(existing, _)) = self.by_endpoints.get(&(path.local, path.remote))
                && Some(existing) != id
            {
                return Err(ConfigError::DuplicateEndpoints {
                    existing,
                    local: path.local,
                    remote: path.remote,
                });
            }
        }
        Ok(())
    }

    fn index_endpoints(&mut self, id: TunnelId, config: &TunnelConfig) {
        for (path_id, path) in config.path_ids() {
            self.by_endpoints
                .insert((path.local, path.remote), (id, path_id));
            self.by_local.entry(path.local).or_default().insert(id);
        }
    }

    fn unindex_endpoints(&mut self, id: TunnelId, config: &TunnelConfig) {
        for path in &config.paths {
            self.by_endpoints.remove(&(path.local, path.remote));
            if let Some(tunnels) = self.by_local.get_mut(&path.local) {
                tunnels.remove(&id);
                if tunnels.is_empty() {
                    self.by_local.remove(&path.local);
                }
            }
        }
    }

    /// Echo identifiers for `config`'s ICMP-probed paths: the one a path of
    /// the same name had in `keep`, or a free one.
    fn allocate_icmp_idents(
        &mut self,
        config: &TunnelConfig,
        keep: &[(String, Option<u16>)],
    ) -> Result<Vec<Option<u16>>, ConfigError> {
        let mut idents = Vec::with_capacity(config.paths.len());
        for path in &config.paths {
            if !matches!(path.probe, Probe::Icmp { .. }) {
                idents.push(None);
                continue;
            }
            let kept = keep
                .iter()
                .find(|(name, _)| *name == path.name)
                .and_then(|(_, ident)| *ident);
            let ident = match kept {
                Some(ident) => ident,
                None => {
                    let Some(ident) = (0..=u16::MAX)
                        .map(|i| self.next_icmp_ident.wrapping_add(i))
                        .find(|i| !self.icmp_idents.contains(i))
                    else {
                        for ident in idents.iter().flatten() {
                            self.icmp_idents.remove(ident);
                        }
                        return Err(ConfigError::IdsExhausted);
                    };
                    self.next_icmp_ident = ident.wrapping_add(1);
                    ident
                }
            };
            self.icmp_idents.insert(ident);
            idents.push(Some(ident));
        }
        Ok(idents)
    }

    fn release_icmp_idents(&mut self, tunnel: &Tunnel) {
        for ident in tunnel.paths.iter().filter_map(|p| p.icmp_ident) {
            self.icmp_idents.remove(&ident);
        }
    }

    pub fn add_tunnel(&mut self, config: TunnelConfig) -> Result<TunnelId, ConfigError> {
        config.validate()?;
        self.check_endpoints(None, &config)?;
        let id = TunnelId(self.next_id);
        let next_id = self
            .next_id
            .checked_add(1)
            .ok_or(ConfigError::IdsExhausted)?;
        let icmp_idents = self.allocate_icmp_idents(&config, &[])?;
        self.next_id = next_id;
        self.index_endpoints(id, &config);
        self.tunnels
            .insert(id, Tunnel::new(id, config, self.icmp_rate, &icmp_idents));
        Ok(id)
    }

    /// Changes a tunnel in place, keeping its id and counters, for a reload.
    /// Paths are matched by name: one that keeps its endpoints, probe and
    /// health settings keeps its health, and a learnt path MTU survives unless
    /// the MTU or the option changed, since it was measured for the old
    /// framing. Traffic stays on the active path if it is still there.
    pub fn update_tunnel(&mut self, id: TunnelId, config: TunnelConfig) -> Result<(), ConfigError> {
        let Some(tunnel) = self.tunnels.get(&id) else {
            return Err(ConfigError::NoSuchTunnel { id });
        };
        config.validate()?;
        self.check_endpoints(Some(id), &config)?;
        let keep: Vec<(String, Option<u16>)> = tunnel
            .config
            .paths
            .iter()
            .zip(&tunnel.paths)
            .map(|(c, p)| (c.name.clone(), p.icmp_ident))
            .collect();
        let old_idents: Vec<u16> = keep.iter().filter_map(|(_, i)| *i).collect();
        for ident in &old_idents {
            self.icmp_idents.remove(ident);
        }
        let icmp_idents = match self.allocate_icmp_idents(&config, &keep) {
            Ok(idents) => idents,
            Err(e) => {
                self.icmp_idents.extend(old_idents);
                return Err(e);
            }
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return Err(ConfigError::NoSuchTunnel { id });
        };
        let old_config = tunnel.config.clone();
        tunnel.reconfigure(config, &icmp_idents, &mut self.events);
        let new_config = tunnel.config.clone();
        self.unindex_endpoints(id, &old_config);
        self.index_endpoints(id, &new_config);
        Ok(())
    }

    pub fn remove_tunnel(&mut self, id: TunnelId) -> bool {
        let Some(tunnel) = self.tunnels.remove(&id) else {
            return false;
        };
        self.unindex_endpoints(id, &tunnel.config);
        self.release_icmp_idents(&tunnel);
        true
    }

    pub fn tunnel(&self, id: TunnelId) -> Option<&TunnelConfig> {
        self.tunnels.get(&id).map(|t| &t.config)
    }

    pub fn stats(&self, id: TunnelId) -> Option<&TunnelStats> {
        self.tunnels.get(&id).map(|t| &t.stats)
    }

    /// Health and counters of one path.
    pub fn path_stats(&self, id: TunnelId, path: PathId) -> Option<PathStats> {
        self.tunnels.get(&id)?.path_stats(path)
    }

    /// The path the tunnel's traffic leaves on.
    pub fn active_path(&self, id: TunnelId) -> Option<PathId> {
        self.tunnels.get(&id).map(Tunnel::active)
    }

    pub fn tunnels(&self) -> impl Iterator<Item = TunnelId> + '_ {
        self.tunnels.keys().copied()
    }

    /// The tunnel with a path between these outer addresses.
    pub fn tunnel_by_endpoints(
        &self,
        local: impl Into<IpAddr>,
        remote: impl Into<IpAddr>,
    ) -> Option<TunnelId> {
        self.path_by_endpoints(local, remote).map(|(id, _)| id)
    }

    /// The path between these outer addresses, and its tunnel.
    pub fn path_by_endpoints(
        &self,
        local: impl Into<IpAddr>,
        remote: impl Into<IpAddr>,
    ) -> Option<(TunnelId, PathId)> {
        self.by_endpoints
            .get(&(local.into(), remote.into()))
            .copied()
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

    /// An inner packet read from `tunnel`'s TUN device, sent on the active
    /// path. Mutable so that MSS clamping happens in place; the packet is
    /// otherwise left as it was.
    pub fn handle_inner(
        &mut self,
        now: Instant,
        tunnel: TunnelId,
        packet: &mut [u8],
        out: &mut Batch,
    ) -> Verdict {
        self.clock.tick(now);
        match self.tunnels.get_mut(&tunnel) {
            Some(t) => t.encap(now, None, packet, out, &mut self.idents),
            None => self.drop_unattributed(DropReason::NoTunnel),
        }
    }

    /// An inner packet read from the TUN device of one path of `tunnel`
    /// ([`TunnelConfig::device_per_path`]), sent on exactly that path whatever
    /// its health. ICMP errors about it go back to that device.
    pub fn handle_inner_on_path(
        &mut self,
        now: Instant,
        tunnel: TunnelId,
        path: PathId,
        packet: &mut [u8],
        out: &mut Batch,
    ) -> Verdict {
        self.clock.tick(now);
        match self.tunnels.get_mut(&tunnel) {
            Some(t) => t.encap(now, Some(path), packet, out, &mut self.idents),
            None => self.drop_unattributed(DropReason::NoTunnel),
        }
    }

    /// The payload of an outer IPv6 packet from the underlay, after the outer
    /// header and the extension headers the kernel processed.
    pub fn handle_outer(
        &mut self,
        now: Instant,
        meta: &OuterMeta,
        payload: &mut [u8],
        out: &mut Batch,
    ) -> Verdict {
        self.clock.tick(now);
        let (src, dst) = (IpAddr::V6(meta.src), IpAddr::V6(meta.dst));
        let Some((id, path)) = self.path_by_endpoints(dst, src) else {
            return self.not_ours(dst);
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return self.drop_unattributed(DropReason::NoTunnel);
        };
        // Normally the shell has consumed the extension headers already; if
        // not, skip them here rather than misread them as the inner packet.
        let walk = match ipv6_ext::walk(meta.next_header, payload) {
            Ok(walk) if !walk.fragmented => walk,
            _ => return tunnel.drop(DropReason::Malformed),
        };
        let verdict = tunnel.decap(
            now,
            path,
            walk.upper_protocol,
            meta.traffic_class,
            &mut payload[walk.offset..],
            out,
            &mut self.idents,
        );
        if verdict == Verdict::Consumed {
            tunnel.settle(now, &mut self.events);
        }
        verdict
    }

    /// A whole IPv4 datagram, header included, as a raw IPv4 socket for
    /// protocol 4 or 41 delivers it. Mutable so that MSS clamping and
    /// congestion marking of the inner packet happen in place.
    pub fn handle_outer_ipv4(
        &mut self,
        now: Instant,
        datagram: &mut [u8],
        out: &mut Batch,
    ) -> Verdict {
        self.clock.tick(now);
        let Some(outer) = Ipv4Outer::parse(datagram) else {
            return self.drop_unattributed(DropReason::Malformed);
        };
        let (src, dst) = (IpAddr::V4(outer.src), IpAddr::V4(outer.dst));
        let Some((id, path)) = self.path_by_endpoints(dst, src) else {
            return self.not_ours(dst);
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return self.drop_unattributed(DropReason::NoTunnel);
        };
        let verdict = tunnel.decap(
            now,
            path,
            outer.protocol,
            outer.tos,
            &mut datagram[outer.payload],
            out,
            &mut self.idents,
        );
        if verdict == Verdict::Consumed {
            tunnel.settle(now, &mut self.events);
        }
        verdict
    }

    /// An outer packet no path claims.
    fn not_ours(&mut self, dst: IpAddr) -> Verdict {
        // Addressed to one of our tunnel ends, but not from a peer: spoofed or a
        // peer whose address changed. Either way the tunnel's owner wants to know; with
        // several tunnels on that address (a hub), the first one added.
        if let Some(&id) = self.by_local.get(&dst).and_then(BTreeSet::first)
            && let Some(tunnel) = self.tunnels.get_mut(&id)
        {
            return tunnel.drop(DropReason::SpoofedOuterSource);
        }
        self.drop_unattributed(DropReason::NoTunnel)
    }

    /// An ICMPv6 message from the underlay, from its ICMPv6 header on. Packet
    /// Too Big messages about our outer packets lower that path's MTU;
    /// everything else is left to the kernel.
    pub fn handle_icmpv6(
        &mut self,
        now: Instant,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        message: &[u8],
    ) -> Verdict {
        self.clock.tick(now);
        let report = too_big::parse_v6(src, dst, message);
        self.handle_too_big(now, report)
    }

    /// A whole ICMPv4 datagram from the underlay (IPv4 header included, as a raw
    /// ICMP socket delivers it). A Fragmentation Needed about one of our outer
    /// packets over an IPv4 path lowers that path's MTU, as Packet Too Big does
    /// for IPv6 paths; everything else is left to the kernel. Our outer IPv4
    /// header carries DF only when the inner IPv4 packet did, so these come
    /// back exactly for the traffic that relies on path MTU discovery.
    pub fn handle_icmpv4(&mut self, now: Instant, datagram: &[u8]) -> Verdict {
        self.clock.tick(now);
        let report = too_big::parse_v4(datagram);
        self.handle_too_big(now, report)
    }

    /// Lowers the MTU of the path a too-big report quotes, if it is one of ours.
    fn handle_too_big(
        &mut self,
        now: Instant,
        report: Result<too_big::Report<'_>, DropReason>,
    ) -> Verdict {
        let report = match report {
            Ok(report) if matches!(report.protocol, ip_proto::IPIP | ip_proto::IPV6) => report,
            Ok(_) => return self.drop_unattributed(DropReason::NoTunnel),
            Err(reason) => return self.drop_unattributed(reason),
        };
        let Some((id, path)) = self.path_by_endpoints(report.local, report.remote) else {
            return self.drop_unattributed(DropReason::NoTunnel);
        };
        let Some(link_mtu) = report.link_mtu else {
            return self.drop_unattributed(DropReason::UnhandledIcmp);
        };
        let Some(tunnel) = self.tunnels.get_mut(&id) else {
            return self.drop_unattributed(DropReason::NoTunnel);
        };
        if tunnel.lower_path_mtu(now, path, link_mtu) {
            let mtu = tunnel.paths[path.index()].pmtu.current();
            self.events.push(Event::PathMtuChanged {
                tunnel: id,
                path,
                mtu,
                reason: report.reason,
            });
        }
        Verdict::Consumed
    }

    /// When `handle_timeout` should next be called, if anything is pending.
    /// May be in the past: a path waiting for its first probe wants it at
    /// once.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for tunnel in self.tunnels.values() {
            let (at, first_probe) = tunnel.poll_timeout();
            let at = if first_probe {
                self.clock.latest().or(at)
            } else {
                at
            };
            next = earliest(next, at);
        }
        next
    }

    /// Runs the timers: expired path MTUs, lost probes, health changes and the
    /// path switches they cause. Probes that are due are appended to `out`,
    /// which the shell sends as after any handler.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Batch) {
        let since_start = self.clock.tick(now);
        for tunnel in self.tunnels.values_mut() {
            tunnel.handle_timeout(now, since_start, out, &mut self.idents, &mut self.events);
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Probes of all paths still waiting for an answer.
    #[cfg(test)]
    pub(crate) fn probes_in_flight(&self) -> usize {
        self.tunnels
            .values()
            .flat_map(|t| &t.paths)
            .filter_map(|p| p.tracker.as_ref())
            .map(crate::health::Tracker::in_flight)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Mode, PathMtuReason};

    fn config() -> TunnelConfig {
        TunnelConfig::new(
            "t",
            Mode::Ipip6,
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        )
    }

    #[test]
    fn update_keeps_id_and_counters_and_checks_endpoints() {
        let mut dp = Dataplane::new();
        let id = dp.add_tunnel(config()).unwrap();
        dp.tunnels.get_mut(&id).unwrap().stats.rx_packets = 7;
        let mut other = config();
        other.paths[0].remote = "2001:db8::3".parse().unwrap();
        let other_id = dp.add_tunnel(other.clone()).unwrap();

        let mut changed = config();
        changed.name = "renamed".into();
        changed.paths[0].remote = "2001:db8::4".parse().unwrap();
        dp.update_tunnel(id, changed.clone()).unwrap();
        assert_eq!(dp.tunnel(id), Some(&changed));
        assert_eq!(dp.stats(id).unwrap().rx_packets, 7);
        let path = &changed.paths[0];
        assert_eq!(dp.tunnel_by_endpoints(path.local, path.remote), Some(id));
        assert_eq!(
            dp.tunnel_by_endpoints(path.local, "2001:db8::2".parse::<Ipv6Addr>().unwrap()),
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

    /// The tunnel blamed for a spoofed outer packet to `dst`, found the slow way: the first
    /// tunnel in id order with a path from `dst`.
    fn blamed_by_scan(dp: &Dataplane, dst: IpAddr) -> Option<TunnelId> {
        dp.tunnels
            .values()
            .find(|t| t.config.paths.iter().any(|p| p.local == dst))
            .map(|t| t.id)
    }

    fn ours(i: u16) -> IpAddr {
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i).into()
    }

    /// Tunnel `i` starts at local address `i % 3` and, for every fourth, has a second path
    /// from local address 9.
    fn hub_spoke(i: u16) -> TunnelConfig {
        let mut config = config();
        config.name = format!("spoke{i}");
        config.paths[0].local = ours(i % 3);
        config.paths[0].remote = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i).into();
        if i % 4 == 0 {
            let remote = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, i);
            config
                .paths
                .push(crate::PathConfig::new("second", ours(9), remote));
        }
        config
    }

    /// Sends an outer packet from a stranger to each local address and checks that the
    /// tunnel charged with it is the one the scan names.
    fn check_blame(dp: &mut Dataplane) {
        let stranger: Ipv6Addr = "2001:db8:ffff::1".parse().unwrap();
        for i in 0..12 {
            let dst = ours(i);
            let expected = blamed_by_scan(dp, dst);
            let before = expected.map(|id| {
                dp.stats(id)
                    .unwrap()
                    .drops
                    .get(DropReason::SpoofedOuterSource)
            });
            let unattributed = dp.unattributed_drops().get(DropReason::NoTunnel);
            let meta = OuterMeta {
                src: stranger,
                dst: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i),
                next_header: ip_proto::IPIP,
                traffic_class: 0,
                encap_limit: None,
            };
            let mut payload = [0x45u8; 40];
            let verdict =
                dp.handle_outer(Instant::now(), &meta, &mut payload, &mut Batch::new(256));
            match (expected, before) {
                (Some(id), Some(before)) => {
                    assert_eq!(verdict, Verdict::Dropped(DropReason::SpoofedOuterSource));
                    let after = dp
                        .stats(id)
                        .unwrap()
                        .drops
                        .get(DropReason::SpoofedOuterSource);
                    assert_eq!(after, before + 1, "{dst} blamed on {id:?}");
                }
                _ => {
                    assert_eq!(verdict, Verdict::Dropped(DropReason::NoTunnel));
                    let after = dp.unattributed_drops().get(DropReason::NoTunnel);
                    assert_eq!(after, unattributed + 1, "{dst} blamed on nobody");
                }
            }
        }
    }

    #[test]
    fn spoofed_source_is_blamed_on_the_first_tunnel_of_its_local_address() {
        let mut dp = Dataplane::new();
        let ids: Vec<TunnelId> = (0..12)
            .map(|i| dp.add_tunnel(hub_spoke(i)).unwrap())
            .collect();
        check_blame(&mut dp);
        // The first tunnel of an address goes: the next one takes the blame.
        assert!(dp.remove_tunnel(ids[0]));
        assert!(dp.remove_tunnel(ids[1]));
        check_blame(&mut dp);
        // A tunnel moves to another local address and drops its second path.
        let mut moved = hub_spoke(4);
        moved.paths.truncate(1);
        moved.paths[0].local = ours(7);
        dp.update_tunnel(ids[4], moved).unwrap();
        check_blame(&mut dp);
        // A refused update changes nothing.
        let mut clash = hub_spoke(5);
        clash.paths[0] = dp.tunnel(ids[6]).unwrap().paths[0].clone();
        assert!(dp.update_tunnel(ids[5], clash).is_err());
        check_blame(&mut dp);
        // Every tunnel on address 9 gone: it is nobody's any more.
        assert!(dp.remove_tunnel(ids[8]));
        assert_eq!(blamed_by_scan(&dp, ours(9)), None);
        assert!(
            !dp.by_local.contains_key(&ours(9)),
            "emptied entries are removed"
        );
        check_blame(&mut dp);
        for id in dp.tunnels().collect::<Vec<_>>() {
            dp.remove_tunnel(id);
        }
        assert!(dp.by_local.is_empty());
        check_blame(&mut dp);
    }

    #[test]
    fn update_resets_the_path_mtu_when_the_framing_changes() {
        let mut dp = Dataplane::new();
        let id = dp.add_tunnel(config()).unwrap();
        let now = Instant::now();
        let tunnel = dp.tunnels.get_mut(&id).unwrap();
        assert!(tunnel.lower_path_mtu(now, PathId(0), 1340));
        assert_eq!(tunnel.stats.path_mtu, 1300);

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
                path: PathId(0),
                mtu: 1400,
                reason: PathMtuReason::Reconfigured
            })
        );
    }
}
