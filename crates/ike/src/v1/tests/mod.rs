//! A simulated network between two IKEv1 [`Peer`]s with a virtual clock, loss, duplication,
//! reordering and an optional NAT in front of A, and the scenarios that drive it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use wire::ike::TrafficSelector;

use super::Peer;
use crate::proposal::{EspProposal, IkeProposal};
use crate::{ChildSaInfo, Config, Dpd, DpdAction, Event, Identity, Transmit};

mod psk;
mod recovery;
mod scenarios;

fn lan(third: u8) -> TrafficSelector {
    TrafficSelector::range(
        format!("198.18.{third}.0").parse().unwrap(),
        format!("198.18.{third}.255").parse().unwrap(),
    )
}

const A_ADDR: &str = "198.51.100.1:500";
const B_ADDR: &str = "203.0.113.1:500";
const PSK: &[u8] = b"correct horse battery staple";

/// The seed's S3 suite: aes128-sha1-modp1024, no PFS, 28800 s, DPD 5 s / 20 s restart.
fn s3(local: u8, remote: u8) -> Config {
    let mut c = Config::new(PSK, vec![lan(local)], vec![lan(remote)]);
    c.ike = vec![IkeProposal::parse("aes128-sha1-modp1024").unwrap()];
    c.esp = vec![EspProposal::parse("aes128-sha1").unwrap()];
    c.ike_lifetime = Duration::from_secs(28800);
    c.child_lifetime = Duration::from_secs(28800);
    c.dpd = Some(Dpd {
        delay: Duration::from_secs(5),
        timeout: Duration::from_secs(20),
        action: DpdAction::Restart,
    });
    c
}

/// aes256-sha256-modp2048 with PFS in quick mode.
fn modern(local: u8, remote: u8) -> Config {
    let mut c = s3(local, remote);
    c.ike = vec![IkeProposal::parse("aes256-sha256-modp2048").unwrap()];
    c.esp = vec![EspProposal::parse("aes256-sha256-modp2048").unwrap()];
    c.ike_lifetime = Duration::from_secs(3600);
    c.child_lifetime = Duration::from_secs(1800);
    c
}

fn with_ids(mut c: Config, local: &str, remote: &str) -> Config {
    c.local_id = Some(Identity::parse(local).unwrap());
    c.remote_id = Some(Identity::parse(remote).unwrap());
    c
}

fn rng(seed: u64) -> Box<ChaCha20Rng> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

struct Node {
    peer: Peer,
    config: Config,
    addr: SocketAddr,
    events: Vec<Event>,
    errors: Vec<crate::Error>,
}

impl Node {
    fn new(config: Config, addr: &str, seed: u64) -> Self {
        Self {
            peer: Peer::new(config.clone(), rng(seed)),
            config,
            addr: addr.parse().unwrap(),
            events: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn children(&self) -> Vec<ChildSaInfo> {
        self.peer.child_sas().cloned().collect()
    }

    fn count(&self, f: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|e| f(e)).count()
    }

    fn ups(&self) -> usize {
        self.count(|e| matches!(e, Event::IkeSaUp { .. }))
    }

    /// Loses all state, as a SIGKILL and restart would.
    fn restart(&mut self, seed: u64) {
        self.peer = Peer::new(self.config.clone(), rng(seed));
        self.events.clear();
    }
}

struct InFlight {
    at: Instant,
    to_b: bool,
    t: Transmit,
}

struct Pair {
    a: Node,
    b: Node,
    now: Instant,
    latency: Duration,
    /// Per mille chances that a datagram is lost, duplicated, or delayed past later ones.
    loss: u32,
    dup: u32,
    reorder: u32,
    partitioned: bool,
    /// A sits behind a NAT with this public address; its ports map to port + 20000.
    nat_a: Option<std::net::IpAddr>,
    net_rng: ChaCha20Rng,
    flight: Vec<InFlight>,
    /// Every datagram put on the wire, by direction, for tests that inspect them.
    sent_to_b: Vec<Vec<u8>>,
}

impl Pair {
    fn new(a: Config, b: Config, seed: u64) -> Self {
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
            sent_to_b: Vec::new(),
        }
    }

    fn initiate(&mut self) {
        let (a, b) = (self.a.addr, self.b.addr);
        self.a.peer.initiate(self.now, a, b).unwrap();
    }

    fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.net_rng.next_u32() % 1000 < per_mille
    }

    fn collect(&mut self) {
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

    /// Delivers what is due or advances the clock to the next thing that happens; false when
    /// nothing is left to happen.
    fn step(&mut self) -> bool {
        self.collect();
        let next = [
            self.flight.iter().map(|f| f.at).min(),
            self.a.peer.poll_timeout(),
            self.b.peer.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some(next) = next else {
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
    fn drive_bounded(&mut self, max_steps: usize, done: impl Fn(&Self) -> bool) {
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
    fn run_for(&mut self, d: Duration) {
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

    fn established(&self) -> bool {
        self.a.peer.is_established()
            && self.b.peer.is_established()
            && self.a.peer.child_sas().count() >= 1
            && self.b.peer.child_sas().count() >= 1
    }

    /// Each side holds exactly one CHILD SA, the mirror of the other's.
    fn mirrored(&self) -> bool {
        let (a, b) = (self.a.children(), self.b.children());
        a.len() == 1 && b.len() == 1 && a[0].spi_in == b[0].spi_out && a[0].spi_out == b[0].spi_in
    }

    /// Both sides hold the same CHILD SAs, mirrored, with the same keys.
    fn assert_children_agree(&self) {
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
    fn assert_no_leak(&self) {
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

    /// Deletes everything from A's side; afterwards nothing is left anywhere.
    fn teardown(&mut self) {
        let now = self.now;
        self.a.peer.delete(now);
        self.drive_bounded(1000, |p| {
            p.a.peer.ike_sa_count() == 0 && p.b.peer.ike_sa_count() == 0
        });
        self.run_for(Duration::from_secs(600));
        self.assert_no_leak();
        for node in [&self.a, &self.b] {
            assert_eq!(node.peer.ike_sa_count(), 0, "ISAKMP SA leaked");
            assert_eq!(node.peer.child_sas().count(), 0, "CHILD SA leaked");
            assert_eq!(node.peer.quick_mode_count(), 0, "quick mode leaked");
            assert_eq!(node.peer.poll_timeout(), None, "timer left running");
        }
    }
}
