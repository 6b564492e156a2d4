//! DDNS by RFC 2136 UPDATE with TSIG against a real authoritative server (Knot DNS) in the lab.
//!
//! siteA runs the DDNS runner and publishes its `wan0` address as the AAAA record of
//! `www.example.jp`; siteB runs knotd with the zone and a TSIG key. What the server serves is
//! read with `dig` from siteA.

mod common;
mod ddns_support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::lab;
use ddns_support::{Knot, RunnerInNetns, entries, key_file};
use v6gate_lab::{LabOptions, Node, addr, dev};

const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";

#[test]
fn rfc2136_follows_the_device_and_never_publishes_a_deprecated_address() {
    let lab = lab(LabOptions::default());
    let knot = Knot::start(&lab, Node::SiteB, KEY);
    let server = format!("[{}]:53", addr::SITE_B_WAN6);
    let secret = key_file(&lab, "tsig", KEY);
    let config = format!(
        r#"
[[ddns]]
name = "www"
provider = "rfc2136"
hostname = "www.example.jp"
credentials_file = "{}"
address = {{ device = "{}", family = "ipv6", select = "stable" }}
server = "{server}"
"#,
        secret.display(),
        dev::WAN6
    );
    let state = lab.dir().join("state");

    // First run: the device's one address is published.
    let runner = RunnerInNetns::start(&lab, Node::SiteA, entries(&config), &state);
    let first = IpAddr::from(addr::SITE_A_WAN6);
    assert!(
        knot.wait_for(
            &lab,
            "www.example.jp",
            "AAAA",
            Some(first),
            Duration::from_secs(5)
        ),
        "{first} not published: {:?}\n{}",
        runner.status(),
        knot.log()
    );
    let serial = knot.serial(&lab);

    // Address events that do not change the choice send nothing.
    lab.exec_ok(
        Node::SiteA,
        &["ip", "-6", "addr", "add", "fd00:1::1/64", "dev", dev::WAN6],
    )
    .unwrap();
    lab.exec_ok(
        Node::SiteA,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:0:1::77/64",
            "dev",
            dev::WAN6,
            "preferred_lft",
            "0",
        ],
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        knot.serial(&lab),
        serial,
        "an unchanged choice sent an update"
    );
    assert_eq!(knot.lookup(&lab, "www.example.jp", "AAAA"), Some(first));

    // A restart with the same state sends nothing either.
    drop(runner);
    let runner = RunnerInNetns::start(&lab, Node::SiteA, entries(&config), &state);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        knot.serial(&lab),
        serial,
        "a restart sent the same address again"
    );
    assert_eq!(
        runner.status()[0].published,
        Some(first),
        "restored from the state file"
    );

    // The prefix moves: a new address appears (tentative during DAD), the old one is
    // deprecated. The record follows within 5 s and never shows a deprecated address.
    let moved: IpAddr = "2001:db8:0:1::99".parse().unwrap();
    let started = Instant::now();
    lab.exec_ok(
        Node::SiteA,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:0:1::99/64",
            "dev",
            dev::WAN6,
        ],
    )
    .unwrap();
    lab.exec_ok(
        Node::SiteA,
        &[
            "ip",
            "-6",
            "addr",
            "change",
            "2001:db8:0:1::1/64",
            "dev",
            dev::WAN6,
            "preferred_lft",
            "0",
        ],
    )
    .unwrap();
    let mut seen = Vec::new();
    let deadline = started + Duration::from_secs(5);
    while Instant::now() < deadline {
        let served = knot.lookup(&lab, "www.example.jp", "AAAA");
        if seen.last() != Some(&served) {
            seen.push(served);
        }
        if served == Some(moved) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed();
    assert_eq!(
        seen.last(),
        Some(&Some(moved)),
        "record after 5 s: {seen:?}; status {:?}\n{}",
        runner.status(),
        knot.log()
    );
    let never: IpAddr = "2001:db8:0:1::77".parse().unwrap();
    assert!(
        !seen.contains(&Some(never)),
        "published a deprecated address: {seen:?}"
    );
    assert!(knot.serial(&lab) > serial);
    eprintln!("record followed the device in {} ms", took.as_millis());
    drop(runner);
}
