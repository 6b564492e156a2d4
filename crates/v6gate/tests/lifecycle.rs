//! End-to-end: the daemon's life cycle: config check, clean stop, crash and restart, reload.

mod common;

use std::fs;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use common::{
    BIN, HostState, Sites, assert_ping, link_exists, start_gateway, text, tunnel_device, wait_ping,
    wait_until,
};
use v6gate_lab::{LabOptions, Node, Site, addr};

const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("v6gate-check-{}-{name}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn check_names_file_line_and_key_of_a_bad_value() {
    let dir = temp_dir("bad");
    let path = dir.join("bad.toml");
    let config = "[gateway]\n\
                  control_socket = \"/tmp/never-used.sock\"\n\
                  \n\
                  [[tunnel]]\n\
                  name = \"ab\"\n\
                  mode = \"ipip6\"\n\
                  local = \"2001:db8:0:1::1\"\n\
                  remote = \"2001:db8:0:2::1\"\n\
                  encap_limit = 300\n\
                  routes = [\"203.0.113.0/24\"]\n";
    fs::write(&path, config).unwrap();
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let all = text(&output);
    assert!(!output.status.success(), "{all}");
    let expected = format!("{}:9:", path.display());
    assert!(all.contains(&expected), "expected {expected:?} in:\n{all}");
    assert!(all.contains("encap_limit"), "{all}");

    // Unknown keys are named too, with their line.
    let path = dir.join("unknown.toml");
    fs::write(&path, config.replace("encap_limit = 300", "encap_limt = 3")).unwrap();
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let all = text(&output);
    assert!(!output.status.success(), "{all}");
    assert!(all.contains(&format!("{}:9:", path.display())), "{all}");
    assert!(all.contains("encap_limt"), "{all}");

    // And the fixed file passes.
    let path = dir.join("good.toml");
    fs::write(
        &path,
        config.replace("encap_limit = 300", "encap_limit = 4"),
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_removes_everything_and_restores_sysctls() {
    let lab = common::lab(LabOptions::default());
    let before = HostState::capture(&lab, Node::SiteA);
    assert_eq!(before.0["net.ipv4.ip_forward"], "0");

    let config = lab.site_config(Site::A);
    let gateway = start_gateway(&lab, Site::A, &config);
    let device = tunnel_device(&config);
    let running = HostState::capture(&lab, Node::SiteA);
    assert!(link_exists(&lab, Node::SiteA, &device), "{}", gateway.log());
    assert_eq!(
        running.0["net.ipv4.ip_forward"], "1",
        "ipv4_forwarding = true not applied"
    );
    assert!(
        running.0["ipv4 routes"].contains(&format!("{} dev {device}", addr::LAN_B4)),
        "{}",
        running.0["ipv4 routes"]
    );
    // The pinned endpoint route and the rule that consults it.
    assert!(
        running.0["ipv6 routes"].contains(&format!("{} via", Site::B.wan6()))
            && running.0["ipv6 routes"].contains("table 6464"),
        "{}",
        running.0["ipv6 routes"]
    );
    assert!(
        running.0["ipv6 rules"].contains("6464"),
        "{}",
        running.0["ipv6 rules"]
    );

    gateway.stop().unwrap_or_else(|e| panic!("{e}"));
    let after = HostState::capture(&lab, Node::SiteA);
    assert!(
        before == after,
        "siteA differs after SIGTERM:\n{}",
        before.differences(&after)
    );
}

#[test]
fn restart_after_sigkill_reconciles_and_works() {
    let sites = Sites::start(LabOptions::default(), |_, _| {});
    let lab = &sites.lab;
    assert_ping(
        lab,
        Node::HostA,
        HOST_B,
        2,
        &[sites.gateway(Site::A), sites.gateway(Site::B)],
    );
    let Sites {
        a,
        b,
        config_a,
        config_b: _,
        lab,
    } = sites;
    let a = a.unwrap();
    let b = b.unwrap();
    let config_path = a.config_path().to_owned();
    a.kill().unwrap();
    let crashed = HostState::capture(&lab, Node::SiteA);

    let a = lab
        .start_gateway_with(
            BIN.as_ref(),
            Node::SiteA,
            &config_path,
            &config_a.control_socket,
        )
        .unwrap_or_else(|e| panic!("restart after SIGKILL (state left: {crashed:?}): {e}"));
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "no traffic after restart:\n{}",
        a.log()
    );
    assert_ping(&lab, Node::HostA, HOST_B, 3, &[&a, &b]);
    // Reconciled, not duplicated: one pin rule per family, one route per LAN prefix into the
    // TUN device and one, a metric better, through the kernel path.
    let rules = lab.ip(Node::SiteA, &["-6", "rule", "show"]).unwrap();
    assert_eq!(rules.matches("lookup 6464").count(), 1, "{rules}");
    let routes = lab
        .ip(Node::SiteA, &["route", "show", addr::LAN_B4])
        .unwrap();
    assert_eq!(routes.lines().count(), 2, "{routes}");
    assert_eq!(routes.matches("dev v6g-ab").count(), 1, "{routes}");
    let pins = lab
        .ip(Node::SiteA, &["-6", "route", "show", "table", "6464"])
        .unwrap();
    assert_eq!(pins.lines().count(), 1, "{pins}");

    a.stop().unwrap_or_else(|e| panic!("{e}"));
    b.stop().unwrap_or_else(|e| panic!("{e}"));
    let device = tunnel_device(&config_a);
    assert!(!link_exists(&lab, Node::SiteA, &device));
    let rules = lab.ip(Node::SiteA, &["-6", "rule", "show"]).unwrap();
    assert!(!rules.contains("6464"), "{rules}");
    let pins = lab
        .exec(Node::SiteA, &["ip", "-6", "route", "show", "table", "6464"])
        .stdout;
    assert!(pins.is_empty(), "{}", String::from_utf8_lossy(&pins));
    // The crashed run had set forwarding on; the restarted one took over its record of the
    // original, so the clean stop puts back what was there before either ran.
    let forwarding = lab.sysctl(Node::SiteA, "net.ipv4.ip_forward").unwrap();
    assert_eq!(
        forwarding.trim(),
        "0",
        "forwarding not restored after a crash and a restart"
    );
}

#[test]
fn sighup_reload_applies_changed_routes() {
    // siteA starts routing an unrelated prefix, so hostB is unreachable from hostA.
    let elsewhere = "198.18.100.0/24";
    let sites = Sites::start(LabOptions::default(), |site, config| {
        if site == Site::A {
            config.tunnel_mut().routes = vec![elsewhere.to_owned()];
        }
    });
    let lab = &sites.lab;
    let device = tunnel_device(&sites.config_a);
    let routes = lab.ip(Node::SiteA, &["route", "show"]).unwrap();
    assert!(
        routes.contains(&format!("{elsewhere} dev {device}")),
        "{routes}"
    );
    assert!(!lab.ping(Node::HostA, HOST_B, 2));

    let mut config = sites.config_a.clone();
    config.tunnel_mut().routes = vec![addr::LAN_B4.to_owned()];
    let a = sites.gateway(Site::A);
    a.rewrite_config(&config).unwrap();
    a.reload().unwrap();
    let switched = wait_until(Duration::from_secs(10), || {
        let routes = lab.ip(Node::SiteA, &["route", "show"]).unwrap_or_default();
        routes.contains(&format!("{} dev {device}", addr::LAN_B4)) && !routes.contains(elsewhere)
    });
    let routes = lab.ip(Node::SiteA, &["route", "show"]).unwrap();
    assert!(switched, "routes after SIGHUP:\n{routes}\n{}", a.log());
    assert_ping(lab, Node::HostA, HOST_B, 3, &[a, sites.gateway(Site::B)]);
    let tunnel = a.tunnel_status("ab").unwrap();
    assert_eq!(tunnel["state"], "up", "{tunnel}");
    sites.stop();
}

#[test]
fn demo_carries_traffic_and_leaves_nothing_behind() {
    assert!(v6gate_lab::is_root(), "the demo test must run as root");
    let mut out = Vec::new();
    let report = v6gate_lab::demo::run(std::path::Path::new(BIN), false, &mut out);
    let stdout = String::from_utf8_lossy(&out);
    let report = report.unwrap_or_else(|e| panic!("demo failed: {e:#}\n{stdout}"));
    assert!(stdout.contains("through the tunnel: ok"), "{stdout}");
    // None of the demo's namespaces may remain.
    let left: Vec<&String> = report
        .namespaces
        .iter()
        .filter(|name| std::path::Path::new("/run/netns").join(name).exists())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
