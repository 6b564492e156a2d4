//! End-to-end: a DS-Lite B4 and a MAP-E CE, each lowered by `control::softwire::lower` to the
//! ipip6 tunnel v6gate runs, against an AFTR / BR in the next namespace that decapsulates and
//! routes to an "IPv4 internet" host. The far end is a v6gate ipip6 tunnel too.
//!
//! siteA is the CE, wan the access network, siteB the AFTR or BR, hostB the IPv4 internet.
//! Until the daemon owns them, the test does the CE's two host-state steps itself: it gives the
//! softwire its facts (addresses) and puts the MAP address on the WAN device.

mod common;

use std::net::{IpAddr, Ipv6Addr};

use common::{Sites, assert_ping, text, wait_ping};
use control::softwire::{Facts, Lowered, lower};
use std::time::Duration;
use v6gate_lab::{GatewayConfig, Lab, LabOptions, MssClamp, Node, Site, TunnelConfig, addr, dev};

const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

/// The one softwire of `toml`, lowered with `facts`.
fn lowered(toml: &str, facts: &Facts) -> Lowered {
    let config =
        control::Config::from_toml_str(toml, "softwire.toml").unwrap_or_else(|e| panic!("{e}"));
    lower(&config.softwires[0], facts).unwrap_or_else(|e| panic!("{e}"))
}

/// The lab's config for the CE: the lowered tunnel, written as the ipip6 tunnel it is.
fn ce_config(base: &GatewayConfig, low: &Lowered) -> GatewayConfig {
    let t = &low.tunnel;
    let v6 = |a: IpAddr| match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => panic!("softwires run over IPv6"),
    };
    let strings = |nets: &[ipnet::IpNet]| nets.iter().map(ToString::to_string).collect();
    let mut config = base.clone();
    config.tunnels = vec![TunnelConfig {
        name: t.name.clone(),
        device: Some(t.device.clone()),
        mode: t.mode.as_str().to_owned(),
        local: v6(t.paths[0].local),
        remote: v6(t.paths[0].remote),
        encap_limit: None,
        mtu: None,
        routes: strings(&t.routes),
        allowed_sources: Some(strings(&t.allowed_sources)),
        inner_families: None,
        mss_clamp: Some(MssClamp::Auto),
        addresses: strings(&t.addresses),
        extra: Vec::new(),
    }];
    config
}

/// The far end (AFTR or BR) in siteB: decapsulates from `ce`, routes `inside` back to it.
fn far_end(base: &GatewayConfig, ce: Ipv6Addr, inside: &[&str]) -> GatewayConfig {
    let mut config = base.clone();
    let tunnel = config.tunnel_mut();
    tunnel.remote = ce;
    tunnel.routes = inside.iter().map(|s| (*s).to_owned()).collect();
    config
}

/// hostB's view of ICMP echo requests reaching it, as tcpdump prints them.
fn echo_sources_at_host_b(lab: &Lab, from: Node, extra: &[&str]) -> String {
    let capture = lab
        .capture_text(
            Node::HostB,
            dev::LAN,
            "icmp and icmp[icmptype] == icmp-echo",
        )
        .unwrap();
    let out = lab.ping_output(from, HOST_B, 3, extra);
    assert!(out.status.success(), "{}", text(&out));
    capture.finish().unwrap()
}

#[test]
fn ds_lite_b4_reaches_the_far_side_with_its_lan_source() {
    let config = format!(
        "[[tunnel]]\nname = \"b4\"\nmode = \"ds-lite\"\naftr = \"{}\"\nlocal = \"{}\"\n\
         default_route = true\n",
        addr::SITE_B_WAN6,
        addr::SITE_A_WAN6
    );
    let low = lowered(&config, &Facts::default());
    assert_eq!(low.tunnel.addresses, ["192.0.0.2/29".parse().unwrap()]);
    let sites = Sites::start(LabOptions::default(), |site, c| match site {
        Site::A => *c = ce_config(c, &low),
        // The AFTR: no NAT here, so the LAN source must arrive as sent.
        Site::B => *c = far_end(c, addr::SITE_A_WAN6, &[addr::LAN_A4, "192.0.0.0/29"]),
    });
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(&sites.lab, Node::HostA, HOST_B, 3, &gateways);
    let seen = echo_sources_at_host_b(&sites.lab, Node::HostA, &[]);
    assert!(
        seen.contains(&format!("{} > {}", addr::HOST_A4, addr::HOST_B4)),
        "hostB saw:\n{seen}"
    );
    let status = sites.gateway(Site::A).tunnel_status("b4").unwrap();
    assert_eq!(status["remote"], addr::SITE_B_WAN6.to_string(), "{status}");
    sites.stop();
}

#[test]
fn map_e_ce_sends_from_its_shared_address_and_map_address() {
    // A rule in documentation space shaped like v6plus (PSID offset 4, 8-bit PSID, draft-03
    // layout): siteA's /64 2001:db8:0:1::/64 carries EA bits 0x01, so the CE shares
    // 198.18.8.1 with PSID 1 (ports 4112-4127, 8208-8223, ...).
    let config = format!(
        "[[tunnel]]\nname = \"mape\"\nmode = \"map-e\"\ndevice_prefix = \"{}\"\n\
         rule = {{ ipv6_prefix = \"2001:db8::/56\", ipv4_prefix = \"198.18.8.1/32\", \
         ea_bits = 8, psid_offset = 4, br = \"{}\", layout = \"draft03\" }}\n\
         default_route = true\n",
        dev::WAN6,
        addr::SITE_B_WAN6
    );
    let facts = Facts {
        prefix: Some("2001:db8:0:1::/64".parse().unwrap()),
        ..Facts::default()
    };
    let low = lowered(&config, &facts);
    let (device, map_address) = low.wan_address.clone().unwrap();
    assert_eq!(device, dev::WAN6);
    assert_eq!(
        map_address,
        "2001:db8:0:1:c6:1208:100:100".parse::<Ipv6Addr>().unwrap()
    );
    let (_, map) = low.map.unwrap();
    assert_eq!(map.ipv4.to_string(), "198.18.8.1");
    assert_eq!(map.ports.ranges().next(), Some(4112..=4127));

    let lab = common::lab(LabOptions::default());
    // Standing in for the host-state owner: the MAP address on the WAN device, before the
    // tunnel that sends from it starts, so that the access network's neighbour discovery and
    // the host accept the BR's packets to it.
    let map128 = format!("{map_address}/128");
    lab.ip(
        Node::SiteA,
        &["-6", "addr", "add", &map128, "dev", dev::WAN6, "nodad"],
    )
    .unwrap();
    let br = far_end(&lab.site_config(Site::B), map_address, &["198.18.8.1/32"]);
    let br = common::start_gateway(&lab, Site::B, &br);
    let ce = common::start_gateway(&lab, Site::A, &ce_config(&lab.site_config(Site::A), &low));
    let shared = "198.18.8.1";
    assert_ping(&lab, Node::SiteA, HOST_B, 3, &[&ce, &br]);
    let seen = echo_sources_at_host_b(&lab, Node::SiteA, &["-I", shared]);
    assert!(
        seen.contains(&format!("{shared} > {}", addr::HOST_B4)),
        "hostB saw:\n{seen}"
    );
    let status = ce.tunnel_status("mape").unwrap();
    assert_eq!(status["local"], map_address.to_string(), "{status}");
    assert_eq!(status["remote"], addr::SITE_B_WAN6.to_string(), "{status}");
    ce.stop().unwrap();
    br.stop().unwrap();
}

/// The v6plus-shaped documentation rule of the MAP-E tests, CE in siteA, BR at siteB.
fn map_e_config() -> String {
    format!(
        "[[tunnel]]\nname = \"mape\"\nmode = \"map-e\"\ndevice_prefix = \"{}\"\n\
         rule = {{ ipv6_prefix = \"2001:db8::/56\", ipv4_prefix = \"198.18.8.1/32\", \
         ea_bits = 8, psid_offset = 4, br = \"{}\", layout = \"draft03\" }}\n\
         default_route = true\n",
        dev::WAN6,
        addr::SITE_B_WAN6
    )
}

#[test]
fn map_e_moves_with_a_new_prefix() {
    // Re-delegation from 2001:db8:0:1::/64 to 2001:db8:0:3::/64: the same rule gives PSID 3
    // and a new MAP address; lowered again and reloaded in place, traffic resumes from it.
    let facts = |p: &str| Facts {
        prefix: Some(p.parse().unwrap()),
        ..Facts::default()
    };
    let before = lowered(&map_e_config(), &facts("2001:db8:0:1::/64"));
    let after = lowered(&map_e_config(), &facts("2001:db8:0:3::/64"));
    let (_, old) = before.wan_address.clone().unwrap();
    let (_, new) = after.wan_address.clone().unwrap();
    assert_eq!(after.map.unwrap().1.ports.psid(), 3);
    assert_ne!(old, new);

    let lab = common::lab(LabOptions::default());
    // The access network also serves the new prefix on siteA's link.
    lab.ip(
        Node::Wan,
        &[
            "-6",
            "addr",
            "add",
            "2001:db8:0:3::ff/64",
            "dev",
            dev::WAN_TO_A6,
            "nodad",
        ],
    )
    .unwrap();
    let add = |a: Ipv6Addr| {
        let host = format!("{a}/128");
        lab.ip(
            Node::SiteA,
            &["-6", "addr", "add", &host, "dev", dev::WAN6, "nodad"],
        )
        .unwrap();
    };
    add(old);
    let br_config = |ce| far_end(&lab.site_config(Site::B), ce, &["198.18.8.1/32"]);
    let ce_base = lab.site_config(Site::A);
    let br = common::start_gateway(&lab, Site::B, &br_config(old));
    let ce = common::start_gateway(&lab, Site::A, &ce_config(&ce_base, &before));
    assert_ping(&lab, Node::SiteA, HOST_B, 2, &[&ce, &br]);

    add(new);
    ce.rewrite_config(&ce_config(&ce_base, &after)).unwrap();
    br.rewrite_config(&br_config(new)).unwrap();
    ce.reload().unwrap();
    br.reload().unwrap();
    let moved = common::wait_until(Duration::from_secs(10), || {
        ce.tunnel_status("mape")
            .is_ok_and(|s| s["local"] == new.to_string())
    });
    assert!(moved, "CE did not move to {new}:\n{}", ce.log());
    let old128 = format!("{old}/128");
    lab.ip(
        Node::SiteA,
        &["-6", "addr", "del", &old128, "dev", dev::WAN6],
    )
    .unwrap();
    assert!(
        wait_ping(&lab, Node::SiteA, HOST_B, Duration::from_secs(10)),
        "no traffic after the move:\n{}\n{}",
        ce.log(),
        br.log()
    );
    assert_ping(&lab, Node::SiteA, HOST_B, 3, &[&ce, &br]);
    ce.stop().unwrap();
    br.stop().unwrap();
}
