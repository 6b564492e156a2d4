//! `v6gate doctor` in a namespace broken on purpose reports every planted fault; in the lab,
//! with the gateways running, everything passes (documentation prefixes count as global).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, text, wait_until};
use serde_json::Value;
use v6gate_lab::{LabOptions, Site};

/// A namespace of its own, deleted on drop with whatever runs in it killed first.
struct Broken {
    name: String,
    dir: std::path::PathBuf,
    listener: Option<Child>,
}

impl Broken {
    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
}

impl Drop for Broken {
    fn drop(&mut self) {
        if let Some(mut child) = self.listener.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const CONFIG: &str = r#"
[gateway]
control_socket = "SOCKET"

[[tunnel]]
name = "vps"
mode = "ipip6"
local = "2001:db8:a::1"
remote = "2001:db8:b::1"
routes = ["0.0.0.0/0"]

[[tunnel]]
name = "sec"
mode = "ipsec"
local = "2001:db8:a::1"
remote = "2001:db8:c::1"
local_subnets = ["198.51.100.0/24"]
routes = ["203.0.113.0/24"]
[tunnel.ike]
psk_file = "doctor.psk"

[[tunnel]]
name = "named"
mode = "ipip6"
local = "2001:db8:a::1"
remote = "peer.invalid"

[[tunnel]]
name = "v6plus"
mode = "map-e"
device_prefix = "lan9"
rule = "v6plus"

[[ddns]]
name = "home"
provider = "dyndns2"
hostname = "home.example.jp"
credentials_file = "ddns.secret"
address = { device = "eth0", family = "ipv6" }
server = "https://members.example.jp"
"#;

fn doctor(ns: &str, config: &std::path::Path) -> (i32, Value) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, BIN, "doctor", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(&out)));
    (out.status.code().unwrap_or(-1), json)
}

fn find<'a>(report: &'a Value, name_part: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().contains(name_part))
        .collect()
}

fn assert_result(report: &Value, name_part: &str, result: &str, detail_part: &str) {
    let found = find(report, name_part);
    assert!(
        found
            .iter()
            .any(|c| c["result"] == result && c["detail"].as_str().unwrap().contains(detail_part)),
        "no {result} `{name_part}` mentioning `{detail_part}` in {report:#}"
    );
    for c in found.iter().filter(|c| c["result"] != "pass") {
        assert!(!c["fix"].as_str().unwrap().is_empty(), "no fix: {c}");
    }
}

#[test]
fn broken_namespace_reports_every_planted_fault() {
    assert!(v6gate_lab::is_root(), "needs root for network namespaces");
    let name = format!("v6gd-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    fs::create_dir_all(&dir).unwrap();
    let out = Command::new("ip")
        .args(["netns", "add", &name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut ns = Broken {
        name: name.clone(),
        dir: dir.clone(),
        listener: None,
    };
    fs::write(dir.join("doctor.psk"), "k").unwrap();
    fs::set_permissions(dir.join("doctor.psk"), fs::Permissions::from_mode(0o600)).unwrap();
    // Planted: DDNS credentials others can read.
    fs::write(dir.join("ddns.secret"), "user:password\n").unwrap();
    fs::set_permissions(dir.join("ddns.secret"), fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.join("doctor.toml");
    let socket = dir.join("doctor.sock");
    fs::write(&config, CONFIG.replace("SOCKET", &socket.to_string_lossy())).unwrap();

    // Planted: forwarding off (a new namespace's default) while a tunnel routes IPv4; strict
    // rp_filter; no global IPv6 address; the ipip6 endpoint routed into a TUN device; a
    // ruleset dropping Packet Too Big, protocol 4 and UDP 500; a process on UDP 500.
    ns.ip(&["ip", "link", "set", "lo", "up"]);
    ns.ip(&[
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=0",
        "net.ipv4.conf.all.rp_filter=1",
    ]);
    ns.ip(&["ip", "tuntap", "add", "mode", "tun", "name", "tun9"]);
    ns.ip(&["ip", "link", "set", "tun9", "up"]);
    ns.ip(&[
        "ip",
        "-6",
        "route",
        "add",
        "2001:db8:b::1/128",
        "dev",
        "tun9",
    ]);
    let rules = dir.join("drops.nft");
    fs::write(
        &rules,
        "table inet planted {\n chain input {\n  type filter hook input priority 0; policy accept;\n  \
         icmpv6 type packet-too-big drop\n  meta l4proto 4 drop\n  udp dport 500 drop\n }\n}\n",
    )
    .unwrap();
    ns.ip(&["nft", "-f", &rules.to_string_lossy()]);
    ns.listener = Some(
        Command::new("ip")
            .args(["netns", "exec", &name, "/usr/bin/python3", "-c"])
            .arg(
                "import socket, time\ns = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
                 s.bind(('::', 500))\nprint('bound', flush=True)\ntime.sleep(30)\n",
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(ns.listener.as_mut().unwrap().stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "bound");

    let (code, report) = doctor(&name, &config);
    assert_eq!(code, 2, "{report:#}");
    assert_result(&report, "forwarding: net.ipv4.ip_forward", "fail", "off");
    assert_result(&report, "rp_filter: v6g-vps", "warn", "strict");
    assert_result(&report, "global IPv6", "fail", "none");
    assert_result(&report, "endpoint route: vps", "fail", "tun9");
    assert_result(&report, "endpoint route: sec", "fail", "no route");
    assert_result(&report, "Packet Too Big", "fail", "inet planted input");
    assert_result(&report, "protocol 4", "fail", "inet planted input");
    assert_result(&report, "UDP 500 (IKE)", "fail", "inet planted input");
    assert_result(&report, "UDP 500", "fail", "python3");
    assert_result(&report, "daemon", "pass", "not running");
    assert_result(&report, "TUN device", "pass", "opens");
    // A peer name that cannot resolve (RFC 6761 .invalid), a MAP-E CE whose prefix device
    // has no prefix, DDNS credentials readable by others.
    assert_result(
        &report,
        "peer name: named/default",
        "fail",
        "does not resolve",
    );
    assert_result(
        &report,
        "MAP-E prefix: v6plus",
        "fail",
        "no global IPv6 address on lan9",
    );
    assert_result(&report, "DDNS credentials: home", "fail", "mode 0644");
    drop(ns);
}

#[test]
fn healthy_lab_passes_with_the_daemon_running() {
    let sites = common::Sites::start(LabOptions::default(), |_, _| {});
    let config = sites.lab.dir().join("doctor-a.toml");
    fs::write(&config, sites.config_a.to_toml()).unwrap();
    let ns = sites.lab.namespace(Site::A.node()).to_owned();
    let gateway = sites.gateway(Site::A);
    let up = wait_until(Duration::from_secs(10), || {
        gateway.status().is_ok_and(|s| {
            s["tunnels"]
                .as_array()
                .is_some_and(|t| t.iter().all(|t| t["state"] == "up"))
        })
    });
    assert!(up, "{}", gateway.log());
    let (code, report) = doctor(&ns, &config);
    let not_passed: Vec<&Value> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] != "pass")
        .collect();
    assert!(not_passed.is_empty(), "{not_passed:#?}");
    assert_eq!(code, 0);
    assert_result(&report, "global IPv6", "pass", "2001:db8:");
    assert_result(&report, "daemon", "pass", "running (pid");
    sites.stop();
}
