//! Scenario S1's tunnel link: each end has an address on a /30, and the home router pings
//! the VPS's tunnel address. The VPS's answer goes to the home router's tunnel address, which
//! is in none of the VPS's `routes` but in the link's network the kernel routes into the
//! device; it must not be dropped as `not_routed`.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::{Sites, drops, text};
use v6gate_lab::{LabOptions, Site, addr};

const HOME_LINK: &str = "198.19.255.2/30";
const VPS_LINK: &str = "198.19.255.1/30";
const VPS_TUNNEL_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 1);

#[test]
fn the_home_router_pings_the_vps_tunnel_address() {
    // Site A is the home router (everything IPv4 into the tunnel), site B the VPS, written
    // as examples/s1-home.toml and s1-vps.toml are.
    let sites = Sites::start(LabOptions::default(), |site, config| {
        let t = config.tunnel_mut();
        match site {
            Site::A => {
                t.addresses = vec![HOME_LINK.to_owned()];
                t.routes = vec!["0.0.0.0/0".to_owned()];
            }
            Site::B => {
                t.addresses = vec![VPS_LINK.to_owned()];
                t.allowed_sources =
                    Some(vec![addr::LAN_A4.to_owned(), "198.19.255.0/30".to_owned()]);
            }
        }
    });
    let lab = &sites.lab;
    let to = IpAddr::V4(VPS_TUNNEL_ADDRESS);
    let answered = common::wait_ping(lab, Site::A.node(), to, std::time::Duration::from_secs(10));
    let output = lab.ping_output(Site::A.node(), to, 3, &[]);
    let vps = sites.gateway(Site::B).tunnel_status("ab").unwrap();
    assert!(
        answered && output.status.success(),
        "{}\nVPS tunnel: {vps}",
        text(&output)
    );
    assert_eq!(drops(&vps, "not_routed"), 0, "{vps}");
    // The LAN behind the home router still crosses too.
    common::assert_ping(
        lab,
        Site::A.host(),
        IpAddr::V4(addr::HOST_B4),
        2,
        &[sites.gateway(Site::A), sites.gateway(Site::B)],
    );
    sites.stop();
}
