//! End-to-end: `mode = "ipsec"` tunnels between two v6gate gateways, and between v6gate
//! and strongSwan in both roles, over the lab's IPv6 underlay; rekeying under traffic and
//! dead peer detection with the peer coming back.

mod common;

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::ipsec::{
    TUNNEL, UnderRekey, dpd_restart, ipsec_status, pings_under_rekey, start_charon,
    wait_established,
};
use common::{BIN, assert_ping, pcap_packets, text, wait_until, wan_link};
use v6gate_lab::strongswan::{Charon, LAB_PSK, StrongswanConfig, suite};
use v6gate_lab::{Gateway, Lab, LabOptions, Node, Site, addr, dev};

const HOST_A: IpAddr = IpAddr::V4(addr::HOST_A4);
const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

/// The knobs of one site's ipsec tunnel that the tests vary.
#[derive(Clone)]
struct Ipsec {
    start: &'static str,
    encap: &'static str,
    proposals: &'static str,
    esp_proposals: &'static str,
    child_lifetime: Option<&'static str>,
    dpd: Option<(&'static str, &'static str)>,
    /// Endpoints on the sites' IPv4 underlay instead of their IPv6 one.
    ipv4_underlay: bool,
}

impl Ipsec {
    fn new(start: &'static str, encap: &'static str) -> Self {
        Self {
            start,
            encap,
            proposals: suite::IKE_GCM_MODP2048,
            esp_proposals: suite::ESP_GCM,
            child_lifetime: None,
            dpd: None,
            ipv4_underlay: false,
        }
    }
}

fn lab() -> Lab {
    common::lab(LabOptions {
        site_ipv4_forwarding: true,
        ..LabOptions::default()
    })
}

fn wan4(site: Site) -> IpAddr {
    IpAddr::V4(match site {
        Site::A => addr::SITE_A_WAN4,
        Site::B => addr::SITE_B_WAN4,
    })
}

/// Writes site `site`'s config (PSK in a 0600 file beside it) and returns its path and
/// control socket.
fn write_config(lab: &Lab, site: Site, ipsec: &Ipsec) -> (PathBuf, PathBuf) {
    let dir = lab.dir();
    let tag = format!("ipsec-{:?}", site).to_lowercase();
    let psk = dir.join(format!("{tag}.psk"));
    fs::write(&psk, LAB_PSK).unwrap();
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).unwrap();
    let socket = dir.join(format!("{tag}.sock"));
    let mut ike = format!(
        "psk_file = {:?}\nstart = {:?}\nencap = {:?}\nproposals = [{:?}]\nesp_proposals = [{:?}]\n",
        psk.display().to_string(),
        ipsec.start,
        ipsec.encap,
        ipsec.proposals,
        ipsec.esp_proposals
    );
    if let Some(lifetime) = ipsec.child_lifetime {
        ike.push_str(&format!("child_lifetime = {lifetime:?}\n"));
    }
    if let Some((delay, timeout)) = ipsec.dpd {
        ike.push_str(&format!(
            "dpd_delay = {delay:?}\ndpd_timeout = {timeout:?}\ndpd_action = \"restart\"\n"
        ));
    }
    let text = format!(
        "[gateway]\ncontrol_socket = {:?}\nipv4_forwarding = true\n\n[[tunnel]]\nname = \
         {TUNNEL:?}\nmode = \"ipsec\"\nlocal = \"{}\"\nremote = \"{}\"\nlocal_subnets = \
         [{:?}]\nroutes = [{:?}]\n[tunnel.ike]\n{ike}",
        socket.display().to_string(),
        if ipsec.ipv4_underlay {
            wan4(site)
        } else {
            IpAddr::V6(site.wan6())
        },
        if ipsec.ipv4_underlay {
            wan4(site.peer())
        } else {
            IpAddr::V6(site.peer().wan6())
        },
        site.lan4(),
        site.peer().lan4(),
    );
    let path = dir.join(format!("{tag}.toml"));
    fs::write(&path, text).unwrap();
    (path, socket)
}

fn start_gateway(lab: &Lab, site: Site, ipsec: &Ipsec) -> Gateway {
    let (config, socket) = write_config(lab, site, ipsec);
    lab.start_gateway_with(BIN.as_ref(), site.node(), &config, &socket)
        .unwrap_or_else(|e| panic!("starting the gateway in {}: {e}", site.node()))
}

/// The IPv6 packets between the two wan addresses of a capture: (next header, payload).
fn underlay(pcap: &[u8]) -> Vec<(u8, Vec<u8>)> {
    pcap_packets(pcap)
        .iter()
        .filter_map(|p| common::outer_ipv6(p))
        .filter(|o| {
            let ends = [Site::A.wan6(), Site::B.wan6()];
            ends.contains(&o.source) && ends.contains(&o.destination)
        })
        .map(|o| (o.upper_protocol, o.upper))
        .collect()
}

fn v6gate_pair(encap: &'static str) {
    let lab = lab();
    let b = start_gateway(&lab, Site::B, &Ipsec::new("respond", encap));
    let a = start_gateway(&lab, Site::A, &Ipsec::new("auto", encap));
    let status_a = wait_established(&a, Duration::from_secs(15));
    wait_established(&b, Duration::from_secs(5));
    let capture = lab.capture(Node::Wan, wan_link(Site::A), "ip6").unwrap();
    assert_ping(&lab, Node::HostA, HOST_B, 5, &[&a, &b]);
    assert_ping(&lab, Node::HostB, HOST_A, 5, &[&a, &b]);
    let bytes = 2 * 1024 * 1024 + 77;
    common::assert_tcp_a_to_b(&lab, bytes, Duration::from_secs(30), &[&a, &b]);
    let packets = underlay(&capture.finish().unwrap());

    // Every tunnel packet on the wire is ESP, raw or in UDP 4500 as configured; IKE may be
    // there too, plain inner packets never are.
    let esp: Vec<&Vec<u8>> = match encap {
        "auto" => packets
            .iter()
            .filter(|(proto, _)| *proto == 50)
            .map(|(_, p)| p)
            .collect(),
        _ => packets
            .iter()
            .filter(|(proto, p)| {
                *proto == 17
                    && p.len() > 12
                    && u16::from_be_bytes([p[0], p[1]]) == 4500
                    && u16::from_be_bytes([p[2], p[3]]) == 4500
                    && p[8..12] != [0, 0, 0, 0]
            })
            .map(|(_, p)| p)
            .collect(),
    };
    assert!(
        esp.len() >= 20,
        "{} ESP packets ({encap}) of {} on the wire",
        esp.len(),
        packets.len()
    );
    for (proto, _) in &packets {
        assert!(
            [50, 17].contains(proto),
            "unexpected next header {proto} between the sites"
        );
    }
    for (proto, p) in &packets {
        if *proto == 17 {
            let ports = [
                u16::from_be_bytes([p[0], p[1]]),
                u16::from_be_bytes([p[2], p[3]]),
            ];
            let ike_port = if encap == "auto" { 500 } else { 4500 };
            assert_eq!(ports, [ike_port; 2], "UDP between the sites ({encap})");
        } else {
            assert_eq!(encap, "auto", "raw ESP although encap = \"udp\"");
        }
    }
    for (site, gateway) in [(Site::A, &a), (Site::B, &b)] {
        let t = ipsec_status(gateway);
        let ipsec = &t["ipsec"];
        assert_eq!(ipsec["ike_state"], "established", "{t}");
        assert_eq!(ipsec["udp_encap"], encap == "udp", "{t}");
        assert_eq!(ipsec["children"].as_array().map(Vec::len), Some(1), "{t}");
        assert_eq!(ipsec["children"][0]["suite"], "aes128gcm16", "{t}");
        // The TCP payload alone crossed from A to B.
        let carried = match site {
            Site::A => t["tx_bytes"].as_u64().unwrap(),
            Site::B => t["rx_bytes"].as_u64().unwrap(),
        };
        assert!(carried >= bytes, "{site:?} carried {carried}: {t}");
        // TCP from A to B leaves A as UDP trains and B reads them whole.
        let trains = match site {
            Site::A => t["udp_trains_sent"].as_u64(),
            Site::B => t["udp_trains_received"].as_u64(),
        };
        if encap == "udp" {
            assert!(
                trains.is_some_and(|n| n > 0),
                "{site:?}: no UDP trains: {t}"
            );
        } else {
            assert_eq!(trains, Some(0), "{site:?}: UDP trains with raw ESP: {t}");
        }
    }
    // Both ends agree on the SPIs, crosswise.
    let b_status = ipsec_status(&b);
    assert_eq!(
        status_a["ipsec"]["children"][0]["spi_in"],
        b_status["ipsec"]["children"][0]["spi_out"]
    );
    a.stop().unwrap_or_else(|e| panic!("stopping A: {e}"));
    // A's DELETE reached B: its SAs are gone without waiting for DPD.
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = ipsec_status(&b);
            last["ipsec"]["children"]
                .as_array()
                .is_some_and(Vec::is_empty)
        }),
        "B kept its CHILD SA after A stopped: {last}"
    );
    b.stop().unwrap_or_else(|e| panic!("stopping B: {e}"));
}

#[test]
fn v6gate_pair_esp_in_udp_over_ipv4() {
    v6gate_pair_over_ipv4("udp");
}

#[test]
fn v6gate_pair_raw_esp_over_ipv4() {
    v6gate_pair_over_ipv4("auto");
}

fn v6gate_pair_over_ipv4(encap: &'static str) {
    let lab = common::lab(LabOptions {
        site_ipv4_forwarding: true,
        ipv4_underlay: true,
        ..LabOptions::default()
    });
    let ipsec = |start| Ipsec {
        ipv4_underlay: true,
        ..Ipsec::new(start, encap)
    };
    let b = start_gateway(&lab, Site::B, &ipsec("respond"));
    let a = start_gateway(&lab, Site::A, &ipsec("auto"));
    let status = wait_established(&a, Duration::from_secs(15));
    wait_established(&b, Duration::from_secs(5));
    assert_eq!(status["ipsec"]["udp_encap"], encap == "udp", "{status}");
    assert_eq!(status["remote"], wan4(Site::B).to_string(), "{status}");
    let filter = if encap == "udp" {
        "udp port 4500"
    } else {
        "ip proto 50"
    };
    let capture = lab.capture_text(Node::Wan, dev::WAN_TO_A4, filter).unwrap();
    assert_ping(&lab, Node::HostA, HOST_B, 5, &[&a, &b]);
    let bytes = 8 * 1024 * 1024 + 5;
    common::assert_tcp_a_to_b(&lab, bytes, Duration::from_secs(30), &[&a, &b]);
    let seen = capture.finish().unwrap();
    let between = if encap == "udp" {
        "198.18.1.1.4500 > 198.18.2.1.4500"
    } else {
        "198.18.1.1 > 198.18.2.1: ESP"
    };
    assert!(
        seen.lines().any(|l| l.contains(between)),
        "no {filter} between the IPv4 underlay addresses:\n{seen}"
    );
    let (ta, tb) = (ipsec_status(&a), ipsec_status(&b));
    if encap == "udp" {
        // Trains over IPv4 too: A segments, B reads them whole.
        assert!(common::counter(&ta, "udp_trains_sent") > 0, "{ta}");
        assert!(common::counter(&tb, "udp_trains_received") > 0, "{tb}");
    }
    assert_eq!(common::counter(&ta, "send_errors"), 0, "{ta}");
    assert!(common::counter(&tb, "rx_bytes") >= bytes, "{tb}");
    a.stop().unwrap_or_else(|e| panic!("stopping A: {e}"));
    b.stop().unwrap_or_else(|e| panic!("stopping B: {e}"));
}

/// A link beyond siteA's first hop carries only 1,400 bytes: the wan router answers siteA's
/// full-size ESP with Packet Too Big (IPv6) or Fragmentation Needed (IPv4, DF set by us), and
/// siteA must shrink what it seals rather than lose it.
fn esp_path_mtu_follows_the_router(ipv4_underlay: bool, encap: &'static str) {
    let lab = common::lab(LabOptions {
        site_ipv4_forwarding: true,
        ipv4_underlay,
        ..LabOptions::default()
    });
    let ipsec = |start| Ipsec {
        ipv4_underlay,
        ..Ipsec::new(start, encap)
    };
    let b = start_gateway(&lab, Site::B, &ipsec("respond"));
    let a = start_gateway(&lab, Site::A, &ipsec("auto"));
    let status = wait_established(&a, Duration::from_secs(15));
    wait_established(&b, Duration::from_secs(5));
    let mtu = status["mtu"].as_u64().unwrap();
    assert_eq!(status["path_mtu"].as_u64(), Some(mtu), "{status}");
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&a, &b]);
    let link = if ipv4_underlay {
        dev::WAN_TO_B4
    } else {
        dev::WAN_TO_B6
    };
    lab.ip(Node::Wan, &["link", "set", "dev", link, "mtu", "1400"])
        .unwrap();
    // Full-size DF pings: the first ones die at the router, which tells siteA.
    let full = (mtu - 28).to_string();
    let _ = lab.ping_output(
        Node::HostA,
        HOST_B,
        2,
        &["-M", "do", "-s", &full, "-W", "1"],
    );
    // 1400 - outer header - UDP 8, then AES-GCM's ESP overhead (8 + 8 + 16, 4-aligned, + 2).
    let outer = if ipv4_underlay { 20 } else { 40 };
    let expected = ((1400 - outer - 8 - 32) / 4 * 4 - 2) as u64;
    let mut last = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            last = ipsec_status(&a);
            last["path_mtu"].as_u64() == Some(expected)
        }),
        "path MTU not lowered to {expected}: {last}\n{}",
        a.log()
    );
    assert!(a.log().contains("path MTU now"), "{}", a.log());
    // hostA hears the new MTU from siteA, and DF packets of that size get through.
    let told = lab.ping_output(
        Node::HostA,
        HOST_B,
        1,
        &["-M", "do", "-s", &full, "-W", "1"],
    );
    let said = text(&told);
    assert!(
        said.contains(&format!("mtu = {expected}")) || said.contains(&format!("mtu={expected}")),
        "{said}"
    );
    let fits = (expected - 28).to_string();
    let ok = lab.ping_output(Node::HostA, HOST_B, 3, &["-M", "do", "-s", &fits]);
    assert!(ok.status.success(), "{}", text(&ok));
    a.stop().unwrap_or_else(|e| panic!("stopping A: {e}"));
    b.stop().unwrap_or_else(|e| panic!("stopping B: {e}"));
}

#[test]
fn packet_too_big_shrinks_raw_esp_over_ipv6() {
    esp_path_mtu_follows_the_router(false, "auto");
}

#[test]
fn packet_too_big_shrinks_esp_in_udp_over_ipv6() {
    esp_path_mtu_follows_the_router(false, "udp");
}

#[test]
fn fragmentation_needed_shrinks_raw_esp_over_ipv4() {
    esp_path_mtu_follows_the_router(true, "auto");
}

/// Sends `count` ESP packets with SPI `spi` (and nothing an SA could open) from `node` to
/// `dst` through a raw socket, so the kernel picks `node`'s own source address.
fn send_raw_esp(lab: &Lab, node: Node, dst: IpAddr, spi: u32, count: u32) {
    let script = "import socket, sys\n\
        s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 50)\n\
        esp = int(sys.argv[2]).to_bytes(4, 'big') + bytes(4) + bytes(48)\n\
        for _ in range(int(sys.argv[3])): s.sendto(esp, (sys.argv[1], 0))\n";
    lab.exec_ok(
        node,
        &[
            "python3",
            "-c",
            script,
            &dst.to_string(),
            &spi.to_string(),
            &count.to_string(),
        ],
    )
    .expect("sending raw ESP");
}

/// ESP from an address that is no peer is dropped before any SA lookup and counted apart;
/// ESP from the peer on an SPI no SA knows stays an `unknown_spi` drop of the tunnel.
#[test]
fn esp_from_a_stranger_is_counted_apart_from_unknown_spis() {
    let lab = lab();
    let b = start_gateway(&lab, Site::B, &Ipsec::new("respond", "auto"));
    let a = start_gateway(&lab, Site::A, &Ipsec::new("auto", "auto"));
    wait_established(&a, Duration::from_secs(15));
    wait_established(&b, Duration::from_secs(5));
    let target = IpAddr::V6(Site::A.wan6());
    send_raw_esp(&lab, Node::Wan, target, 0x0bad_5e1f, 5);
    send_raw_esp(&lab, Node::SiteB, target, 0x0bad_5e1f, 3);
    let mut status = serde_json::Value::Null;
    let counted = wait_until(Duration::from_secs(5), || {
        status = a.status().expect("status");
        status["packet"]["esp_not_peer"].as_u64() == Some(5)
    });
    assert!(counted, "{status}");
    let t = ipsec_status(&a);
    assert!(common::drops(&t, "unknown_spi") >= 3, "{t}");
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn v6gate_pair_raw_esp_over_ipv6() {
    v6gate_pair("auto");
}

#[test]
fn v6gate_pair_esp_in_udp_over_ipv6() {
    v6gate_pair("udp");
}

/// strongSwan in site B with the lab's standard connection, these suites, and `adjust`.
fn charon_config(ike: &str, esp: &str, adjust: impl Fn(&mut StrongswanConfig)) -> StrongswanConfig {
    let mut config = StrongswanConfig::site_to_site(Site::B);
    config.connection_mut().ike_proposals = vec![ike.to_owned()];
    config.child_mut().esp_proposals = vec![esp.to_owned()];
    adjust(&mut config);
    config
}

/// v6gate in site A and charon in site B, the responder started first; returns both with
/// the CHILD SA installed at both ends.
fn v6gate_and_charon(
    lab: &Lab,
    v6gate_initiates: bool,
    ipsec: &Ipsec,
    charon: &StrongswanConfig,
) -> (Gateway, Charon) {
    let (gateway, charon) = if v6gate_initiates {
        let charon = start_charon(lab, charon);
        let gateway = start_gateway(lab, Site::A, ipsec);
        (gateway, charon)
    } else {
        let gateway = start_gateway(lab, Site::A, ipsec);
        let charon = start_charon(lab, charon);
        let log = charon.initiate("lan4").unwrap_or_else(|e| {
            panic!(
                "charon cannot initiate: {e}\n--- v6gate ---\n{}",
                gateway.log()
            )
        });
        assert!(log.contains("established"), "{log}");
        (gateway, charon)
    };
    let status = wait_established(&gateway, Duration::from_secs(20));
    charon
        .wait_child_installed("lan4", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n--- v6gate ---\n{}", gateway.log()));
    // libipsec claims a NAT, so ESP moves into UDP 4500 whoever initiates.
    assert_eq!(status["ipsec"]["udp_encap"], true, "{status}");
    (gateway, charon)
}

fn interop(v6gate_initiates: bool, ike: &'static str, esp: &'static str, esp_name: &str) {
    let lab = lab();
    let ipsec = Ipsec {
        proposals: ike,
        esp_proposals: esp,
        ..Ipsec::new(if v6gate_initiates { "auto" } else { "respond" }, "auto")
    };
    let config = charon_config(ike, esp, |_| {});
    let (gateway, charon) = v6gate_and_charon(&lab, v6gate_initiates, &ipsec, &config);
    assert_ping(&lab, Node::HostA, HOST_B, 5, &[&gateway]);
    assert_ping(&lab, Node::HostB, HOST_A, 5, &[&gateway]);
    let bytes = 1024 * 1024 + 3;
    common::assert_tcp_a_to_b(&lab, bytes, Duration::from_secs(30), &[&gateway]);

    let sas = charon.ike_sas().unwrap();
    assert_eq!(sas.len(), 1, "{sas:?}");
    let child = &sas[0].children[0];
    assert_eq!(child.proposal, esp_name, "{child:?}");
    assert!(
        child.packets_in >= 10 && child.packets_out >= 10,
        "{child:?}"
    );
    assert!(child.bytes_in >= bytes, "{child:?}");
    let t = ipsec_status(&gateway);
    assert!(t["tx_bytes"].as_u64().unwrap() >= bytes, "{t}");
    assert_eq!(
        t["ipsec"]["children"].as_array().map(Vec::len),
        Some(1),
        "{t}"
    );

    // Stopping v6gate deletes the IKE SA at strongSwan too.
    gateway
        .stop()
        .unwrap_or_else(|e| panic!("stopping v6gate: {e}"));
    charon
        .wait_ike_gone("ab", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("charon kept the SA after v6gate stopped: {e}"));
    charon.stop().unwrap();
}

#[test]
fn strongswan_initiates_gcm_modp2048() {
    interop(
        false,
        suite::IKE_GCM_MODP2048,
        suite::ESP_GCM,
        "ESP:AES_GCM_16-128",
    );
}

#[test]
fn strongswan_initiates_gcm_ecp256() {
    interop(
        false,
        suite::IKE_GCM_ECP256,
        suite::ESP_GCM,
        "ESP:AES_GCM_16-128",
    );
}

#[test]
fn strongswan_initiates_legacy_sha1_modp1024() {
    interop(
        false,
        suite::IKE_LEGACY,
        suite::ESP_LEGACY,
        "ESP:AES_CBC-128/HMAC_SHA1_96",
    );
}

#[test]
fn v6gate_initiates_gcm_modp2048() {
    interop(
        true,
        suite::IKE_GCM_MODP2048,
        suite::ESP_GCM,
        "ESP:AES_GCM_16-128",
    );
}

#[test]
fn v6gate_initiates_gcm_ecp256() {
    interop(
        true,
        suite::IKE_GCM_ECP256,
        suite::ESP_GCM,
        "ESP:AES_GCM_16-128",
    );
}

#[test]
fn v6gate_initiates_legacy_sha1_modp1024() {
    interop(
        true,
        suite::IKE_LEGACY,
        suite::ESP_LEGACY,
        "ESP:AES_CBC-128/HMAC_SHA1_96",
    );
}

/// `(transmitted, received)` from ping's summary line.
/// strongSwan rekeys the CHILD SA every few seconds while 10 ms pings cross; v6gate installs
/// each new SA before the old one goes, so (almost) nothing is lost.
#[test]
fn child_rekey_under_traffic_loses_nothing() {
    let lab = lab();
    let config = charon_config(suite::IKE_GCM_MODP2048, suite::ESP_GCM, |c| {
        c.child_mut().rekey_time = Some(Duration::from_secs(3));
        c.child_mut().life_time = Some(Duration::from_secs(6));
    });
    let (gateway, charon) = v6gate_and_charon(&lab, true, &Ipsec::new("auto", "auto"), &config);
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&gateway]);
    let count = 1000;
    let UnderRekey {
        before,
        after,
        sent,
        lost,
        elapsed,
    } = pings_under_rekey(&lab, &gateway, HOST_B, count, "IKEv2");
    assert!(
        before.iter().all(|spi| !after.contains(spi)),
        "no rekey happened in {elapsed:?}: {before:?} -> {after:?}\n{}",
        charon.log()
    );
    assert!(
        lost <= 2,
        "{lost} of {sent} pings lost across rekeys\n--- v6gate ---\n{}",
        gateway.log()
    );
    let t = ipsec_status(&gateway);
    assert_eq!(common::drops(&t, "unknown_spi"), 0, "{t}");
    gateway.stop().unwrap();
    charon.stop().unwrap();
}

/// The peer dies: v6gate's DPD notices, and with `dpd_action = "restart"` the tunnel is back
/// soon after the peer is.
#[test]
fn dpd_restart_after_the_peer_comes_back() {
    let lab = lab();
    let config = charon_config(suite::IKE_GCM_MODP2048, suite::ESP_GCM, |_| {});
    let ipsec = Ipsec {
        dpd: Some(("2s", "4s")),
        ..Ipsec::new("auto", "auto")
    };
    let (gateway, charon) = v6gate_and_charon(&lab, true, &ipsec, &config);
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&gateway]);
    let (charon, back) = dpd_restart(&lab, &gateway, charon, &config, HOST_B, "IKEv2");
    assert!(back < Duration::from_secs(30));
    gateway.stop().unwrap();
    charon.stop().unwrap();
}

/// v6gate, the responder, is SIGKILLed and started again under 10 ms pings from behind
/// strongSwan, everything at its default DPD settings (strongSwan's: none). The first ESP
/// packet under an SPI the new v6gate does not know makes it start IKE_SA_INIT with
/// INITIAL_CONTACT, although it is configured to respond, and traffic is back within 2 s of
/// its start instead of after a DPD timeout.
#[test]
fn restarted_responder_recovers_on_the_peers_esp() {
    let lab = lab();
    let config = charon_config(suite::IKE_GCM_MODP2048, suite::ESP_GCM, |_| {});
    let ipsec = Ipsec::new("respond", "auto");
    let (gateway, charon) = v6gate_and_charon(&lab, false, &ipsec, &config);
    assert_ping(&lab, Node::HostB, HOST_A, 2, &[&gateway]);
    let socket = lab.dir().join("ipsec-a.sock");
    let gateway = common::ipsec::restart_responder_under_pings(
        &lab, gateway, &charon, HOST_A, &socket, "IKEv2",
    );
    gateway.stop().unwrap();
    charon.stop().unwrap();
}
