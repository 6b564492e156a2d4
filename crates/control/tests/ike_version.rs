//! `[tunnel.ike] version`: IKEv1 for peers that speak nothing newer, checked by key.

use std::path::Path;
use std::time::Duration;

use control::{Config, Encap, IkeStart, IkeVersion, Mode};
use ike::crypto::{Encr, Integ};
use ike::dh::DhGroup;

fn ipsec(ike: &str) -> String {
    format!(
        "[[tunnel]]\nname = \"vps\"\nmode = \"ipsec\"\nlocal = \"2001:db8:a::2\"\n\
         remote = \"2001:db8:a::1\"\nlocal_subnets = [\"203.0.113.0/24\"]\n\
         routes = [\"198.51.100.0/24\"]\n[tunnel.ike]\npsk = \"inline\"\n{ike}"
    )
}

fn error_for(ike: &str) -> String {
    Config::from_toml_str(&ipsec(ike), "test.toml")
        .expect_err("must be refused")
        .to_string()
}

#[test]
fn version_defaults_to_2_and_takes_1() {
    let c = Config::from_toml_str(&ipsec(""), "t").unwrap();
    assert_eq!(c.tunnels[0].ipsec.as_ref().unwrap().version, IkeVersion::V2);
    let c = Config::from_toml_str(&ipsec("version = 2\n"), "t").unwrap();
    assert_eq!(c.tunnels[0].ipsec.as_ref().unwrap().version, IkeVersion::V2);
    let c = Config::from_toml_str(&ipsec("version = 1\n"), "t").unwrap();
    let i = c.tunnels[0].ipsec.as_ref().unwrap();
    assert_eq!(i.version, IkeVersion::V1);
    // IKEv2's AEAD defaults cannot go in IKEv1's phase 1: version 1 has CBC defaults.
    assert_eq!(i.proposals[0].encr, vec![Encr::AesCbc(256)]);
    assert_eq!(i.proposals[0].integ, vec![Integ::HmacSha256_128]);
    assert_eq!(i.proposals[0].dh, vec![DhGroup::Modp2048]);
    assert_eq!(i.esp_proposals[0].encr, vec![Encr::AesCbc(256)]);
}

#[test]
fn what_ikev1_cannot_do_is_refused_by_key() {
    let e = error_for("version = 3\n");
    assert!(
        e.contains("tunnel[0].ike.version") && e.contains("expected 1 or 2"),
        "{e}"
    );
    let e = error_for("version = 1\nproposals = [\"aes128gcm16-prfsha256-ecp256\"]\n");
    assert!(e.contains("tunnel[0].ike.proposals[0]"), "{e}");
    let e = error_for("version = 1\nproposals = [\"aes128-sha1-x25519\"]\n");
    assert!(e.contains("tunnel[0].ike.proposals[0]"), "{e}");
    let e = error_for("version = 1\nesp_proposals = [\"aes128-sha1-x25519\"]\n");
    assert!(e.contains("tunnel[0].ike.esp_proposals[0]"), "{e}");
    let e = error_for("version = 1\nencap = \"udp\"\n");
    assert!(e.contains("tunnel[0].ike.encap"), "{e}");
    let e = error_for("version = \"1\"\n");
    assert!(e.contains("version"), "{e}");
}

/// examples/s3-vps-ikev1.toml says what the seed's libreswan conn says.
#[test]
fn s3_ikev1_example_matches_the_libreswan_conn() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/s3-vps-ikev1.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let t = &c.tunnels[0];
    assert_eq!(t.mode, Mode::Ipsec);
    let i = t.ipsec.as_ref().unwrap();
    // keyexchange=ike, aggrmode=no, authby=secret with the addresses as identities
    assert_eq!(i.version, IkeVersion::V1);
    assert_eq!((i.local_id.as_ref(), i.remote_id.as_ref()), (None, None));
    // ike=aes128-sha1;modp1024
    assert_eq!(i.proposals.len(), 1);
    assert_eq!(i.proposals[0].encr, vec![Encr::AesCbc(128)]);
    assert_eq!(i.proposals[0].integ, vec![Integ::HmacSha1_96]);
    assert_eq!(i.proposals[0].dh, vec![DhGroup::Modp1024]);
    // phase2=esp phase2alg=aes128-sha1 pfs=no
    assert_eq!(i.esp_proposals.len(), 1);
    assert_eq!(i.esp_proposals[0].encr, vec![Encr::AesCbc(128)]);
    assert_eq!(i.esp_proposals[0].integ, vec![Integ::HmacSha1_96]);
    assert!(i.esp_proposals[0].dh.is_empty(), "pfs=no");
    // ikelifetime=28800s keylife=28800s
    assert_eq!(i.ike_lifetime, Duration::from_secs(28800));
    assert_eq!(i.child_lifetime, Duration::from_secs(28800));
    // dpddelay=5 dpdtimeout=20 dpdaction=restart, auto=start
    assert_eq!(i.dpd_delay, Duration::from_secs(5));
    assert_eq!(i.dpd_timeout, Duration::from_secs(20));
    assert_eq!(i.dpd_action, ike::DpdAction::Restart);
    assert_eq!(i.start, IkeStart::Auto);
    assert_eq!(i.encap, Encap::Auto);
    // left/leftsubnet, right/rightsubnet (a /23 on the RTX side)
    assert_eq!(t.local_subnets, vec!["198.51.100.0/24".parse().unwrap()]);
    assert_eq!(t.routes, vec!["198.18.2.0/23".parse().unwrap()]);
    assert!(t.paths[0].local.is_ipv6() && t.paths[0].remote.is_ipv6());
    assert!(i.legacy, "SHA-1 and MODP-1024 are warned about");
}
