//! End-to-end: a DS-Lite B4 and a MAP-E CE, each lowered by `control::softwire::lower` to the
//! ipip6 tunnel v6gate runs, against an AFTR / BR in the next namespace that decapsulates and
//! routes to an "IPv4 internet" host. The far end is a v6gate ipip6 tunnel too.
//!
//! siteA is the CE, wan the access network, siteB the AFTR or BR, hostB the IPv4 internet.
//! The first tests drive the lowered tunnel directly (the test gives the softwire its facts and
//! puts the MAP address on the WAN device); the `daemon_` tests run `v6gate run` on the
//! `map-e` / `ds-lite` config itself, which reads the prefix, owns the MAP address and follows
//! a re-delegation.

mod common;
mod ddns_support;
mod softwire_support;

use softwire_support::ce::{
    AFTR_NAME, aftr_config, ce_toml, far_end, map_e_config, psid_ranges, start_ce, start_named_b4,
};

use std::net::{IpAddr, Ipv6Addr};

use common::{Sites, assert_ping, text, wait_ping};
use control::softwire::{Facts, Lowered, lower};
use std::time::Duration;
use v6gate_lab::{
    Gateway, GatewayConfig, Lab, LabOptions, MssClamp, Node, Site, TunnelConfig, addr, dev,
};

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
        // What the softwire asked for; the default left to the daemon.
        dataplane: Some(t.dataplane).filter(|d| *d != control::Dataplane::Auto),
        addresses: strings(&t.addresses),
        extra: Vec::new(),
    }];
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
    softwire_support::serve_redelegated_prefix(&lab);
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

/// siteA's addresses on its WAN device, as `ip` prints them.
fn wan_addresses(lab: &Lab) -> String {
    lab.ip(Node::SiteA, &["-6", "addr", "show", "dev", dev::WAN6])
        .unwrap()
}

#[test]
fn daemon_ds_lite_b4_keeps_the_lan_source() {
    // No `local`: the B4 sends from the address the host picks towards the AFTR.
    let lab = common::lab(LabOptions::default());
    let aftr = aftr_config(&lab);
    let aftr = common::start_gateway(&lab, Site::B, &aftr);
    let ce = start_ce(
        &lab,
        &format!(
            "[[tunnel]]\nname = \"b4\"\nmode = \"ds-lite\"\naftr = \"{}\"\n\
             default_route = true\n",
            addr::SITE_B_WAN6
        ),
    );
    assert_ping(&lab, Node::HostA, HOST_B, 3, &[&ce, &aftr]);
    let seen = echo_sources_at_host_b(&lab, Node::HostA, &[]);
    assert!(
        seen.contains(&format!("{} > {}", addr::HOST_A4, addr::HOST_B4)),
        "hostB saw:\n{seen}"
    );
    let status = ce.tunnel_status("b4").unwrap();
    assert_eq!(status["local"], addr::SITE_A_WAN6.to_string(), "{status}");
    assert_eq!(status["remote"], addr::SITE_B_WAN6.to_string(), "{status}");
    let device = lab
        .ip(Node::SiteA, &["-4", "addr", "show", "dev", "v6g-b4"])
        .unwrap();
    assert!(device.contains("192.0.0.2/29"), "{device}");
    ce.stop().unwrap();
    aftr.stop().unwrap();
}

/// Three ipip6 packets to the MAP address from an outer source that is not the BR.
const NOT_FROM_THE_BR: &str = r#"
import sys
from scapy.all import IPv6, IP, ICMP, send, conf
conf.verb = 0
src6, dst6, src4, dst4 = sys.argv[1:5]
for _ in range(3):
    send(IPv6(src=src6, dst=dst6, nh=4) / IP(src=src4, dst=dst4) / ICMP(id=4112))
"#;

#[test]
fn daemon_map_e_follows_the_prefix_of_its_device() {
    // siteA's wan0 has 2001:db8:0:1::1/64: PSID 1, MAP address ...:c6:1208:100:100 (see
    // map_e_ce_sends_from_its_shared_address_and_map_address). Re-delegated to
    // 2001:db8:0:3::/64 (the old prefix deprecated, as a router withdrawing it does): PSID 3,
    // so the draft-03 interface ID 00c6:1208:0100:0100 (0, 198.18.8.1, PSID 1) ends in 0300.
    let old: Ipv6Addr = "2001:db8:0:1:c6:1208:100:100".parse().unwrap();
    let new: Ipv6Addr = "2001:db8:0:3:c6:1208:100:300".parse().unwrap();
    let lab = common::lab(LabOptions::default());
    softwire_support::serve_redelegated_prefix(&lab);
    let br_config = |ce| far_end(&lab.site_config(Site::B), ce, &["198.18.8.1/32"]);
    let br = common::start_gateway(&lab, Site::B, &br_config(old));
    // The TUN device's counters and its masquerade, which forgets the old translation with it.
    let ce = start_ce(&lab, &(map_e_config() + "dataplane = \"userspace\"\n"));
    let addresses = wan_addresses(&lab);
    assert!(addresses.contains(&format!("{old}/128")), "{addresses}");
    let status = ce.tunnel_status("mape").unwrap();
    assert_eq!(status["local"], old.to_string(), "{status}");
    assert_eq!(status["remote"], addr::SITE_B_WAN6.to_string(), "{status}");
    let shared = "198.18.8.1";
    assert_ping(&lab, Node::SiteA, HOST_B, 3, &[&ce, &br]);
    let seen = echo_sources_at_host_b(&lab, Node::SiteA, &["-I", shared]);
    assert!(
        seen.contains(&format!("{shared} > {}", addr::HOST_B4)),
        "hostB saw:\n{seen}"
    );
    // A LAN flow, translated into PSID 1's set; it outlives the re-delegation below.
    let seen = softwire_support::udp_flow(&lab, 40000, 9, 2);
    assert_eq!(seen.len(), 2, "hostB received {seen:?}");
    let ports = ports_from(shared, &seen);
    assert!(
        !ports.is_empty()
            && ports
                .iter()
                .all(|p| psid_ranges(1).iter().any(|r| r.contains(p))),
        "hostB received {seen:?}"
    );

    // Only the BR may send into the softwire: the same packet from another address of the
    // access network is dropped and counted.
    let before = common::drops(&ce.tunnel_status("mape").unwrap(), "spoofed_outer_source");
    common::scapy(
        &lab,
        Node::Wan,
        NOT_FROM_THE_BR,
        &[
            "2001:db8:0:2::99",
            &old.to_string(),
            &addr::HOST_B4.to_string(),
            shared,
        ],
    );
    let counted = common::wait_until(Duration::from_secs(3), || {
        let now = ce.tunnel_status("mape").unwrap();
        common::drops(&now, "spoofed_outer_source") >= before + 3
    });
    assert!(counted, "{}", ce.tunnel_status("mape").unwrap());

    // Re-delegation: nothing but the device's addresses changes; the daemon follows.
    softwire_support::redelegate_site_a(&lab);
    br.rewrite_config(&br_config(new)).unwrap();
    br.reload().unwrap();
    let moved = common::wait_until(Duration::from_secs(10), || {
        ce.tunnel_status("mape")
            .is_ok_and(|s| s["local"] == new.to_string())
    });
    assert!(moved, "CE did not move to {new}:\n{}", ce.log());
    let addresses = wan_addresses(&lab);
    assert!(addresses.contains(&format!("{new}/128")), "{addresses}");
    assert!(
        !addresses.contains(&format!("{old}/128")),
        "the old MAP address stays:\n{addresses}"
    );
    assert!(
        wait_ping(&lab, Node::SiteA, HOST_B, Duration::from_secs(10)),
        "no traffic after the move:\n{}\n{}",
        ce.log(),
        br.log()
    );
    assert_ping(&lab, Node::SiteA, HOST_B, 3, &[&ce, &br]);
    // The flow of before is translated again, into PSID 3's set: the rebuilt device took the
    // old translation (and its port of PSID 1's set, now another CE's) with it.
    let seen = softwire_support::udp_flow(&lab, 40000, 9, 2);
    assert_eq!(seen.len(), 2, "hostB received {seen:?}");
    let ports = ports_from(shared, &seen);
    assert!(
        !ports.is_empty()
            && ports
                .iter()
                .all(|p| psid_ranges(3).iter().any(|r| r.contains(p))),
        "hostB received {seen:?}"
    );
    ce.stop().unwrap();
    br.stop().unwrap();
    let addresses = wan_addresses(&lab);
    assert!(
        !addresses.contains(&format!("{new}/128")),
        "the MAP address outlives the daemon:\n{addresses}"
    );
}

/// The port set of PSID 1, the CE's before a re-delegation.
fn psid1_ranges() -> Vec<std::ops::RangeInclusive<u16>> {
    psid_ranges(1)
}

/// The numbers after `marker` in tcpdump's lines that mention `source`.
fn numbers_after(text: &str, source: &str, marker: &str) -> Vec<u16> {
    text.lines()
        .filter(|l| l.contains(source))
        .filter_map(|l| {
            let rest = &l[l.find(marker)? + marker.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The `insert_failed` column of `/proc/net/stat/nf_conntrack` (one hex line per CPU), summed.
fn namespace_insert_failed(stat: &str) -> u64 {
    let mut lines = stat.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let column = header.iter().position(|h| *h == "insert_failed").unwrap();
    lines
        .map(|l| {
            let value = l.split_whitespace().nth(column).unwrap();
            u64::from_str_radix(value, 16).unwrap()
        })
        .sum()
}

/// The source ports of `shared` among what the far side received.
fn ports_from(shared: &str, seen: &[(String, u16)]) -> std::collections::BTreeSet<u16> {
    seen.iter()
        .filter(|(source, _)| source == shared)
        .map(|(_, port)| *port)
        .collect()
}

#[test]
fn daemon_map_e_napt_keeps_to_the_port_set() {
    let old: Ipv6Addr = "2001:db8:0:1:c6:1208:100:100".parse().unwrap();
    let lab = common::lab(LabOptions::default());
    // The BR routes only the shared address back: a LAN source that is not translated gets
    // no answer.
    let br = far_end(&lab.site_config(Site::B), old, &["198.18.8.1/32"]);
    let br = common::start_gateway(&lab, Site::B, &br);
    let ce = start_ce(&lab, &map_e_config());
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&ce, &br]);
    let ranges = psid1_ranges();
    let in_set = |p: u16| ranges.iter().any(|r| r.contains(&p));

    // ICMP: the echo identifier is translated into the set too.
    let capture = lab
        .capture_text(
            Node::HostB,
            dev::LAN,
            "icmp and icmp[icmptype] == icmp-echo",
        )
        .unwrap();
    let out = lab.ping_output(Node::HostA, HOST_B, 2, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let seen = capture.finish().unwrap();
    let ids = numbers_after(&seen, "198.18.8.1 >", "id ");
    assert!(!ids.is_empty(), "hostB saw:\n{seen}");
    assert!(
        ids.iter().all(|&id| in_set(id)),
        "ids {ids:?} outside the set"
    );

    // An unpaced UDP burst from 120 sockets: every datagram arrives, from a port of the set,
    // and the flows are spread over all 15 ranges.
    let seen = softwire_support::udp_burst(&lab, 9, 120);
    let distinct = ports_from("198.18.8.1", &seen);
    assert_eq!(distinct.len(), 120, "hostB received {seen:?}");
    let outside: Vec<u16> = distinct.iter().copied().filter(|&p| !in_set(p)).collect();
    assert!(outside.is_empty(), "ports outside the set: {outside:?}");
    let used = ranges
        .iter()
        .filter(|r| distinct.iter().any(|p| r.contains(p)))
        .count();
    assert_eq!(used, 15, "ranges used: {used} of 15; ports {distinct:?}");

    // 200 TCP connections held open at once: every source port in the set, all ranges used.
    let (held, _) = softwire_support::tcp_hold(&lab, &[7000], 200, || {});
    assert_eq!(held.confirmed, 200, "{held:?}");
    let distinct = held.ports();
    assert_eq!(distinct.len(), 200, "{held:?}");
    assert!(distinct.iter().all(|&p| in_set(p)), "{distinct:?}");
    let used = ranges
        .iter()
        .filter(|r| distinct.iter().any(|p| r.contains(p)))
        .count();
    assert_eq!(used, 15, "TCP used {used} of 15 ranges");

    let softwire = |ce: &Gateway| ce.status().unwrap()["softwires"][0].clone();
    let before = softwire(&ce);
    assert_eq!(before["ipv4"], "198.18.8.1", "{before}");
    assert_eq!(before["psid"], 1, "{before}");
    assert_eq!(before["map_address"], old.to_string(), "{before}");
    assert_eq!(before["napt_ports_total"], 240, "{before}");
    assert!(
        before["napt_ports_in_use"].as_u64().unwrap() >= 120,
        "{before}"
    );
    let exhausted = before["napt_exhausted"].as_u64().unwrap();

    // 241 concurrent flows to one destination: 240 get a port of the set, the 241st none.
    let seen = softwire_support::udp_burst(&lab, 10, 241);
    assert_eq!(seen.len(), 240, "hostB received {seen:?}");
    let distinct = ports_from("198.18.8.1", &seen);
    assert_eq!(distinct.len(), 240, "hostB received {seen:?}");
    assert!(distinct.iter().all(|&p| in_set(p)), "{distinct:?}");
    let after = softwire(&ce);
    // The 241st flow is refused: its range holds 16 flows to this destination already, so
    // the kernel gives it a taken port and drops it when it confirms the entry. That drop is
    // the namespace's conntrack `insert_failed`, which is what `napt_exhausted` reports.
    let refused = after["napt_exhausted"].as_u64().unwrap();
    assert_eq!(refused, exhausted + 1, "{before} then {after}");
    let stat = lab
        .exec_ok(Node::SiteA, &["cat", "/proc/net/stat/nf_conntrack"])
        .unwrap();
    assert_eq!(refused, namespace_insert_failed(&stat), "{stat}");
    assert_eq!(after["napt_ports_in_use"], 240, "{after}");
    let listing = softwire_support::napt_counter(&lab, "napt_mape_flows");
    assert!(listing.contains("packets"), "{listing}");

    // A port outside the set, opened from outside (the lab's BR forwards every port of the
    // shared address; a real one would not): the CE's answers would leave from that port, as
    // they belong to a flow that did not start here and so are not translated. The guard
    // drops them, counted, and nothing from that port reaches hostB.
    let outside_before = outside_drops(&lab);
    let echo = lab
        .spawn(Node::SiteA, "echo", &[common::PYTHON, "-c", ECHO_ON_PORT_7])
        .unwrap();
    let listening = common::wait_until(Duration::from_secs(5), || {
        lab.exec_ok(Node::SiteA, &["ss", "-lun", "sport", "= :7"])
            .is_ok_and(|out| out.contains(":7 "))
    });
    assert!(listening, "no echo socket in siteA: {}", echo.stderr());
    let capture = lab
        .capture_text(Node::HostB, dev::LAN, "udp and src host 198.18.8.1")
        .unwrap();
    let script = "import socket, time\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        for _ in range(3):\n    s.sendto(b'x', ('198.18.8.1', 7))\n    time.sleep(0.1)\n";
    let out = lab.exec(Node::HostB, &[common::PYTHON, "-c", script]);
    assert!(out.status.success(), "{}", text(&out));
    let answered = common::wait_until(Duration::from_secs(5), || {
        outside_drops(&lab) >= outside_before + 3
    });
    let seen = capture.finish().unwrap();
    echo.terminate(Duration::from_secs(1)).unwrap();
    assert!(answered, "the guard dropped {}", outside_drops(&lab));
    assert!(!seen.contains("198.18.8.1.7 >"), "hostB saw:\n{seen}");
    ce.stop().unwrap();
    br.stop().unwrap();
}
/// Echoes three datagrams on UDP port 7 (outside PSID 1's set) of every address; a send the
/// firewall drops fails with `EPERM`, which is not the end.
const ECHO_ON_PORT_7: &str = "import socket\n\
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
    s.bind(('0.0.0.0', 7))\n\
    s.settimeout(15)\n\
    for _ in range(3):\n    data, peer = s.recvfrom(64)\n    \
    try: s.sendto(data, peer)\n    except PermissionError: pass\n";

/// The packets the CE's NAPT guard dropped for leaving from outside the port set.
fn outside_drops(lab: &Lab) -> u64 {
    let listing = softwire_support::napt_counter(lab, "napt_mape_outside");
    numbers_after(&listing, "packets", "packets ")
        .first()
        .map_or_else(|| panic!("{listing}"), |&n| u64::from(n))
}

/// An OCN-shaped documentation rule (PSID offset 6, 6-bit PSID, draft-03 layout) sharing
/// `ipv4`: siteA's /64 2001:db8:0:1::/64 carries EA bits 0b000001 after the /58, so PSID 1.
fn ocn_shaped_config(ipv4: &str) -> String {
    format!(
        "[[tunnel]]\nname = \"mape\"\nmode = \"map-e\"\ndevice_prefix = \"{}\"\n\
         rule = {{ ipv6_prefix = \"2001:db8::/58\", ipv4_prefix = \"{ipv4}/32\", \
         ea_bits = 6, psid_offset = 6, br = \"{}\", layout = \"draft03\" }}\n\
         default_route = true\n",
        dev::WAN6,
        addr::SITE_B_WAN6
    )
}

/// The port set of PSID 1 under [`ocn_shaped_config`] (RFC 7597 5.1: offset 6, so A = 1..63 in
/// the top six bits, the PSID in the next six, 16 ports each).
fn ocn_psid1_ranges() -> Vec<std::ops::RangeInclusive<u16>> {
    (1..64u16)
        .map(|a| (a << 10 | 1 << 4)..=(a << 10 | 1 << 4 | 15))
        .collect()
}

#[test]
fn daemon_map_e_napt_holds_2000_connections() {
    // 1,008 ports cannot carry 2,000 flows to one destination, but conntrack may give one
    // port to flows towards different destinations: 500 connections to each of four ports of
    // hostB, opened one after another (so the round-robin over the 63 ranges gives each range
    // about 8 flows per destination, half of its 16 ports). Draft-03 interface ID for
    // 198.18.8.1, PSID 1: 00c6:1208:0100:0100.
    let map: Ipv6Addr = "2001:db8:0:1:c6:1208:100:100".parse().unwrap();
    let shared = "198.18.8.1";
    let lab = common::lab(LabOptions::default());
    let br = far_end(&lab.site_config(Site::B), map, &[&format!("{shared}/32")]);
    let br = common::start_gateway(&lab, Site::B, &br);
    let ce = start_ce(&lab, &ocn_shaped_config(shared));
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&ce, &br]);
    let ranges = ocn_psid1_ranges();
    let in_set = |p: u16| ranges.iter().any(|r| r.contains(&p));

    let ports = [7000, 7001, 7002, 7003];
    let mut during = serde_json::Value::Null;
    let (held, seconds) = softwire_support::tcp_hold(&lab, &ports, 500, || {
        during = ce.status().unwrap()["softwires"][0].clone();
    });
    eprintln!(
        "2000 TCP connections through the MAP-E NAPT opened in {seconds:.2} s; {} source \
         ports in use",
        during["napt_ports_in_use"]
    );
    assert_eq!(
        held.confirmed, 2000,
        "not all held: {} of 2000",
        held.confirmed
    );
    assert_eq!(held.peers.len(), 2000);
    assert!(held.peers.iter().all(|p| p.0 == shared), "{:?}", held.peers);
    let distinct = held.ports();
    let outside: Vec<u16> = distinct.iter().copied().filter(|&p| !in_set(p)).collect();
    assert!(outside.is_empty(), "ports outside the set: {outside:?}");
    let used = ranges
        .iter()
        .filter(|r| distinct.iter().any(|p| r.contains(p)))
        .count();
    assert_eq!(used, 63, "TCP used {used} of 63 ranges");
    // No (source port, destination port) pair twice: conntrack told the flows apart.
    let pairs: std::collections::BTreeSet<(u16, u16)> =
        held.peers.iter().map(|p| (p.1, p.2)).collect();
    assert_eq!(pairs.len(), 2000);

    assert_eq!(during["psid"], 1, "{during}");
    assert_eq!(during["psid_len"], 6, "{during}");
    assert_eq!(during["map_address"], map.to_string(), "{during}");
    assert_eq!(during["napt_ports_total"], 1008, "{during}");
    assert_eq!(
        during["ports"].as_array().map(Vec::len),
        Some(63),
        "{during}"
    );
    // Every port the far side saw was in use then (more may be: the pings' identifiers).
    let in_use = during["napt_ports_in_use"].as_u64().unwrap();
    assert!(
        (distinct.len() as u64..=1008).contains(&in_use),
        "{in_use} in use, {} seen by hostB",
        distinct.len()
    );
    ce.stop().unwrap();
    br.stop().unwrap();
}

#[test]
fn daemon_map_e_reload_changes_the_rule_in_place() {
    // From the v6plus-shaped rule sharing 198.18.8.1 to an OCN-shaped one sharing 198.18.8.2:
    // the same /64 gives PSID 1 under both, but another shared address, another port set and
    // so another MAP address (draft-03 interface ID 00c6:1208:0200:0100).
    let old: Ipv6Addr = "2001:db8:0:1:c6:1208:100:100".parse().unwrap();
    let new: Ipv6Addr = "2001:db8:0:1:c6:1208:200:100".parse().unwrap();
    let lab = common::lab(LabOptions::default());
    let br_config =
        |ce, shared: &str| far_end(&lab.site_config(Site::B), ce, &[&format!("{shared}/32")]);
    let br = common::start_gateway(&lab, Site::B, &br_config(old, "198.18.8.1"));
    let ce = start_ce(&lab, &map_e_config());
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&ce, &br]);
    let softwire = |ce: &Gateway| ce.status().unwrap()["softwires"][0].clone();
    assert_eq!(softwire(&ce)["napt_ports_total"], 240);

    std::fs::write(
        ce.config_path(),
        ce_toml(&lab, &[], &ocn_shaped_config("198.18.8.2")),
    )
    .unwrap();
    br.rewrite_config(&br_config(new, "198.18.8.2")).unwrap();
    br.reload().unwrap();
    ce.reload().unwrap();
    let moved = common::wait_until(Duration::from_secs(10), || {
        softwire(&ce)["map_address"] == new.to_string()
    });
    assert!(moved, "{}\n{}", softwire(&ce), ce.log());
    let now = softwire(&ce);
    assert_eq!(now["state"], "running", "{now}");
    assert_eq!(now["ipv4"], "198.18.8.2", "{now}");
    assert_eq!(now["psid"], 1, "{now}");
    assert_eq!(now["psid_len"], 6, "{now}");
    assert_eq!(now["napt_ports_total"], 1008, "{now}");
    let ranges = ocn_psid1_ranges();
    let listed: Vec<[u16; 2]> = serde_json::from_value(now["ports"].clone()).unwrap();
    let expected: Vec<[u16; 2]> = ranges.iter().map(|r| [*r.start(), *r.end()]).collect();
    assert_eq!(listed, expected, "{now}");
    let tunnel = ce.tunnel_status("mape").unwrap();
    assert_eq!(tunnel["local"], new.to_string(), "{tunnel}");
    let ruleset = lab
        .exec_ok(Node::SiteA, &["nft", "list", "table", "inet", "v6gate"])
        .unwrap();
    assert!(
        ruleset.contains("198.18.8.2") && !ruleset.contains("198.18.8.1"),
        "{ruleset}"
    );
    let addresses = wan_addresses(&lab);
    assert!(addresses.contains(&format!("{new}/128")), "{addresses}");
    assert!(
        !addresses.contains(&format!("{old}/128")),
        "the old MAP address stays:\n{addresses}"
    );

    // Traffic through the new NAPT: from the new shared address, in the new set, over all of
    // its ranges; nothing from the old address.
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "no traffic after the reload:\n{}\n{}",
        ce.log(),
        br.log()
    );
    let seen = softwire_support::udp_burst(&lab, 9, 126);
    assert_eq!(seen.len(), 126, "hostB received {seen:?}");
    let distinct = ports_from("198.18.8.2", &seen);
    assert_eq!(distinct.len(), 126, "hostB received {seen:?}");
    assert!(
        distinct
            .iter()
            .all(|p| ranges.iter().any(|r| r.contains(p))),
        "{distinct:?}"
    );
    let used = ranges
        .iter()
        .filter(|r| distinct.iter().any(|p| r.contains(p)))
        .count();
    assert_eq!(used, 63, "UDP used {used} of 63 ranges");
    ce.stop().unwrap();
    br.stop().unwrap();
}

#[test]
fn daemon_runs_the_map_e_examples_and_says_why_they_wait() {
    // The built-in rules cover only the VNEs' own prefixes; the lab has documentation space,
    // so the examples start, wait, and status names the prefix the rule does not cover.
    let lab = common::lab(LabOptions::default());
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for (file, tunnel) in [("v6plus.toml", "v6plus"), ("ocn.toml", "ocn")] {
        let socket = lab.dir().join(format!("{tunnel}.sock"));
        let text = std::fs::read_to_string(examples.join(file))
            .unwrap()
            .replace(
                "[gateway]\n",
                &format!("[gateway]\ncontrol_socket = \"{}\"\n", socket.display()),
            )
            .replace("device_prefix = \"eth0\"", "device_prefix = \"wan0\"");
        let path = lab.dir().join(file);
        std::fs::write(&path, text).unwrap();
        let ce = lab
            .start_gateway_with(common::BIN.as_ref(), Node::SiteA, &path, &socket)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let status = ce.status().unwrap();
        let softwire = &status["softwires"][0];
        assert_eq!(softwire["name"], tunnel, "{status}");
        assert_eq!(softwire["mode"], "map-e", "{status}");
        assert_eq!(softwire["state"], "waiting", "{status}");
        let reason = softwire["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("2001:db8:0:1::/64"), "{file}: {reason}");
        ce.stop().unwrap();
    }
}

#[test]
fn daemon_ds_lite_finds_its_aftr_by_name() {
    const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";
    let lab = common::lab(LabOptions::default());
    // Held to the end: the server answers the B4 for as long as it lives.
    let _knot = ddns_support::Knot::answering(
        &lab,
        KEY,
        addr::WAN_B6,
        "knot",
        AFTR_NAME,
        addr::SITE_B_WAN6,
    );
    let aftr = far_end(
        &lab.site_config(Site::B),
        addr::SITE_A_WAN6,
        &[addr::LAN_A4, "192.0.0.0/29"],
    );
    let aftr = common::start_gateway(&lab, Site::B, &aftr);
    let ce = start_named_b4(&lab, "");
    let resolved = common::wait_until(Duration::from_secs(10), || {
        ce.tunnel_status("b4")
            .is_ok_and(|s| s["remote"] == addr::SITE_B_WAN6.to_string())
    });
    assert!(resolved, "the AFTR's name was not followed:\n{}", ce.log());
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "{}",
        ce.log()
    );
    let seen = echo_sources_at_host_b(&lab, Node::HostA, &[]);
    assert!(
        seen.contains(&format!("{} > {}", addr::HOST_A4, addr::HOST_B4)),
        "hostB saw:\n{seen}"
    );
    let status = ce.status().unwrap();
    let endpoints = status["names"]["endpoints"].to_string();
    assert!(endpoints.contains(AFTR_NAME), "{status}");
    ce.stop().unwrap();
    aftr.stop().unwrap();
}

#[test]
fn daemon_ds_lite_follows_its_aftr_name_to_another_aftr() {
    // The name moves from the AFTR at 2001:db8:0:2::1 to a second one at ::2 (another v6gate
    // in siteB, routing hostA's address back through its own tunnel). The first stays up and
    // answers, so only re-resolving the name (at the record's TTL, at least every 30 s) moves
    // the B4.
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
    // Both AFTRs on the TUN dataplane: they share siteB's wan device with overlapping
    // prefixes, which two instances cannot on the kernel path (softwire_kernel.rs).
    let userspace = "dataplane = \"userspace\"".to_owned();
    let mut first = aftr_config(&lab);
    first.tunnel_mut().extra.push(userspace.clone());
    let first = common::start_gateway(&lab, Site::B, &first);
    let ce = start_named_b4(&lab, "");
    let remote_is = |a: Ipv6Addr| {
        ce.tunnel_status("b4")
            .is_ok_and(|s| s["remote"] == a.to_string())
    };
    assert!(
        common::wait_until(Duration::from_secs(10), || remote_is(addr::SITE_B_WAN6)),
        "{}",
        ce.log()
    );
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
    tunnel.extra.push(userspace);
    let second_aftr = common::start_gateway(&lab, Site::B, &config);
    let moved = std::time::Instant::now();
    knot.update(&lab, KEY, AFTR_NAME, "AAAA", IpAddr::V6(second));
    let followed = common::wait_until(Duration::from_secs(45), || remote_is(second));
    assert!(
        followed,
        "the B4 stayed with {}:\n{}",
        ce.tunnel_status("b4").unwrap(),
        ce.log()
    );
    eprintln!(
        "the B4 followed its AFTR's name {} ms after the record changed",
        moved.elapsed().as_millis()
    );
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "no traffic through the second AFTR:\n{}\n{}",
        ce.log(),
        second_aftr.log()
    );

    // Through the second AFTR with the LAN source intact; the first receives nothing more.
    let rx =
        |g: &Gateway, name: &str| common::counter(&g.tunnel_status(name).unwrap(), "rx_packets");
    let (first_before, second_before) = (rx(&first, "ab"), rx(&second_aftr, "aftr2"));
    let seen = echo_sources_at_host_b(&lab, Node::HostA, &[]);
    assert!(
        seen.contains(&format!("{} > {}", addr::HOST_A4, addr::HOST_B4)),
        "hostB saw:\n{seen}"
    );
    assert_eq!(
        rx(&first, "ab"),
        first_before,
        "the first AFTR still receives"
    );
    assert!(rx(&second_aftr, "aftr2") >= second_before + 3);
    let status = ce.status().unwrap();
    let endpoints = status["names"]["endpoints"].to_string();
    assert!(endpoints.contains(&second.to_string()), "{status}");
    ce.stop().unwrap();
    second_aftr.stop().unwrap();
    first.stop().unwrap();
}
