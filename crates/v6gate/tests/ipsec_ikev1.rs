//! End-to-end: `[tunnel.ike] version = 1` tunnels between v6gate and strongSwan configured
//! for IKEv1 main mode with a pre-shared key (kernel-libipsec, so ESP is in UDP 4500), in
//! both roles, over the lab's IPv6 underlay: the seed's S3 suite exactly and a modern one
//! with PFS, pings and TCP across, a CHILD rekey under 10 ms pings, DPD bringing traffic
//! back after strongSwan restarts, and a restarted v6gate recovering on strongSwan's ESP.

mod common;

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::ipsec::{
    TUNNEL, UnderRekey, dpd_restart, pings_under_rekey, start_charon, wait_established,
};
use common::{BIN, assert_ping};
use v6gate_lab::strongswan::{Charon, DpdAction, LAB_PSK, StrongswanConfig};
use v6gate_lab::{Gateway, Lab, LabOptions, Node, Site, addr};

const HOST_A: IpAddr = IpAddr::V4(addr::HOST_A4);
const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

/// One suite as both ends write it.
struct Suite {
    ike: &'static str,
    esp: &'static str,
    lifetime_secs: u64,
    /// What `swanctl --list-sas` calls the ESP proposal.
    esp_name: &'static str,
}

/// The seed's libreswan conn: aes128-sha1;modp1024, pfs=no, 28800 s.
const S3: Suite = Suite {
    ike: "aes128-sha1-modp1024",
    esp: "aes128-sha1",
    lifetime_secs: 28800,
    esp_name: "ESP:AES_CBC-128/HMAC_SHA1_96",
};

/// AES-256, SHA2-256, MODP-2048 in both phases (PFS in quick mode).
const MODERN: Suite = Suite {
    ike: "aes256-sha256-modp2048",
    esp: "aes256-sha256-modp2048",
    lifetime_secs: 3600,
    esp_name: "ESP:AES_CBC-256/HMAC_SHA2_256_128/MODP_2048",
};

fn lab() -> Lab {
    common::lab(LabOptions {
        site_ipv4_forwarding: true,
        ..LabOptions::default()
    })
}

/// v6gate in site A: version 1, the suite, DPD `dpd` with restart.
fn start_gateway(lab: &Lab, start: &str, suite: &Suite, dpd: (&str, &str)) -> Gateway {
    let dir = lab.dir();
    let psk = dir.join("ikev1-a.psk");
    fs::write(&psk, LAB_PSK).unwrap();
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).unwrap();
    let socket = dir.join("ikev1-a.sock");
    let site = Site::A;
    let text = format!(
        "[gateway]\ncontrol_socket = {:?}\nipv4_forwarding = true\n\n[[tunnel]]\nname = \
         {TUNNEL:?}\nmode = \"ipsec\"\nlocal = \"{}\"\nremote = \"{}\"\nlocal_subnets = \
         [{:?}]\nroutes = [{:?}]\n[tunnel.ike]\nversion = 1\npsk_file = {:?}\nstart = \
         {start:?}\nproposals = [{:?}]\nesp_proposals = [{:?}]\nike_lifetime = \"{}s\"\n\
         child_lifetime = \"{}s\"\ndpd_delay = {:?}\ndpd_timeout = {:?}\n\
         dpd_action = \"restart\"\n",
        socket.display().to_string(),
        site.wan6(),
        site.peer().wan6(),
        site.lan4(),
        site.peer().lan4(),
        psk.display().to_string(),
        suite.ike,
        suite.esp,
        suite.lifetime_secs,
        suite.lifetime_secs,
        dpd.0,
        dpd.1,
    );
    let path = dir.join("ikev1-a.toml");
    fs::write(&path, text).unwrap();
    lab.start_gateway_with(BIN.as_ref(), site.node(), &path, &socket)
        .unwrap_or_else(|e| panic!("starting the gateway: {e}"))
}

/// strongSwan in site B as IKEv1 main mode PSK with the suite, DPD 5 s / 20 s restart.
fn charon_config(suite: &Suite, adjust: impl Fn(&mut StrongswanConfig)) -> StrongswanConfig {
    let mut config = StrongswanConfig::site_to_site(Site::B);
    let life = Duration::from_secs(suite.lifetime_secs);
    let c = config.connection_mut();
    c.version = 1;
    c.ike_proposals = vec![suite.ike.to_owned()];
    c.dpd_delay = Some(Duration::from_secs(5));
    c.extra = vec![
        "aggressive = no".to_owned(),
        "dpd_timeout = 20s".to_owned(),
        format!("reauth_time = {}s", suite.lifetime_secs),
    ];
    let child = config.child_mut();
    child.esp_proposals = vec![suite.esp.to_owned()];
    child.life_time = Some(life);
    child.rekey_time = Some(life - Duration::from_secs(60));
    child.dpd_action = Some(DpdAction::Restart);
    adjust(&mut config);
    config
}

/// The responder first, then the initiator; returns both with the CHILD SA installed.
fn bring_up(
    lab: &Lab,
    v6gate_initiates: bool,
    suite: &Suite,
    charon: &StrongswanConfig,
    dpd: (&str, &str),
) -> (Gateway, Charon) {
    let (gateway, charon) = if v6gate_initiates {
        let charon = start_charon(lab, charon);
        (start_gateway(lab, "auto", suite, dpd), charon)
    } else {
        let gateway = start_gateway(lab, "respond", suite, dpd);
        let charon = start_charon(lab, charon);
        let log = charon
            .initiate("lan4")
            .unwrap_or_else(|e| panic!("charon cannot initiate: {e}\n{}", gateway.log()));
        assert!(log.contains("established"), "{log}");
        (gateway, charon)
    };
    let status = wait_established(&gateway, Duration::from_secs(20));
    charon
        .wait_child_installed("lan4", Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    assert_eq!(status["ipsec"]["udp_encap"], true, "{status}");
    (gateway, charon)
}

fn interop(v6gate_initiates: bool, suite: &Suite) {
    let lab = lab();
    let config = charon_config(suite, |_| {});
    let (gateway, charon) = bring_up(&lab, v6gate_initiates, suite, &config, ("5s", "20s"));
    assert_ping(&lab, Node::HostA, HOST_B, 5, &[&gateway]);
    assert_ping(&lab, Node::HostB, HOST_A, 5, &[&gateway]);
    let bytes = 1024 * 1024 + 3;
    common::assert_tcp_a_to_b(&lab, bytes, Duration::from_secs(30), &[&gateway]);
    let sas = charon.ike_sas().unwrap();
    assert_eq!(sas.len(), 1, "{sas:?}");
    let child = &sas[0].children[0];
    assert_eq!(child.proposal, suite.esp_name, "{child:?}");
    assert!(child.bytes_in >= bytes, "{child:?}");
    gateway
        .stop()
        .unwrap_or_else(|e| panic!("stopping v6gate: {e}"));
    charon
        .wait_ike_gone("ab", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("charon kept the SA after v6gate stopped: {e}"));
    charon.stop().unwrap();
}

#[test]
fn ikev1_s3_suite_v6gate_initiates() {
    interop(true, &S3);
}

#[test]
fn ikev1_s3_suite_strongswan_initiates() {
    interop(false, &S3);
}

#[test]
fn ikev1_modern_pfs_v6gate_initiates() {
    interop(true, &MODERN);
}

#[test]
fn ikev1_modern_pfs_strongswan_initiates() {
    interop(false, &MODERN);
}

/// strongSwan rekeys the CHILD SA by quick mode once, 4 s in, while 10 ms pings cross.
#[test]
fn ikev1_child_rekey_under_ping_loses_at_most_one() {
    let lab = lab();
    let config = charon_config(&S3, |c| {
        c.child_mut().rekey_time = Some(Duration::from_secs(4));
        c.child_mut().life_time = Some(Duration::from_secs(20));
        c.child_mut().extra = vec!["rand_time = 0s".to_owned()];
    });
    let (gateway, charon) = bring_up(&lab, true, &S3, &config, ("5s", "20s"));
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&gateway]);
    let count = 500;
    let UnderRekey {
        before,
        after,
        sent,
        lost,
        elapsed,
    } = pings_under_rekey(&lab, &gateway, HOST_B, count, "IKEv1");
    // strongSwan keeps an IKEv1 SA it rekeyed until that one expires: look for a new one.
    assert!(
        after.iter().any(|spi| !before.contains(spi)),
        "no rekey in {elapsed:?}: {before:?} -> {after:?}\n{}",
        charon.log()
    );
    assert!(
        lost <= 1,
        "{lost} of {sent} lost across rekeys\n{}\n--- charon ---\n{}",
        gateway.log(),
        charon.log()
    );
    gateway.stop().unwrap();
    charon.stop().unwrap();
}

/// strongSwan dies and comes back: v6gate's DPD notices and restarts main mode.
#[test]
fn ikev1_dpd_restart_after_strongswan_restarts() {
    let lab = lab();
    let config = charon_config(&S3, |_| {});
    let (gateway, charon) = bring_up(&lab, true, &S3, &config, ("2s", "4s"));
    assert_ping(&lab, Node::HostA, HOST_B, 2, &[&gateway]);
    let (charon, _) = dpd_restart(&lab, &gateway, charon, &config, HOST_B, "IKEv1");
    gateway.stop().unwrap();
    charon.stop().unwrap();
}

/// v6gate, the responder, is SIGKILLed and started again under 10 ms pings while strongSwan
/// keeps its SAs, with default DPD at both ends (ours 30 s / 150 s, strongSwan's none): the
/// new v6gate answers strongSwan's ESP under the lost SPI with main mode and INITIAL-CONTACT
/// at once, although it is configured to respond, and strongSwan drops the stale SAs.
#[test]
fn ikev1_restarted_responder_recovers_on_the_peers_esp() {
    let lab = lab();
    let config = charon_config(&S3, |c| {
        c.connection_mut().dpd_delay = None;
        c.connection_mut()
            .extra
            .retain(|line| !line.starts_with("dpd_timeout"));
        c.child_mut().dpd_action = None;
    });
    let (gateway, charon) = bring_up(&lab, false, &S3, &config, ("30s", "150s"));
    assert_ping(&lab, Node::HostB, HOST_A, 2, &[&gateway]);
    let socket = lab.dir().join("ikev1-a.sock");
    let gateway = common::ipsec::restart_responder_under_pings(
        &lab, gateway, &charon, HOST_A, &socket, "IKEv1",
    );
    gateway.stop().unwrap();
    charon.stop().unwrap();
}
