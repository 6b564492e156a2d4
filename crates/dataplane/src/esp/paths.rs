//! An ipsec tunnel over several underlay paths: one [`EspTunnel`] per path, each with the
//! CHILD SAs of that path's own IKE SA, all kept established so that moving traffic needs no
//! negotiation.
//!
//! [`EspPaths`] seals on the cheapest path that is up and opens on every path. A path is up
//! while it has an outbound SA and, if probed, its [`Tracker`] says so; the probes are the
//! keepalives RFC 2473 paths use (see [`crate::probe`]), sealed with the path's own SA and
//! answered by the peer on the path they came in on, so they check exactly that path, both
//! ways, through ESP. Failover is immediate; failback waits for the tunnel's hold-down since
//! the last switch, as for RFC 2473 tunnels.
//!
//! Call order: the shell installs and removes SAs per path
//! ([`install_sa`](EspPaths::install_sa), [`remove_sa`](EspPaths::remove_sa),
//! [`clear_sas`](EspPaths::clear_sas)); hands TUN packets to
//! [`handle_inner`](EspPaths::handle_inner) and a path's ESP to
//! [`handle_esp`](EspPaths::handle_esp); calls [`handle_timeout`](EspPaths::handle_timeout)
//! at [`poll_timeout`](EspPaths::poll_timeout); and reads
//! [`poll_esp_event`](EspPaths::poll_esp_event) (for that path's IKE task) and
//! [`poll_event`](EspPaths::poll_event) (path states and switches).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use super::tunnel::{EspBatch, EspDestination, EspDrop, EspEvent, EspStats, EspTunnel};
use super::{EspTunnelConfig, InboundSa, OutboundSa};
use crate::health::{HealthReason, Tracker};
use crate::probe::{KEEPALIVE_LEN, Keepalive, Kind};
use crate::selection::{self, Clock, PathSelection, earliest, path_tracker};
use crate::{HealthConfig, HealthState, PathMtuReason, PathStats, SwitchReason};

/// Events waiting beyond this are dropped oldest first.
const MAX_EVENTS: usize = 64;

/// One path of an ipsec tunnel, from the validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EspPathConfig {
    pub name: String,
    /// The cheapest path that is up carries the traffic; the first listed among equals.
    pub cost: u32,
    /// Probed with keepalives through its SA. A path that is not probed counts as up while it
    /// has an SA.
    pub probed: bool,
    /// Its endpoints; traffic selectors, MTU and clamping are the tunnel's.
    pub esp: EspTunnelConfig,
}

/// What changed in the tunnel's choice of path, for the shell's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspPathEvent {
    /// A path's probes took it up or down.
    StateChanged {
        path: usize,
        state: HealthState,
        reason: HealthReason,
    },
    /// Traffic moved. A path without an SA counts as down.
    ActivePathChanged {
        from: usize,
        to: usize,
        reason: SwitchReason,
    },
    /// A path's inner MTU changed: lowered by a router's report, or back when that aged out.
    PathMtuChanged {
        path: usize,
        mtu: u16,
        reason: PathMtuReason,
    },
}

#[derive(Debug)]
struct EspPath {
    name: String,
    cost: u32,
    core: EspTunnel,
    /// `None` for a path that is not probed.
    tracker: Option<Tracker>,
    last_seq: u32,
    probes_sent: u64,
    probes_answered: u64,
    keepalives_answered: u64,
}

impl EspPath {
    fn has_sa(&self) -> bool {
        self.core.active_outbound().is_some()
    }

    /// No SA on the path is down, whatever its last probes said.
    fn state(&self) -> HealthState {
        if !self.has_sa() {
            return HealthState::Down;
        }
        self.tracker
            .as_ref()
            .map_or(HealthState::Up, Tracker::state)
    }
}

/// The packet path of an ipsec tunnel with one or more paths; see the module documentation.
#[derive(Debug)]
pub struct EspPaths {
    paths: Vec<EspPath>,
    /// Path index by peer end, the first listed for a remote two paths share: the shell
    /// asks for every packet it sends.
    by_remote: HashMap<IpAddr, usize>,
    health: HealthConfig,
    selection: PathSelection,
    /// Keepalive timestamps count from the first `now`; a probe due "at once" is due at the
    /// latest.
    clock: Clock,
    esp_events: VecDeque<(usize, EspEvent)>,
    events: VecDeque<EspPathEvent>,
}

impl EspPaths {
    /// `paths` must not be empty and at most 256 long (the keepalive names its path in one
    /// byte); control refuses other configs. `health` times the probes; its `hold_down` is the
    /// least time between two switches when traffic fails back.
    pub fn new(health: HealthConfig, paths: Vec<EspPathConfig>) -> Self {
        let paths: Vec<EspPath> = paths
            .into_iter()
            .map(|p| EspPath {
                name: p.name,
                cost: p.cost,
                core: EspTunnel::new(p.esp),
                tracker: p.probed.then(|| path_tracker(health)),
                last_seq: 0,
                probes_sent: 0,
                probes_answered: 0,
                keepalives_answered: 0,
            })
            .collect();
        let mut by_remote = HashMap::with_capacity(paths.len());
        for (i, p) in paths.iter().enumerate() {
            by_remote.entry(p.core.config().remote).or_insert(i);
        }
        let selection = PathSelection::new(paths.iter().map(|p| p.cost));
        Self {
            paths,
            by_remote,
            health,
            selection,
            clock: Clock::default(),
            esp_events: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Index of the path that carries the traffic.
    pub fn active(&self) -> usize {
        self.selection.active()
    }

    pub fn path_name(&self, path: usize) -> Option<&str> {
        self.paths.get(path).map(|p| p.name.as_str())
    }

    /// The ESP core of `path`, for its SA state and counters.
    pub fn path(&self, path: usize) -> Option<&EspTunnel> {
        self.paths.get(path).map(|p| &p.core)
    }

    /// The path whose peer end is `remote` (paths of one tunnel have distinct remotes).
    pub fn path_of_remote(&self, remote: IpAddr) -> Option<usize> {
        self.by_remote.get(&remote).copied()
    }

    /// Installs both directions of a CHILD SA of `path`'s IKE SA (inbound first: the peer may
    /// use it as soon as it has it), and ESP in UDP to the peer's `udp_port` if `Some`.
    pub fn install_sa(
        &mut self,
        now: Instant,
        path: usize,
        inbound: InboundSa,
        outbound: OutboundSa,
        udp_port: Option<u16>,
    ) {
        self.clock.tick(now);
        let Some(p) = self.paths.get_mut(path) else {
            return;
        };
        p.core.install_inbound(inbound);
        p.core.install_outbound(outbound);
        p.core.set_udp_encap(now, udp_port);
        self.select(now);
    }

    /// Opens ESP on `inbound`'s SPI on `path`, beside the SAs there: the first half of a new
    /// CHILD SA, before the IKE message that lets the peer use it leaves.
    pub fn install_inbound(&mut self, now: Instant, path: usize, inbound: InboundSa) {
        self.clock.tick(now);
        if let Some(p) = self.paths.get_mut(path) {
            p.core.install_inbound(inbound);
        }
        self.select(now);
    }

    /// Seals `path`'s traffic with `outbound` from now on, in UDP to the peer's `udp_port` if
    /// `Some`: the second half of a new CHILD SA, once the peer can open it.
    pub fn install_outbound(
        &mut self,
        now: Instant,
        path: usize,
        outbound: OutboundSa,
        udp_port: Option<u16>,
    ) {
        self.clock.tick(now);
        if let Some(p) = self.paths.get_mut(path) {
            p.core.install_outbound(outbound);
            p.core.set_udp_encap(now, udp_port);
        }
        self.select(now);
    }

    pub fn remove_sa(&mut self, now: Instant, path: usize, spi_in: u32, spi_out: u32) {
        self.clock.tick(now);
        if let Some(p) = self.paths.get_mut(path) {
            p.core.remove_sa(spi_in, spi_out);
        }
        self.select(now);
    }

    /// `path`'s IKE SA is gone: the path is down until a new one brings SAs.
    pub fn clear_sas(&mut self, now: Instant, path: usize) {
        self.clock.tick(now);
        if let Some(p) = self.paths.get_mut(path) {
            p.core.clear_sas();
        }
        self.select(now);
    }

    /// One TUN packet, sealed on the active path.
    pub fn handle_inner(
        &mut self,
        now: Instant,
        packet: &mut [u8],
        out: &mut EspBatch,
    ) -> Result<(), EspDrop> {
        self.clock.tick(now);
        let active = self.selection.active();
        let p = &mut self.paths[active];
        let r = p.core.handle_inner(now, packet, out);
        self.collect(active);
        r
    }

    /// One TUN packet of `path`'s own device (a device per path, where a routing daemon
    /// chose the path), sealed on that path whatever the selection says.
    pub fn handle_inner_on_path(
        &mut self,
        now: Instant,
        path: usize,
        packet: &mut [u8],
        out: &mut EspBatch,
    ) -> Result<(), EspDrop> {
        self.clock.tick(now);
        let Some(p) = self.paths.get_mut(path) else {
            return Err(EspDrop::NotRouted);
        };
        let r = p.core.handle_inner(now, packet, out);
        self.collect(path);
        r
    }

    /// One ESP packet that came in on `path` from `from`. Keepalive requests are answered on
    /// the same path; replies feed that path's tracker.
    pub fn handle_esp(
        &mut self,
        now: Instant,
        path: usize,
        esp: &[u8],
        from: IpAddr,
        out: &mut EspBatch,
    ) -> Result<(), EspDrop> {
        self.clock.tick(now);
        let Some(p) = self.paths.get_mut(path) else {
            return Err(EspDrop::SpoofedOuterSource);
        };
        let r = p.core.open_esp(now, esp, from, out);
        let keepalive = match r {
            Ok(Some(k)) => k,
            other => {
                self.collect(path);
                return other.map(drop);
            }
        };
        match keepalive.kind {
            Kind::Request => {
                let mut reply = [0u8; KEEPALIVE_LEN];
                Keepalive {
                    kind: Kind::Reply,
                    ..keepalive
                }
                .emit(&mut reply);
                if p.core.seal_keepalive(now, &reply, out).is_ok() {
                    p.keepalives_answered += 1;
                }
            }
            // A reply to a probe of another path of ours that came back the wrong way says
            // nothing about this one.
            Kind::Reply if usize::from(keepalive.path) != path => {}
            Kind::Reply => {
                if let Some(tracker) = &mut p.tracker
                    && tracker.on_reply(now, keepalive.seq).is_some()
                {
                    p.probes_answered += 1;
                }
            }
        }
        self.collect(path);
        self.settle(now);
        Ok(())
    }

    /// Probes due, lost probes, NAT keepalives, and a failback that waited for the hold-down.
    /// A router reported that ESP of `path` met a link of `link_mtu` bytes (`reason` says
    /// who and how); lowers the path's inner MTU if that makes it smaller.
    pub fn lower_path_mtu(
        &mut self,
        now: Instant,
        path: usize,
        link_mtu: u16,
        reason: PathMtuReason,
    ) -> Option<u16> {
        let mtu = self
            .paths
            .get_mut(path)?
            .core
            .lower_path_mtu(now, link_mtu)?;
        self.events
            .push_back(EspPathEvent::PathMtuChanged { path, mtu, reason });
        Some(mtu)
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut EspBatch) {
        let since_start = self.clock.tick(now);
        for i in 0..self.paths.len() {
            let p = &mut self.paths[i];
            if p.core.expire_path_mtu(now) {
                let mtu = p.core.mtu();
                self.events.push_back(EspPathEvent::PathMtuChanged {
                    path: i,
                    mtu,
                    reason: PathMtuReason::Expired,
                });
            }
            let p = &mut self.paths[i];
            p.core.handle_timeout(now, out);
            let has_sa = p.has_sa();
            let Some(tracker) = &mut p.tracker else {
                continue;
            };
            tracker.handle_timeout(now);
            // Without an SA nothing can be sealed; the path is down for that alone, and its
            // probes resume with the next SA.
            if !has_sa || !tracker.probe_due(now) {
                continue;
            }
            let seq = p.last_seq.wrapping_add(1);
            let mut packet = [0u8; KEEPALIVE_LEN];
            Keepalive {
                kind: Kind::Request,
                path: i as u8,
                seq,
                timestamp: since_start,
            }
            .emit(&mut packet);
            // A probe that cannot be sealed (sequence numbers used up) counts as sent and
            // lost, so the path goes down rather than stays probed for ever.
            let _ = p.core.seal_keepalive(now, &packet, out);
            tracker.on_probe_sent(now, seq);
            p.last_seq = seq;
            p.probes_sent += 1;
            self.collect(i);
        }
        self.settle(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.selection.failback_at();
        for p in &self.paths {
            next = earliest(next, p.core.poll_timeout());
            let Some(tracker) = &p.tracker else {
                continue;
            };
            if p.has_sa() {
                // Never probed yet: due at once.
                next = earliest(next, tracker.poll_timeout().or(self.clock.latest()));
            }
        }
        next
    }

    /// What `path`'s IKE task should hear (liveness, rekey needed).
    pub fn poll_esp_event(&mut self) -> Option<(usize, EspEvent)> {
        self.esp_events.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<EspPathEvent> {
        self.events.pop_front()
    }

    /// Counters of the whole tunnel, over all its paths.
    pub fn stats(&self) -> EspStats {
        let mut total = EspStats::default();
        for p in &self.paths {
            total.add(p.core.stats());
        }
        total.failovers = self.selection.switches();
        total
    }

    /// Health and counters of `path`, in the RFC 2473 paths' terms.
    pub fn path_stats(&self, path: usize) -> Option<PathStats> {
        let p = self.paths.get(path)?;
        let core = p.core.stats();
        let mut stats = PathStats {
            state: p.state(),
            path_mtu: p.core.mtu(),
            tx_packets: core.tx_packets,
            tx_bytes: core.tx_bytes,
            rx_packets: core.rx_packets,
            rx_bytes: core.rx_bytes,
            probes_sent: p.probes_sent,
            probes_answered: p.probes_answered,
            keepalives_answered: p.keepalives_answered,
            ..PathStats::default()
        };
        if let Some(tracker) = &p.tracker {
            stats.srtt = tracker.srtt();
            stats.loss = tracker.loss();
            stats.last_change = tracker.last_change();
        }
        Some(stats)
    }

    fn collect(&mut self, path: usize) {
        while let Some(event) = self.paths[path].core.poll_event() {
            push_bounded(&mut self.esp_events, (path, event));
        }
    }

    fn settle(&mut self, now: Instant) {
        let events = &mut self.events;
        let trackers = self.paths.iter_mut().map(|p| p.tracker.as_mut());
        selection::drain_transitions(trackers, |path, t| {
            push_bounded(
                events,
                EspPathEvent::StateChanged {
                    path,
                    state: t.to,
                    reason: t.reason,
                },
            );
        });
        self.select(now);
    }

    /// Moves traffic as [`PathSelection::select`] decides; a path without an SA is down.
    fn select(&mut self, now: Instant) {
        let paths = &self.paths;
        let hold_down = self.health.hold_down;
        let Some(switch) = self.selection.select(now, hold_down, paths.len(), |i| {
            (paths[i].cost, paths[i].state())
        }) else {
            return;
        };
        push_bounded(
            &mut self.events,
            EspPathEvent::ActivePathChanged {
                from: switch.from,
                to: switch.to,
                reason: switch.reason,
            },
        );
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() == MAX_EVENTS {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// Where a packet of the batch goes, for shells that keep one socket per path: the path whose
/// remote it is sent to.
pub fn path_of_destination(paths: &EspPaths, destination: EspDestination) -> Option<usize> {
    match destination {
        EspDestination::Raw { remote } => paths.path_of_remote(remote),
        EspDestination::Udp { remote } => paths.path_of_remote(remote.ip()),
        EspDestination::Tun | EspDestination::Local => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MssClamp;
    use crate::esp::Suite;
    use ipnet::IpNet;
    use std::time::Duration;
    use wire::{Ipv4Packet, Ipv4Repr, ip_proto, ipv4, ipv6};

    const MS: Duration = Duration::from_millis(1);
    const GCM: Suite = Suite::AesGcm16 { key_bits: 128 };
    /// (A's end, B's end) of the IPv6 primary and the IPv4 backup.
    const ENDS: [(&str, &str); 2] = [
        ("2001:db8:0:1::1", "2001:db8:0:2::1"),
        ("198.18.1.1", "198.18.2.1"),
    ];

    fn health() -> HealthConfig {
        HealthConfig {
            interval: 100 * MS,
            timeout: 300 * MS,
            down_after: 3,
            up_after: 5,
            hold_down: 2000 * MS,
        }
    }

    fn side(a: bool) -> EspPaths {
        let (ours, theirs) = if a {
            ("203.0.113.0/24", "198.51.100.0/24")
        } else {
            ("198.51.100.0/24", "203.0.113.0/24")
        };
        let nets = |n: &str| vec![n.parse::<IpNet>().unwrap()];
        let paths = ENDS
            .iter()
            .enumerate()
            .map(|(i, (x, y))| {
                let (local, remote) = if a { (x, y) } else { (y, x) };
                EspPathConfig {
                    name: ["ipoe", "pppoe"][i].into(),
                    cost: [10, 100][i],
                    probed: true,
                    esp: EspTunnelConfig {
                        local: local.parse().unwrap(),
                        remote: remote.parse().unwrap(),
                        local_subnets: nets(ours),
                        routes: nets(theirs),
                        allowed_sources: nets(theirs),
                        mtu: 1400,
                        mss_clamp: MssClamp::Off,
                        hop_limit: 64,
                        icmp_source_v4: None,
                        icmp_source_v6: None,
                    },
                }
            })
            .collect();
        EspPaths::new(health(), paths)
    }

    /// Keys both ends of `path` with one CHILD SA (A -> B `spi`, B -> A `spi + 1`).
    fn key(now: Instant, a: &mut EspPaths, b: &mut EspPaths, path: usize, spi: u32) {
        let key_ab = [0x11 ^ path as u8; 20];
        let key_ba = [0x22 ^ path as u8; 20];
        let out = |spi, key: &[u8]| OutboundSa::new(spi, GCM, key, &[], false).unwrap();
        let inn = |spi, key: &[u8]| InboundSa::new(spi, GCM, key, &[], false).unwrap();
        a.install_sa(now, path, inn(spi + 1, &key_ba), out(spi, &key_ab), None);
        b.install_sa(now, path, inn(spi, &key_ab), out(spi + 1, &key_ba), None);
    }

    /// Two sites in memory, with a switch to cut either path in both directions.
    struct Pair {
        a: EspPaths,
        b: EspPaths,
        now: Instant,
        cut: [bool; 2],
        /// Inner packets each side wrote to its TUN device.
        tun_a: Vec<Vec<u8>>,
        tun_b: Vec<Vec<u8>>,
        /// Path each ESP packet A sent took.
        sent_by_a: Vec<usize>,
    }

    impl Pair {
        fn new() -> Self {
            let now = Instant::now();
            let (mut a, mut b) = (side(true), side(false));
            key(now, &mut a, &mut b, 0, 0x100);
            key(now, &mut a, &mut b, 1, 0x200);
            Self {
                a,
                b,
                now,
                cut: [false; 2],
                tun_a: Vec::new(),
                tun_b: Vec::new(),
                sent_by_a: Vec::new(),
            }
        }

        /// Delivers `out`, produced by A (`from_a`) or B, to the other side, and what that
        /// produced in turn, until nothing is left in flight.
        fn deliver(&mut self, out: EspBatch, from_a: bool) {
            let mut queue = vec![(out, from_a)];
            while let Some((out, from_a)) = queue.pop() {
                for (destination, bytes) in out.iter() {
                    let (sender, receiver) = if from_a {
                        (&self.a, &mut self.b)
                    } else {
                        (&self.b, &mut self.a)
                    };
                    let EspDestination::Raw { remote } = destination else {
                        let tun = if from_a {
                            &mut self.tun_a
                        } else {
                            &mut self.tun_b
                        };
                        tun.push(bytes.to_vec());
                        continue;
                    };
                    let path = sender.path_of_remote(remote).unwrap();
                    if from_a {
                        self.sent_by_a.push(path);
                    }
                    if self.cut[path] {
                        continue;
                    }
                    let (header, from) = match remote {
                        IpAddr::V6(_) => (ipv6::HEADER_LEN, ENDS[path]),
                        IpAddr::V4(_) => (ipv4::HEADER_LEN, ENDS[path]),
                    };
                    let from: IpAddr = if from_a { from.0 } else { from.1 }.parse().unwrap();
                    let mut reply = EspBatch::new(4096);
                    let _ = receiver.handle_esp(self.now, path, &bytes[header..], from, &mut reply);
                    queue.push((reply, !from_a));
                }
            }
        }

        /// Runs both sides' timers in 10 ms steps for `ms`, with A sending one data packet
        /// every step.
        fn run(&mut self, ms: u64) {
            for _ in 0..ms / 10 {
                self.now += 10 * MS;
                for from_a in [true, false] {
                    let mut out = EspBatch::new(8192);
                    let side = if from_a { &mut self.a } else { &mut self.b };
                    if side.poll_timeout().is_some_and(|at| at <= self.now) {
                        side.handle_timeout(self.now, &mut out);
                    }
                    self.deliver(out, from_a);
                }
                let mut out = EspBatch::new(4096);
                let mut p = udp4("203.0.113.5", "198.51.100.9", 100);
                let _ = self.a.handle_inner(self.now, &mut p, &mut out);
                self.deliver(out, true);
            }
        }

        fn events(&mut self) -> Vec<EspPathEvent> {
            std::iter::from_fn(|| self.a.poll_event()).collect()
        }
    }

    fn udp4(src: &str, dst: &str, len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        Ipv4Repr {
            src_addr: src.parse().unwrap(),
            dst_addr: dst.parse().unwrap(),
            protocol: ip_proto::UDP,
            payload_len: len - ipv4::HEADER_LEN,
            ttl: 63,
            dscp_ecn: 0,
            ident: 7,
            dont_frag: true,
        }
        .emit(&mut Ipv4Packet::new_unchecked(&mut p[..]));
        p
    }

    #[test]
    fn traffic_takes_the_cheapest_path_and_probes_stay_inside_esp() {
        let mut pair = Pair::new();
        pair.run(500);
        assert_eq!(pair.a.active(), 0);
        for path in 0..2 {
            let s = pair.a.path_stats(path).unwrap();
            assert_eq!(s.state, HealthState::Up, "path {path}");
            assert!(s.probes_sent >= 4 && s.probes_answered >= 3, "{s:?}");
            assert!(s.srtt.is_some());
            assert!(pair.b.path_stats(path).unwrap().keepalives_answered >= 3);
        }
        // Data only on the primary, and every data packet arrived; no probe reached a TUN.
        assert_eq!(pair.a.path_stats(1).unwrap().tx_packets, 0);
        assert_eq!(pair.tun_b.len(), 50);
        assert!(pair.tun_b.iter().all(|p| p.len() == 100));
        assert!(pair.tun_a.is_empty());
        assert_eq!(pair.a.stats().tx_packets, 50);
        assert_eq!(pair.b.stats().total_drops(), 0);
    }

    #[test]
    fn a_path_device_seals_on_its_own_path_whatever_the_selection() {
        let mut pair = Pair::new();
        pair.run(500);
        assert_eq!(pair.a.active(), 0);
        let before = pair.tun_b.len();
        let mut out = EspBatch::new(4096);
        let mut p = udp4("203.0.113.5", "198.51.100.9", 100);
        pair.a
            .handle_inner_on_path(pair.now, 1, &mut p, &mut out)
            .unwrap();
        pair.sent_by_a.clear();
        pair.deliver(out, true);
        assert_eq!(pair.sent_by_a, [1], "sealed on the backup path");
        assert_eq!(pair.tun_b.len(), before + 1);
        assert_eq!(pair.a.path_stats(1).unwrap().tx_packets, 1);
        let mut p = udp4("203.0.113.5", "198.51.100.9", 100);
        let mut out = EspBatch::new(4096);
        assert_eq!(
            pair.a.handle_inner_on_path(pair.now, 2, &mut p, &mut out),
            Err(EspDrop::NotRouted)
        );
    }

    #[test]
    fn a_silent_primary_fails_over_within_detection_and_back_after_hold_down() {
        let mut pair = Pair::new();
        pair.run(500);
        pair.events();
        pair.cut[0] = true;
        let delivered = pair.tun_b.len();
        pair.run(1000);
        assert_eq!(pair.a.active(), 1);
        let lost = 100 - (pair.tun_b.len() - delivered);
        // 600 ms worst detection at 10 ms per packet.
        assert!(lost <= 60, "{lost} packets lost");
        assert!(lost >= 20, "the cut lost only {lost}: was it a cut?");
        let events = pair.events();
        assert!(events.contains(&EspPathEvent::ActivePathChanged {
            from: 0,
            to: 1,
            reason: SwitchReason::ActiveDown
        }));
        assert!(events.iter().any(|e| matches!(
            e,
            EspPathEvent::StateChanged {
                path: 0,
                state: HealthState::Down,
                ..
            }
        )));
        assert_eq!(pair.a.path_stats(0).unwrap().state, HealthState::Down);
        // Back: five replies in a row bring it up, but traffic waits for the hold-down.
        pair.cut[0] = false;
        pair.run(700);
        assert_eq!(pair.a.path_stats(0).unwrap().state, HealthState::Up);
        assert_eq!(pair.a.active(), 1, "failback before the hold-down");
        pair.run(1000);
        assert_eq!(pair.a.active(), 0);
        assert!(pair.events().contains(&EspPathEvent::ActivePathChanged {
            from: 1,
            to: 0,
            reason: SwitchReason::Failback
        }));
        // Data is back on the primary; the backup only carries its probes.
        let backup = pair.a.path_stats(1).unwrap();
        let sent = pair.sent_by_a.len();
        pair.run(200);
        let now = pair.a.path_stats(1).unwrap();
        assert_eq!(now.tx_packets, backup.tx_packets);
        let on_backup = pair.sent_by_a[sent..].iter().filter(|&&p| p == 1).count();
        let probes = now.probes_sent - backup.probes_sent;
        let answers = now.keepalives_answered - backup.keepalives_answered;
        assert!(probes >= 1);
        assert_eq!(on_backup as u64, probes + answers);
    }

    #[test]
    fn a_lowered_path_mtu_is_reported_per_path_and_ages_out() {
        let mut pair = Pair::new();
        pair.run(300);
        let _ = pair.events();
        let configured = pair.a.path_stats(1).unwrap().path_mtu;
        let reason = PathMtuReason::FragmentationNeeded {
            from: "198.18.9.1".parse().unwrap(),
            reported: 1400,
        };
        let lowered = pair.a.lower_path_mtu(pair.now, 1, 1400, reason);
        // Path 1 runs over IPv4: 1400 - 20 - UDP 8 = 1372; GCM 1372 - 32 = 1340, less 2.
        assert_eq!(lowered, Some(1338));
        assert_eq!(pair.a.path_stats(1).unwrap().path_mtu, 1338);
        assert_eq!(pair.a.path_stats(0).unwrap().path_mtu, configured);
        assert_eq!(
            pair.events(),
            [EspPathEvent::PathMtuChanged {
                path: 1,
                mtu: 1338,
                reason
            }]
        );
        assert_eq!(pair.a.lower_path_mtu(pair.now, 1, 1500, reason), None);
        assert_eq!(pair.a.lower_path_mtu(pair.now, 9, 1000, reason), None);
        // Ten minutes on, the configured MTU applies again.
        let later = pair.now + crate::PMTU_EXPIRY;
        assert!(pair.a.poll_timeout().is_some_and(|at| at <= later));
        pair.a.handle_timeout(later, &mut EspBatch::new(4096));
        assert_eq!(pair.a.path_stats(1).unwrap().path_mtu, configured);
        assert!(pair.events().contains(&EspPathEvent::PathMtuChanged {
            path: 1,
            mtu: configured,
            reason: PathMtuReason::Expired
        }));
    }

    /// B answers a rekey of path 0: (A -> B 0x300, B -> A 0x301), the keys of `key`.
    fn rekey_halves(path: usize) -> (InboundSa, OutboundSa, InboundSa, OutboundSa) {
        let key_ab = [0x33 ^ path as u8; 20];
        let key_ba = [0x44 ^ path as u8; 20];
        (
            InboundSa::new(0x300, GCM, &key_ab, &[], false).unwrap(),
            OutboundSa::new(0x301, GCM, &key_ba, &[], false).unwrap(),
            InboundSa::new(0x301, GCM, &key_ba, &[], false).unwrap(),
            OutboundSa::new(0x300, GCM, &key_ab, &[], false).unwrap(),
        )
    }

    #[test]
    fn a_responder_that_opens_before_it_answers_and_seals_after_loses_nothing() {
        let mut pair = Pair::new();
        pair.run(300);
        let (b_in, b_out, a_in, a_out) = rekey_halves(0);
        // B opens the new inbound SA, then its answer reaches A, which installs both halves.
        pair.b.install_inbound(pair.now, 0, b_in);
        pair.run(50);
        pair.a.install_sa(pair.now, 0, a_in, a_out, None);
        pair.run(50);
        assert_eq!(pair.a.path(0).unwrap().active_outbound(), Some(0x300));
        // Only then does B seal with its new outbound SA.
        pair.b.install_outbound(pair.now, 0, b_out, None);
        pair.run(100);
        assert_eq!(pair.b.path(0).unwrap().active_outbound(), Some(0x301));
        assert_eq!(pair.a.stats().drops(EspDrop::UnknownSpi), 0);
        assert_eq!(pair.b.stats().drops(EspDrop::UnknownSpi), 0);
        assert_eq!(pair.b.stats().total_drops(), 0);
        assert_eq!(pair.tun_b.len(), 50);
    }

    #[test]
    fn a_responder_that_seals_before_the_peer_has_the_sa_is_not_understood() {
        let mut pair = Pair::new();
        pair.run(300);
        let (b_in, b_out, _, _) = rekey_halves(0);
        pair.b.install_inbound(pair.now, 0, b_in);
        pair.b.install_outbound(pair.now, 0, b_out, None);
        // B's keepalive replies on path 0 now carry an SPI A has not heard of.
        pair.run(300);
        assert!(pair.a.stats().drops(EspDrop::UnknownSpi) > 0);
    }

    #[test]
    fn a_path_without_an_sa_is_down_at_once() {
        let mut pair = Pair::new();
        pair.run(300);
        pair.events();
        pair.a.clear_sas(pair.now, 0);
        assert_eq!(pair.a.active(), 1);
        assert_eq!(pair.a.path_stats(0).unwrap().state, HealthState::Down);
        assert_eq!(
            pair.events(),
            [EspPathEvent::ActivePathChanged {
                from: 0,
                to: 1,
                reason: SwitchReason::ActiveDown
            }]
        );
        // No probe leaves without an SA, and the poller is not woken for it.
        let sent = pair.a.path_stats(0).unwrap().probes_sent;
        pair.run(300);
        assert_eq!(pair.a.path_stats(0).unwrap().probes_sent, sent);
        assert!(pair.a.poll_timeout().unwrap() > pair.now - 100 * MS);
    }

    #[test]
    fn nothing_is_up_before_ike_and_the_first_reply_brings_a_path_up() {
        let mut a = side(true);
        let mut b = side(false);
        let now = Instant::now();
        assert_eq!(a.path_stats(0).unwrap().state, HealthState::Down);
        assert_eq!(a.poll_timeout(), None, "nothing to probe without an SA");
        let mut out = EspBatch::new(4096);
        let mut p = udp4("203.0.113.5", "198.51.100.9", 60);
        assert_eq!(a.handle_inner(now, &mut p, &mut out), Err(EspDrop::NoSa));
        // Only the backup negotiated: traffic goes there on its first reply.
        key(now, &mut a, &mut b, 1, 0x300);
        assert_eq!(
            a.poll_timeout(),
            Some(now),
            "the first probe is due at once"
        );
        a.handle_timeout(now, &mut out);
        assert_eq!(out.len(), 1);
        let (_, probe) = out.get(0).unwrap();
        let mut reply = EspBatch::new(4096);
        let from = ENDS[1].0.parse().unwrap();
        b.handle_esp(now, 1, &probe[ipv4::HEADER_LEN..], from, &mut reply)
            .unwrap();
        assert_eq!(reply.len(), 1, "the reply");
        let (_, answer) = reply.get(0).unwrap();
        let mut none = EspBatch::new(4096);
        let from = ENDS[1].1.parse().unwrap();
        a.handle_esp(now + MS, 1, &answer[ipv4::HEADER_LEN..], from, &mut none)
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(a.active(), 1);
        // Both sides heard authenticated ESP on path 1 for its IKE task.
        assert_eq!(
            b.poll_esp_event(),
            Some((1, EspEvent::EspReceived { spi: 0x300 }))
        );
        assert_eq!(
            a.poll_esp_event(),
            Some((1, EspEvent::EspReceived { spi: 0x301 }))
        );
    }

    #[test]
    fn a_reply_on_the_wrong_path_does_not_count() {
        let mut a = side(true);
        let mut b = side(false);
        let now = Instant::now();
        key(now, &mut a, &mut b, 0, 0x100);
        key(now, &mut a, &mut b, 1, 0x200);
        let mut out = EspBatch::new(4096);
        a.handle_timeout(now, &mut out);
        assert_eq!(out.len(), 2, "one probe per path");
        // The answer to path 0's first probe comes back sealed on path 1 (as a confused
        // peer would send it): it opens, and proves nothing about either path.
        let mut bytes = [0u8; KEEPALIVE_LEN];
        Keepalive {
            kind: Kind::Reply,
            path: 0,
            seq: 1,
            timestamp: 0,
        }
        .emit(&mut bytes);
        let mut wrong = EspBatch::new(4096);
        b.paths[1]
            .core
            .seal_keepalive(now, &bytes, &mut wrong)
            .unwrap();
        let (_, sealed) = wrong.get(0).unwrap();
        let mut none = EspBatch::new(4096);
        a.handle_esp(
            now,
            1,
            &sealed[ipv4::HEADER_LEN..],
            ENDS[1].1.parse().unwrap(),
            &mut none,
        )
        .unwrap();
        assert!(none.is_empty());
        for path in 0..2 {
            assert_eq!(a.path_stats(path).unwrap().probes_answered, 0);
            assert_eq!(a.path_stats(path).unwrap().state, HealthState::Unknown);
        }
    }

    #[test]
    fn path_of_remote_finds_every_path_and_the_first_of_a_shared_remote() {
        let template = side(true).paths[0].core.config().clone();
        // 256 paths, the most a tunnel has; path i reaches remote i / 2 + 1, so each remote
        // is shared by two paths.
        let remote = |i: usize| {
            IpAddr::from(std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                7,
                0,
                0,
                0,
                0,
                i as u16 / 2 + 1,
            ))
        };
        let configs = (0..256)
            .map(|i| EspPathConfig {
                name: format!("p{i}"),
                cost: 0,
                probed: false,
                esp: EspTunnelConfig {
                    remote: remote(i),
                    ..template.clone()
                },
            })
            .collect();
        let paths = EspPaths::new(health(), configs);
        for i in 0..256 {
            let scan = paths
                .paths
                .iter()
                .position(|p| p.core.config().remote == remote(i));
            assert_eq!(paths.path_of_remote(remote(i)), scan);
            assert_eq!(paths.path_of_remote(remote(i)), Some(i / 2 * 2));
            let udp = EspDestination::Udp {
                remote: std::net::SocketAddr::new(remote(i), 4500),
            };
            assert_eq!(path_of_destination(&paths, udp), Some(i / 2 * 2));
        }
        let stranger: IpAddr = "2001:db8:7::ffff".parse().unwrap();
        assert_eq!(paths.path_of_remote(stranger), None);
        assert_eq!(path_of_destination(&paths, EspDestination::Tun), None);
        let two = side(true);
        for (i, (_, theirs)) in ENDS.iter().enumerate() {
            assert_eq!(two.path_of_remote(theirs.parse().unwrap()), Some(i));
        }
    }
}
