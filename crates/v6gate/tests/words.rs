//! What a person reads when IKE fails: a wrong pre-shared key against strongSwan shows in
//! `status` as words with the RFC 7296 Notify name, and the log says it once, not at every
//! retry.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{BIN, wait_until};
use v6gate_lab::strongswan::{Charon, LAB_PSK, StrongswanConfig};
use v6gate_lab::{LabOptions, Node, Site};

#[test]
fn wrong_key_reads_as_authentication_failed() {
    let lab = common::lab(LabOptions::default());
    let mut peer = StrongswanConfig::site_to_site(Site::B);
    peer.connection_mut().psk = format!("{LAB_PSK}-not");
    let charon = Charon::start(&lab, Node::SiteB, &peer).unwrap_or_else(|e| panic!("{e}"));

    let dir = lab.dir();
    let psk = dir.join("words.psk");
    fs::write(&psk, LAB_PSK).unwrap();
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).unwrap();
    let socket = dir.join("words.sock");
    let config = dir.join("words.toml");
    fs::write(
        &config,
        format!(
            "[gateway]\ncontrol_socket = {:?}\n\n[[tunnel]]\nname = \"ab\"\nmode = \"ipsec\"\n\
             local = \"{}\"\nremote = \"{}\"\nlocal_subnets = [{:?}]\nroutes = [{:?}]\n\
             [tunnel.ike]\npsk_file = {:?}\nproposals = [\"aes128gcm16-prfsha256-modp2048\"]\n\
             esp_proposals = [\"aes128gcm16\"]\n",
            socket.display().to_string(),
            Site::A.wan6(),
            Site::B.wan6(),
            Site::A.lan4(),
            Site::B.lan4(),
            psk.display().to_string()
        ),
    )
    .unwrap();
    let gateway = lab
        .start_gateway_with(BIN.as_ref(), Node::SiteA, &config, &socket)
        .unwrap_or_else(|e| panic!("{e}"));

    let mut reason = String::new();
    let failed = wait_until(Duration::from_secs(20), || {
        reason = gateway
            .tunnel_status("ab")
            .ok()
            .and_then(|t| t["ipsec"]["last_down_reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        !reason.is_empty()
    });
    assert!(failed, "no failure reported:\n{}", gateway.log());
    assert_eq!(
        reason,
        "the peer rejected our authentication: the pre-shared keys or identities differ \
         (AUTHENTICATION_FAILED)",
        "{}",
        gateway.log()
    );
    // The initiator retries with backoff; wait for a second attempt, then count the lines.
    let retried = wait_until(Duration::from_secs(20), || {
        gateway
            .tunnel_status("ab")
            .is_ok_and(|t| t["ipsec"]["attempts"].as_u64().unwrap_or(0) >= 2)
    });
    assert!(retried, "no retry:\n{}", gateway.log());
    let log = gateway.log();
    assert_eq!(log.matches("AUTHENTICATION_FAILED").count(), 1, "{log}");
    assert!(!log.contains("ErrorNotify"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log}");
    gateway.stop().unwrap();
    charon.stop().unwrap();
}
