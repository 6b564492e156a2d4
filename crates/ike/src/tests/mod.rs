//! A simulated network between two [`Peer`]s with a virtual clock, loss, duplication and
//! reordering, and the scenarios every change must keep passing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use wire::ike::TrafficSelector;

use crate::proposal::{EspProposal, IkeProposal};
use crate::{ChildSaInfo, Config, DownReason, Dpd, DpdAction, Event, Identity, Peer, Transmit};

mod psk;
mod recovery;
mod retransmit;
mod scenarios;

pub(crate) fn lan(third: u8) -> TrafficSelector {
    TrafficSelector::range(
        format!("198.18.{third}.0").parse().unwrap(),
        format!("198.18.{third}.255").parse().unwrap(),
    )
}

pub(crate) const A_ADDR: &str = "198.51.100.1:500";
pub(crate) const B_ADDR: &str = "203.0.113.1:500";

/// Site A protects 198.18.1.0/24, site B 198.18.2.0/24.
pub(crate) fn config_a() -> Config {
    Config::new(b"correct horse battery staple", vec![lan(1)], vec![lan(2)])
}

pub(crate) fn config_b() -> Config {
    Config::new(b"correct horse battery staple", vec![lan(2)], vec![lan(1)])
}

pub(crate) fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

pub(crate) struct Node {
    pub peer: Peer,
    pub addr: SocketAddr,
    pub events: Vec<Event>,
    pub errors: Vec<crate::Error>,
}

impl Node {
    fn new(config: Config, addr: &str, seed: u64) -> Self {
        Self {
            peer: Peer::new(config, rng(seed)),
            addr: addr.parse().unwrap(),
            events: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub fn children(&self) -> Vec<ChildSaInfo> {
        self.peer.child_sas().cloned().collect()
    }

    pub fn count<F: Fn(&Event) -> bool>(&self, f: F) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }

    pub fn ups(&self) -> usize {
        self.count(|e| matches!(e, Event::IkeSaUp { .. }))
    }

    pub fn downs(&self, reason: &DownReason) -> usize {
        self.count(|e| matches!(e, Event::IkeSaDown { reason: r, .. } if r == reason))
    }
}

struct InFlight {
    at: Instant,
    to_b: bool,
    t: Transmit,
}

/// Two peers and the network between them.
pub(crate) struct Pair {
    pub a: Node,
    pub b: Node,
    pub now: Instant,
    pub latency: Duration,
    /// Probability (per mille) that a datagram is lost, duplicated, or delayed extra.
    pub loss: u32,
    pub dup: u32,
    pub reorder: u32,
    /// Drop everything while set.
    pub partitioned: bool,
    /// A sits behind a NAT with this public address: its ports are mapped to port + 20000.
    pub nat_a: Option<std::net::IpAddr>,
    net_rng: ChaCha20Rng,
    flight: Vec<InFlight>,
    pub delivered: usize,
}

impl Pair {
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
        }
    }

    pub fn default_pair(seed: u64) -> Self {
        Self::new(config_a(), config_b(), seed)
    }

    pub fn initiate(&mut self) {
        let (a, b) = (self.a.addr, self.b.addr);
        self.a.peer.initiate(self.now, a, b).unwrap();
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.net_rng.next_u32() % 1000 < per_mille
    }

    /// Moves transmits and events out of both peers.
    fn collect(&mut self) {
        for to_b in [true, false] {
            loop {
                let node = if to_b { &mut self.a } else { &mut self.b };
                let Some(mut t) = node.peer.poll_transmit() else {
                    break;
                };
                if let (true, Some(public)) = (to_b, self.nat_a) {
                    t.local = SocketAddr::new(public, t.local.port() + 20000);
                }
                assert!(!t.payload.is_empty(), "empty datagram");
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

    /// One step: deliver what is due or advance the clock to the next thing that happens.
    /// Returns false when nothing is left to happen.
    pub fn step(&mut self) -> bool {
        self.collect();
        let next_delivery = self.flight.iter().map(|f| f.at).min();
        let next_timer = [self.a.peer.poll_timeout(), self.b.peer.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
            return false;
        };
        self.now = self.now.max(next);
        let now = self.now;
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.flight.len() {
            if self.flight[i].at <= now {
                due.push(self.flight.remove(i));
            } else {
                i += 1;
            }
        }
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

    /// Runs until `done` holds, failing if that takes more than `max_steps` steps (livelock)
    /// or the network goes quiet first.
    pub fn drive_bounded(&mut self, max_steps: usize, done: impl Fn(&Self) -> bool) {
        for _ in 0..max_steps {
            if done(self) {
                return;
            }
            if !self.step() {
                assert!(done(self), "network went quiet before the condition held");
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
            let next = [
                self.flight.iter().map(|f| f.at).min(),
                self.a.peer.poll_timeout(),
                self.b.peer.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
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
            && self.a.peer.child_sas().count() >= 1
            && self.b.peer.child_sas().count() >= 1
    }

    /// Both sides hold the same CHILD SAs, mirrored.
    pub fn assert_children_agree(&self) {
        let a = self.a.children();
        let b = self.b.children();
        assert_eq!(a.len(), b.len(), "child count differs: {a:?} / {b:?}");
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
            let mut held: Vec<u32> = node.peer.child_sas().map(|c| c.spi_in).collect();
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
            assert_eq!(node.peer.child_sas().count(), 0, "CHILD SA leaked");
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

pub(crate) fn with_proposals(mut c: Config, ike: &str, esp: &str) -> Config {
    c.ike = vec![IkeProposal::parse(ike).unwrap()];
    c.esp = vec![EspProposal::parse(esp).unwrap()];
    c
}

pub(crate) fn with_dpd(mut c: Config, action: DpdAction) -> Config {
    c.dpd = Some(Dpd {
        delay: Duration::from_secs(30),
        timeout: Duration::from_secs(120),
        action,
    });
    c
}

pub(crate) fn with_ids(mut c: Config, local: &str, remote: &str) -> Config {
    c.local_id = Some(Identity::parse(local).unwrap());
    c.remote_id = Some(Identity::parse(remote).unwrap());
    c
}
