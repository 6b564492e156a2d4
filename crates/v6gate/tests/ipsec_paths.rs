//! An ipsec tunnel over two paths between two v6gate gateways (scenario S4): one IKE SA per
//! path, both kept up, traffic on the IPv6 "IPoE" primary; a silent drop on the primary moves
//! traffic to the IPv4 "PPPoE" backup within the probes' detection time, with no
//! negotiation, and it returns once the primary is healthy again.

use std::net::IpAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use v6gate_lab::multipath::{Failure, Kind, Timers, TwoPaths};
use v6gate_lab::{Gateway, Node, Site, is_root};

const BINARY: &str = env!("CARGO_BIN_EXE_v6gate");

/// Site `site`'s two-path ipsec tunnel "ab", with its key in a 0600 file beside it.
fn start(timers: Timers) -> TwoPaths {
    TwoPaths::start_kind(Path::new(BINARY), Kind::Ipsec, timers).expect("two-path ipsec lab")
}

fn wait_both_paths_up(gateway: &Gateway, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        if let Ok(status) = gateway.tunnel_status("ab") {
            let up = status["paths"]
                .as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["state"] == "up"));
            last = status;
            if up && last["state"] == "up" {
                return last;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "both paths never came up in {}: {last}\n--- log ---\n{}",
        gateway.node(),
        gateway.log()
    );
}

#[test]
fn silent_drop_on_the_primary_fails_over_to_the_second_ike_sa_and_back() {
    assert!(
        is_root(),
        "end-to-end tests build network namespaces and TUN devices: run them as root"
    );
    let timers = Timers::default();
    let lab = start(timers);
    wait_both_paths_up(&lab.a, Duration::from_secs(20));
    wait_both_paths_up(&lab.b, Duration::from_secs(5));
    assert!(
        lab.wait_for_active("ipoe", Duration::from_secs(10))
            .is_some(),
        "the cheaper path never became active: {}",
        lab.a.log()
    );
    // One IKE SA per path: both in the log, each with its own ESP SA.
    let log = lab.a.log();
    for path in ["ipoe", "pppoe"] {
        assert!(
            log.lines()
                .any(|l| l.contains("ESP SA installed") && l.contains(path)),
            "no ESP SA on {path}:\n{log}"
        );
    }
    assert!(
        lab.lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 3),
        "no traffic before the failure"
    );
    let before = lab.a.tunnel_status("ab").expect("status");
    let backup_tx_before = before["paths"][1]["tx_packets"].as_u64().unwrap_or(0);

    // 800 packets at 10 ms: 8 s of traffic, the cut 2 s in, while a TCP transfer runs.
    let bytes = 32 * 1024 * 1024;
    let failure = Failure::SilentDrop;
    let run = lab.run_through_failure(failure, bytes);
    assert!(
        run.switched.is_some(),
        "traffic did not move to the backup path: {}",
        lab.a.log()
    );
    let pings = run.pings;
    eprintln!(
        "ipsec, silent drop: {} pings sent, {} received: outage about {} ms",
        pings.sent,
        pings.received,
        pings.outage_ms()
    );
    assert!(pings.sent > 0, "the ping flood did not run");
    assert!(
        pings.outage_ms() <= 1500,
        "outage {} ms is longer than detection allows",
        pings.outage_ms()
    );
    let transfer = run.transfer;
    let done = transfer.expect("the TCP transfer failed across the failover");
    assert_eq!(done.bytes, bytes, "the TCP transfer did not complete");
    let during = lab.a.tunnel_status("ab").expect("status");
    assert_eq!(during["paths"][0]["state"], "down", "{during}");
    assert!(
        during["paths"][1]["tx_packets"].as_u64().unwrap_or(0) > backup_tx_before + 100,
        "the backup carried no traffic: {during}"
    );

    lab.restore(failure).expect("restoring the primary");
    // up_after x interval, then the hold-down since the switch.
    assert!(
        lab.wait_for_active("ipoe", Duration::from_secs(15))
            .is_some(),
        "traffic did not return to the primary: {}",
        lab.a.log()
    );
    assert!(lab.lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 3));
    let after = lab.a.tunnel_status("ab").expect("status");
    let backup_tx = after["paths"][1]["tx_packets"].as_u64().unwrap_or(0);
    assert!(lab.lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 5));
    let later = lab.a.tunnel_status("ab").expect("status");
    assert_eq!(
        later["paths"][1]["tx_packets"].as_u64().unwrap_or(0),
        backup_tx,
        "data still leaves on the backup: {later}"
    );
    assert!(
        later["paths"][0]["probes_answered"].as_u64().unwrap_or(0) > 0,
        "{later}"
    );
    assert_eq!(later["ipsec"]["ike_state"], "established", "{later}");
    assert_eq!(later["ipsec"]["path"], "ipoe", "{later}");
    let log = lab.a.log();
    assert!(
        log.contains("traffic moved from path ipoe to path pppoe"),
        "{log}"
    );
    assert!(
        log.contains("traffic moved from path pppoe to path ipoe"),
        "{log}"
    );
    let TwoPaths { lab: _lab, a, b } = lab;
    a.stop().expect("siteA stops cleanly");
    b.stop().expect("siteB stops cleanly");
}
