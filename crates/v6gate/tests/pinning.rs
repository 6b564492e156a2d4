//! End-to-end: endpoint pinning when the underlay changes, and the refusal to start a
//! tunnel whose remote is reachable only through another v6gate tunnel.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{BIN, HostState, Sites, assert_ping, pcap_packets, text, tunnel_device, wait_until};
use v6gate_lab::{LabOptions, Node, Site, TunnelConfig, addr};

const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

#[test]
fn losing_the_underlay_blackholes_the_pin_instead_of_looping_and_recovers() {
    // S0 set-up: the TUN carries an address inside the remote's /64, so without the pin the
    // kernel would send the tunnel's own outer packets into the tunnel.
    let sites = Sites::start(LabOptions::default(), |site, config| {
        if site == Site::A {
            let tunnel = config.tunnel_mut();
            tunnel.mode = "any".to_owned();
            tunnel.addresses = vec!["2001:db8:0:2::abcd/64".to_owned()];
        }
    });
    let lab = &sites.lab;
    let a = sites.gateway(Site::A);
    let gateways = [a, sites.gateway(Site::B)];
    let device = tunnel_device(&sites.config_a);
    let remote = Site::B.wan6().to_string();
    let wan = addr::WAN_A6.to_string();
    assert_ping(lab, Node::HostA, HOST_B, 2, &gateways);

    lab.ip(Node::SiteA, &["-6", "route", "del", "default", "via", &wan])
        .unwrap();
    let blackholed = wait_until(Duration::from_secs(5), || {
        let tunnel = a.tunnel_status("ab").unwrap();
        tunnel["pinned_route"]["kind"] == "blackhole" && tunnel["state"] == "down"
    });
    let tunnel = a.tunnel_status("ab").unwrap();
    assert!(
        blackholed,
        "pin not blackholed after the underlay route went: {tunnel}\n{}",
        a.log()
    );
    let pins = lab
        .ip(Node::SiteA, &["-6", "route", "show", "table", "6464"])
        .unwrap();
    assert!(pins.contains(&format!("blackhole {remote}")), "{pins}");

    // Traffic now fails, and none of the tunnel's outer packets enter the tunnel itself.
    let capture = lab
        .capture(Node::SiteA, &device, &format!("ip6 and dst host {remote}"))
        .unwrap();
    assert!(!lab.ping(Node::HostA, HOST_B, 2));
    let looped = pcap_packets(&capture.finish().unwrap());
    assert!(
        looped.is_empty(),
        "{} outer packets went into {device}",
        looped.len()
    );

    lab.ip(Node::SiteA, &["-6", "route", "add", "default", "via", &wan])
        .unwrap();
    let repinned = wait_until(Duration::from_secs(5), || {
        let tunnel = a.tunnel_status("ab").unwrap();
        tunnel["pinned_route"]["kind"] == "via" && tunnel["state"] == "up"
    });
    assert!(repinned, "{}\n{}", a.tunnel_status("ab").unwrap(), a.log());
    assert_ping(lab, Node::HostA, HOST_B, 3, &gateways);
    sites.stop();
}

#[test]
fn remote_reachable_only_through_another_tunnel_is_refused_as_a_routing_loop() {
    let lab = common::lab(LabOptions::default());
    // siteA reaches siteB's underlay by a specific route only, so that the second tunnel's
    // remote, inside a prefix routed into the first tunnel, has no underlay route at all.
    let wan = addr::WAN_A6.to_string();
    lab.ip(Node::SiteA, &["-6", "route", "del", "default", "via", &wan])
        .unwrap();
    lab.ip(
        Node::SiteA,
        &["-6", "route", "add", "2001:db8:0:2::/64", "via", &wan],
    )
    .unwrap();
    let before = HostState::capture(&lab, Node::SiteA);

    let mut config = lab.site_config(Site::A);
    let first = config.tunnel_mut();
    first.mode = "any".to_owned();
    first.routes = vec![addr::LAN_B4.to_owned(), "2001:db8:77::/64".to_owned()];
    let mut second = TunnelConfig::between(Site::A);
    second.name = "cd".to_owned();
    second.remote = "2001:db8:77::1".parse().unwrap();
    second.routes = vec!["198.18.50.0/24".to_owned()];
    config.tunnels.push(second);
    let path = lab.dir().join("loop.toml");
    std::fs::write(&path, config.to_toml()).unwrap();

    let path_arg = path.to_string_lossy();
    let daemon = lab
        .spawn(Node::SiteA, "v6gate", &[BIN, "run", "--config", &path_arg])
        .unwrap();
    let status = daemon
        .wait_timeout(Duration::from_secs(15))
        .unwrap()
        .unwrap_or_else(|| panic!("the daemon kept running:\n{}", daemon.stderr()));
    let log = daemon.stderr();
    assert!(!status.success(), "{log}");
    assert!(log.contains("routing loop"), "{log}");
    assert!(log.contains("2001:db8:77::1"), "{log}");

    // The first tunnel, set up before the refusal, is undone too.
    let after = HostState::capture(&lab, Node::SiteA);
    assert!(
        before == after,
        "left behind:\n{}",
        before.differences(&after)
    );
    let check = lab.exec(Node::SiteA, &[BIN, "check", "--config", &path_arg]);
    assert!(
        check.status.success(),
        "the config itself is valid: {}",
        text(&check)
    );
}
