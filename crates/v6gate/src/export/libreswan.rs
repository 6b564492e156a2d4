//! libreswan: a `conn` for ipsec.conf (or /etc/ipsec.d/NAME.conf) and the matching line of
//! ipsec.secrets, in the shape of the field's VPS config. The peer is `left`, v6gate `right`.

use std::fmt::Write as _;

use control::{IkeStart, Path};
use ike::Identity;
use ike::crypto::{Encr, Integ, Prf};
use ike::dh::DhGroup;
use ike::proposal::{EspProposal, IkeProposal};

use super::{Export, Peer, secs};

pub(super) fn render(peer: &Peer<'_>, out: &mut Export) {
    let t = peer.tunnel;
    let _ = writeln!(
        out.text,
        "# libreswan: the peer of v6gate tunnel \"{}\".\n# ipsec.conf (or /etc/ipsec.d/v6gate-{}.conf):",
        t.name, t.name
    );
    let mut secrets = String::new();
    for path in &t.paths {
        let name = format!("v6gate-{}{}", t.name, peer.path_suffix(path));
        conn(peer, path, &name, out);
        let _ = writeln!(
            secrets,
            "{} {} : PSK {}",
            id(&peer.own_id(path)),
            id(&peer.our_id(path)),
            secret(peer)
        );
    }
    out.text
        .push_str("\n# ipsec.secrets (or /etc/ipsec.d/v6gate.secrets, mode 0600):\n");
    out.text.push_str(&secrets);
}

fn conn(peer: &Peer<'_>, path: &Path, name: &str, out: &mut Export) {
    let Some(ipsec) = peer.ipsec() else { return };
    let o = &mut out.text;
    let nets = |v: &[ipnet::IpNet]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let _ = writeln!(o, "conn {name}");
    // IKEv2 is the default of libreswan 4 and 5 alike; 4.x rejects 5's `keyexchange=` and 5
    // drops 4's `ikev2=`, so IKEv2 is not written and IKEv1 in 4.x's words, which the
    // Debian 12 checker proves.
    match ipsec.version {
        control::IkeVersion::V2 => o.push_str("    # IKEv2 (libreswan's default)\n"),
        control::IkeVersion::V1 => o.push_str(
            "    # IKEv1 main mode (libreswan 5 writes this as keyexchange=ikev1)\n    ikev2=no\n",
        ),
    }
    o.push_str("    type=tunnel\n    authby=secret\n");
    let _ = writeln!(o, "    left={}", path.remote);
    let _ = writeln!(o, "    leftid={}", id(&peer.own_id(path)));
    subnets(o, "left", &nets(&peer.own_subnets), peer.own_subnets.len());
    let _ = writeln!(o, "    right={}", path.local);
    let _ = writeln!(o, "    rightid={}", id(&peer.our_id(path)));
    subnets(o, "right", &nets(&peer.our_subnets), peer.our_subnets.len());
    let ike: Vec<String> = ipsec.proposals.iter().map(ike_words).collect();
    let _ = writeln!(o, "    ike={}", ike.join(","));
    let esp: Vec<String> = ipsec.esp_proposals.iter().map(esp_words).collect();
    let _ = writeln!(o, "    esp={}", esp.join(","));
    let pfs = ipsec.esp_proposals.iter().any(|p| !p.dh.is_empty());
    let _ = writeln!(o, "    pfs={}", if pfs { "yes" } else { "no" });
    let _ = writeln!(o, "    ikelifetime={}s", secs(ipsec.ike_lifetime));
    let _ = writeln!(o, "    salifetime={}s", secs(ipsec.child_lifetime));
    let _ = writeln!(o, "    dpddelay={}", secs(ipsec.dpd_delay));
    let _ = writeln!(o, "    dpdtimeout={}", secs(ipsec.dpd_timeout));
    if ipsec.encap == control::Encap::Udp {
        o.push_str("    encapsulation=yes\n");
    }
    let auto = match ipsec.start {
        // v6gate only answers: the peer starts the SA.
        IkeStart::Respond => "start",
        IkeStart::Auto => "add",
    };
    let _ = writeln!(o, "    auto={auto}");
}

/// `leftsubnet=` for one subnet, `leftsubnets={...}` for several.
fn subnets(o: &mut String, side: &str, list: &str, count: usize) {
    if count > 1 {
        let _ = writeln!(o, "    {side}subnets={{{}}}", list.replace(',', " "));
    } else if count == 1 {
        let _ = writeln!(o, "    {side}subnet={list}");
    }
}

/// `aes128-sha1-modp1024`, `aes_gcm128-sha2_256-dh14` in libreswan's algorithm words.
fn ike_words(p: &IkeProposal) -> String {
    let encr: Vec<String> = p.encr.iter().map(|e| encr(*e)).collect();
    let integ: Vec<&str> = if p.integ.is_empty() {
        p.prf.iter().map(|x| prf(*x)).collect()
    } else {
        p.integ.iter().map(|i| integ(*i)).collect()
    };
    let dh: Vec<&str> = p.dh.iter().map(|d| dh(*d)).collect();
    format!("{}-{};{}", encr.join("+"), integ.join("+"), dh.join("+"))
}

fn esp_words(p: &EspProposal) -> String {
    let mut text = p
        .encr
        .iter()
        .map(|e| encr(*e))
        .collect::<Vec<_>>()
        .join("+");
    if !p.integ.is_empty() {
        let integ: Vec<&str> = p.integ.iter().map(|i| integ(*i)).collect();
        let _ = write!(text, "-{}", integ.join("+"));
    }
    if !p.dh.is_empty() {
        let dh: Vec<&str> = p.dh.iter().map(|d| dh(*d)).collect();
        let _ = write!(text, ";{}", dh.join("+"));
    }
    text
}

fn encr(e: Encr) -> String {
    match e {
        Encr::AesCbc(bits) => format!("aes{bits}"),
        Encr::AesGcm16(bits) => format!("aes_gcm{bits}"),
        Encr::TripleDesCbc => "3des".into(),
    }
}

fn integ(i: Integ) -> &'static str {
    match i {
        Integ::HmacSha1_96 => "sha1",
        Integ::HmacSha256_128 => "sha2_256",
        Integ::HmacSha384_192 => "sha2_384",
        Integ::HmacSha512_256 => "sha2_512",
    }
}

fn prf(p: Prf) -> &'static str {
    match p {
        Prf::HmacSha1 => "sha1",
        Prf::HmacSha256 => "sha2_256",
        Prf::HmacSha384 => "sha2_384",
        Prf::HmacSha512 => "sha2_512",
    }
}

fn dh(d: DhGroup) -> &'static str {
    match d {
        DhGroup::Modp1024 => "modp1024",
        DhGroup::Modp1536 => "modp1536",
        DhGroup::Modp2048 => "modp2048",
        DhGroup::Ecp256 => "dh19",
        DhGroup::Ecp384 => "dh20",
        DhGroup::Curve25519 => "dh31",
    }
}

/// libreswan identities: `@name` for FQDNs (no DNS lookup), `@#hex` for key IDs.
fn id(identity: &Identity) -> String {
    match identity {
        Identity::Addr(a) => a.to_string(),
        Identity::Fqdn(name) => format!("@{name}"),
        Identity::Email(mail) => mail.clone(),
        Identity::KeyId(bytes) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("@#{hex}")
        }
    }
}

fn secret(peer: &Peer<'_>) -> String {
    match &peer.secret {
        Some(bytes) if !peer.secret_is_plain() => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{hex}")
        }
        _ => format!("\"{}\"", peer.secret_text()),
    }
}
