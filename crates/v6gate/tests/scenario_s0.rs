//! End-to-end, scenario S0: a tunnel whose own routes cover its remote endpoint keeps
//! working, because the endpoint is pinned to the underlay.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{Sites, assert_ping, tunnel_device};
use v6gate_lab::{LabOptions, Node, Site, addr, dev};

#[test]
fn default_route_and_address_inside_the_remote_prefix_keep_the_tunnel_up() {
    let sites = Sites::start(LabOptions::default(), |site, config| {
        if site == Site::A {
            let tunnel = config.tunnel_mut();
            tunnel.mode = "any".to_owned();
            tunnel.routes = vec!["0.0.0.0/0".to_owned()];
            // An address inside the remote's own /64 on the TUN: the kernel now routes the
            // remote endpoint into the tunnel, the trap of S0.
            tunnel.addresses = vec!["2001:db8:0:2::abcd/64".to_owned()];
        }
    });
    let lab = &sites.lab;
    let device = tunnel_device(&sites.config_a);
    let remote = Site::B.wan6().to_string();

    let main = lab
        .ip(
            Node::SiteA,
            &["-6", "route", "show", "table", "main", "2001:db8:0:2::/64"],
        )
        .unwrap();
    assert!(
        main.contains(&format!("dev {device}")),
        "the trap is not set: {main}"
    );
    let ipv4_default = lab.ip(Node::SiteA, &["route", "show", "default"]).unwrap();
    assert!(
        ipv4_default.contains(&format!("dev {device}")),
        "{ipv4_default}"
    );

    // Ordinary lookups of the remote hit the pinned route via the real underlay.
    let lookup = lab
        .ip(Node::SiteA, &["-6", "route", "get", &remote])
        .unwrap();
    assert!(
        lookup.contains(&format!("via {} dev {}", addr::WAN_A6, dev::WAN6)),
        "{lookup}"
    );

    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 5, &gateways);
    let bytes = 2 * 1024 * 1024;
    common::assert_tcp_a_to_b(lab, bytes, Duration::from_secs(30), &gateways);

    let tunnel = sites.gateway(Site::A).tunnel_status("ab").unwrap();
    assert_eq!(tunnel["state"], "up", "{tunnel}");
    let pinned = &tunnel["pinned_route"];
    assert_eq!(
        pinned["destination"]
            .as_str()
            .map(|d| d.trim_end_matches("/128")),
        Some(remote.as_str()),
        "{tunnel}"
    );
    assert_eq!(pinned["device"], dev::WAN6, "{tunnel}");
    assert_eq!(pinned["gateway"], addr::WAN_A6.to_string(), "{tunnel}");
    sites.stop();
}
