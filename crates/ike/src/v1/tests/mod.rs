//! The IKEv1 scenarios, on the simulated network the IKEv2 ones use ([`crate::tests::sim`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Peer;
use crate::proposal::{EspProposal, IkeProposal};
use crate::tests::sim::{self, A_ADDR, B_ADDR};
use crate::tests::{lan, rng};
use crate::{Config, Dpd, DpdAction, Event, Identity};

mod psk;
mod recovery;
mod scenarios;

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

type Pair = sim::Pair<Peer>;
