//! YAMAHA RTX: one `tunnel select N` per path, IPIP (`tunnel encapsulation ipip`) for the
//! RFC 2473 modes, `ipsec tunnel` with the tunnel's IKE version for ipsec, in the shape of the
//! field's RTX1200 and RTX830 configs.
//!
//! RTX has no Tunnel Encapsulation Limit setting: it drops packets that carry the option
//! ("received malformed option"), so the export warns when our end would send it.

use std::fmt::Write as _;
use std::net::IpAddr;

use control::{MssClamp, Path};
use ike::Identity;
use ike::crypto::{Encr, Integ, Prf};
use ike::dh::DhGroup;
use ipnet::IpNet;

use super::{Export, Peer, secs};

pub(super) fn render(peer: &Peer<'_>, out: &mut Export) {
    let t = peer.tunnel;
    let _ = writeln!(
        out.text,
        "# YAMAHA RTX: the peer of v6gate tunnel \"{}\" (mode {}).\n# Renumber `tunnel select` \
         if these numbers are taken.",
        t.name, t.mode
    );
    if t.encap_limit.is_some() {
        out.warnings.push(format!(
            "tunnel {}: encap_limit: v6gate sends the Tunnel Encapsulation Limit option on this \
             tunnel and YAMAHA RTX routers drop such packets (\"received malformed option\"); \
             set encap_limit = \"none\"",
            t.name
        ));
    }
    for (i, path) in t.paths.iter().enumerate() {
        let n = i + 1;
        let _ = writeln!(out.text, "tunnel select {n}");
        let _ = writeln!(
            out.text,
            " description tunnel v6gate-{}{}",
            t.name,
            peer.path_suffix(path)
        );
        if peer.ipsec().is_some() {
            ipsec_tunnel(peer, path, n, out);
        } else {
            ipip_tunnel(peer, path, i == 0, out);
        }
        match t.mss_clamp {
            MssClamp::Auto => out.text.push_str(" ip tunnel tcp mss limit auto\n"),
            MssClamp::Fixed(mss) => {
                let _ = writeln!(out.text, " ip tunnel tcp mss limit {mss}");
            }
            MssClamp::Off => {}
        }
        let _ = writeln!(out.text, " tunnel enable {n}");
    }
    if peer.our_subnets.is_empty() {
        out.text.push_str(
            "# Route the prefixes behind v6gate into the tunnel (v6gate export --peer-route):\n\
             # ip route PREFIX gateway tunnel 1\n",
        );
    }
    // Traffic goes over the cheapest path, as v6gate sends it; the others are backups.
    let primary = (0..t.paths.len())
        .min_by_key(|i| t.paths[*i].cost)
        .map_or(1, |i| i + 1);
    for net in &peer.our_subnets {
        let _ = writeln!(
            out.text,
            "{} {} gateway tunnel {primary}",
            route_keyword(net),
            route_dst(net)
        );
    }
    if t.paths.len() > 1 {
        let _ = writeln!(
            out.text,
            "# Tunnels other than {primary} are backups: pair them with `tunnel backup` and \
             a keepalive on tunnel {primary}."
        );
    }
    if peer
        .ipsec()
        .is_some_and(|i| i.start == control::IkeStart::Respond)
    {
        // v6gate waits for the peer: the RTX keeps the SA up.
        out.text.push_str("ipsec auto refresh on\n");
    }
}

fn ipip_tunnel(peer: &Peer<'_>, path: &Path, first: bool, out: &mut Export) {
    out.text.push_str(" tunnel encapsulation ipip\n");
    let _ = writeln!(
        out.text,
        " tunnel endpoint address {} {}",
        path.remote, path.local
    );
    // One device on our side carries every path: its address goes on the first tunnel only.
    if let Some(link) = peer.link_address.filter(|_| first) {
        let _ = writeln!(out.text, " {} {link}", tunnel_address_keyword(&link));
    }
    let _ = writeln!(out.text, " ip tunnel mtu {}", peer.mtu());
}

fn ipsec_tunnel(peer: &Peer<'_>, path: &Path, n: usize, out: &mut Export) {
    let Some(ipsec) = peer.ipsec() else { return };
    let t = peer.tunnel;
    // One policy per gateway, numbered alike, as the field configs do.
    let policy = n;
    let _ = writeln!(out.text, " ipsec tunnel {policy}");
    let ike = &ipsec.proposals[0];
    let esp = &ipsec.esp_proposals[0];
    if ipsec.proposals.len() > 1
        || ipsec.esp_proposals.len() > 1
        || ike.encr.len() > 1
        || ike.dh.len() > 1
        || esp.encr.len() > 1
        || esp.integ.len() > 1
    {
        out.warnings.push(format!(
            "tunnel {}: ike.proposals / ike.esp_proposals: an RTX gateway takes one algorithm \
             of each kind; the first ones are written",
            t.name
        ));
    }
    let esp_integ = esp.integ.first().map_or(String::new(), |i| {
        format!(" {}", esp_hash(*i, &t.name, &mut out.warnings))
    });
    let _ = writeln!(
        out.text,
        "  ipsec sa policy {policy} {n} esp {}{esp_integ}",
        encryption(esp.encr[0], &t.name, &mut out.warnings)
    );
    let _ = writeln!(
        out.text,
        "  ipsec ike version {n} {}",
        ipsec.version.as_str()
    );
    let _ = writeln!(
        out.text,
        "  ipsec ike duration ike-sa {n} {}",
        secs(ipsec.ike_lifetime)
    );
    let _ = writeln!(
        out.text,
        "  ipsec ike duration child-sa {n} {}",
        secs(ipsec.child_lifetime)
    );
    let _ = writeln!(
        out.text,
        "  ipsec ike encryption {n} {}",
        encryption(ike.encr[0], &t.name, &mut out.warnings)
    );
    let _ = writeln!(
        out.text,
        "  ipsec ike group {n} {}",
        group(ike.dh[0], &t.name, &mut out.warnings)
    );
    let _ = writeln!(out.text, "  ipsec ike hash {n} {}", hash(ike.prf[0]));
    // DPD every `dpd_delay`, the peer declared dead after as many as fit in `dpd_timeout`.
    let delay = secs(ipsec.dpd_delay);
    let count = (secs(ipsec.dpd_timeout) / delay).max(1);
    let _ = writeln!(
        out.text,
        "  ipsec ike keepalive use {n} on dpd {delay} {count}"
    );
    let _ = writeln!(out.text, "  ipsec ike local address {n} {}", path.remote);
    if let Some(name) = id_words(&peer.own_id(path)) {
        let _ = writeln!(out.text, "  ipsec ike local name {n} {name}");
    }
    let _ = writeln!(out.text, "  ipsec ike remote address {n} {}", path.local);
    if let Some(name) = id_words(&peer.our_id(path)) {
        let _ = writeln!(out.text, "  ipsec ike remote name {n} {name}");
    }
    let _ = writeln!(
        out.text,
        "  ipsec ike pre-shared-key {n} text {}",
        peer.secret_text()
    );
    if ipsec.encap == control::Encap::Udp {
        let _ = writeln!(out.text, "  ipsec ike nat-traversal {n} on");
    }
}

/// `ipsec ike local name` arguments; `None` for an address identity (the default).
fn id_words(id: &Identity) -> Option<String> {
    match id {
        Identity::Addr(_) => None,
        Identity::Fqdn(name) => Some(format!("{name} fqdn")),
        Identity::Email(mail) => Some(format!("{mail} rfc822-addr")),
        Identity::KeyId(bytes) => Some(format!("{} key-id", String::from_utf8_lossy(bytes))),
    }
}

fn encryption(e: Encr, tunnel: &str, warnings: &mut Vec<String>) -> &'static str {
    match e {
        Encr::AesCbc(256) => "aes256-cbc",
        Encr::AesCbc(bits) => {
            if bits != 128 {
                warnings.push(format!(
                    "tunnel {tunnel}: AES-{bits}-CBC has no RTX keyword; aes-cbc (AES-128) is \
                     written"
                ));
            }
            "aes-cbc"
        }
        Encr::AesGcm16(256) => "aes256-gcm",
        Encr::AesGcm16(_) => "aes-gcm",
        Encr::TripleDesCbc => "3des-cbc",
    }
}

fn esp_hash(i: Integ, tunnel: &str, warnings: &mut Vec<String>) -> &'static str {
    match i {
        Integ::HmacSha1_96 => "sha-hmac",
        Integ::HmacSha256_128 => "sha256-hmac",
        Integ::HmacSha384_192 | Integ::HmacSha512_256 => {
            warnings.push(format!(
                "tunnel {tunnel}: RTX ESP knows sha-hmac and sha256-hmac only; sha256-hmac is \
                 written"
            ));
            "sha256-hmac"
        }
    }
}

fn hash(p: Prf) -> &'static str {
    match p {
        Prf::HmacSha1 => "sha",
        Prf::HmacSha256 => "sha256",
        Prf::HmacSha384 => "sha384",
        Prf::HmacSha512 => "sha512",
    }
}

fn group(d: DhGroup, tunnel: &str, warnings: &mut Vec<String>) -> &'static str {
    match d {
        DhGroup::Modp1024 => "modp1024",
        DhGroup::Modp1536 => "modp1536",
        DhGroup::Modp2048 => "modp2048",
        DhGroup::Ecp256 => "ecp256",
        DhGroup::Ecp384 => "ecp384",
        DhGroup::Curve25519 => {
            warnings.push(format!(
                "tunnel {tunnel}: RTX has no curve25519 group; modp2048 is written, add it to \
                 ike.proposals"
            ));
            "modp2048"
        }
    }
}

fn route_keyword(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "ip route",
        IpNet::V6(_) => "ipv6 route",
    }
}

fn tunnel_address_keyword(net: &IpNet) -> &'static str {
    match net.addr() {
        IpAddr::V4(_) => "ip tunnel address",
        IpAddr::V6(_) => "ipv6 tunnel address",
    }
}

/// RTX writes the default route as `default`.
fn route_dst(net: &IpNet) -> String {
    if net.prefix_len() == 0 {
        "default".to_owned()
    } else {
        net.to_string()
    }
}
