//! Liveness and control of one tunnel on a running gateway: `v6gate down|up|initiate`, the
//! control socket found from `--config`, and a single-path tunnel whose `probe` tells when
//! its peer is dead.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{BIN, Sites, link_exists, start_gateway, text, tunnel_device, wait_ping, wait_until};
use v6gate_lab::{LabOptions, Site, addr};

const TO_B: IpAddr = IpAddr::V4(addr::HOST_B4);

/// `v6gate ARGS… --config FILE` inside site A's gateway namespace.
fn cli(sites: &Sites, args: &[&str]) -> std::process::Output {
    let config = sites
        .gateway(Site::A)
        .config_path()
        .to_string_lossy()
        .into_owned();
    let mut full = vec![BIN];
    full.extend_from_slice(args);
    full.extend_from_slice(&["--config", &config]);
    sites.lab.exec(Site::A.node(), &full)
}

/// `v6gate status --json --config FILE`: the socket found from the file.
fn tunnel_state(sites: &Sites) -> serde_json::Value {
    let out = cli(sites, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["tunnels"][0].clone()
}

#[test]
fn down_and_up_take_one_tunnel_out_of_service_and_back() {
    let sites = Sites::start(LabOptions::default(), |_, _| {});
    let lab = &sites.lab;
    let device = tunnel_device(&sites.config_a);
    assert!(wait_ping(
        lab,
        Site::A.host(),
        TO_B,
        Duration::from_secs(10)
    ));
    assert_eq!(tunnel_state(&sites)["state"], "up");

    let out = cli(&sites, &["down", "ab"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("tunnel ab down"));
    let t = tunnel_state(&sites);
    assert_eq!(
        (t["state"].as_str(), t["held_down"].as_bool()),
        (Some("down"), Some(true)),
        "{t}"
    );
    assert!(
        !link_exists(lab, Site::A.node(), &device),
        "device {device} still there"
    );
    assert!(
        !lab.ping(Site::A.host(), TO_B, 1),
        "traffic crossed a tunnel that is down"
    );

    // initiate is for IKE; this tunnel has none, and says so.
    let out = cli(&sites, &["initiate", "ab"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no IKE"), "{}", text(&out));
    let out = cli(&sites, &["down", "nosuch"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no tunnel \"nosuch\""),
        "{}",
        text(&out)
    );

    let out = cli(&sites, &["up", "ab"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(link_exists(lab, Site::A.node(), &device));
    assert!(wait_ping(
        lab,
        Site::A.host(),
        TO_B,
        Duration::from_secs(10)
    ));
    let t = tunnel_state(&sites);
    assert_eq!(t["state"], "up", "{t}");
    assert!(t.get("held_down").is_none(), "{t}");
    sites.stop();
}

/// Probes every 100 ms, three lost in a row take the path down, two answered bring it back.
fn probed(_: Site, config: &mut v6gate_lab::GatewayConfig) {
    config.tunnel_mut().extra.extend(
        [
            "probe = \"keepalive\"",
            "[tunnel.health]",
            "interval = \"100ms\"",
            "timeout = \"100ms\"",
            "down_after = 3",
            "up_after = 2",
            "hold_down = \"0s\"",
        ]
        .map(String::from),
    );
}

#[test]
fn a_single_path_tunnel_reads_down_while_its_peer_is_dead() {
    let mut sites = Sites::start(LabOptions::default(), probed);
    assert!(wait_ping(
        &sites.lab,
        Site::A.host(),
        TO_B,
        Duration::from_secs(10)
    ));
    let up = wait_until(Duration::from_secs(5), || {
        let t = tunnel_state(&sites);
        t["state"] == "up" && t["paths"][0]["state"] == "up"
    });
    assert!(up, "{}", tunnel_state(&sites));
    let t = tunnel_state(&sites);
    assert!(
        t["last_received_secs"].as_u64().is_some_and(|s| s <= 2),
        "{t}"
    );

    // The peer goes away: its keepalive answers stop.
    sites.b.take().unwrap().stop().unwrap();
    let dead_at = Instant::now();
    let down = wait_until(Duration::from_secs(10), || {
        tunnel_state(&sites)["state"] == "down"
    });
    let took = dead_at.elapsed();
    eprintln!("state down {took:?} after the peer stopped");
    let t = tunnel_state(&sites);
    assert!(down, "still up {took:?} after the peer stopped: {t}");
    assert_eq!(t["paths"][0]["state"], "down", "{t}");
    assert!(t.get("held_down").is_none(), "{t}");
    // The bound is the probe's: 100 ms interval, 3 lost, 100 ms timeout (0.5 s), plus the
    // polling and a loaded machine's slack.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let table = cli(&sites, &["status"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("last received"),
        "{}",
        text(&table)
    );

    // The peer returns: two answered probes and the tunnel is up again.
    sites.b = Some(start_gateway(&sites.lab, Site::B, &sites.config_b));
    let back = wait_until(Duration::from_secs(10), || {
        tunnel_state(&sites)["state"] == "up"
    });
    assert!(back, "{}", tunnel_state(&sites));
    assert!(wait_ping(
        &sites.lab,
        Site::A.host(),
        TO_B,
        Duration::from_secs(10)
    ));
    sites.stop();
}
