//! Several paths per tunnel (scenario S4): an IPv6 "IPoE" primary and an IPv4 "PPPoE" backup
//! between the two sites. Traffic keeps flowing when the primary fails, by link-down or by a
//! silent drop that leaves the link up, and returns to the primary once it is healthy again.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use v6gate::lab::{Gateway, Lab, LabOptions, Node, Site, is_root};

const BINARY: &str = env!("CARGO_BIN_EXE_v6gate");

fn require_root() {
    assert!(
        is_root(),
        "end-to-end tests build network namespaces and TUN devices: run them as root"
    );
}

/// The two-path tunnel config of one site, with the health timers under test.
fn config(lab: &Lab, site: Site, socket: &Path) -> String {
    let (local6, remote6, local4, remote4, routes) = match site {
        Site::A => (
            "2001:db8:0:1::1",
            "2001:db8:0:2::1",
            "198.18.1.1",
            "198.18.2.1",
            Site::B.lan4(),
        ),
        Site::B => (
            "2001:db8:0:2::1",
            "2001:db8:0:1::1",
            "198.18.2.1",
            "198.18.1.1",
            Site::A.lan4(),
        ),
    };
    let _ = lab;
    format!(
        r#"[gateway]
control_socket = "{socket}"
ipv4_forwarding = true

[[tunnel]]
name = "ab"
mode = "ipip6"
routes = ["{routes}"]

[[tunnel.path]]
name = "ipoe"
local = "{local6}"
remote = "{remote6}"
cost = 10

[[tunnel.path]]
name = "pppoe"
local = "{local4}"
remote = "{remote4}"
cost = 100

[tunnel.health]
interval = "100ms"
timeout = "300ms"
down_after = 3
up_after = 10
hold_down = "2s"
"#,
        socket = socket.display()
    )
}

fn start(lab: &Lab, site: Site) -> Gateway {
    let socket = lab.dir().join(format!("fo-{site:?}.sock"));
    let path = lab.dir().join(format!("fo-{site:?}.toml"));
    fs::write(&path, config(lab, site, &socket)).expect("writing the config");
    lab.start_gateway_with(Path::new(BINARY), site.node(), &path, &socket)
        .expect("starting a gateway")
}

fn active_path(gw: &Gateway) -> String {
    let status = gw.tunnel_status("ab").expect("status");
    status["paths"]
        .as_array()
        .and_then(|paths| paths.iter().find(|p| p["active"] == true))
        .and_then(|p| p["name"].as_str())
        .unwrap_or("none")
        .to_string()
}

fn wait_for_active(gw: &Gateway, want: &str, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if active_path(gw) == want {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Runs `ping -i 0.01` from hostA to hostB for `count` packets in the background; returns
/// (sent, received).
fn ping_flood(lab: &Lab, count: u32) -> thread::JoinHandle<(u32, u32)> {
    let ns = lab.namespace(Node::HostA).to_string();
    let target = Site::B.host4().to_string();
    thread::spawn(move || {
        let out = std::process::Command::new("ip")
            .args([
                "netns", "exec", &ns, "ping", "-n", "-q", "-i", "0.01", "-W", "1",
            ])
            .args(["-c", &count.to_string(), &target])
            .output()
            .expect("running ping");
        let text = String::from_utf8_lossy(&out.stdout);
        parse_ping(&text).unwrap_or_else(|| panic!("unexpected ping output: {text}"))
    })
}

fn parse_ping(text: &str) -> Option<(u32, u32)> {
    let line = text.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??))
}

fn nft(lab: &Lab, node: Node, script: &str) {
    let out = lab.exec(node, &["nft", script]);
    assert!(
        out.status.success(),
        "nft {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn two_site_lab() -> (Lab, Gateway, Gateway) {
    require_root();
    let lab = Lab::two_sites(LabOptions {
        ipv4_underlay: true,
        ..LabOptions::default()
    })
    .expect("building the lab");
    let a = start(&lab, Site::A);
    let b = start(&lab, Site::B);
    assert!(
        wait_for_active(&a, "ipoe", Duration::from_secs(10)).is_some(),
        "the cheaper path never became active: {}",
        a.log()
    );
    assert!(
        lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 3),
        "no traffic before the failure"
    );
    (lab, a, b)
}

fn failover_and_back(cut: impl Fn(&Lab), restore: impl Fn(&Lab), label: &str) {
    let (lab, a, b) = two_site_lab();
    // 800 packets at 10 ms: 8 s of traffic, the failure 2 s in.
    let pings = ping_flood(&lab, 800);
    let transfer = {
        let lab_ns_server = lab.namespace(Node::HostB).to_string();
        let _ = lab_ns_server;
        let bytes = 64 * 1024 * 1024;
        let handle = thread::scope(|scope| {
            let t = scope.spawn(|| {
                lab.tcp_transfer(
                    Node::HostB,
                    SocketAddr::new(IpAddr::V4(Site::B.host4()), 0),
                    Node::HostA,
                    bytes,
                    Duration::from_secs(60),
                )
            });
            thread::sleep(Duration::from_secs(2));
            cut(&lab);
            let switched = wait_for_active(&a, "pppoe", Duration::from_secs(5));
            assert!(
                switched.is_some(),
                "{label}: traffic did not move to the backup path: {}",
                a.log()
            );
            t.join().expect("transfer thread")
        });
        (handle, bytes)
    };
    let (sent, received) = pings.join().expect("ping thread");
    let lost = sent - received;
    let outage_ms = lost * 10;
    eprintln!("{label}: {sent} pings sent, {received} received: outage about {outage_ms} ms");
    assert!(
        outage_ms <= 1500,
        "{label}: outage {outage_ms} ms is longer than detection allows"
    );
    let (result, bytes) = transfer;
    let done = result.expect("the TCP transfer failed across the failover");
    assert_eq!(
        done.bytes, bytes,
        "{label}: the TCP transfer did not complete"
    );
    restore(&lab);
    // up_after 10 x 100 ms plus the 2 s hold-down since the switch.
    let back = wait_for_active(&a, "ipoe", Duration::from_secs(10));
    assert!(
        back.is_some(),
        "{label}: traffic did not return to the primary: {}\n{}\n{}",
        a.tunnel_status("ab")
            .map(|s| s.to_string())
            .unwrap_or_default(),
        lab.ip(Node::SiteA, &["-6", "route", "show", "table", "all"])
            .unwrap_or_default(),
        a.log()
    );
    assert!(lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 3));
    let status = a.tunnel_status("ab").expect("status");
    let paths = status["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), 2);
    assert!(paths.iter().all(|p| p["state"] == "up"), "{status}");
    assert!(
        a.log()
            .contains("traffic moved from path ipoe to path pppoe")
    );
    a.stop().expect("siteA stops cleanly");
    b.stop().expect("siteB stops cleanly");
}

#[test]
fn silent_drop_on_the_primary_fails_over_and_back() {
    failover_and_back(
        |lab| {
            nft(lab, Node::Wan, "add table inet fo");
            nft(
                lab,
                Node::Wan,
                "add chain inet fo cut { type filter hook forward priority 0; }",
            );
            nft(
                lab,
                Node::Wan,
                "add rule inet fo cut meta nfproto ipv6 drop",
            );
        },
        |lab| nft(lab, Node::Wan, "delete table inet fo"),
        "silent drop",
    );
}

#[test]
fn link_down_on_the_primary_fails_over_and_back() {
    failover_and_back(
        |lab| {
            // An ISP router keeps its address across a link flap; Linux drops IPv6 addresses
            // of a device set down unless told not to.
            lab.sysctl_set(Node::Wan, "net.ipv6.conf.to-a.keep_addr_on_down", "1")
                .expect("keep_addr_on_down");
            lab.ip(Node::Wan, &["link", "set", "to-a", "down"])
                .expect("link down");
        },
        |lab| {
            lab.ip(Node::Wan, &["link", "set", "to-a", "up"])
                .expect("link up");
        },
        "link down",
    );
}
