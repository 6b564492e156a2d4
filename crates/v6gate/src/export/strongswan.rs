//! strongSwan swanctl.conf: one connection per path, the CHILD_SA with mirrored traffic
//! selectors, suites written as v6gate reads them (the two share strongSwan's syntax), and an
//! `ike` secret bound to both identities.

use std::fmt::Write as _;

use control::{IkeStart, Path};
use ike::Identity;

use super::{Export, Peer, secs};

pub(super) fn render(peer: &Peer<'_>, out: &mut Export) {
    let Some(ipsec) = peer.ipsec() else { return };
    let t = peer.tunnel;
    let _ = writeln!(
        out.text,
        "# strongSwan (swanctl.conf): the peer of v6gate tunnel \"{}\".",
        t.name
    );
    let mut secrets = String::new();
    out.text.push_str("connections {\n");
    for path in &t.paths {
        let name = format!("{}{}", t.name, peer.path_suffix(path));
        connection(peer, path, &name, out);
        let _ = writeln!(secrets, "    ike-{name} {{");
        let _ = writeln!(secrets, "        id-1 = {}", id(&peer.own_id(path)));
        let _ = writeln!(secrets, "        id-2 = {}", id(&peer.our_id(path)));
        let _ = writeln!(secrets, "        secret = {}", secret(peer));
        secrets.push_str("    }\n");
    }
    out.text.push_str("}\n\nsecrets {\n");
    out.text.push_str(&secrets);
    out.text.push_str("}\n");
    if ipsec.dpd_timeout > ipsec.dpd_delay * 5 {
        out.warnings.push(format!(
            "tunnel {}: ike.dpd_timeout: IKEv2 in strongSwan gives up after its retransmission \
             schedule (about 165 s by default), not after a DPD timeout",
            t.name
        ));
    }
}

fn connection(peer: &Peer<'_>, path: &Path, name: &str, out: &mut Export) {
    let Some(ipsec) = peer.ipsec() else { return };
    let o = &mut out.text;
    let list = |items: Vec<String>| items.join(",");
    let _ = writeln!(o, "    {name} {{");
    let _ = writeln!(o, "        version = {}", ipsec.version.as_str());
    let _ = writeln!(o, "        local_addrs = {}", path.remote);
    let _ = writeln!(o, "        remote_addrs = {}", path.local);
    let _ = writeln!(
        o,
        "        proposals = {}",
        list(ipsec.proposals.iter().map(ToString::to_string).collect())
    );
    // Rekey before v6gate's lifetime runs out; over_time bounds the SA's life at it.
    let ike_life = secs(ipsec.ike_lifetime);
    let _ = writeln!(o, "        rekey_time = {}s", ike_life * 9 / 10);
    let _ = writeln!(o, "        over_time = {}s", ike_life - ike_life * 9 / 10);
    let _ = writeln!(o, "        dpd_delay = {}s", secs(ipsec.dpd_delay));
    if ipsec.encap == control::Encap::Udp {
        o.push_str("        encap = yes\n");
    }
    o.push_str("        mobike = no\n");
    let _ = writeln!(
        o,
        "        local {{\n            auth = psk\n            id = {}\n        }}",
        id(&peer.own_id(path))
    );
    let _ = writeln!(
        o,
        "        remote {{\n            auth = psk\n            id = {}\n        }}",
        id(&peer.our_id(path))
    );
    o.push_str("        children {\n");
    let _ = writeln!(o, "            {name} {{");
    let nets = |v: &[ipnet::IpNet]| list(v.iter().map(ToString::to_string).collect());
    let _ = writeln!(o, "                local_ts = {}", nets(&peer.own_subnets));
    let _ = writeln!(o, "                remote_ts = {}", nets(&peer.our_subnets));
    let _ = writeln!(
        o,
        "                esp_proposals = {}",
        list(
            ipsec
                .esp_proposals
                .iter()
                .map(ToString::to_string)
                .collect()
        )
    );
    let child_life = secs(ipsec.child_lifetime);
    let _ = writeln!(o, "                rekey_time = {}s", child_life * 9 / 10);
    let _ = writeln!(o, "                life_time = {child_life}s");
    // Whoever v6gate leaves the initiative to starts the SA and restarts it after DPD.
    let (start, dpd) = match ipsec.start {
        IkeStart::Respond => ("start", "restart"),
        IkeStart::Auto => ("none", "clear"),
    };
    let _ = writeln!(o, "                start_action = {start}");
    let _ = writeln!(o, "                dpd_action = {dpd}");
    o.push_str("            }\n        }\n    }\n");
}

/// An identity in strongSwan's syntax, quoted.
fn id(identity: &Identity) -> String {
    let text = match identity {
        Identity::Addr(a) => a.to_string(),
        Identity::Fqdn(name) => format!("fqdn:{name}"),
        Identity::Email(mail) => format!("email:{mail}"),
        Identity::KeyId(bytes) => {
            let printable = bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'"');
            if printable && !bytes.starts_with(b"#") {
                format!("keyid:{}", String::from_utf8_lossy(bytes))
            } else {
                format!("keyid:#{}", hex(bytes))
            }
        }
    };
    format!("\"{text}\"")
}

/// The secret quoted when it is plain text, else as hex, which swanctl reads byte for byte.
fn secret(peer: &Peer<'_>) -> String {
    match &peer.secret {
        Some(bytes) if !peer.secret_is_plain() => format!("0x{}", hex(bytes)),
        _ => format!("\"{}\"", peer.secret_text()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
