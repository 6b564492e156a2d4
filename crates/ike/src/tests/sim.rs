//! A simulated network between two IKE cores of either version: a virtual clock, latency,
//! loss, duplication, reordering, partitions and an optional NAT in front of A. Both
//! versions' scenarios drive the same [`Pair`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use super::rng;
use crate::{ChildSaInfo, Config, Core, Event, Transmit};

/// What the simulation needs of an IKE core besides [`Core`]; both [`crate::Peer`] and
/// [`crate::v1::Peer`] have it.
pub(crate) trait Driven: Core {
    fn new(config: Config, seed: u64) -> Self;
    fn children(&self) -> Vec<ChildSaInfo> {
        self.child_sas().cloned().collect()
    }
    /// Exchanges remembered besides the SAs (IKEv1 quick modes).
    fn exchanges_held(&self) -> usize {
        0
    }
}

impl Driven for crate::Peer {
    fn new(config: Config, seed: u64) -> Self {
        Self::new(config, rng(seed))
    }
}

impl Driven for crate::v1::Peer {
    fn new(config: Config, seed: u64) -> Self {
        Self::new(config, rng(seed))
    }

    fn exchanges_held(&self) -> usize {
        self.quick_mode_count()
    }
}

pub(crate) struct Node<P> {
    pub peer: P,
    pub config: Config,
    pub addr: SocketAddr,
    pub events: Vec<Event>,
    pub errors: Vec<crate::Error>,
}

impl<P: Driven> Node<P> {
    pub fn new(config: Config, addr: &str, seed: u64) -> Self {
        Self {
            peer: P::new(config.clone(), seed),
            config,
            addr: addr.parse().unwrap(),
            events: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn children(&self) -> Vec<ChildSaInfo> {
        self.peer.children()
    }

    pub fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }

    pub fn ups(&self) -> usize {
        self.count(|e| matches!(e, Event::IkeSaUp { .. }))
    }

    pub fn downs(&self, reason: &crate::DownReason) -> usize {
        self.count(|e| matches!(e, Event::IkeSaDown { reason: r, .. } if r == reason))
    }

    /// The suite of the first IKE SA reported up.
    pub fn up_suite(&self) -> Option<crate::proposal::IkeSuite> {
        self.events.iter().find_map(|e| match e {
            Event::IkeSaUp { suite, .. } => Some(*suite),
            _ => None,
        })
    }

    /// Loses all state, as a SIGKILL and restart would.
    pub fn restart(&mut self, seed: u64) {
        self.peer = P::new(self.config.clone(), seed);
        self.events.clear();
    }
}

struct InFlight {
    at: Instant,
    to_b: bool,
    t: Transmit,
}

pub(crate) const A_ADDR: &str = "198.51.100.1:500";
pub(crate) const B_ADDR: &str = "203.0.113.1:500";

/// Two peers and the network between them.
pub(crate) struct Pair<P> {
    pub a: Node<P>,
    pub b: Node<P>,
    pub now: Instant,
    pub latency: Duration,
    /// Per mille chances that a datagram is lost, duplicated, or delayed past later ones.
    pub loss: u32,
    pub dup: u32,
    pub reorder: u32,
    /// Drop everything while set.
    pub partitioned: bool,
    /// A sits behind a NAT with this public address; its ports map to port + 20000.
    pub nat_a: Option<std::net::IpAddr>,
    net_rng: ChaCha20Rng,
    flight: Vec<InFlight>,
    /// Datagrams handed to a peer.
    pub delivered: usize,
    /// Every datagram A put on the wire, for tests that inspect them.
    pub sent_to_b: Vec<Vec<u8>>,
}

impl<P: Driven> Pair<P> {
    pub fn new(a: Config, b: Config, seed: u64) -> Self {
        Self {
            a: Node::new(a, A_ADDR, seed * 2 + 1),
            b: Node::new(b, B_ADDR, seed * 2 + 2),
            now: Instant::now(),
            latency: Duration::from_millis(10),
            loss: 0,
            dup: 0,
            reorder: 0,
            partitioned: false,
            nat_a: None,
            net_rng: ChaCha20Rng::seed_from_u64(seed ^ 0x5eed),
            flight: Vec::new(),
            delivered: 0,
            sent_to_b: Vec::new(),
        }
    }

    pub fn initiate(&mut self) {
        let (a, b) = (self.a.addr, self.b.addr);
        self.a.peer.initiate(self.now, a, b).unwrap();
    }

    /// A initiates; runs until both ends are established.
    pub fn establish(&mut self) {
        self.initiate();
        self.drive_bounded(100, Self::established);
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.net_rng.next_u32() % 1000 < per_mille
    }

    /// Moves transmits and events out of both peers.
    pub fn collect(&mut self) {
        for to_b in [true, false] {
            loop {
                let node = if to_b { &mut self.a } else { &mut self.b };
                let Some(mut t) = node.peer.poll_transmit() else {
                    break;
                };
                assert!(!t.payload.is_empty(), "empty datagram");
                if let (true, Some(public)) = (to_b, self.nat_a) {
                    t.local = SocketAddr::new(public, t.local.port() + 20000);
                }
                if to_b {
                    self.sent_to_b.push(t.payload.clone());
                }
                if self.partitioned || self.chance(self.loss) {
                    continue;
                }
                let mut at = self.now + self.latency;
                if self.chance(self.reorder) {
                    at += self.latency * 3;
                }
                if self.chance(self.dup) {
                    self.flight.push(InFlight {
                        at: at + self.latency,
                        to_b,
                        t: t.clone(),
                    });
                }
                self.flight.push(InFlight { at, to_b, t });
            }
        }
        for node in [&mut self.a, &mut self.b] {
            while let Some(e) = node.peer.poll_event() {
                node.events.push(e);
            }
        }
    }

    fn next_at(&self) -> Option<Instant> {
        [
            self.flight.iter().map(|f| f.at).min(),
            self.a.peer.poll_timeout(),
            self.b.peer.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Delivers what is due or advances the clock to the next thing that happens; false when
    /// nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.collect();
        let Some(next) = self.next_at() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.flight.drain(..).partition(|f| f.at <= now);
        self.flight = later;
        for mut f in due {
            if let (false, Some(public)) = (f.to_b, self.nat_a) {
                assert_eq!(f.t.remote.ip(), public, "datagram to the wrong host");
                f.t.remote = SocketAddr::new(self.a.addr.ip(), f.t.remote.port() - 20000);
            }
            let node = if f.to_b { &mut self.b } else { &mut self.a };
            assert_eq!(
                f.t.remote.ip(),
                node.addr.ip(),
                "datagram to the wrong host"
            );
            self.delivered += 1;
            if let Err(e) = node
                .peer
                .handle_datagram(now, f.t.remote, f.t.local, &f.t.payload)
            {
                node.errors.push(e);
            }
        }
        for node in [&mut self.a, &mut self.b] {
            if node.peer.poll_timeout().is_some_and(|t| t <= now) {
                node.peer.handle_timeout(now);
            }
        }
        self.collect();
        true
    }

    /// Runs until `done` holds; fails on livelock (more than `max_steps` steps) or silence.
    pub fn drive_bounded(&mut self, max_steps: usize, done: impl Fn(&Self) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            if !self.step() {
                assert!(
                    done(self),
                    "network went quiet before the condition held\nA {:?}\n{:?}\nB {:?}\n{:?}",
                    self.a.events,
                    self.a.errors,
                    self.b.events,
                    self.b.errors
                );
                return;
            }
        }
        panic!("livelock: condition not reached within {max_steps} steps");
    }

    /// Runs for a stretch of virtual time, bounded in steps.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..200_000 {
            self.collect();
            match self.next_at() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.now = end;
                    return;
                }
            }
        }
        panic!("livelock while running for {d:?}");
    }

    /// Loses every datagram currently on the wire.
    pub fn drop_in_flight(&mut self) {
        self.collect();
        self.flight.clear();
    }

    pub fn established(&self) -> bool {
        self.a.peer.is_established()
            && self.b.peer.is_established()
            && !self.a.children().is_empty()
            && !self.b.children().is_empty()
    }

    /// Each side holds exactly one CHILD SA, the mirror of the other's.
    pub fn mirrored(&self) -> bool {
        let (a, b) = (self.a.children(), self.b.children());
        a.len() == 1 && b.len() == 1 && a[0].spi_in == b[0].spi_out && a[0].spi_out == b[0].spi_in
    }

    /// Both sides hold the same CHILD SAs, mirrored, with the same keys.
    pub fn assert_children_agree(&self) {
        let a = self.a.children();
        let b = self.b.children();
        assert_eq!(a.len(), b.len(), "child count differs: {a:#?} / {b:#?}");
        for ca in &a {
            let cb = b
                .iter()
                .find(|cb| cb.spi_in == ca.spi_out)
                .unwrap_or_else(|| panic!("no peer SA for {:#x}", ca.spi_out));
            assert_eq!(cb.spi_out, ca.spi_in);
            assert_eq!(ca.suite, cb.suite);
            assert_eq!(ca.encr_out, cb.encr_in);
            assert_eq!(ca.integ_out, cb.integ_in);
            assert_eq!(ca.encr_in, cb.encr_out);
            assert_eq!(ca.integ_in, cb.integ_out);
            assert_ne!(ca.encr_in, ca.encr_out, "directions must differ");
            assert_eq!(ca.local_ts, cb.remote_ts);
            assert_eq!(ca.remote_ts, cb.local_ts);
            assert_eq!(ca.udp_encap, cb.udp_encap);
        }
    }

    /// The events each side reported account exactly for the SAs it still holds.
    pub fn assert_no_leak(&self) {
        for node in [&self.a, &self.b] {
            let mut live: Vec<u32> = Vec::new();
            for e in &node.events {
                match e {
                    Event::ChildSaEstablished(c) => live.push(c.spi_in),
                    Event::ChildSaDeleted { spi_in, .. } => {
                        let pos = live
                            .iter()
                            .position(|s| s == spi_in)
                            .unwrap_or_else(|| panic!("deleted unknown child {spi_in:#x}"));
                        live.remove(pos);
                    }
                    _ => {}
                }
            }
            let mut held: Vec<u32> = node.children().iter().map(|c| c.spi_in).collect();
            live.sort_unstable();
            held.sort_unstable();
            assert_eq!(live, held, "events and held CHILD SAs disagree");
            assert_eq!(node.peer.half_open_count(), 0, "half-open SA leaked");
        }
    }

    /// After everything is torn down, nothing is left anywhere.
    pub fn assert_empty(&self) {
        self.assert_no_leak();
        for node in [&self.a, &self.b] {
            assert_eq!(node.peer.ike_sa_count(), 0, "IKE SA leaked");
            assert!(node.children().is_empty(), "CHILD SA leaked");
            assert_eq!(node.peer.exchanges_held(), 0, "exchange leaked");
            assert_eq!(node.peer.poll_timeout(), None, "timer left running");
        }
    }

    /// Deletes everything from A's side and checks both ends are empty.
    pub fn teardown(&mut self) {
        let now = self.now;
        self.a.peer.delete(now);
        self.drive_bounded(1000, |p| {
            p.a.peer.ike_sa_count() == 0 && p.b.peer.ike_sa_count() == 0
        });
        // Let stray retransmissions settle.
        self.run_for(Duration::from_secs(600));
        self.assert_empty();
    }
}
