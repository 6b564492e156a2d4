//! Exports against the hand-written peer configs of the field (YAMAHA RTX1200 and RTX830,
//! NEC IX2215, libreswan on a VPS), with their addresses replaced by documentation ones:
//! every command of the field config must appear in the export with its words in the same
//! order (an export line may carry more arguments, e.g. the DPD interval).

use control::Config;

use super::{Format, Options, SECRET_PLACEHOLDER, render};

const HOME6: &str = "2001:db8:a::1";
const VPS6: &str = "2001:db8:b::1";

fn config(text: &str) -> Config {
    Config::from_toml_str(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn export(config: &Config, format: Format, with_secret: bool) -> String {
    let options = Options {
        with_secret,
        ..Options::default()
    };
    render(config, &config.tunnels[0].name, format, &options)
        .unwrap_or_else(|e| panic!("{e}"))
        .text
}

/// Whether `needle`'s words appear in `line`'s words in order.
fn words_in_order(line: &str, needle: &str) -> bool {
    let mut words = line.split_whitespace();
    needle
        .split_whitespace()
        .all(|want| words.by_ref().any(|w| w == want))
}

fn assert_shape(export: &str, field: &str) {
    for wanted in field.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let first = wanted.split_whitespace().next().unwrap_or_default();
        assert!(
            export.lines().any(|line| {
                line.split_whitespace().next() == Some(first) && words_in_order(line, wanted)
            }),
            "the field's `{wanted}` has no counterpart in:\n{export}"
        );
    }
}

/// RTX knows no Tunnel Encapsulation Limit setting: no line but the MSS one says "limit".
fn assert_no_limit_option(text: &str) {
    for line in text.lines().filter(|l| !l.contains("tcp mss limit")) {
        assert!(!line.contains("limit"), "{line}");
    }
}

/// S1: the VPS runs v6gate, the home RTX1200 is the peer.
fn s1_vps() -> Config {
    config(&format!(
        r#"
        [[tunnel]]
        name = "home"
        mode = "ipip6"
        local = "{VPS6}"
        remote = "{HOME6}"
        address = "198.51.100.1/30"
        routes = ["198.51.100.64/26"]
        allowed_sources = ["198.51.100.64/26", "198.51.100.0/30"]
        "#
    ))
}

#[test]
fn rtx1200_ipip_has_the_field_shape() {
    let config = s1_vps();
    let options = Options {
        peer_routes: vec!["0.0.0.0/0".parse().unwrap()],
        ..Options::default()
    };
    let text = render(&config, "home", Format::Rtx, &options).unwrap().text;
    // Seed 001, the RTX1200 half of the field config.
    assert_shape(
        &text,
        &format!(
            "tunnel select 1
             tunnel encapsulation ipip
             tunnel endpoint address {VPS6}
             ip tunnel tcp mss limit auto
             tunnel enable 1
             ip route default gateway tunnel 1"
        ),
    );
    // Mirrored: the peer's own address first, ours as the remote end.
    assert!(text.contains(&format!("tunnel endpoint address {HOME6} {VPS6}")));
    assert!(text.contains("ip tunnel address 198.51.100.2/30"), "{text}");
    assert!(text.contains("ip tunnel mtu 1460"), "{text}");
    assert_no_limit_option(&text);
}

#[test]
fn rtx_warns_when_we_would_send_the_encap_limit_option() {
    let mut config = s1_vps();
    config.tunnels[0].encap_limit = Some(4);
    let export = render(&config, "home", Format::Rtx, &Options::default()).unwrap();
    assert_eq!(export.warnings.len(), 1, "{:?}", export.warnings);
    assert!(export.warnings[0].contains("encap_limit"));
    assert_no_limit_option(&export.text);
}

/// S3: an IKE tunnel with the RTX830's legacy suite, v6gate on the VPS answering.
fn s3(local: &str, remote: &str, local_subnet: &str, route: &str) -> Config {
    config(&format!(
        r#"
        [[tunnel]]
        name = "rtx830"
        mode = "ipsec"
        local = "{local}"
        remote = "{remote}"
        local_subnets = ["{local_subnet}"]
        routes = ["{route}"]
        [tunnel.ike]
        psk = "field-psk"
        proposals = ["aes128-sha1-modp1024"]
        esp_proposals = ["aes128-sha1"]
        start = "respond"
        dpd_delay = "5s"
        dpd_timeout = "20s"
        ike_lifetime = "8h"
        child_lifetime = "8h"
        "#
    ))
}

#[test]
fn rtx830_ipsec_has_the_field_shape() {
    let config = s3(VPS6, HOME6, "203.0.113.0/24", "198.51.100.0/24");
    let text = export(&config, Format::Rtx, false);
    // Seed 003, the RTX830 half (its `tunnel select 2` renumbered to 1).
    assert_shape(
        &text,
        &format!(
            "tunnel select 1
             ipsec tunnel 1
              ipsec sa policy 1 1 esp aes-cbc sha-hmac
              ipsec ike encryption 1 aes-cbc
              ipsec ike group 1 modp1024
              ipsec ike hash 1 sha
              ipsec ike keepalive use 1 on dpd
              ipsec ike local address 1 {HOME6}
              ipsec ike pre-shared-key 1 text {SECRET_PLACEHOLDER}
              ipsec ike remote address 1 {VPS6}
             ip tunnel tcp mss limit auto
             tunnel enable 1
            ip route 203.0.113.0/24 gateway tunnel 1
            ipsec auto refresh on"
        ),
    );
    // The field config ran IKEv1; this tunnel is IKEv2 (the default), and says so.
    assert!(text.contains("ipsec ike version 1 2"), "{text}");
    assert!(text.contains("ipsec ike duration ike-sa 1 28800"), "{text}");
    assert!(
        text.contains("ipsec ike keepalive use 1 on dpd 5 4"),
        "{text}"
    );
    assert!(!text.contains("field-psk"), "{text}");
    let with = export(&config, Format::Rtx, true);
    assert!(
        with.contains("ipsec ike pre-shared-key 1 text field-psk"),
        "{with}"
    );
}

#[test]
fn libreswan_has_the_field_shape() {
    // v6gate replaces the home RTX830; the VPS runs libreswan, as in seed 003.
    let config = s3(HOME6, VPS6, "198.51.100.0/24", "203.0.113.0/24");
    let text = export(&config, Format::Libreswan, true);
    assert_shape(
        &text,
        &format!(
            "auto=start
             type=tunnel
             authby=secret
             ike=aes128-sha1;modp1024
             pfs=no
             ikelifetime=28800s
             dpddelay=5
             dpdtimeout=20
             left={VPS6}
             leftsubnet=203.0.113.0/24
             right={HOME6}
             rightsubnet=198.51.100.0/24
            {VPS6} {HOME6} : PSK \"field-psk\""
        ),
    );
    // IKEv2 (libreswan's default, so no keyexchange=), the field's phase2alg as esp=.
    assert!(!text.contains("keyexchange"), "{text}");
    assert!(text.contains("esp=aes128-sha1\n"), "{text}");
    assert!(text.contains("salifetime=28800s"), "{text}");
}

#[test]
fn ix2215_has_the_field_shape() {
    // Seed 004: two IX2215s with key-id identities; v6gate takes the place of the one in
    // Kagawa, the export is for Tokyo.
    let config = config(&format!(
        r#"
        [[tunnel]]
        name = "tokyo"
        mode = "ipsec"
        local = "{HOME6}"
        remote = "{VPS6}"
        local_subnets = ["198.51.100.0/24"]
        routes = ["203.0.113.0/24"]
        [tunnel.ike]
        psk = "ix2215-kagawa-psk"
        local_id = "keyid:ix2215-kagawa"
        remote_id = "keyid:ix2215-tokyo"
        start = "respond"
        "#
    ));
    let text = export(&config, Format::Ix, true);
    assert_shape(
        &text,
        &format!(
            "ikev2 authentication psk id keyid ix2215-kagawa key char ix2215-kagawa-psk
             local-authentication psk id keyid ix2215-tokyo
             interface Tunnel1.0
             tunnel mode ipsec-ikev2
             ip tcp adjust-mss auto
             ikev2 connect-type auto
             ikev2 peer {HOME6} authentication psk id keyid ix2215-kagawa
             no shutdown"
        ),
    );
    // The default suite in the IX's words: DH as a bit size.
    assert!(text.contains("sa-proposal enc aes-gcm-128"), "{text}");
    assert!(text.contains("sa-proposal dh 2048-bit"), "{text}");
    assert!(
        text.contains("ip route 198.51.100.0/24 Tunnel1.0"),
        "{text}"
    );
}

#[test]
fn strongswan_mirrors_addresses_selectors_and_suites() {
    let config = s3(HOME6, VPS6, "198.51.100.0/24", "203.0.113.0/24");
    let text = export(&config, Format::Strongswan, false);
    for line in [
        format!("local_addrs = {VPS6}"),
        format!("remote_addrs = {HOME6}"),
        "proposals = aes128-sha1-prfsha1-modp1024".to_owned(),
        "local_ts = 203.0.113.0/24".to_owned(),
        "remote_ts = 198.51.100.0/24".to_owned(),
        "esp_proposals = aes128-sha1".to_owned(),
        "start_action = start".to_owned(),
        "dpd_delay = 5s".to_owned(),
        "life_time = 28800s".to_owned(),
        format!("secret = \"{SECRET_PLACEHOLDER}\""),
    ] {
        assert!(text.contains(&line), "`{line}` missing in:\n{text}");
    }
}

#[test]
fn networkd_writes_no_encap_limit() {
    let text = export(&s1_vps(), Format::Networkd, false);
    for line in [
        "Kind=ip6tnl",
        "Mode=ipip6",
        &format!("Local={HOME6}"),
        &format!("Remote={VPS6}"),
        "EncapsulationLimit=none",
        "Address=198.51.100.2/30",
        "#   Tunnel=ip6t-home",
    ] {
        assert!(text.contains(line), "`{line}` missing in:\n{text}");
    }
}

#[test]
fn formats_refuse_modes_they_cannot_express() {
    let plain = s1_vps();
    for format in [Format::Ix, Format::Strongswan, Format::Libreswan] {
        let e = render(&plain, "home", format, &Options::default()).unwrap_err();
        assert!(e.to_string().contains("ipip6"), "{e}");
    }
    let ipsec = s3(HOME6, VPS6, "198.51.100.0/24", "203.0.113.0/24");
    let e = render(&ipsec, "rtx830", Format::Networkd, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("networkd"), "{e}");
    let e = render(&ipsec, "nope", Format::Rtx, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("rtx830"), "{e}");
}

#[test]
fn mirrored_link_addresses() {
    let m = |s: &str| super::mirror_address(&s.parse().unwrap()).map(|n| n.to_string());
    assert_eq!(m("198.51.100.1/30").as_deref(), Some("198.51.100.2/30"));
    assert_eq!(m("198.51.100.2/30").as_deref(), Some("198.51.100.1/30"));
    assert_eq!(m("198.51.100.0/31").as_deref(), Some("198.51.100.1/31"));
    assert_eq!(m("2001:db8::1/126").as_deref(), Some("2001:db8::2/126"));
    assert_eq!(m("198.51.100.1/24"), None);
    assert_eq!(m("198.51.100.0/30"), None);
}

/// S3 as examples/s3-vps-ikev1.toml runs it: IKEv1 main mode with the RTX830.
fn s3_ikev1() -> Config {
    config(&format!(
        r#"
        [[tunnel]]
        name = "rtx830"
        mode = "ipsec"
        local = "{VPS6}"
        remote = "{HOME6}"
        local_subnets = ["198.51.100.0/24"]
        routes = ["198.18.2.0/23"]
        [tunnel.ike]
        version = 1
        psk = "field-psk"
        proposals = ["aes128-sha1-modp1024"]
        esp_proposals = ["aes128-sha1"]
        start = "respond"
        "#
    ))
}

#[test]
fn ikev1_is_written_in_each_peers_words_or_refused() {
    let c = s3_ikev1();
    let rtx = export(&c, Format::Rtx, false);
    assert!(rtx.contains("ipsec ike version 1 1"), "{rtx}");
    assert!(!rtx.contains("ipsec ike version 1 2"), "{rtx}");
    let swanctl = export(&c, Format::Strongswan, false);
    assert!(swanctl.contains("version = 1\n"), "{swanctl}");
    assert!(!swanctl.contains("version = 2"), "{swanctl}");
    let libreswan = export(&c, Format::Libreswan, false);
    assert!(libreswan.contains("    ikev2=no\n"), "{libreswan}");
    let e = render(&c, "rtx830", Format::Ix, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("tunnel.ike.version"), "{e}");
    // IKEv2 stays IKEv2 everywhere.
    let v2 = s3(VPS6, HOME6, "198.51.100.0/24", "198.18.2.0/23");
    assert!(export(&v2, Format::Strongswan, false).contains("version = 2\n"));
    assert!(!export(&v2, Format::Libreswan, false).contains("ikev2="));
    assert!(export(&v2, Format::Rtx, false).contains("ipsec ike version 1 2"));
}
