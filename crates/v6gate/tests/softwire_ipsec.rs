//! End-to-end: the gateway's own traffic over a MAP-E softwire. An ipsec tunnel from the CE in
//! siteA to v6gate on hostB, the IPv4 internet behind the emulated BR in siteB, runs through
//! the softwire; its IKE and ESP-in-UDP must leave from ports of the CE's port set, with the
//! softwire on the TUN dataplane and on the kernel path.

mod common;
mod softwire_support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use common::assert_ping;
use softwire_support::ce::{far_end, map_e_config, psid_ranges, start_ce};
use v6gate_lab::{Lab, LabOptions, Node, Site, addr, dev};

/// The source port of every packet from `shared` in tcpdump's `-v` lines (`ADDR.PORT > ...`).
fn source_ports(text: &str, shared: &str) -> Vec<u16> {
    let marker = format!("{shared}.");
    text.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix(&marker)?;
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// An address of hostB behind its end of the IPsec tunnel of
/// [`daemon_ipsec_over_map_e_keeps_to_the_port_set`].
const BEHIND_HOST_B: &str = "198.18.200.1";

/// A `[[tunnel]]` table of `mode = "ipsec"` with its PSK file written beside the configs.
fn ipsec_tunnel(lab: &Lab, tag: &str, ends: (&str, &str), subnets: (&str, &str)) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let psk = lab.dir().join(format!("{tag}.psk"));
    std::fs::write(&psk, v6gate_lab::strongswan::LAB_PSK).unwrap();
    std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let start = if tag == "ce" { "auto" } else { "respond" };
    format!(
        "[[tunnel]]\nname = \"ike\"\nmode = \"ipsec\"\nlocal = \"{}\"\nremote = \"{}\"\n\
         local_subnets = [\"{}\"]\nroutes = [\"{}\"]\n[tunnel.ike]\npsk_file = {:?}\n\
         start = \"{start}\"\nencap = \"auto\"\n",
        ends.0,
        ends.1,
        subnets.0,
        subnets.1,
        psk.display().to_string()
    )
}

#[test]
fn daemon_ipsec_over_map_e_keeps_to_the_port_set() {
    ipsec_over_map_e("userspace");
}

#[test]
fn daemon_ipsec_over_map_e_on_the_kernel_path_keeps_to_the_port_set() {
    // The CE's pin to the peer goes through the softwire's device, whose packets the NAPT
    // translates as it does on the TUN dataplane.
    ipsec_over_map_e("kernel");
}

/// The CE's own IKE and ESP-in-UDP leave through the MAP-E softwire on `dataplane`: the IPsec
/// peer on the IPv4 internet (v6gate on hostB) sees the shared address with ports of the set
/// only, and the translation is a NAT to IKE, so ESP moves into UDP by itself.
fn ipsec_over_map_e(dataplane: &str) {
    let lab = common::lab(LabOptions::default());
    let old: Ipv6Addr = "2001:db8:0:1:c6:1208:100:100".parse().unwrap();
    let br = far_end(&lab.site_config(Site::B), old, &["198.18.8.1/32"]);
    let br = common::start_gateway(&lab, Site::B, &br);
    let behind = format!("{BEHIND_HOST_B}/32");
    lab.ip(Node::HostB, &["addr", "add", &behind, "dev", "lo"])
        .unwrap();
    let shared = "198.18.8.1";
    let host_b = addr::HOST_B4.to_string();
    let socket = lab.dir().join("peer.sock");
    let peer_config = lab.dir().join("peer.toml");
    std::fs::write(
        &peer_config,
        format!(
            "[gateway]\ncontrol_socket = {:?}\n\n",
            socket.display().to_string()
        ) + &ipsec_tunnel(
            &lab,
            "peer",
            (&host_b, shared),
            ("198.18.200.0/24", addr::LAN_A4),
        ),
    )
    .unwrap();
    let peer = lab
        .start_gateway_with(common::BIN.as_ref(), Node::HostB, &peer_config, &socket)
        .unwrap_or_else(|e| panic!("starting the peer: {e}"));
    // Everything the CE's shared address sends to hostB, from the first IKE message on.
    let capture = lab
        .capture_text(Node::HostB, dev::LAN, &format!("src host {shared}"))
        .unwrap();
    let ce = start_ce(
        &lab,
        &(map_e_config()
            + &format!("dataplane = \"{dataplane}\"\n")
            + &ipsec_tunnel(
                &lab,
                "ce",
                (shared, &host_b),
                (addr::LAN_A4, "198.18.200.0/24"),
            )),
    );
    let up = common::wait_until(Duration::from_secs(20), || {
        ce.tunnel_status("ike").is_ok_and(|s| s["state"] == "up")
    });
    let mape = ce.tunnel_status("mape").unwrap();
    assert_eq!(mape["dataplane"], dataplane, "{mape}");
    assert!(
        up,
        "no CHILD SA:\n{}\n--- peer ---\n{}",
        ce.log(),
        peer.log()
    );
    let behind: IpAddr = BEHIND_HOST_B.parse().unwrap();
    assert_ping(&lab, Node::HostA, behind, 5, &[&ce, &peer, &br]);
    let seen = capture.finish().unwrap();

    for (gateway, side) in [(&ce, "CE"), (&peer, "peer")] {
        let t = gateway.tunnel_status("ike").unwrap();
        assert_eq!(t["ipsec"]["udp_encap"], true, "{side}: {t}");
        assert!(t["rx_packets"].as_u64().unwrap() >= 5, "{side}: {t}");
    }
    // Every datagram is UDP from a port of the set: IKE's 500 and 4500 were translated, and
    // nothing left as raw ESP.
    let ranges = psid_ranges(1);
    let headers: Vec<&str> = seen.lines().filter(|l| l.contains(" IP (")).collect();
    assert!(headers.len() >= 7, "hostB saw:\n{seen}");
    assert!(
        headers.iter().all(|h| h.contains("proto UDP (17)")),
        "not all UDP:\n{seen}"
    );
    let ports = source_ports(&seen, shared);
    assert_eq!(ports.len(), headers.len(), "hostB saw:\n{seen}");
    assert!(seen.contains("UDP-encap: ESP"), "hostB saw:\n{seen}");
    let outside: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| !ranges.iter().any(|r| r.contains(p)))
        .collect();
    assert!(
        outside.is_empty(),
        "ports outside the set {outside:?}:\n{seen}"
    );
    // IKE began on one port and NAT-T moved to another.
    let distinct: std::collections::BTreeSet<u16> = ports.into_iter().collect();
    assert!(distinct.len() >= 2, "hostB saw:\n{seen}");
    ce.stop().unwrap();
    peer.stop().unwrap();
    br.stop().unwrap();
}
