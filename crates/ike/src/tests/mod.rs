//! The IKEv2 scenarios every change must keep passing, on the simulated network of
//! [`sim`], which the IKEv1 scenarios share.

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use wire::ike::TrafficSelector;

use crate::proposal::{EspProposal, IkeProposal};
use crate::{ChildSaInfo, Config, DownReason, Dpd, DpdAction, Event, Identity, Peer};

mod psk;
mod recovery;
mod retransmit;
mod scenarios;
pub(crate) mod sim;

pub(crate) fn lan(third: u8) -> TrafficSelector {
    TrafficSelector::range(
        format!("198.18.{third}.0").parse().unwrap(),
        format!("198.18.{third}.255").parse().unwrap(),
    )
}

pub(crate) use sim::{A_ADDR, B_ADDR};

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

pub(crate) type Node = sim::Node<Peer>;
pub(crate) type Pair = sim::Pair<Peer>;

impl Pair {
    pub fn default_pair(seed: u64) -> Self {
        Self::new(config_a(), config_b(), seed)
    }

    /// A (B when `from_b`) rekeys its one CHILD SA; runs at most `max_steps` until each end
    /// holds exactly one CHILD SA and the rekeying end's is new. Returns the old one as the
    /// rekeying end saw it.
    pub fn rekey_child(&mut self, from_b: bool, max_steps: usize) -> ChildSaInfo {
        let now = self.now;
        let node = if from_b { &mut self.b } else { &mut self.a };
        let old = node.children()[0].clone();
        node.peer.rekey_child(now, old.spi_in).unwrap();
        self.drive_bounded(max_steps, |p| {
            let (us, them) = if from_b { (&p.b, &p.a) } else { (&p.a, &p.b) };
            us.children().len() == 1
                && us.children()[0].spi_in != old.spi_in
                && them.children().len() == 1
        });
        old
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
