//! Several paths per tunnel (scenario S4): an IPv6 "IPoE" primary and an IPv4 "PPPoE" backup
//! between the two sites. Traffic keeps flowing when the primary fails, by link-down or by a
//! silent drop that leaves the link up, and returns to the primary once it is healthy again.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use v6gate::lab::multipath::{Failure, Timers, TwoPaths};
use v6gate::lab::{Node, Site, is_root};

const BINARY: &str = env!("CARGO_BIN_EXE_v6gate");

fn failover_and_back(failure: Failure) {
    assert!(
        is_root(),
        "end-to-end tests build network namespaces and TUN devices: run them as root"
    );
    let label = failure.as_str();
    let lab = TwoPaths::start(Path::new(BINARY), Timers::default()).expect("two-path lab");
    assert!(
        lab.wait_for_active("ipoe", Duration::from_secs(10))
            .is_some(),
        "the cheaper path never became active: {}",
        lab.a.log()
    );
    assert!(
        lab.lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 3),
        "no traffic before the failure"
    );
    // 800 packets at 10 ms: 8 s of traffic, the failure 2 s in, while a TCP transfer runs.
    let bytes = 64 * 1024 * 1024;
    let run = lab.run_through_failure(failure, bytes);
    assert!(
        run.switched.is_some(),
        "{label}: traffic did not move to the backup path: {}",
        lab.a.log()
    );
    let pings = run.pings;
    eprintln!(
        "{label}: {} pings sent, {} received: outage about {} ms",
        pings.sent,
        pings.received,
        pings.outage_ms()
    );
    assert!(pings.sent > 0, "{label}: the ping flood did not run");
    assert!(
        pings.outage_ms() <= 1500,
        "{label}: outage {} ms is longer than detection allows",
        pings.outage_ms()
    );
    let transfer = run.transfer;
    let done = transfer.expect("the TCP transfer failed across the failover");
    assert_eq!(
        done.bytes, bytes,
        "{label}: the TCP transfer did not complete"
    );

    lab.restore(failure).expect("restoring the primary");
    // up_after 10 x 100 ms plus the 2 s hold-down since the switch.
    assert!(
        lab.wait_for_active("ipoe", Duration::from_secs(10))
            .is_some(),
        "{label}: traffic did not return to the primary: {}",
        lab.a.log()
    );
    assert!(lab.lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 3));
    let status = lab.a.tunnel_status("ab").expect("status");
    let paths = status["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 2);
    assert!(paths.iter().all(|p| p["state"] == "up"), "{status}");
    assert!(
        lab.a
            .log()
            .contains("traffic moved from path ipoe to path pppoe")
    );
    let TwoPaths { lab: _lab, a, b } = lab;
    a.stop().expect("siteA stops cleanly");
    b.stop().expect("siteB stops cleanly");
}

#[test]
fn silent_drop_on_the_primary_fails_over_and_back() {
    failover_and_back(Failure::SilentDrop);
}

#[test]
fn link_down_on_the_primary_fails_over_and_back() {
    failover_and_back(Failure::LinkDown);
}
