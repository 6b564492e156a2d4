//! One tunnel's work: encapsulation on the way out, decapsulation on the way
//! in, what it takes to keep packets within the path MTU, and which of its
//! paths carries the traffic.

use std::net::IpAddr;
use std::time::Instant;

use wire::{ip_proto, ipv4, ipv6};

use crate::encap::{Framing, Outer};
use crate::event::{EventQueue, SwitchReason};
use crate::health::Tracker;
use crate::icmp;
use crate::ident::Idents;
use crate::inner::{Family, Inner, inner_protocol, mark_congestion};
use crate::pmtu::PathMtu;
use crate::probe::{self, EchoReply, KEEPALIVE_LEN, KEEPALIVE_PROTOCOL, Keepalive, Kind};
use crate::ratelimit::{IcmpRateLimit, TokenBucket};
use crate::selection::{self, PathSelection, earliest, path_tracker};
use crate::{
    Batch, Destination, DropReason, Event, HealthState, MIN_IPV4_MTU, MIN_IPV6_MTU, MssClamp,
    PathId, PathMtuReason, PathStats, Probe, TunnelConfig, TunnelId, TunnelStats, Verdict,
    fragment, mss,
};

/// IPv4 + TCP headers without options, subtracted from the MTU for the MSS.
const TCP_IPV4_OVERHEAD: u16 = 40;
/// IPv6 + TCP headers without options.
const TCP_IPV6_OVERHEAD: u16 = 60;

const ECN_MASK: u8 = 0b11;
const ECN_CE: u8 = 0b11;

/// What the core keeps for one path of a tunnel.
#[derive(Debug)]
pub(crate) struct Path {
    pub(crate) framing: Framing,
    pub(crate) pmtu: PathMtu,
    /// `None` for a path that is not probed, which counts as up.
    pub(crate) tracker: Option<Tracker>,
    /// The counters of [`PathStats`]; its health fields are filled on reading.
    pub(crate) counters: PathStats,
    /// Echo identifier of a path probed with ICMP.
    pub(crate) icmp_ident: Option<u16>,
    /// Sequence number of the last probe sent.
    last_seq: u32,
}

impl Path {
    fn new(config: &TunnelConfig, index: usize, icmp_ident: Option<u16>) -> Self {
        let path = &config.paths[index];
        Self {
            framing: Framing::new(config, path),
            pmtu: PathMtu::new(config.mtu),
            tracker: tracker_for(config, path.probe),
            counters: PathStats::default(),
            icmp_ident,
            last_seq: 0,
        }
    }

    fn state(&self) -> HealthState {
        self.tracker
            .as_ref()
            .map_or(HealthState::Up, Tracker::state)
    }
}

fn tracker_for(config: &TunnelConfig, probe: Probe) -> Option<Tracker> {
    (probe != Probe::None).then(|| path_tracker(config.health))
}

/// The path traffic starts on: the cheapest, the first listed among equals.
fn initial_path(config: &TunnelConfig) -> PathId {
    PathId(selection::cheapest(config.paths.iter().map(|p| p.cost)) as u8)
}

#[derive(Debug)]
pub(crate) struct Tunnel {
    pub(crate) id: TunnelId,
    pub(crate) config: TunnelConfig,
    pub(crate) stats: TunnelStats,
    pub(crate) paths: Vec<Path>,
    /// Mirrors `selection`'s choice, read for every packet.
    active: PathId,
    selection: PathSelection,
    icmp_bucket: TokenBucket,
}

impl Tunnel {
    /// `icmp_idents` has one entry per path: the echo identifier of each path
    /// probed with ICMP.
    pub(crate) fn new(
        id: TunnelId,
        config: TunnelConfig,
        icmp_rate: IcmpRateLimit,
        icmp_idents: &[Option<u16>],
    ) -> Self {
        let paths = (0..config.paths.len())
            .map(|i| Path::new(&config, i, icmp_idents.get(i).copied().flatten()))
            .collect();
        let selection = PathSelection::new(config.paths.iter().map(|p| p.cost));
        let active = PathId(selection.active() as u8);
        let stats = TunnelStats {
            path_mtu: config.mtu,
            active_path: active,
            ..TunnelStats::default()
        };
        Self {
            id,
            config,
            stats,
            paths,
            active,
            selection,
            icmp_bucket: TokenBucket::new(icmp_rate),
        }
    }

    /// Takes a new configuration of the same tunnel, keeping what is known of
    /// the paths it keeps (by name): counters always; health while endpoints,
    /// probe and health settings stay; a learnt path MTU while the framing
    /// stays, since it was measured for it.
    pub(crate) fn reconfigure(
        &mut self,
        config: TunnelConfig,
        icmp_idents: &[Option<u16>],
        events: &mut EventQueue,
    ) {
        let framing_changed =
            self.config.mtu != config.mtu || self.config.encap_limit != config.encap_limit;
        let mut old: Vec<Option<Path>> = self.paths.drain(..).map(Some).collect();
        let mut paths = Vec::with_capacity(config.paths.len());
        let mut active = None;
        for (id, new) in config.path_ids() {
            let mut path = Path::new(&config, id.index(), icmp_idents[id.index()]);
            let before = self
                .config
                .paths
                .iter()
                .position(|p| p.name == new.name)
                .and_then(|i| Some((i, old[i].take()?)));
            if let Some((i, previous)) = before {
                let was = &self.config.paths[i];
                if PathId(i as u8) == self.active {
                    active = Some(id);
                }
                path.counters = previous.counters;
                path.last_seq = previous.last_seq;
                let same_ends = (was.local, was.remote) == (new.local, new.remote);
                if same_ends && was.probe == new.probe && self.config.health == config.health {
                    path.tracker = previous.tracker;
                }
                if same_ends && !framing_changed {
                    path.pmtu = previous.pmtu;
                } else if path.pmtu.current() != previous.pmtu.current() {
                    events.push(Event::PathMtuChanged {
                        tunnel: self.id,
                        path: id,
                        mtu: path.pmtu.current(),
                        reason: PathMtuReason::Reconfigured,
                    });
                }
            }
            paths.push(path);
        }
        self.paths = paths;
        self.config = config;
        let from = self.active;
        self.active = active.unwrap_or_else(|| {
            let to = initial_path(&self.config);
            events.push(Event::ActivePathChanged {
                tunnel: self.id,
                from,
                to,
                reason: SwitchReason::Reconfigured,
            });
            to
        });
        self.selection.reset(self.active.index());
        self.stats.active_path = self.active;
        self.stats.path_mtu = self.active_path().pmtu.current();
    }

    pub(crate) fn active(&self) -> PathId {
        self.active
    }

    fn active_path(&self) -> &Path {
        &self.paths[self.active.index()]
    }

    pub(crate) fn path_stats(&self, id: PathId) -> Option<PathStats> {
        let path = self.paths.get(id.index())?;
        let mut stats = path.counters;
        stats.state = path.state();
        stats.path_mtu = path.pmtu.current();
        if let Some(tracker) = &path.tracker {
            stats.srtt = tracker.srtt();
            stats.loss = tracker.loss();
            stats.last_change = tracker.last_change();
        }
        Some(stats)
    }

    /// The largest inner packet of `family` that goes out unfragmented on
    /// `path`.
    ///
    /// IPv6 links must carry 1280-byte packets (RFC 8200 §5), so an IPv6 inner
    /// packet is never refused below that, whatever the path reported; like
    /// ip6tnl, IPv4 goes down to the 68-byte minimum.
    fn mtu(&self, path: PathId, family: Family) -> u16 {
        let current = self.paths[path.index()].pmtu.current();
        match family {
            Family::V4 => current.max(MIN_IPV4_MTU),
            Family::V6 => current.max(MIN_IPV6_MTU),
        }
    }

    fn mss(&self, path: PathId, family: Family) -> Option<u16> {
        match self.config.mss_clamp {
            MssClamp::Off => None,
            MssClamp::Fixed(mss) => Some(mss),
            MssClamp::Auto => Some(match family {
                Family::V4 => self.mtu(path, family) - TCP_IPV4_OVERHEAD,
                Family::V6 => self.mtu(path, family) - TCP_IPV6_OVERHEAD,
            }),
        }
    }

    fn carries(&self, family: Family) -> bool {
        match family {
            Family::V4 => self.config.carries_ipv4(),
            Family::V6 => self.config.carries_ipv6(),
        }
    }

    fn clamp(&mut self, packet: &mut [u8], family: Family, path: PathId) {
        if let Some(max) = self.mss(path, family)
            && mss::clamp(packet, family, max)
        {
            self.stats.mss_clamped += 1;
        }
    }

    pub(crate) fn drop(&mut self, reason: DropReason) -> Verdict {
        self.stats.drops.bump(reason);
        Verdict::Dropped(reason)
    }

    /// Where an inner packet for the TUN side goes when it concerns `path`.
    fn tun(&self, path: PathId) -> Destination {
        if self.config.device_per_path {
            Destination::TunPath(self.id, path)
        } else {
            Destination::Tun(self.id)
        }
    }

    /// An inner packet from a TUN device: from the tunnel's own when `on_path`
    /// is `None` (it takes the active path), from that path's otherwise.
    pub(crate) fn encap(
        &mut self,
        now: Instant,
        on_path: Option<PathId>,
        packet: &mut [u8],
        out: &mut Batch,
        idents: &mut Idents,
    ) -> Verdict {
        if on_path.is_some_and(|p| p.index() >= self.paths.len()) {
            return self.drop(DropReason::NoTunnel);
        }
        let path = on_path.unwrap_or(self.active);
        let inner = match Inner::parse(packet, false) {
            Ok(inner) => inner,
            Err(reason) => return self.drop(reason),
        };
        let packet = &mut packet[..inner.len];
        if !self.carries(inner.family) {
            return self.drop(DropReason::WrongFamily);
        }
        // With a device per path, a routing daemon owns the routes, and sends
        // what it must (OSPF hellos to 224.0.0.5) wherever it must.
        if !self.config.device_per_path
            && !self
                .config
                .routes
                .iter()
                .any(|net| net.contains(&inner.dst))
        {
            return self.drop(DropReason::NotRouted);
        }
        if self
            .config
            .paths
            .iter()
            .any(|p| inner.src == p.remote || inner.dst == p.remote)
        {
            return self.drop(DropReason::RoutingLoop);
        }
        self.clamp(packet, inner.family, path);

        let mtu = self.mtu(path, inner.family);
        if inner.len > usize::from(mtu) {
            return self.too_big(now, path, packet, inner.family, mtu, out, idents);
        }
        let current = self.paths[path.index()].pmtu.current();
        let framing = self.paths[path.index()].framing;
        let count = match framing.outer {
            // Only IPv6 at its 1280 floor gets here: the path is narrower
            // than IPv6 allows a link to be, so the outer packet is split.
            // Only IPv6 paths learn a path MTU, so only they get here.
            Outer::V6(ends) if inner.len > usize::from(current) => {
                let link_mtu = current + framing.overhead() as u16;
                let count = fragment::fragment_outer(
                    &framing,
                    &ends,
                    inner.family.protocol(),
                    inner.traffic_class,
                    packet,
                    link_mtu,
                    idents.next_ipv6(),
                    out,
                );
                self.stats.fragmented += 1;
                self.stats.fragments_sent += count as u64;
                count
            }
            _ => {
                framing.encapsulate(
                    inner.family.protocol(),
                    inner.traffic_class,
                    packet,
                    idents,
                    out,
                );
                1
            }
        };
        self.count_tx(path, count as u64, inner.len as u64);
        Verdict::Forwarded
    }

    fn count_tx(&mut self, path: PathId, packets: u64, bytes: u64) {
        self.stats.tx_packets += packets;
        self.stats.tx_bytes += bytes;
        let counters = &mut self.paths[path.index()].counters;
        counters.tx_packets += packets;
        counters.tx_bytes += bytes;
    }

    #[allow(clippy::too_many_arguments)]
    fn too_big(
        &mut self,
        now: Instant,
        path: PathId,
        packet: &[u8],
        family: Family,
        mtu: u16,
        out: &mut Batch,
        idents: &mut Idents,
    ) -> Verdict {
        if family == Family::V4 && !wire::Ipv4Packet::new_unchecked(packet).dont_frag() {
            let framing = self.paths[path.index()].framing;
            return match fragment::fragment_into(&framing, packet, mtu, idents, out) {
                Ok(count) => {
                    let bytes = fragmented_bytes(out, count, framing.overhead());
                    self.count_tx(path, count as u64, bytes);
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

    /// Sends the ICMP error for an oversized packet back to its sender, through the host's
    /// stack ([`Destination::Local`]), where the rules allow one, and says which drop reason
    /// applies.
    fn answer_too_big(
        &mut self,
        now: Instant,
        packet: &[u8],
        family: Family,
        mtu: u16,
        out: &mut Batch,
        idents: &mut Idents,
    ) -> DropReason {
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
                let ident = idents.next_ipv4();
                let buf = out.push(Destination::Local, icmp::frag_needed_len(packet));
                icmp::emit_frag_needed(source, ident, mtu, packet, buf);
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
                let buf = out.push(Destination::Local, icmp::packet_too_big_len(packet));
                icmp::emit_packet_too_big(source, u32::from(mtu), packet, buf);
            }
        }
        self.stats.icmp_sent += 1;
        DropReason::TooBig
    }

    /// The inner packet of an outer packet that arrived on `path`, with the
    /// outer header's protocol (after any extension headers) and traffic class.
    ///
    /// Probes are taken out first, before any filter: keepalives travel as
    /// IPv4 whatever the tunnel carries. They return [`Verdict::Consumed`],
    /// after which the caller runs [`settle`](Self::settle).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decap(
        &mut self,
        now: Instant,
        path: PathId,
        protocol: u8,
        outer_traffic_class: u8,
        payload: &mut [u8],
        out: &mut Batch,
        idents: &mut Idents,
    ) -> Verdict {
        if protocol == ip_proto::IPIP
            && payload.get(9) == Some(&KEEPALIVE_PROTOCOL)
            && let Some(keepalive) = Keepalive::parse(payload)
        {
            self.keepalive(now, path, keepalive, out, idents);
            return Verdict::Consumed;
        }
        let Some(family) = Family::from_protocol(protocol) else {
            return self.drop(DropReason::Malformed);
        };
        if !self.carries(family) {
            return self.drop(DropReason::WrongFamily);
        }
        let inner = match Inner::parse(payload, true) {
            Ok(inner) if inner.family == family => inner,
            _ => return self.drop(DropReason::Malformed),
        };
        let packet = &mut payload[..inner.len];
        if self.paths.iter().any(|p| p.icmp_ident.is_some())
            && let Some(reply) = EchoReply::parse(packet)
            && self.echo_reply(now, reply)
        {
            return Verdict::Consumed;
        }
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
        if outer_traffic_class & ECN_MASK == ECN_CE {
            if inner.traffic_class & ECN_MASK == 0 {
                return self.drop(DropReason::CongestionNotEct);
            }
            mark_congestion(packet, family);
        }
        // Answers leave on the active path, or on this one when it has a
        // device of its own.
        let back = if self.config.device_per_path {
            path
        } else {
            self.active
        };
        self.clamp(packet, family, back);
        // No size check on the way in: a TCP packet beyond the MTU is several segments that
        // GRO merged on the underlay, each of which fitted; the TUN side segments it again.
        // Refusing it, or answering it with ICMP, would shrink a path that is not too small.
        if packet.len() > usize::from(self.config.mtu)
            && inner_protocol(packet, family) == ip_proto::TCP
        {
            self.stats.outer_gro_packets += 1;
        }
        out.push(self.tun(path), packet.len())
            .copy_from_slice(packet);
        let bytes = packet.len() as u64;
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += bytes;
        let counters = &mut self.paths[path.index()].counters;
        counters.rx_packets += 1;
        counters.rx_bytes += bytes;
        counters.last_received = Some(now);
        Verdict::Forwarded
    }

    fn keepalive(
        &mut self,
        now: Instant,
        path: PathId,
        keepalive: Keepalive,
        out: &mut Batch,
        idents: &mut Idents,
    ) {
        let state = &mut self.paths[path.index()];
        state.counters.last_received = Some(now);
        match keepalive.kind {
            Kind::Request => {
                let mut reply = [0u8; KEEPALIVE_LEN];
                Keepalive {
                    kind: Kind::Reply,
                    ..keepalive
                }
                .emit(&mut reply);
                state
                    .framing
                    .encapsulate(ip_proto::IPIP, 0, &reply, idents, out);
                state.counters.keepalives_answered += 1;
            }
            // A reply for another path of ours came back the wrong way: it says
            // nothing about this one.
            Kind::Reply if keepalive.path != path.0 => {}
            Kind::Reply => {
                if let Some(tracker) = &mut state.tracker
                    && tracker.on_reply(now, keepalive.seq).is_some()
                {
                    state.counters.probes_answered += 1;
                }
            }
        }
    }

    /// Feeds an echo reply to the path whose probe it answers, on whichever
    /// path it came back. True if it answers one of our probes.
    fn echo_reply(&mut self, now: Instant, reply: EchoReply) -> bool {
        let Some(index) = self
            .paths
            .iter()
            .position(|p| p.icmp_ident == Some(reply.ident))
        else {
            return false;
        };
        let Probe::Icmp { target, source } = self.config.paths[index].probe else {
            return false;
        };
        let source = source.or_else(|| self.config.icmp_source_for(target));
        if reply.src != target || Some(reply.dst) != source {
            return false;
        }
        let path = &mut self.paths[index];
        let seq = probe::widen_seq(path.last_seq, reply.seq_no);
        if let Some(tracker) = &mut path.tracker
            && tracker.on_reply(now, seq).is_some()
        {
            path.counters.probes_answered += 1;
        }
        true
    }

    /// Turns what the paths' trackers learnt into events, and moves traffic if
    /// that calls for it.
    pub(crate) fn settle(&mut self, now: Instant, events: &mut EventQueue) {
        let tunnel = self.id;
        let trackers = self.paths.iter_mut().map(|p| p.tracker.as_mut());
        selection::drain_transitions(trackers, |i, transition| {
            events.push(Event::PathStateChanged {
                tunnel,
                path: PathId(i as u8),
                state: transition.to,
                reason: transition.reason,
            });
        });
        let (paths, config) = (&self.paths, &self.config);
        let Some(switch) = self
            .selection
            .select(now, config.health.hold_down, paths.len(), |i| {
                (config.paths[i].cost, paths[i].state())
            })
        else {
            return;
        };
        let to = PathId(switch.to as u8);
        events.push(Event::ActivePathChanged {
            tunnel,
            from: PathId(switch.from as u8),
            to,
            reason: switch.reason,
        });
        self.active = to;
        self.stats.failovers = self.selection.switches();
        self.stats.active_path = to;
        self.stats.path_mtu = self.active_path().pmtu.current();
    }

    /// Timers: path MTUs that expire, probes lost or due, a failback that
    /// waited for the hold-down. `since_start` stamps keepalives.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        since_start: u64,
        out: &mut Batch,
        idents: &mut Idents,
        events: &mut EventQueue,
    ) {
        for i in 0..self.paths.len() {
            let id = PathId(i as u8);
            let path = &mut self.paths[i];
            if path.pmtu.expire(now) {
                let mtu = path.pmtu.current();
                events.push(Event::PathMtuChanged {
                    tunnel: self.id,
                    path: id,
                    mtu,
                    reason: PathMtuReason::Expired,
                });
                if id == self.active {
                    self.stats.path_mtu = mtu;
                }
            }
            self.probe(now, id, since_start, out, idents);
        }
        self.settle(now, events);
    }

    /// Sends the path's next probe if one is due.
    fn probe(
        &mut self,
        now: Instant,
        id: PathId,
        since_start: u64,
        out: &mut Batch,
        idents: &mut Idents,
    ) {
        let probe = self.config.paths[id.index()].probe;
        let icmp_source = match probe {
            Probe::Icmp { target, source } => {
                source.or_else(|| self.config.icmp_source_for(target))
            }
            _ => None,
        };
        let path = &mut self.paths[id.index()];
        let Some(tracker) = &mut path.tracker else {
            return;
        };
        tracker.handle_timeout(now);
        if !tracker.probe_due(now) {
            return;
        }
        let seq = path.last_seq.wrapping_add(1);
        match probe {
            Probe::Keepalive => {
                let mut packet = [0u8; KEEPALIVE_LEN];
                Keepalive {
                    kind: Kind::Request,
                    path: id.0,
                    seq,
                    timestamp: since_start,
                }
                .emit(&mut packet);
                path.framing
                    .encapsulate(ip_proto::IPIP, 0, &packet, idents, out);
            }
            Probe::Icmp { target, .. } => {
                let mut packet = [0u8; ipv6::HEADER_LEN + 16];
                let packet = &mut packet[..probe::echo_request_len(target)];
                // The sequence number on the wire is the low half; replies
                // are matched back with `widen_seq`.
                let ip_ident = idents.next_ipv4();
                // Validation gave the path a source of the target's family and
                // the core an identifier; were either missing, the probe would
                // count as sent and lost, rather than stay due for ever.
                let written = match (icmp_source, path.icmp_ident) {
                    (Some(source), Some(ident)) => probe::emit_echo_request(
                        source,
                        target,
                        ident,
                        seq as u16,
                        since_start,
                        ip_ident,
                        packet,
                    ),
                    _ => false,
                };
                if written {
                    let protocol = match target {
                        IpAddr::V4(_) => ip_proto::IPIP,
                        IpAddr::V6(_) => ip_proto::IPV6,
                    };
                    path.framing.encapsulate(protocol, 0, packet, idents, out);
                }
            }
            Probe::None => return,
        }
        tracker.on_probe_sent(now, seq);
        path.last_seq = seq;
        path.counters.probes_sent += 1;
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, and whether a
    /// path is waiting for its first probe, which is due at once.
    pub(crate) fn poll_timeout(&self) -> (Option<Instant>, bool) {
        let mut first_probe = false;
        let mut next = self.selection.failback_at();
        for path in &self.paths {
            next = earliest(next, path.pmtu.expires());
            if let Some(tracker) = &path.tracker {
                match tracker.poll_timeout() {
                    Some(at) => next = earliest(next, Some(at)),
                    None => first_probe = true,
                }
            }
        }
        (next, first_probe)
    }

    /// Lowers `path`'s MTU after a Packet Too Big reporting a link of
    /// `link_mtu` bytes; true if it went down.
    pub(crate) fn lower_path_mtu(&mut self, now: Instant, path: PathId, link_mtu: u16) -> bool {
        let state = &mut self.paths[path.index()];
        let inner_mtu = link_mtu.saturating_sub(state.framing.overhead() as u16);
        let lowered = state.pmtu.lower(now, inner_mtu) == crate::pmtu::Update::Lowered;
        if lowered && path == self.active {
            self.stats.path_mtu = state.pmtu.current();
        }
        lowered
    }
}

/// Inner bytes of the last `count` outer packets in `out`.
fn fragmented_bytes(out: &Batch, count: usize, overhead: usize) -> u64 {
    (out.len() - count..out.len())
        .filter_map(|i| out.get(i))
        .map(|(_, bytes)| (bytes.len() - overhead) as u64)
        .sum()
}

/// The IPv4 outer header of a datagram from a raw IPv4 socket, and where its
/// payload lies.
pub(crate) struct Ipv4Outer {
    pub(crate) src: std::net::Ipv4Addr,
    pub(crate) dst: std::net::Ipv4Addr,
    pub(crate) protocol: u8,
    pub(crate) tos: u8,
    pub(crate) payload: core::ops::Range<usize>,
}

impl Ipv4Outer {
    /// Checks the header as the kernel would have (it has, but the bytes may
    /// come from anywhere): structure, checksum, and no fragment, since the
    /// kernel reassembles before delivering to raw sockets.
    pub(crate) fn parse(datagram: &[u8]) -> Option<Self> {
        let packet = wire::Ipv4Packet::new_checked(datagram).ok()?;
        if !packet.verify_checksum() || packet.more_frags() || packet.frag_offset() != 0 {
            return None;
        }
        let start = packet.header_len();
        debug_assert!(start >= ipv4::HEADER_LEN);
        Some(Self {
            src: packet.src_addr(),
            dst: packet.dst_addr(),
            protocol: packet.protocol(),
            tos: packet.dscp_ecn(),
            payload: start..usize::from(packet.total_len()),
        })
    }
}
