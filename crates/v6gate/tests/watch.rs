//! `[[watch]]` (scenario S4's IX watch-group): a route through one uplink stays only while a
//! target answers through that uplink; when it stops answering the route is withdrawn, a
//! backup route (here: through a v6gate tunnel over the other uplink) takes over, and the
//! hooks run.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use v6gate_lab::{Gateway, Lab, LabOptions, Node, Site, is_root};

const BINARY: &str = env!("CARGO_BIN_EXE_v6gate");

fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

fn watch_state(gw: &Gateway) -> (String, bool) {
    let status = gw.status().expect("status");
    let w = &status["watches"][0];
    (
        w["state"].as_str().unwrap_or("?").to_string(),
        w["route_installed"].as_bool().unwrap_or(false),
    )
}

fn nft(lab: &Lab, script: &str) {
    let out = lab.exec(Node::Wan, &["nft", script]);
    assert!(
        out.status.success(),
        "nft {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn watch_withdraws_and_restores_its_route_and_runs_hooks() {
    assert!(is_root(), "end-to-end tests need root");
    let lab = Lab::two_sites(LabOptions {
        ipv4_underlay: true,
        ..LabOptions::default()
    })
    .expect("building the lab");
    // The plain IPv4 path between the LANs: the wan router routes the LANs to the sites'
    // IPv4 uplinks, and siteB routes LAN A back that way.
    lab.sysctl_set(Node::Wan, "net.ipv4.ip_forward", "1")
        .unwrap();
    lab.ip(
        Node::Wan,
        &["route", "add", Site::B.lan4(), "via", "198.18.2.1"],
    )
    .unwrap();
    lab.ip(
        Node::Wan,
        &["route", "add", Site::A.lan4(), "via", "198.18.1.1"],
    )
    .unwrap();
    lab.ip(
        Node::SiteB,
        &[
            "route",
            "add",
            Site::A.lan4(),
            "via",
            "198.18.2.254",
            "metric",
            "10",
        ],
    )
    .unwrap();

    let hook_log = lab.dir().join("hook.log");
    let socket_a = lab.dir().join("watch-a.sock");
    let config_a = format!(
        r#"[gateway]
control_socket = "{socket}"
ipv4_forwarding = true
# The tunnel is the backup: its route loses to the watched uplink's metric 10.
route_metric = 100

[[tunnel]]
name = "ab"
mode = "ipip6"
local = "2001:db8:0:1::1"
remote = "2001:db8:0:2::1"
routes = ["{lan_b}"]

[[watch]]
name = "uplink4"
target = "198.18.2.1"
device = "wan4"
interval = "100ms"
timeout = "300ms"
down_after = 3
up_after = 5
route = {{ dst = "{lan_b}", via = "198.18.1.254", device = "wan4", metric = 10 }}
on_down = ["/bin/sh", "-c", "echo \"$V6GATE_WATCH $V6GATE_STATE\" >> {log}"]
on_up = ["/bin/sh", "-c", "echo \"$V6GATE_WATCH $V6GATE_STATE\" >> {log}"]
"#,
        socket = socket_a.display(),
        lan_b = Site::B.lan4(),
        log = hook_log.display()
    );
    let path_a = lab.dir().join("watch-a.toml");
    fs::write(&path_a, config_a).unwrap();
    let a = lab
        .start_gateway_with(Path::new(BINARY), Node::SiteA, &path_a, &socket_a)
        .expect("siteA gateway");
    let mut config_b = lab.site_config(Site::B);
    config_b.ipv4_forwarding = Some(true);
    let b = lab
        .start_gateway(Path::new(BINARY), Node::SiteB, &config_b)
        .expect("siteB gateway");

    assert!(
        wait_until(Duration::from_secs(5), || watch_state(&a)
            == ("up".into(), true)),
        "the watch never came up: {:?}\n{}",
        watch_state(&a),
        a.log()
    );
    let routes = lab
        .ip(Node::SiteA, &["route", "show", Site::B.lan4()])
        .unwrap();
    assert!(
        routes.contains("via 198.18.1.254 dev wan4") && routes.contains("metric 10"),
        "watched route missing: {routes}"
    );
    assert!(lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 2));

    // The uplink goes silent (its link stays up): only forwarded IPv4 is dropped at the wan
    // router, so the IPv6 underlay of the tunnel keeps working.
    nft(&lab, "add table ip cut");
    nft(
        &lab,
        "add chain ip cut cut { type filter hook forward priority 0; }",
    );
    nft(&lab, "add rule ip cut cut drop");
    let cut_at = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || watch_state(&a)
            == ("down".into(), false)),
        "the watch did not go down: {:?}\n{}",
        watch_state(&a),
        a.log()
    );
    let detected = cut_at.elapsed();
    eprintln!(
        "watch detected the silent uplink in {} ms",
        detected.as_millis()
    );
    let routes = lab
        .ip(Node::SiteA, &["route", "show", Site::B.lan4()])
        .unwrap();
    assert!(
        !routes.contains("dev wan4") && routes.contains("dev v6g-ab"),
        "the backup route did not take over: {routes}"
    );
    // Replies come back over the plain IPv4 path, which is cut too: siteB must also use
    // its tunnel for LAN A.
    lab.ip(
        Node::SiteB,
        &[
            "route",
            "del",
            Site::A.lan4(),
            "via",
            "198.18.2.254",
            "metric",
            "10",
        ],
    )
    .unwrap();
    assert!(
        lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 3),
        "no traffic over the backup"
    );

    nft(&lab, "delete table ip cut");
    assert!(
        wait_until(Duration::from_secs(5), || watch_state(&a)
            == ("up".into(), true)),
        "the watch did not recover: {:?}\n{}",
        watch_state(&a),
        a.log()
    );
    assert!(wait_until(Duration::from_secs(5), || {
        fs::read_to_string(&hook_log)
            .map(|l| l.contains("uplink4 down") && l.lines().last() == Some("uplink4 up"))
            .unwrap_or(false)
    }));
    let text = fs::read_to_string(&hook_log).unwrap();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["uplink4 up", "uplink4 down", "uplink4 up"],
        "hooks: {text}"
    );

    a.stop().expect("siteA stops cleanly");
    let routes = lab
        .ip(Node::SiteA, &["route", "show", Site::B.lan4()])
        .unwrap();
    assert!(routes.trim().is_empty(), "routes left after stop: {routes}");
    b.stop().expect("siteB stops cleanly");
}
