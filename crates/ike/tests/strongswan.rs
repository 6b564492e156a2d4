//! Interoperability with strongSwan's charon over real UDP, inside network namespaces.
//!
//! Needs root, iproute2 and strongSwan (`/usr/lib/ipsec/charon`, `swanctl`); run with
//! `cargo test -p ike --features interop --test strongswan -- --ignored --nocapture`.
//!
//! The test builds two namespaces joined by a veth pair (198.51.100.0/24), starts charon as
//! the responder in one, and re-runs this test binary inside the other as the initiator: a
//! [`Peer`] on UDP 500/4500 with ESP sealed and opened by the dataplane's SAs. charon is told
//! to force UDP encapsulation and to do ESP in userspace (kernel-libipsec, so the kernel needs
//! no XFRM support): it decrypts our ESP-in-UDP, its namespace answers a ping to 198.18.2.1,
//! and the reply comes back encrypted. The echo reply only arrives if IKE, key derivation and
//! ESP all agree byte for byte. Each suite is pinged after establishment, after a CHILD SA
//! rekey (with PFS where the ESP proposal names a group), and after an IKE SA rekey followed
//! by another CHILD rekey, then deleted. Namespaces, config files and charon are
//! removed by a drop guard, also on panic.

#![cfg(feature = "interop")]

mod charon;

use std::time::{Duration, Instant};

use charon::endpoint::{self, Rerun, rerun, say};
use charon::*;
use ike::proposal::{EspProposal, IkeProposal};
use ike::{Config, Event, Peer};
use rand_core::OsRng;
use wire::ike::TrafficSelector;

const TEST: &str = "strongswan_interop";
const ROLE: &str = "V6GATE_IKE_INTEROP_ROLE";
const SUITE: &str = "V6GATE_IKE_INTEROP_SUITE";

/// (our IKE proposal, charon's IKE proposal, ESP proposal), in the syntax both share. The
/// last one lists the groups in opposite orders, so whichever side responds answers the
/// other's first KE with INVALID_KE_PAYLOAD.
const SUITES: [(&str, &str, &str); 6] = [
    (
        "aes128gcm16-prfsha256-ecp256",
        "aes128gcm16-prfsha256-ecp256",
        "aes128gcm16",
    ),
    (
        "aes256gcm16-prfsha384-ecp384",
        "aes256gcm16-prfsha384-ecp384",
        "aes256gcm16",
    ),
    (
        "aes256-sha256-modp2048",
        "aes256-sha256-modp2048",
        "aes256-sha256",
    ),
    (
        "aes128-sha1-modp1024",
        "aes128-sha1-modp1024",
        "aes128-sha1",
    ),
    (
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16-prfsha256-x25519",
        "aes128gcm16-ecp256",
    ),
    (
        "aes128gcm16-prfsha256-ecp256-ecp384",
        "aes128gcm16-prfsha256-ecp384-ecp256",
        "aes128gcm16",
    ),
];

#[test]
#[ignore = "needs root, iproute2 and strongSwan; see the module documentation"]
fn strongswan_interop() {
    if let Ok(role) = std::env::var(ROLE) {
        let idx: usize = std::env::var(SUITE).unwrap().parse().unwrap();
        let (ike, _, esp) = SUITES[idx];
        match role.as_str() {
            "initiator" => initiator(ike, esp),
            "responder" => responder(ike, esp),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let lab = Lab::new("v6gike");
    for (i, (ike, theirs, esp)) in SUITES.iter().enumerate() {
        lab.configure(theirs, esp);
        let out = rerun(&lab.ns_a, TEST, true, &role("initiator", i))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "suite {ike} / {esp} failed:\n{stdout}\n{stderr}\n--- charon log ---\n{}",
            lab.log_tail()
        );
        assert_eq!(
            stdout.matches("echo reply").count(),
            3,
            "{ike} / {esp}: pings missing:\n{stdout}"
        );
        if ike != theirs {
            // charon prefers its own first group and answered our KE with INVALID_KE_PAYLOAD.
            assert!(
                stdout.contains("dh: Ecp384"),
                "no retry with charon's group:\n{stdout}"
            );
        }
        println!("{ike} / {esp}: we initiate: ok");
        lab.charon_initiates(i);
        println!("{ike} / {esp}: charon initiates: ok");
    }
}

impl Lab {
    fn configure(&self, ike: &str, esp: &str) {
        let conf = format!(
            "connections {{\n  v6gate {{\n    version = 2\n    local_addrs = {THEM}\n    remote_addrs = {US}\n    proposals = {ike}\n    encap = yes\n    local {{\n      auth = psk\n      id = fqdn:b.example\n    }}\n    remote {{\n      auth = psk\n      id = fqdn:a.example\n    }}\n    children {{\n      net {{\n        local_ts = 198.18.2.0/24\n        remote_ts = 198.18.1.0/24\n        esp_proposals = {esp}\n        mode = tunnel\n      }}\n    }}\n  }}\n}}\nsecrets {{\n  ike-1 {{\n    id-a = fqdn:a.example\n    id-b = fqdn:b.example\n    secret = \"{PSK}\"\n  }}\n}}\n"
        );
        self.load(&conf);
    }

    /// Runs our responder in the first namespace and has charon initiate to it, then
    /// terminate the IKE SA once the responder has pinged and rekeyed.
    fn charon_initiates(&self, suite: usize) {
        let mut responder = Rerun::spawn(rerun(&self.ns_a, TEST, true, &role("responder", suite)));
        let log = || self.log_tail();
        responder.expect("responder ready", log);
        let init = self.swanctl(&["--initiate", "--child", "net", "--timeout", "20"]);
        assert!(
            init.status.success(),
            "charon could not initiate:\n{}\n{}\n--- charon log ---\n{}",
            String::from_utf8_lossy(&init.stdout),
            responder.seen,
            self.log_tail()
        );
        // charon rekeys the CHILD SA and the IKE SA towards our responder.
        responder.expect("awaiting charon rekeys", log);
        let out = self.swanctl(&["--rekey", "--child", "net"]);
        assert!(out.status.success(), "child rekey: {}", self.log_tail());
        responder.expect("child rekeyed by charon", log);
        let out = self.swanctl(&["--rekey", "--ike", "v6gate"]);
        assert!(out.status.success(), "IKE rekey: {}", self.log_tail());
        responder.expect("awaiting delete", log);
        let term = self.swanctl(&["--terminate", "--ike", "v6gate", "--timeout", "20"]);
        assert!(
            term.status.success(),
            "terminate failed: {}",
            self.log_tail()
        );
        let status = responder.finish();
        let seen = &responder.seen;
        assert!(
            status.success(),
            "responder failed:\n{seen}\n--- charon log ---\n{}",
            self.log_tail()
        );
        if SUITES[suite].0 != SUITES[suite].1 {
            // We prefer our first group and answered charon's KE with INVALID_KE_PAYLOAD.
            assert!(
                seen.contains("dh: Ecp256"),
                "no retry with our group:\n{seen}"
            );
        }
        assert_eq!(
            seen.matches("echo reply").count(),
            4,
            "pings missing:\n{seen}"
        );
    }
}

// ---- our side, running inside the first namespace -----------------------------------------

type Endpoint = endpoint::Endpoint<Peer>;

const DATA: &[u8] = b"v6gate interop";

/// The environment of a re-run in `role` for suite `suite`.
fn role(role: &str, suite: usize) -> [(&'static str, String); 2] {
    [(ROLE, role.to_owned()), (SUITE, suite.to_string())]
}

fn initiator(ike: &str, esp: &str) {
    let mut ep = Endpoint::new(Peer::new(config(ike, esp), Box::new(OsRng)), DATA);
    let child = ep.initiate();
    ep.ping(&child, 1);

    // CHILD SA rekey (with PFS when the ESP proposal names a group).
    let old = child.spi_in;
    let child = ep.rekey(&child);
    assert_eq!(child.replaces, Some(old));
    ep.ping(&child, 2);

    // IKE SA rekey; the CHILD SA stays, and a further CHILD rekey runs over the new IKE SA.
    let now = ep.now();
    ep.peer.rekey_ike(now).unwrap();
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaRekeyed { .. }))
    });
    ep.drive(30, |_| true);
    let child = ep.rekey(&child);
    ep.ping(&child, 3);

    let now = ep.now();
    ep.peer.delete(now);
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaDown { .. }))
    });
    assert_eq!(ep.peer.ike_sa_count(), 0);
}

fn config(ike: &str, esp: &str) -> Config {
    let ts = |s: &str, e: &str| TrafficSelector::range(s.parse().unwrap(), e.parse().unwrap());
    let mut config = Config::new(
        PSK.as_bytes(),
        vec![ts("198.18.1.0", "198.18.1.255")],
        vec![ts("198.18.2.0", "198.18.2.255")],
    );
    config.ike = vec![IkeProposal::parse(ike).unwrap()];
    config.esp = vec![EspProposal::parse(esp).unwrap()];
    config.local_id = Some(ike::Identity::parse("fqdn:a.example").unwrap());
    config.remote_id = Some(ike::Identity::parse("fqdn:b.example").unwrap());
    config
}

/// charon initiates; we answer, ping through the CHILD SA, rekey it from our side, ping
/// again, and wait for charon to delete the IKE SA.
fn responder(ike: &str, esp: &str) {
    let mut ep = Endpoint::new(Peer::new(config(ike, esp), Box::new(OsRng)), DATA);
    say("responder ready");
    let child = ep.await_child();
    ep.ping(&child, 11);
    let child = ep.rekey(&child);
    ep.ping(&child, 12);

    say("awaiting charon rekeys");
    let old = child.spi_in;
    let child = ep.await_deleted(old);
    assert_eq!(child.replaces, Some(old));
    ep.ping(&child, 13);
    say("child rekeyed by charon");
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaRekeyed { .. }))
    });
    // The old IKE SA goes once charon deletes it; the CHILD SA lives on under the new one.
    let start = Instant::now();
    while ep.peer.ike_sa_count() > 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "old IKE SA never deleted"
        );
        ep.receive(Duration::from_millis(50));
        ep.flush();
    }
    assert_eq!(ep.peer.child_sas().next().unwrap().spi_in, child.spi_in);
    ep.ping(&child, 14);
    say("awaiting delete");
    ep.drive(30, |ev| {
        ev.iter().any(|e| matches!(e, Event::IkeSaDown { .. }))
    });
    assert_eq!(ep.peer.ike_sa_count(), 0);
    assert_eq!(ep.peer.child_sas().count(), 0);
}
