//! IKEv1 interoperability with strongSwan's charon over real UDP, inside network namespaces.
//!
//! Needs root, iproute2 and strongSwan (`/usr/lib/ipsec/charon`, `swanctl`, the
//! kernel-libipsec plugin), all of which `scripts/test` installs; it runs in the normal test
//! suite.
//!
//! Two namespaces are joined by a veth pair (198.51.100.0/24). charon runs in one with a
//! `version = 1` main mode PSK connection; this test binary is re-run inside the other as a
//! [`ike::v1::Peer`] on UDP 500/4500 with ESP sealed and opened by the dataplane's SAs.
//! charon forces UDP encapsulation and does ESP in userspace (kernel-libipsec), so the kernel
//! needs no XFRM. Pings cross the tunnel in both directions: ours to 198.18.2.1 behind
//! charon, and charon's namespace pinging 198.18.1.1, which this side answers through ESP.
//! Each answer only arrives if main mode, quick mode, KEYMAT and ESP agree byte for byte.
//!
//! Suites: the seed's S3 set exactly (aes128-sha1-modp1024, no PFS, 28800 s, DPD 5 s / 20 s
//! restart) and a modern one (aes256-sha256-modp2048 with PFS in quick mode). Each runs with
//! us initiating (ping, CHILD rekey from our side, ping, delete) and with charon initiating
//! (ping both ways, CHILD rekey from charon's side, ping, charon terminates).

mod charon;

use std::process::Command;
use std::time::{Duration, Instant};

use charon::endpoint::{self, Rerun, rerun, sas, say};
use charon::*;
use ike::proposal::{EspProposal, IkeProposal};
use ike::v1::Peer;
use ike::{Config, Dpd, DpdAction, Event};
use rand_core::OsRng;
use wire::ike::TrafficSelector;

const TEST: &str = "strongswan_ikev1_interop";
const ROLE: &str = "V6GATE_IKEV1_INTEROP_ROLE";
const SUITE: &str = "V6GATE_IKEV1_INTEROP_SUITE";

struct Case {
    name: &'static str,
    ike: &'static str,
    esp: &'static str,
    /// charon's ESP proposal; a DH group there means PFS.
    charon_esp: &'static str,
    lifetime: u64,
    /// Identities: the addresses (as the seed's conn) or FQDNs.
    fqdn: bool,
}

const CASES: [Case; 2] = [
    Case {
        name: "s3",
        ike: "aes128-sha1-modp1024",
        esp: "aes128-sha1",
        charon_esp: "aes128-sha1",
        lifetime: 28800,
        fqdn: false,
    },
    Case {
        name: "modern",
        ike: "aes256-sha256-modp2048",
        esp: "aes256-sha256-modp2048",
        charon_esp: "aes256-sha256-modp2048",
        lifetime: 3600,
        fqdn: true,
    },
];

#[test]
fn strongswan_ikev1_interop() {
    if let Ok(role) = std::env::var(ROLE) {
        let idx: usize = std::env::var(SUITE).unwrap().parse().unwrap();
        match role.as_str() {
            "initiator" => initiator(&CASES[idx]),
            "responder" => responder(&CASES[idx]),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let lab = Lab::new("v6gik1");
    for (i, case) in CASES.iter().enumerate() {
        lab.configure(case);
        let t = Instant::now();
        let out = rerun(&lab.ns_a, TEST, false, &role("initiator", i))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}: we initiate: failed:\n{stdout}\n{stderr}\n--- charon log ---\n{}",
            case.name,
            lab.log_tail()
        );
        assert_eq!(
            stdout.matches("echo reply").count(),
            2,
            "{}: pings missing:\n{stdout}",
            case.name
        );
        println!("{}: we initiate: ok in {:?}", case.name, t.elapsed());
        let t = Instant::now();
        lab.charon_initiates(i);
        println!("{}: charon initiates: ok in {:?}", case.name, t.elapsed());
    }
}

impl Lab {
    fn configure(&self, case: &Case) {
        let (local_id, remote_id) = if case.fqdn {
            ("fqdn:b.example", "fqdn:a.example")
        } else {
            (THEM, US)
        };
        let conf = format!(
            "connections {{\n  v6gate {{\n    version = 1\n    aggressive = no\n    local_addrs = {THEM}\n    remote_addrs = {US}\n    proposals = {ike}\n    encap = yes\n    dpd_delay = 5s\n    dpd_timeout = 20s\n    reauth_time = {life}s\n    rekey_time = 0s\n    local {{\n      auth = psk\n      id = {local_id}\n    }}\n    remote {{\n      auth = psk\n      id = {remote_id}\n    }}\n    children {{\n      net {{\n        local_ts = 198.18.2.0/24\n        remote_ts = 198.18.1.0/24\n        esp_proposals = {esp}\n        mode = tunnel\n        rekey_time = {life}s\n        life_time = {life}s\n        dpd_action = restart\n      }}\n    }}\n  }}\n}}\nsecrets {{\n  ike-1 {{\n    id-1 = {local_id}\n    id-2 = {remote_id}\n    secret = \"{PSK}\"\n  }}\n}}\n",
            ike = case.ike,
            esp = case.charon_esp,
            life = case.lifetime,
        );
        self.load(&conf);
    }

    /// Runs our responder in the first namespace and has charon initiate to it, rekey the
    /// CHILD SA, and terminate.
    fn charon_initiates(&self, suite: usize) {
        let mut responder = Rerun::spawn(rerun(&self.ns_a, TEST, false, &role("responder", suite)));
        let log = || self.log_tail();
        let fail = |what: &str, seen: &str| -> ! {
            panic!("{what}:\n{seen}\n--- charon log ---\n{}", self.log_tail())
        };
        responder.expect("responder ready", log);
        let init = self.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
        if !init.status.success() {
            fail(
                &format!(
                    "charon could not initiate: {}",
                    String::from_utf8_lossy(&init.stdout)
                ),
                &responder.seen,
            );
        }
        responder.expect("answering pings", log);
        // charon's side pings ours through the tunnel; our responder answers through ESP.
        let ping = Command::new("ip")
            .args([
                "netns", "exec", &self.ns_b, "ping", "-c", "3", "-i", "0.2", "-W", "2",
            ])
            .args(["-I", THEIR_HOST, OUR_HOST])
            .output()
            .unwrap();
        if !ping.status.success() {
            fail(
                &format!(
                    "ping from charon's side: {}",
                    String::from_utf8_lossy(&ping.stdout)
                ),
                &responder.seen,
            );
        }
        let out = self.swanctl(&["--rekey", "--child", "net"]);
        assert!(out.status.success(), "child rekey: {}", self.log_tail());
        responder.expect("child rekeyed by charon", log);
        let term = self.swanctl(&["--terminate", "--ike", "v6gate", "--timeout", "20"]);
        assert!(
            term.status.success(),
            "terminate failed: {}",
            self.log_tail()
        );
        let status = responder.finish();
        let seen = &responder.seen;
        if !status.success() {
            fail("responder failed", seen);
        }
        assert_eq!(
            seen.matches("echo reply").count(),
            2,
            "pings missing:\n{seen}"
        );
        assert!(seen.matches("answered echo request").count() >= 3, "{seen}");
    }
}

// ---- our side, running inside the first namespace -----------------------------------------

type Endpoint = endpoint::Endpoint<Peer>;

const DATA: &[u8] = b"v6gate ikev1 interop";

/// The environment of a re-run in `role` for case `case`.
fn role(role: &str, case: usize) -> [(&'static str, String); 2] {
    [(ROLE, role.to_owned()), (SUITE, case.to_string())]
}

fn config(case: &Case) -> Config {
    let ts = |s: &str, e: &str| TrafficSelector::range(s.parse().unwrap(), e.parse().unwrap());
    let mut config = Config::new(
        PSK.as_bytes(),
        vec![ts("198.18.1.0", "198.18.1.255")],
        vec![ts("198.18.2.0", "198.18.2.255")],
    );
    config.ike = vec![IkeProposal::parse(case.ike).unwrap()];
    config.esp = vec![EspProposal::parse(case.esp).unwrap()];
    config.ike_lifetime = Duration::from_secs(case.lifetime);
    config.child_lifetime = Duration::from_secs(case.lifetime);
    config.dpd = Some(Dpd {
        delay: Duration::from_secs(5),
        timeout: Duration::from_secs(20),
        action: DpdAction::Restart,
    });
    if case.fqdn {
        config.local_id = Some(ike::Identity::parse("fqdn:a.example").unwrap());
        config.remote_id = Some(ike::Identity::parse("fqdn:b.example").unwrap());
    }
    config
}

fn initiator(case: &Case) {
    let mut ep = Endpoint::new(Peer::new(config(case), Box::new(OsRng)), DATA);
    let child = ep.initiate();
    assert_eq!(child.suite.dh.is_some(), case.esp.contains("modp"));
    ep.ping(&child, 1);

    let old = child.spi_in;
    let child = ep.rekey(&child);
    assert_eq!(child.replaces, Some(old));
    ep.ping(&child, 2);

    let now = ep.now();
    ep.peer.delete(now);
    ep.flush();
    assert_eq!(ep.peer.ike_sa_count(), 0);
    assert_eq!(ep.peer.child_sas().count(), 0);
}

/// charon initiates; we answer, ping, answer charon's pings, follow charon's CHILD rekey,
/// ping through the new SA, and wait for charon to delete everything.
fn responder(case: &Case) {
    let mut ep = Endpoint::new(Peer::new(config(case), Box::new(OsRng)), DATA);
    say("responder ready");
    let child = ep.await_child();
    ep.ping(&child, 11);
    ep.answering = Some(sas(&child));
    say("answering pings");
    // charon keeps the SA it rekeyed until that one expires, so the new one is found by what
    // it replaces rather than by the old one going away.
    let old = child.spi_in;
    ep.drive(30, |ev| {
        ev.iter()
            .any(|e| matches!(e, Event::ChildSaEstablished(c) if c.replaces == Some(old)))
    });
    ep.answering = None;
    let child = ep
        .peer
        .child_sas()
        .find(|c| c.replaces == Some(old))
        .unwrap()
        .clone();
    ep.ping(&child, 12);
    say("child rekeyed by charon");
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaDown { .. }))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while ep.peer.child_sas().count() > 0 {
        assert!(Instant::now() < deadline, "CHILD SA never deleted");
        ep.turn();
    }
    assert_eq!(ep.peer.ike_sa_count(), 0);
}
