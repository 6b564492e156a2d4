//! systemd-networkd: a Linux ip6tnl device (`Kind=ip6tnl`, `Mode=ipip6`) per IPv6 path, with
//! `EncapsulationLimit=none` written out (the kernel's default is 4, the option that YAMAHA
//! routers drop), its `.network`, and the line the underlay's `.network` needs.
//!
//! Each file starts with a `# ==> PATH <==` line, as `head` prints several files, so the text
//! can be split back into files.

use std::fmt::Write as _;

use control::{Mode, MssClamp};

use super::{Export, Peer};

/// Prefix of file marker lines.
pub const FILE_MARKER: &str = "# ==> ";

pub(super) fn render(peer: &Peer<'_>, out: &mut Export) {
    let t = peer.tunnel;
    let mode = match t.mode {
        Mode::Ipip6 => "ipip6",
        Mode::Ip6ip6 => "ip6ip6",
        Mode::Any | Mode::Ipsec => "any",
    };
    let _ = writeln!(
        out.text,
        "# systemd-networkd: the peer of v6gate tunnel \"{}\" as a Linux ip6tnl device.",
        t.name
    );
    if t.mss_clamp != MssClamp::Off {
        out.warnings.push(format!(
            "tunnel {}: mss_clamp: networkd does not clamp TCP MSS; add `tcp flags syn tcp \
             option maxseg size set rt mtu` to the peer's nftables forward chain",
            t.name
        ));
    }
    let mut devices = Vec::new();
    for (i, path) in t.paths.iter().enumerate() {
        if !path.is_ipv6() {
            out.warnings.push(format!(
                "tunnel {}: path {}: ip6tnl runs over IPv6 only; this IPv4 path is left out",
                t.name, path.name
            ));
            continue;
        }
        let device = device_name(&t.name, i);
        let file = format!("/etc/systemd/network/60-{device}");
        let _ = writeln!(out.text, "\n{FILE_MARKER}{file}.netdev <==");
        out.text.push_str("[NetDev]\n");
        let _ = writeln!(out.text, "Name={device}");
        out.text.push_str("Kind=ip6tnl\n");
        let _ = writeln!(out.text, "MTUBytes={}", peer.mtu());
        out.text.push_str("\n[Tunnel]\n");
        let _ = writeln!(out.text, "Mode={mode}");
        let _ = writeln!(out.text, "Local={}", path.remote);
        let _ = writeln!(out.text, "Remote={}", path.local);
        match t.encap_limit {
            None => out.text.push_str("EncapsulationLimit=none\n"),
            Some(limit) => {
                let _ = writeln!(out.text, "EncapsulationLimit={limit}");
            }
        }
        let _ = writeln!(out.text, "TTL={}", t.hop_limit);

        let _ = writeln!(out.text, "\n{FILE_MARKER}{file}.network <==");
        let _ = writeln!(out.text, "[Match]\nName={device}\n\n[Network]");
        if let Some(link) = peer.link_address {
            let _ = writeln!(out.text, "Address={link}");
        }
        for net in &peer.our_subnets {
            let _ = writeln!(out.text, "\n[Route]\nDestination={net}\nScope=link");
        }
        devices.push(device);
    }
    if !devices.is_empty() {
        out.text.push_str(
            "\n# Add to the [Network] section of the .network file of the interface that holds \
             the local address:\n",
        );
        for device in devices {
            let _ = writeln!(out.text, "#   Tunnel={device}");
        }
    }
}

/// `ip6t-NAME`, cut to the kernel's 15 bytes, with the path's index when there are several.
fn device_name(tunnel: &str, index: usize) -> String {
    let suffix = if index == 0 {
        String::new()
    } else {
        format!("-{index}")
    };
    let room = control::MAX_DEVICE_LEN - "ip6t-".len() - suffix.len();
    let stem: String = tunnel.chars().take(room).collect();
    format!("ip6t-{stem}{suffix}")
}
