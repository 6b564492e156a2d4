//! End-to-end: softwires on the kernel path (`dataplane = "kernel"`), run by `v6gate run` in
//! siteA against a far end in siteB.
//!
//! A MAP-E CE sends through the programs on its wan device, and its NAPT, which tells the
//! CE's packets there by the routing realm of its inner routes, still gives every flow the
//! shared address and a port of the set: TCP connections and a UDP burst counted at hostB's
//! sockets, a bulk transfer as super-packets, and nothing left after a stop. After a
//! re-delegation a flow of before is translated into the new port set, not kept in the old.
//!
//! A DS-Lite B4 follows its AFTR's name to a second AFTR and carries traffic through it: the
//! tc-BPF programs, their maps and the inner routes all move to the new remote, and the first
//! AFTR receives nothing more.
//!
//! Both AFTRs run in siteB on the same wan device with overlapping prefixes (the first
//! routes hostA's /24 back, the second hostA's /32), so they stay on the TUN dataplane: on
//! the kernel path each one's egress program claims packets by its own prefixes, not by the
//! route the kernel chose, and the first would encapsulate the second's replies from its own
//! address, which the B4 then drops as a spoofed outer source.

mod common;
mod ddns_support;
mod softwire_support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use common::kernel::{attached_programs, underlay_routes};
use common::{assert_ping, assert_tcp_a_to_b, wait_ping};
use softwire_support::ce::{
    AFTR_NAME, aftr_config, far_end, map_e_config, psid_ranges, start_ce, start_named_b4,
};
use v6gate_lab::{Dataplane, Gateway, GatewayConfig, LabOptions, Node, Site, addr, dev};

/// Every routing table's routes.
const ALL: &[&str] = &["table", "all"];
const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

/// An AFTR of this file on the TUN dataplane, whatever `auto` chooses (see the module doc).
fn userspace(config: &mut GatewayConfig) {
    config.tunnel_mut().dataplane = Some(Dataplane::Userspace);
}

#[test]
fn daemon_map_e_on_the_kernel_path_keeps_to_the_port_set() {
    let map: Ipv6Addr = "2001:db8:0:1:c6:1208:100:100".parse().unwrap();
    let shared = "198.18.8.1";
    let lab = common::lab(LabOptions::default());
    // The BR routes only the shared address back: a LAN source that is not translated gets
    // no answer.
    let mut br = far_end(&lab.site_config(Site::B), map, &[&format!("{shared}/32")]);
    userspace(&mut br);
    let br = common::start_gateway(&lab, Site::B, &br);
    let ce = start_ce(&lab, &format!("{}dataplane = \"kernel\"\n", map_e_config()));
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&ce, &br]);
    let t = ce.tunnel_status("mape").unwrap();
    assert_eq!(t["dataplane"], "kernel", "{t:#}\n{}", ce.log());
    assert_eq!(t["kernel_path"]["device"], dev::WAN6, "{t:#}");
    let routes = underlay_routes(&lab, ALL);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(routes[0].starts_with("default via inet6"), "{routes:?}");
    assert!(routes[0].contains("realm "), "{routes:?}");

    let ranges = psid_ranges(1);
    let in_set = |p: u16| ranges.iter().any(|r| r.contains(&p));
    // An unpaced UDP burst from 120 sockets: every datagram arrives from the shared address
    // and a port of the set.
    let seen = softwire_support::udp_burst(&lab, 9, 120);
    assert_eq!(seen.len(), 120, "hostB received {seen:?}");
    assert!(seen.iter().all(|(source, _)| source == shared), "{seen:?}");
    let ports: std::collections::BTreeSet<u16> = seen.iter().map(|(_, p)| *p).collect();
    assert_eq!(ports.len(), 120, "{seen:?}");
    assert!(ports.iter().all(|&p| in_set(p)), "{ports:?}");

    // 200 TCP connections held open at once, all answered through the programs.
    let (held, _) = softwire_support::tcp_hold(&lab, &[7000], 200, || {});
    assert_eq!(held.confirmed, 200, "{held:?}");
    assert!(held.peers.iter().all(|p| p.0 == shared), "{held:?}");
    let ports = held.ports();
    assert_eq!(ports.len(), 200, "{held:?}");
    assert!(ports.iter().all(|&p| in_set(p)), "{ports:?}");

    // A bulk transfer leaves as super-packets, encapsulated whole.
    let gso_tx = |ce: &Gateway| {
        let t = ce.tunnel_status("mape").unwrap();
        common::counter(&t["kernel_path"], "gso_tx")
    };
    let before = gso_tx(&ce);
    assert_tcp_a_to_b(&lab, 4 * 1024 * 1024, Duration::from_secs(20), &[&ce, &br]);
    let t = ce.tunnel_status("mape").unwrap();
    assert!(gso_tx(&ce) > before, "{t:#}");
    let k = &t["kernel_path"];
    assert!(k["tx_bytes"].as_u64().unwrap() > 4 * 1024 * 1024, "{t:#}");
    assert!(k["rx_packets"].as_u64().unwrap() >= 200, "{t:#}");
    let flows = softwire_support::napt_counter(&lab, "napt_mape_flows");
    assert!(!flows.contains("packets 0 "), "{flows}");
    assert_eq!(attached_programs(&lab), 2);

    ce.stop().unwrap();
    assert_eq!(attached_programs(&lab), 0);
    assert!(
        underlay_routes(&lab, ALL).is_empty(),
        "{:?}",
        underlay_routes(&lab, ALL)
    );
    let rules = lab.exec(Node::SiteA, &["nft", "list", "table", "inet", "v6gate"]);
    assert!(!rules.status.success(), "{}", common::text(&rules));
    let wan = lab.ip(Node::SiteA, &["-6", "address", "show", "dev", dev::WAN6]);
    assert!(!wan.unwrap().contains(&map.to_string()));
    br.stop().unwrap();
}

/// The source ports hostB saw from the shared address.
fn ports_from_shared(seen: &[(String, u16)]) -> Vec<u16> {
    seen.iter()
        .filter(|(source, _)| source == "198.18.8.1")
        .map(|(_, port)| *port)
        .collect()
}

#[test]
fn daemon_map_e_on_the_kernel_path_forgets_the_old_port_set_on_a_redelegation() {
    // PSID 1 on siteA's 2001:db8:0:1::/64, PSID 3 once re-delegated 2001:db8:0:3::/64 (see
    // tests/softwire.rs, daemon_map_e_follows_the_prefix_of_its_device).
    let old: Ipv6Addr = "2001:db8:0:1:c6:1208:100:100".parse().unwrap();
    let new: Ipv6Addr = "2001:db8:0:3:c6:1208:100:300".parse().unwrap();
    let lab = common::lab(LabOptions::default());
    softwire_support::serve_redelegated_prefix(&lab);
    let br_config = |ce| {
        let mut config = far_end(&lab.site_config(Site::B), ce, &["198.18.8.1/32"]);
        userspace(&mut config);
        config
    };
    let br = common::start_gateway(&lab, Site::B, &br_config(old));
    let ce = start_ce(&lab, &format!("{}dataplane = \"kernel\"\n", map_e_config()));
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&ce, &br]);
    assert_eq!(ce.tunnel_status("mape").unwrap()["dataplane"], "kernel");
    // One LAN flow, translated into PSID 1's set, that outlives the re-delegation.
    let seen = softwire_support::udp_flow(&lab, 40000, 9, 2);
    let ports = ports_from_shared(&seen);
    assert_eq!(ports.len(), 2, "hostB received {seen:?}");
    assert!(
        ports
            .iter()
            .all(|p| psid_ranges(1).iter().any(|r| r.contains(p))),
        "{seen:?}"
    );

    softwire_support::redelegate_site_a(&lab);
    br.rewrite_config(&br_config(new)).unwrap();
    br.reload().unwrap();
    let moved = common::wait_until(Duration::from_secs(10), || {
        ce.tunnel_status("mape")
            .is_ok_and(|s| s["local"] == new.to_string() && s["dataplane"] == "kernel")
    });
    assert!(moved, "CE did not move to {new}:\n{}", ce.log());
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "no traffic after the move:\n{}\n{}",
        ce.log(),
        br.log()
    );
    // The flow of before is translated again, into PSID 3's set: its translation into PSID
    // 1's (another CE's now) went with the old tunnel.
    let seen = softwire_support::udp_flow(&lab, 40000, 9, 2);
    let ports = ports_from_shared(&seen);
    assert_eq!(ports.len(), 2, "hostB received {seen:?}\n{}", ce.log());
    assert!(
        ports
            .iter()
            .all(|p| psid_ranges(3).iter().any(|r| r.contains(p))),
        "{seen:?}"
    );
    ce.stop().unwrap();
    br.stop().unwrap();
}

#[test]
fn daemon_ds_lite_on_the_kernel_path_follows_its_aftr_name_to_another_aftr() {
    const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";
    let second: Ipv6Addr = "2001:db8:0:2::2".parse().unwrap();
    let lab = common::lab(LabOptions::default());
    ddns_support::add_address(&lab, Node::SiteB, dev::WAN6, second);
    let knot = ddns_support::Knot::answering(
        &lab,
        KEY,
        addr::WAN_B6,
        "knot",
        AFTR_NAME,
        addr::SITE_B_WAN6,
    );
    let first = aftr_config(&lab);
    let mut first = first;
    userspace(&mut first);
    let first = common::start_gateway(&lab, Site::B, &first);
    let ce = start_named_b4(&lab, "dataplane = \"kernel\"\n");
    let remote_is = |a: Ipv6Addr| {
        ce.tunnel_status("b4")
            .is_ok_and(|s| s["remote"] == a.to_string())
    };
    assert!(
        common::wait_until(Duration::from_secs(10), || remote_is(addr::SITE_B_WAN6)),
        "{}",
        ce.log()
    );
    let b4 = ce.tunnel_status("b4").unwrap();
    assert_eq!(b4["dataplane"], "kernel", "{b4:#}\n{}", ce.log());
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "{}",
        ce.log()
    );

    let mut config = lab.site_config(Site::B);
    config.control_socket = lab.dir().join("aftr2.sock");
    let tunnel = config.tunnel_mut();
    tunnel.name = "aftr2".to_owned();
    tunnel.local = second;
    tunnel.routes = vec![format!("{}/32", addr::HOST_A4)];
    userspace(&mut config);
    let second_aftr = common::start_gateway(&lab, Site::B, &config);
    knot.update(&lab, KEY, AFTR_NAME, "AAAA", IpAddr::V6(second));
    let followed = common::wait_until(Duration::from_secs(45), || remote_is(second));
    assert!(
        followed,
        "the B4 stayed with {}:\n{}",
        ce.tunnel_status("b4").unwrap(),
        ce.log()
    );
    let b4 = ce.tunnel_status("b4").unwrap();
    assert_eq!(b4["dataplane"], "kernel", "{b4:#}\n{}", ce.log());
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "no traffic through the second AFTR:\n{}\n{}\n{}",
        ce.tunnel_status("b4").unwrap(),
        ce.log(),
        second_aftr.log()
    );

    // The echo requests crossed the programs towards the second AFTR, not the first.
    let rx =
        |g: &Gateway, name: &str| common::counter(&g.tunnel_status(name).unwrap(), "rx_packets");
    let kernel_tx = |g: &Gateway| {
        let t = g.tunnel_status("b4").unwrap();
        common::counter(&t["kernel_path"], "tx_packets")
    };
    let (first_before, second_before, tx_before) =
        (rx(&first, "ab"), rx(&second_aftr, "aftr2"), kernel_tx(&ce));
    let out = lab.ping_output(Node::HostA, HOST_B, 3, &[]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(
        rx(&first, "ab"),
        first_before,
        "the first AFTR still receives"
    );
    assert!(rx(&second_aftr, "aftr2") >= second_before + 3);
    assert!(
        kernel_tx(&ce) >= tx_before + 3,
        "{:#}",
        ce.tunnel_status("b4").unwrap()
    );
    ce.stop().unwrap();
    second_aftr.stop().unwrap();
    first.stop().unwrap();
}
