//! Several paths per tunnel (scenario S4): an IPv6 "IPoE" primary and an IPv4 "PPPoE" backup
//! between the two sites. Traffic keeps flowing when the primary fails, by link-down or by a
//! silent drop that leaves the link up, and returns to the primary once it is healthy again.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use v6gate_lab::multipath::{Failure, Timers, TwoPaths};
use v6gate_lab::{Node, Site, dev, is_root};

mod common;

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

/// The path MTU of path `name` in siteA's status.
fn path_mtu(lab: &TwoPaths, name: &str) -> Option<u64> {
    let status = lab.a.tunnel_status("ab").ok()?;
    status["paths"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["path_mtu"]
        .as_u64()
}

#[test]
fn fragmentation_needed_on_the_ipv4_backup_lowers_its_path_mtu() {
    assert!(is_root(), "end-to-end tests must run as root");
    let lab = TwoPaths::start(Path::new(BINARY), Timers::default()).expect("two-path lab");
    assert!(
        lab.wait_for_active("ipoe", Duration::from_secs(10))
            .is_some(),
        "{}",
        lab.a.log()
    );
    lab.cut(Failure::LinkDown).expect("cutting the primary");
    assert!(
        lab.wait_for_active("pppoe", Duration::from_secs(10))
            .is_some(),
        "traffic did not move to the IPv4 path: {}",
        lab.a.log()
    );
    let before = path_mtu(&lab, "pppoe").expect("pppoe path in status");
    assert_eq!(before, 1460, "the tunnel MTU of both paths");
    // A link beyond siteA's first hop carries only 1,400 bytes: the wan router answers
    // siteA's full-size DF outer packets with Fragmentation Needed.
    lab.lab
        .ip(
            Node::Wan,
            &["link", "set", "dev", dev::WAN_TO_B4, "mtu", "1400"],
        )
        .expect("lowering the MTU toward siteB");
    let host_b = IpAddr::V4(Site::B.host4());
    // 1,432 bytes of payload: a 1,460-byte inner packet, DF set by -M do.
    let _ = lab.lab.ping_output(
        Node::HostA,
        host_b,
        2,
        &["-M", "do", "-s", "1432", "-W", "1"],
    );
    let lowered = common::wait_until(Duration::from_secs(5), || {
        path_mtu(&lab, "pppoe") == Some(1380)
    });
    assert!(
        lowered,
        "pppoe path MTU stayed {:?}: {}",
        path_mtu(&lab, "pppoe"),
        lab.a.log()
    );
    assert!(
        lab.a.log().contains("FragmentationNeeded"),
        "{}",
        lab.a.log()
    );
    // hostA learnt 1,380 from siteA's own Fragmentation Needed (ping says "mtu = 1380" when
    // the message arrives now, "mtu=1380" when the route already holds it).
    let told = lab.lab.ping_output(
        Node::HostA,
        host_b,
        1,
        &["-M", "do", "-s", "1432", "-W", "1"],
    );
    let text =
        String::from_utf8_lossy(&told.stdout).into_owned() + &String::from_utf8_lossy(&told.stderr);
    assert!(
        text.contains("mtu = 1380") || text.contains("mtu=1380"),
        "{text}"
    );
    assert!(
        lab.lab
            .ping_output(Node::HostA, host_b, 3, &["-M", "do", "-s", "1352"])
            .status
            .success(),
        "1,380-byte DF pings do not get through"
    );
    let TwoPaths { lab: _lab, a, b } = lab;
    a.stop().expect("siteA stops cleanly");
    b.stop().expect("siteB stops cleanly");
}
