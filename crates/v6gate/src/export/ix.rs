//! NEC UNIVERGE IX, IKEv2: the PSK registered per identity (`ikev2 authentication psk id`),
//! an `ikev2 profile` with the suites and lifetimes, and one `interface TunnelN.0` per path in
//! `tunnel mode ipsec-ikev2`, in the shape of the field's IX2215 config.

use std::fmt::Write as _;

use control::{MssClamp, Path};
use ike::Identity;
use ike::crypto::{Encr, Integ, Prf};
use ike::dh::DhGroup;
use ipnet::IpNet;

use super::{Export, Peer, secs};

pub(super) fn render(peer: &Peer<'_>, out: &mut Export) {
    let Some(ipsec) = peer.ipsec() else { return };
    let t = peer.tunnel;
    let profile = format!("v6gate-{}", t.name);
    let _ = writeln!(
        out.text,
        "! NEC IX: the peer of v6gate tunnel \"{}\" (IKEv2, ESP tunnel mode).\n! Renumber \
         TunnelN.0 if these interfaces are taken.",
        t.name
    );
    // v6gate uses one key in both directions: register it under both identities.
    let mut ids: Vec<String> = Vec::new();
    for path in &t.paths {
        for id in [peer.own_id(path), peer.our_id(path)] {
            let words = id_words(&id);
            if !ids.contains(&words) {
                ids.push(words);
            }
        }
    }
    for id in &ids {
        let _ = writeln!(
            out.text,
            "ikev2 authentication psk id {id} key char {}",
            peer.secret_text()
        );
    }
    out.text.push_str("!\n");

    let ike = &ipsec.proposals[0];
    let esp = &ipsec.esp_proposals[0];
    if ipsec.proposals.len() > 1 || ipsec.esp_proposals.len() > 1 {
        out.warnings.push(format!(
            "tunnel {}: ike.proposals / ike.esp_proposals: only the first proposal of each is \
             written",
            t.name
        ));
    }
    let _ = writeln!(out.text, "ikev2 profile {profile}");
    for e in &ike.encr {
        let _ = writeln!(out.text, "  sa-proposal enc {}", enc(*e));
    }
    // With AES-GCM the PRF's hash stands for the integrity the IX asks for.
    if ike.integ.is_empty() {
        for p in &ike.prf {
            let _ = writeln!(out.text, "  sa-proposal integrity {}", prf_integrity(*p));
        }
    }
    for i in &ike.integ {
        let _ = writeln!(out.text, "  sa-proposal integrity {}", integrity(*i));
    }
    for d in &ike.dh {
        let _ = writeln!(out.text, "  sa-proposal dh {}", dh(*d));
    }
    let _ = writeln!(out.text, "  sa-lifetime {}", secs(ipsec.ike_lifetime));
    for e in &esp.encr {
        let _ = writeln!(out.text, "  child-proposal enc {}", enc(*e));
    }
    for i in &esp.integ {
        let _ = writeln!(out.text, "  child-proposal integrity {}", integrity(*i));
    }
    if let Some(d) = esp.dh.first() {
        let _ = writeln!(out.text, "  child-pfs {}", dh(*d));
    }
    let _ = writeln!(out.text, "  child-lifetime {}", secs(ipsec.child_lifetime));
    let _ = writeln!(out.text, "  dpd interval {}", secs(ipsec.dpd_delay));
    if let Some(path) = t.paths.first() {
        let _ = writeln!(
            out.text,
            "  local-authentication psk id {}",
            id_words(&peer.own_id(path))
        );
    }
    out.text.push_str("!\n");

    for (i, path) in t.paths.iter().enumerate() {
        let n = i + 1;
        tunnel_interface(peer, path, n, &profile, out);
    }
    for net in &peer.our_subnets {
        let devices: Vec<String> = (1..=t.paths.len())
            .map(|n| format!("Tunnel{n}.0"))
            .collect();
        for dev in devices {
            let _ = writeln!(out.text, "{} {} {dev}", route_keyword(net), route_dst(net));
        }
    }
}

fn tunnel_interface(peer: &Peer<'_>, path: &Path, n: usize, profile: &str, out: &mut Export) {
    let t = peer.tunnel;
    let _ = writeln!(out.text, "interface Tunnel{n}.0");
    let _ = writeln!(
        out.text,
        "  description v6gate-{}{}",
        t.name,
        peer.path_suffix(path)
    );
    out.text.push_str("  tunnel mode ipsec-ikev2\n");
    match peer.link_address {
        Some(IpNet::V4(a)) => {
            let _ = writeln!(out.text, "  ip address {a}");
        }
        Some(IpNet::V6(a)) => {
            let _ = writeln!(out.text, "  ipv6 address {a}");
        }
        None => {}
    }
    match t.mss_clamp {
        MssClamp::Auto => out.text.push_str("  ip tcp adjust-mss auto\n"),
        MssClamp::Fixed(mss) => {
            let _ = writeln!(out.text, "  ip tcp adjust-mss {mss}");
        }
        MssClamp::Off => {}
    }
    let start = peer.ipsec().map_or(control::IkeStart::Auto, |i| i.start);
    // When v6gate only answers, the IX must start the SA.
    if start == control::IkeStart::Respond {
        out.text.push_str("  ikev2 connect-type auto\n");
    }
    let _ = writeln!(out.text, "  ikev2 source-address {}", path.remote);
    let _ = writeln!(
        out.text,
        "  ikev2 peer {} authentication psk id {}",
        path.local,
        id_words(&peer.our_id(path))
    );
    let _ = writeln!(out.text, "  ikev2 use-profile {profile}");
    out.text.push_str("  no shutdown\n!\n");
}

/// `id TYPE VALUE` words of an identity.
fn id_words(id: &Identity) -> String {
    match id {
        Identity::Addr(std::net::IpAddr::V4(a)) => format!("ipv4 {a}"),
        Identity::Addr(std::net::IpAddr::V6(a)) => format!("ipv6 {a}"),
        Identity::Fqdn(name) => format!("fqdn {name}"),
        Identity::Email(mail) => format!("email {mail}"),
        Identity::KeyId(bytes) => format!("keyid {}", String::from_utf8_lossy(bytes)),
    }
}

fn enc(e: Encr) -> String {
    match e {
        Encr::AesCbc(bits) => format!("aes-cbc-{bits}"),
        Encr::AesGcm16(bits) => format!("aes-gcm-{bits}"),
        Encr::TripleDesCbc => "3des".into(),
    }
}

fn integrity(i: Integ) -> &'static str {
    match i {
        Integ::HmacSha1_96 => "sha1",
        Integ::HmacSha256_128 => "sha2-256",
        Integ::HmacSha384_192 => "sha2-384",
        Integ::HmacSha512_256 => "sha2-512",
    }
}

fn prf_integrity(p: Prf) -> &'static str {
    match p {
        Prf::HmacSha1 => "sha1",
        Prf::HmacSha256 => "sha2-256",
        Prf::HmacSha384 => "sha2-384",
        Prf::HmacSha512 => "sha2-512",
    }
}

/// The IX names DH groups by size.
fn dh(d: DhGroup) -> &'static str {
    match d {
        DhGroup::Modp1024 => "1024-bit",
        DhGroup::Modp1536 => "1536-bit",
        DhGroup::Modp2048 => "2048-bit",
        DhGroup::Ecp256 => "256-bit-ecp",
        DhGroup::Ecp384 => "384-bit-ecp",
        DhGroup::Curve25519 => "curve25519",
    }
}

fn route_keyword(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip route",
        IpNet::V6(_) => "ipv6 route",
    }
}

fn route_dst(net: &IpNet) -> String {
    if net.prefix_len() == 0 {
        "default".to_owned()
    } else {
        net.to_string()
    }
}
