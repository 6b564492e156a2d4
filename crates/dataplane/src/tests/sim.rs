//! A simulated network for failover: a core joined to a peer by one link per
//! path, on a virtual clock. Links delay, and drop in either direction on a
//! schedule; the peer is another core, or a foreign router that decapsulates
//! and answers pings and nothing else.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::ops::Range;
use std::time::{Duration, Instant};

use wire::{Icmpv4Packet, Icmpv6Packet, icmpv4, icmpv6};

use super::*;
use crate::{Event, PathId};

/// Whether a link drops what is sent at this time since the start.
pub(crate) type Schedule = Box<dyn Fn(Duration) -> bool>;

pub(crate) struct Link {
    /// One way.
    pub(crate) latency: Duration,
    pub(crate) drop_a_to_b: Schedule,
    pub(crate) drop_b_to_a: Schedule,
}

impl Link {
    pub(crate) fn healthy(latency: Duration) -> Self {
        Self {
            latency,
            drop_a_to_b: Box::new(|_| false),
            drop_b_to_a: Box::new(|_| false),
        }
    }

    /// Drops everything, both ways, during these spans.
    pub(crate) fn down_during(latency: Duration, spans: Vec<Range<Duration>>) -> Self {
        let back = spans.clone();
        Self {
            latency,
            drop_a_to_b: Box::new(move |t| spans.iter().any(|s| s.contains(&t))),
            drop_b_to_a: Box::new(move |t| back.iter().any(|s| s.contains(&t))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    A,
    B,
}

/// A router that is not v6gate: it decapsulates, answers ICMP echoes to its
/// own inner addresses on one path of its choosing, and drops the rest,
/// keepalives included.
pub(crate) struct Foreign {
    /// Its ends of each link: (local, remote), in link order.
    pub(crate) paths: Vec<(IpAddr, IpAddr)>,
    pub(crate) addresses: Vec<IpAddr>,
    /// The link its answers leave on, whichever the echo came in on.
    pub(crate) answer_on: usize,
    pub(crate) answered: u64,
    pub(crate) ignored: u64,
}

pub(crate) enum Node {
    Core(Box<Dataplane>, TunnelId),
    Foreign(Foreign),
}

type Queued = Reverse<(Instant, u64, Side, usize, Vec<u8>)>;

pub(crate) struct Sim {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) a: Node,
    pub(crate) b: Node,
    links: Vec<Link>,
    /// Each link's ends as A sees them: (A's address, B's address).
    ends: Vec<(IpAddr, IpAddr)>,
    queue: BinaryHeap<Queued>,
    order: u64,
    /// Latest arrival per link and direction: links keep packets in order.
    last_arrival: Vec<[Instant; 2]>,
    /// Events of both cores, stamped with the time since the start.
    pub(crate) events: Vec<(Duration, Side, Event)>,
    /// Inner packets written to a TUN device, with the link they came in on.
    pub(crate) delivered: Vec<(Duration, Side, Option<usize>, Vec<u8>)>,
    /// Outer packets put on a link, dropped or not.
    pub(crate) wire: Vec<(Duration, Side, usize, Vec<u8>)>,
}

impl Sim {
    /// `a` and `b` must have their paths in the same order, one link each.
    pub(crate) fn new(a: TunnelConfig, b: Node, links: Vec<Link>) -> Self {
        assert_eq!(a.paths.len(), links.len());
        let ends = a.paths.iter().map(|p| (p.local, p.remote)).collect();
        let start = Instant::now();
        let (dp, id) = dataplane(a);
        let mut sim = Self {
            start,
            now: start,
            a: Node::Core(Box::new(dp), id),
            b,
            last_arrival: vec![[start; 2]; links.len()],
            links,
            ends,
            queue: BinaryHeap::new(),
            order: 0,
            events: Vec::new(),
            delivered: Vec::new(),
            wire: Vec::new(),
        };
        // Cores that have not seen the clock yet start probing at their first
        // timeout call.
        sim.handle_timeout(Side::A);
        sim.handle_timeout(Side::B);
        sim
    }

    pub(crate) fn cores(a: TunnelConfig, b: TunnelConfig, links: Vec<Link>) -> Self {
        let (dp, id) = dataplane(b);
        Self::new(a, Node::Core(Box::new(dp), id), links)
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub(crate) fn core(&self, side: Side) -> (&Dataplane, TunnelId) {
        match self.node(side) {
            Node::Core(dp, id) => (dp, *id),
            Node::Foreign(_) => panic!("{side:?} is not a core"),
        }
    }

    pub(crate) fn foreign(&self) -> &Foreign {
        match &self.b {
            Node::Foreign(f) => f,
            Node::Core(..) => panic!("B is a core"),
        }
    }

    fn node(&self, side: Side) -> &Node {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn node_mut(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    /// Events of one side, in order.
    pub(crate) fn events_of(&self, side: Side) -> Vec<(Duration, Event)> {
        self.events
            .iter()
            .filter(|(_, s, _)| *s == side)
            .map(|(t, _, e)| (*t, *e))
            .collect()
    }

    /// When one side's traffic moved, and from where to where.
    pub(crate) fn switches(&self, side: Side) -> Vec<(Duration, PathId, PathId)> {
        self.events_of(side)
            .into_iter()
            .filter_map(|(t, e)| match e {
                Event::ActivePathChanged { from, to, .. } => Some((t, from, to)),
                _ => None,
            })
            .collect()
    }

    /// When one side saw `path` change state.
    pub(crate) fn transitions(&self, side: Side, path: PathId) -> Vec<(Duration, HealthState)> {
        self.events_of(side)
            .into_iter()
            .filter_map(|(t, e)| match e {
                Event::PathStateChanged { path: p, state, .. } if p == path => Some((t, state)),
                _ => None,
            })
            .collect()
    }

    /// An inner packet from `side`'s TUN device, at the current time.
    pub(crate) fn send_inner(&mut self, side: Side, packet: &[u8]) -> Verdict {
        let now = self.now;
        let mut out = Batch::new(4096);
        let verdict = match self.node_mut(side) {
            Node::Core(dp, id) => dp.handle_inner(now, *id, &mut packet.to_vec(), &mut out),
            Node::Foreign(_) => panic!("only cores have TUN devices here"),
        };
        self.route(side, None, &out);
        verdict
    }

    /// Runs until `until` after the start, at most `max_steps` steps per
    /// simulated second: a core that keeps asking for timeouts without time
    /// moving would spin forever otherwise.
    pub(crate) fn run_until(&mut self, until: Duration) {
        let end = self.start + until;
        let budget = 10_000 + 2_000 * until.as_secs();
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < budget, "livelock at {:?}", self.elapsed());
            let next = [
                self.queue.peek().map(|Reverse(q)| q.0),
                self.timeout(Side::A),
                self.timeout(Side::B),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|&t| t <= end) else {
                self.now = end;
                return;
            };
            self.now = self.now.max(next);
            while self.queue.peek().is_some_and(|Reverse(q)| q.0 <= self.now) {
                let Some(Reverse((_, _, to, link, bytes))) = self.queue.pop() else {
                    break;
                };
                self.deliver(to, link, bytes);
            }
            for side in [Side::A, Side::B] {
                if self.timeout(side).is_some_and(|t| t <= self.now) {
                    self.handle_timeout(side);
                }
            }
        }
    }

    fn timeout(&self, side: Side) -> Option<Instant> {
        match self.node(side) {
            Node::Core(dp, _) => dp.poll_timeout(),
            Node::Foreign(_) => None,
        }
    }

    fn handle_timeout(&mut self, side: Side) {
        let now = self.now;
        let mut out = Batch::new(4096);
        if let Node::Core(dp, _) = self.node_mut(side) {
            dp.handle_timeout(now, &mut out);
        }
        self.route(side, None, &out);
    }

    fn deliver(&mut self, to: Side, link: usize, bytes: Vec<u8>) {
        let now = self.now;
        let mut out = Batch::new(4096);
        match self.node_mut(to) {
            Node::Core(dp, _) => {
                let mut bytes = bytes;
                let _ = if bytes[0] >> 4 == 6 {
                    let (meta, mut payload) = receive(&bytes);
                    dp.handle_outer(now, &meta, &mut payload, &mut out)
                } else {
                    dp.handle_outer_ipv4(now, &mut bytes, &mut out)
                };
            }
            Node::Foreign(foreign) => foreign.receive(&bytes, &mut out),
        }
        self.route(to, Some(link), &out);
    }

    /// Puts what a side produced on the links, or records what it wrote to
    /// its TUN devices.
    fn route(&mut self, from: Side, arrived_on: Option<usize>, out: &Batch) {
        let elapsed = self.elapsed();
        for (destination, bytes) in out {
            if !matches!(destination, Destination::Underlay { .. }) {
                self.delivered
                    .push((elapsed, from, arrived_on, bytes.to_vec()));
                continue;
            }
            let (src, dst) = outer_ends(bytes);
            let link = self
                .ends
                .iter()
                .position(|&(a, b)| match from {
                    Side::A => (src, dst) == (a, b),
                    Side::B => (src, dst) == (b, a),
                })
                .unwrap_or_else(|| panic!("no link from {src} to {dst}"));
            self.wire.push((elapsed, from, link, bytes.to_vec()));
            let spec = &self.links[link];
            let (dropped, to, direction) = match from {
                Side::A => ((spec.drop_a_to_b)(elapsed), Side::B, 0),
                Side::B => ((spec.drop_b_to_a)(elapsed), Side::A, 1),
            };
            if dropped {
                continue;
            }
            let at = (self.now + spec.latency).max(self.last_arrival[link][direction]);
            self.last_arrival[link][direction] = at;
            self.order += 1;
            self.queue
                .push(Reverse((at, self.order, to, link, bytes.to_vec())));
        }
        self.record_event_drain();
    }

    fn record_event_drain(&mut self) {
        let elapsed = self.elapsed();
        for side in [Side::A, Side::B] {
            if let Node::Core(dp, _) = self.node_mut(side) {
                let mut drained = Vec::new();
                while let Some(event) = dp.poll_event() {
                    drained.push(event);
                }
                self.events
                    .extend(drained.into_iter().map(|e| (elapsed, side, e)));
            }
        }
    }
}

fn outer_ends(bytes: &[u8]) -> (IpAddr, IpAddr) {
    if bytes[0] >> 4 == 6 {
        let ip = Ipv6Packet::new_checked(bytes).unwrap();
        (ip.src_addr().into(), ip.dst_addr().into())
    } else {
        let ip = Ipv4Packet::new_checked(bytes).unwrap();
        (ip.src_addr().into(), ip.dst_addr().into())
    }
}

impl Foreign {
    fn receive(&mut self, outer: &[u8], out: &mut Batch) {
        let inner = if outer[0] >> 4 == 6 {
            receive(outer).1
        } else {
            Ipv4Packet::new_checked(outer).unwrap().payload().to_vec()
        };
        match answer_echo(&inner, &self.addresses) {
            Some(reply) => {
                self.answered += 1;
                let (local, remote) = self.paths[self.answer_on];
                let protocol = if reply[0] >> 4 == 4 {
                    ip_proto::IPIP
                } else {
                    ip_proto::IPV6
                };
                let outer = match (local, remote) {
                    (IpAddr::V6(l), IpAddr::V6(r)) => ipv6(l, r, protocol, &reply),
                    (IpAddr::V4(l), IpAddr::V4(r)) => ipv4(l, r, protocol, &reply, false),
                    _ => unreachable!("a path has one family"),
                };
                out.push(Destination::Underlay { remote }, outer.len())
                    .copy_from_slice(&outer);
            }
            None => self.ignored += 1,
        }
    }
}

/// The echo reply a host stack would send to an echo request for one of
/// `addresses`.
fn answer_echo(inner: &[u8], addresses: &[IpAddr]) -> Option<Vec<u8>> {
    let mut reply = inner.to_vec();
    match inner.first()? >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(inner).ok()?;
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            if ip.protocol() != ip_proto::ICMP
                || !addresses.contains(&dst.into())
                || ip.payload().first() != Some(&icmpv4::msg_type::ECHO_REQUEST)
            {
                return None;
            }
            let mut ip = Ipv4Packet::new_unchecked(&mut reply[..]);
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            ip.fill_checksum();
            let mut icmp = Icmpv4Packet::new_unchecked(ip.payload_mut());
            icmp.set_msg_type(icmpv4::msg_type::ECHO_REPLY);
            icmp.fill_checksum();
        }
        6 => {
            let ip = Ipv6Packet::new_checked(inner).ok()?;
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            if ip.next_header() != ip_proto::ICMPV6
                || !addresses.contains(&dst.into())
                || ip.payload().first() != Some(&icmpv6::msg_type::ECHO_REQUEST)
            {
                return None;
            }
            let mut ip = Ipv6Packet::new_unchecked(&mut reply[..]);
            ip.set_src_addr(dst);
            ip.set_dst_addr(src);
            let mut icmp = Icmpv6Packet::new_unchecked(&mut reply[40..]);
            icmp.set_msg_type(icmpv6::msg_type::ECHO_REPLY);
            icmp.fill_checksum(&dst, &src);
        }
        _ => return None,
    }
    Some(reply)
}
