//! `[gateway] key_log`: a capture between two v6gate gateways, with ESP raw and in UDP 4500,
//! is decrypted by tshark with the tables v6gate wrote: `ikev2_decryption_table` opens the
//! IKE_AUTH exchange (its identities show), `esp_sa` the pings inside the ESP.

mod common;

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{BIN, assert_ping, text, wait_until, wan_link};
use v6gate_lab::strongswan::{LAB_PSK, suite};
use v6gate_lab::{Gateway, Lab, LabOptions, Node, Site, addr};

const TUNNEL: &str = "ab";

/// Site `site`'s ipsec config (initiating from A), with the key log in `key_log` if given.
fn start(lab: &Lab, site: Site, encap: &str, key_log: Option<&Path>) -> Gateway {
    let dir = lab.dir();
    let tag = format!("keylog-{site:?}").to_lowercase();
    let psk = dir.join(format!("{tag}.psk"));
    fs::write(&psk, LAB_PSK).unwrap();
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).unwrap();
    let socket = dir.join(format!("{tag}.sock"));
    let key_log = key_log.map_or_else(String::new, |d| {
        format!("key_log = {:?}\n", d.display().to_string())
    });
    let text = format!(
        "[gateway]\ncontrol_socket = {:?}\nipv4_forwarding = true\n{key_log}\n[[tunnel]]\n\
         name = {TUNNEL:?}\nmode = \"ipsec\"\nlocal = \"{}\"\nremote = \"{}\"\n\
         local_subnets = [{:?}]\nroutes = [{:?}]\n[tunnel.ike]\npsk_file = {:?}\n\
         start = {:?}\nencap = {encap:?}\nproposals = [{:?}]\nesp_proposals = [{:?}]\n",
        socket.display().to_string(),
        site.wan6(),
        site.peer().wan6(),
        site.lan4(),
        site.peer().lan4(),
        psk.display().to_string(),
        if site == Site::A { "auto" } else { "respond" },
        suite::IKE_GCM_MODP2048,
        suite::ESP_GCM,
    );
    let path = dir.join(format!("{tag}.toml"));
    fs::write(&path, text).unwrap();
    lab.start_gateway_with(BIN.as_ref(), site.node(), &path, &socket)
        .unwrap_or_else(|e| panic!("starting the gateway in {}: {e}", site.node()))
}

/// The identities tshark finds in the capture's IKE, decrypting with the
/// `ikev2_decryption_table` lines given (none: no decryption).
fn identities_seen(pcap: &Path, table: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec!["-n".into(), "-r".into(), pcap.display().to_string()];
    for line in table {
        args.push("-o".into());
        args.push(format!("uat:ikev2_decryption_table:{line}"));
    }
    args.extend(
        [
            "-Y",
            "isakmp.id.type",
            "-T",
            "fields",
            "-e",
            "isakmp.id.type",
        ]
        .map(String::from),
    );
    let out = Command::new("tshark")
        .args(&args)
        .output()
        .expect("tshark (Debian package tshark)");
    assert!(out.status.success(), "tshark {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// tshark's view of the capture's ICMP: `SRC DST TYPE` per packet, decrypting with the
/// `esp_sa` lines given (none: no decryption).
fn icmp_seen(pcap: &Path, esp_sa: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-n".into(),
        "-r".into(),
        pcap.display().to_string(),
        "-o".into(),
        "esp.enable_encryption_decode:TRUE".into(),
    ];
    for line in esp_sa {
        args.push("-o".into());
        args.push(format!("uat:esp_sa:{line}"));
    }
    args.extend(
        [
            "-Y",
            "icmp",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "icmp.type",
        ]
        .map(String::from),
    );
    let out = Command::new("tshark")
        .args(&args)
        .output()
        .expect("tshark (Debian package tshark)");
    assert!(out.status.success(), "tshark {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn decrypts(encap: &'static str) {
    let lab = common::lab(LabOptions {
        site_ipv4_forwarding: true,
        ..LabOptions::default()
    });
    let keys: PathBuf = lab.dir().join(format!("keys-{encap}"));
    let b = start(&lab, Site::B, encap, None);
    // From before the first IKE_SA_INIT, so the IKE_AUTH exchange is in the capture too.
    let capture = lab.capture(Node::Wan, wan_link(Site::A), "ip6").unwrap();
    let a = start(&lab, Site::A, encap, Some(&keys));
    assert!(
        a.log().contains("KEY LOG ON"),
        "no warning at start:\n{}",
        a.log()
    );
    let mut last = serde_json::Value::Null;
    let up = wait_until(Duration::from_secs(15), || {
        last = a.tunnel_status(TUNNEL).unwrap();
        last["state"] == "up"
    });
    assert!(up, "{last}\n{}", a.log());
    assert_ping(&lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 3, &[&a, &b]);
    let pcap = lab.dir().join(format!("esp-{encap}.pcap"));
    fs::write(&pcap, capture.finish().unwrap()).unwrap();

    let file = keys.join("esp_sa");
    let mode = fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    let esp_sa: Vec<String> = fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(esp_sa.len(), 2, "one line per direction: {esp_sa:?}");

    let table: Vec<String> = fs::read_to_string(keys.join("ikev2_decryption_table"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(table.len(), 1, "one IKE SA: {table:?}");
    assert!(identities_seen(&pcap, &[]).is_empty());
    let ids = identities_seen(&pcap, &table);
    assert!(
        ids.len() >= 2,
        "IKE_AUTH not decrypted (IDi and IDr expected): {ids:?}\ntable: {table:?}"
    );

    // Without the keys the pings are opaque ESP; with them tshark reads them.
    assert!(icmp_seen(&pcap, &[]).is_empty());
    let seen = icmp_seen(&pcap, &esp_sa);
    let request = format!("{} {} 8", addr::HOST_A4, addr::HOST_B4);
    let reply = format!("{} {} 0", addr::HOST_B4, addr::HOST_A4);
    assert!(
        seen.iter().filter(|l| **l == request).count() >= 3,
        "requests {request:?} not decrypted: {seen:?}\nesp_sa: {esp_sa:?}"
    );
    assert!(
        seen.iter().filter(|l| **l == reply).count() >= 3,
        "replies {reply:?} not decrypted: {seen:?}"
    );
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn tshark_decrypts_raw_esp_with_the_key_log() {
    decrypts("auto");
}

#[test]
fn tshark_decrypts_esp_in_udp_with_the_key_log() {
    decrypts("udp");
}
