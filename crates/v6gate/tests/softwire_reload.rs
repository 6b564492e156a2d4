//! End-to-end: a reload that touches no softwire leaves the softwires running as they are.
//!
//! siteA runs a MAP-E CE (shared address 198.18.8.1, BR at siteB's 2001:db8:0:2::1) and a
//! DS-Lite B4 with the default route, whose AFTR is the name `aftr.example.jp` (an AFTR at
//! siteB's 2001:db8:0:2::2) and no `local`: it sends from siteA's own address on wan0, not
//! from the CE's MAP address on the same device. The reload adds an unrelated tunnel: both
//! softwires keep their TUN devices, pings every 10 ms through each lose at most one reply,
//! and the B4 still follows its AFTR's name afterwards. A second reload drops the CE: its
//! device, MAP address and NAPT go, the B4 stays as it is.

mod common;
mod ddns_support;
mod softwire_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use softwire_support::ce::{ce_toml, far_end, map_e_config, start_ce_with};
use v6gate_lab::{Lab, LabOptions, Node, Process, Site, addr, dev};

const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";

/// The B4 of the test, with the default route and without `local`: it must send from the
/// host's own address on wan0, not from the CE's MAP address on the same device, which the
/// AFTR does not accept.
const B4: &str = "[[tunnel]]\nname = \"b4\"\nmode = \"ds-lite\"\naftr = \"aftr.example.jp\"\n\
    default_route = true\n";

/// The CE's shared IPv4 address under the rule of `map_e_config`.
const SHARED: Ipv4Addr = Ipv4Addr::new(198, 18, 8, 1);

/// A tunnel the reload adds, sharing nothing with the softwires.
const UNRELATED: &str = "[[tunnel]]\nname = \"other\"\nmode = \"ipip6\"\n\
    local = \"2001:db8:0:1::1\"\nremote = \"2001:db8:0:2::99\"\nroutes = [\"198.18.99.0/24\"]\n";

/// Pings sent 10 ms apart for about three seconds.
const PINGS: u32 = 300;

/// The kernel's index of `device` in siteA.
fn ifindex(lab: &Lab, device: &str) -> u32 {
    let line = lab
        .ip(Node::SiteA, &["-o", "link", "show", "dev", device])
        .unwrap_or_else(|e| panic!("{device}: {e}"));
    line.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in {line:?}"))
}

/// `ping` from `node` to `to`, every 10 ms, in the background.
fn start_pings(lab: &Lab, node: Node, to: &str) -> Process {
    let count = PINGS.to_string();
    lab.spawn(
        node,
        "ping",
        &[
            "ping", "-n", "-q", "-i", "0.01", "-W", "1", "-c", &count, to,
        ],
    )
    .unwrap()
}

/// `(transmitted, received)` from ping's summary, once it exited (bounded).
fn ping_summary(process: &Process) -> (u32, u32) {
    let exited = process.wait_timeout(Duration::from_secs(20)).unwrap();
    assert!(exited.is_some(), "{} did not end", process.label());
    let out = process.stdout();
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no summary from ping: {out}{}", process.stderr()));
    let numbers: Vec<u32> = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    match numbers[..] {
        [sent, received, ..] => (sent, received),
        _ => panic!("cannot read {line:?}"),
    }
}

#[test]
fn daemon_reload_keeps_unchanged_softwires_running() {
    let map_address: Ipv6Addr = "2001:db8:0:1:c6:1208:100:100".parse().unwrap();
    let aftr_address: Ipv6Addr = "2001:db8:0:2::2".parse().unwrap();
    let lab = common::lab(LabOptions::default());
    ddns_support::add_address(&lab, Node::SiteB, dev::WAN6, aftr_address);
    let knot = ddns_support::Knot::answering(
        &lab,
        KEY,
        addr::WAN_B6,
        "knot",
        "aftr.example.jp",
        aftr_address,
    );
    let br = far_end(
        &lab.site_config(Site::B),
        map_address,
        &[&format!("{SHARED}/32")],
    );
    let br = common::start_gateway(&lab, Site::B, &br);
    let mut aftr = far_end(
        &lab.site_config(Site::B),
        addr::SITE_A_WAN6,
        &[addr::LAN_A4, "192.0.0.0/29"],
    );
    aftr.control_socket = lab.dir().join("aftr.sock");
    let tunnel = aftr.tunnel_mut();
    tunnel.name = "aftr".to_owned();
    tunnel.local = aftr_address;
    // The CE's replies from its shared address come through the B4 too. The AFTR's own
    // address on the device (RFC 6333's 192.0.0.1) is what lets loose reverse-path filtering
    // pass a source routed through another device.
    let mut sources = tunnel.routes.clone();
    sources.push(format!("{SHARED}/32"));
    tunnel.allowed_sources = Some(sources);
    tunnel.addresses = vec!["192.0.0.1/29".to_owned()];
    let aftr = common::start_gateway(&lab, Site::B, &aftr);

    let resolvers = [format!("resolvers = [\"[{}]:53\"]", addr::WAN_B6)];
    let map_e = map_e_config().replace("default_route = true\n", "");
    assert_ne!(map_e, map_e_config());
    let softwires = format!("{map_e}{B4}");
    let ce = start_ce_with(&lab, &resolvers, &softwires);
    let remote_is = |a: Ipv6Addr| {
        ce.tunnel_status("b4")
            .is_ok_and(|s| s["remote"] == a.to_string())
    };
    assert!(
        common::wait_until(Duration::from_secs(10), || remote_is(aftr_address)),
        "the B4 did not find its AFTR:\n{}",
        ce.log()
    );
    let b4 = ce.tunnel_status("b4").unwrap();
    assert_eq!(
        b4["local"],
        addr::SITE_A_WAN6.to_string(),
        "the B4 does not send from the host's own address: {b4}"
    );
    let host_b = IpAddr::V4(addr::HOST_B4);
    let shared = IpAddr::V4(SHARED);
    let ping_from = |to: IpAddr| {
        if to == shared {
            Node::HostB
        } else {
            Node::HostA
        }
    };
    // A softwire's core carries only what it routes, and only one may hold the default route:
    // hostA reaches hostB through the B4 both ways; hostB's pings to the shared address come in
    // through the CE and their replies leave, as anything from siteA does, through the B4.
    for to in [host_b, shared] {
        assert!(
            common::wait_ping(&lab, ping_from(to), to, Duration::from_secs(10)),
            "no traffic to {to}:\n{}\n{}\n{}",
            ce.log(),
            br.log(),
            aftr.log()
        );
    }
    let before = (ifindex(&lab, "v6g-mape"), ifindex(&lab, "v6g-b4"));

    // The reload, while both softwires carry a ping every 10 ms.
    let through_b4 = start_pings(&lab, Node::HostA, &host_b.to_string());
    let through_ce = start_pings(&lab, Node::HostB, &shared.to_string());
    let warmed = common::wait_until(Duration::from_secs(5), || {
        [&through_ce, &through_b4]
            .iter()
            .all(|p| p.stdout().contains("PING"))
    });
    assert!(warmed, "{}", through_ce.stderr());
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(
        ce.config_path(),
        ce_toml(&lab, &resolvers, &format!("{softwires}{UNRELATED}")),
    )
    .unwrap();
    ce.reload().unwrap();
    let reloaded = common::wait_until(Duration::from_secs(10), || {
        ce.tunnel_status("other").is_ok()
    });
    assert!(reloaded, "the reload did not add `other`:\n{}", ce.log());
    for (what, pings) in [("MAP-E", &through_ce), ("DS-Lite", &through_b4)] {
        let (sent, received) = ping_summary(pings);
        eprintln!("{what}: {received} of {sent} pings answered across the reload");
        assert_eq!(sent, PINGS, "{what}");
        assert!(
            sent - received <= 1,
            "{what}: {} of {sent} pings lost across the reload:\n{}",
            sent - received,
            ce.log()
        );
    }
    let after = (ifindex(&lab, "v6g-mape"), ifindex(&lab, "v6g-b4"));
    assert_eq!(after, before, "(MAP-E, DS-Lite) devices re-created");
    let status = ce.status().unwrap();
    let listed = status["softwires"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{status}");
    for softwire in listed {
        assert_eq!(softwire["state"], "running", "{status}");
    }
    let endpoints = status["names"]["endpoints"].to_string();
    assert!(
        endpoints.contains("aftr.example.jp"),
        "the AFTR's name is no longer followed: {status}"
    );

    // Still followed: the name moves to the BR's address, and at its next answer (at most
    // 30 s after the last) the B4 goes there.
    knot.update(
        &lab,
        KEY,
        "aftr.example.jp",
        "AAAA",
        IpAddr::V6(addr::SITE_B_WAN6),
    );
    assert!(
        common::wait_until(Duration::from_secs(45), || remote_is(addr::SITE_B_WAN6)),
        "the B4 stayed with {}:\n{}",
        ce.tunnel_status("b4").unwrap(),
        ce.log()
    );

    // Dropping the CE removes its device, MAP address and NAPT, and leaves the B4 as it is.
    let b4 = ifindex(&lab, "v6g-b4");
    std::fs::write(
        ce.config_path(),
        ce_toml(&lab, &resolvers, &format!("{B4}{UNRELATED}")),
    )
    .unwrap();
    ce.reload().unwrap();
    let dropped = common::wait_until(Duration::from_secs(10), || {
        ce.status()
            .is_ok_and(|s| s["softwires"].as_array().is_some_and(|l| l.len() == 1))
    });
    assert!(dropped, "the CE is still listed:\n{}", ce.log());
    assert!(
        lab.ip(Node::SiteA, &["link", "show", "dev", "v6g-mape"])
            .is_err(),
        "the CE's device stays"
    );
    let wan = lab
        .ip(Node::SiteA, &["-6", "addr", "show", "dev", dev::WAN6])
        .unwrap();
    assert!(
        !wan.contains(&map_address.to_string()),
        "the MAP address stays:\n{wan}"
    );
    let ruleset = lab
        .exec_ok(Node::SiteA, &["nft", "list", "table", "inet", "v6gate"])
        .unwrap_or_default();
    assert!(!ruleset.contains("napt_mape"), "{ruleset}");
    assert_eq!(
        ifindex(&lab, "v6g-b4"),
        b4,
        "the B4's device was re-created"
    );
    assert!(
        remote_is(addr::SITE_B_WAN6),
        "{}",
        ce.tunnel_status("b4").unwrap()
    );
    let status = ce.status().unwrap();
    let endpoints = status["names"]["endpoints"].to_string();
    assert!(endpoints.contains("aftr.example.jp"), "{status}");
    ce.stop().unwrap();
    aftr.stop().unwrap();
    br.stop().unwrap();
}
