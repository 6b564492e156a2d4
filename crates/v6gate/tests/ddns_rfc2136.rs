//! DDNS by RFC 2136 UPDATE with TSIG against a real authoritative server (Knot DNS) in the lab.
//!
//! siteA runs the DDNS runner and publishes its `wan0` address as the AAAA record of
//! `www.example.jp`; siteB runs knotd with the zone and a TSIG key. What the server serves is
//! read with `dig` from siteA.

mod common;
mod ddns_support;

use std::net::IpAddr;
use std::time::Duration;

use common::lab;
use ddns_support::steps::{
    DEPRECATED, MOVED, add_addresses_not_chosen, move_and_follow, rfc2136_entry,
};
use ddns_support::{Knot, RunnerInNetns, entries, key_file};
use v6gate_lab::{LabOptions, Node, addr};

const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";

#[test]
fn rfc2136_follows_the_device_and_never_publishes_a_deprecated_address() {
    let lab = lab(LabOptions::default());
    let knot = Knot::start(&lab, Node::SiteB, KEY);
    let secret = key_file(&lab, "tsig", KEY);
    let config = rfc2136_entry("www", "www.example.jp", &secret);
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
    add_addresses_not_chosen(&lab);
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
    let moved: IpAddr = MOVED.parse().unwrap();
    let (seen, took) = move_and_follow(&lab, &knot);
    assert_eq!(
        seen.last(),
        Some(&Some(moved)),
        "record after 5 s: {seen:?}; status {:?}\n{}",
        runner.status(),
        knot.log()
    );
    let never: IpAddr = DEPRECATED.parse().unwrap();
    assert!(
        !seen.contains(&Some(never)),
        "published a deprecated address: {seen:?}"
    );
    assert!(knot.serial(&lab) > serial);
    eprintln!("record followed the device in {} ms", took.as_millis());
    drop(runner);
}
