//! The demo (`v6gate-demo`, run by `scripts/demo`): two sites joined by an ipip6 tunnel over
//! an IPv6-only underlay, in network namespaces, with real traffic across. Everything is torn
//! down at the end unless `keep`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{Lab, LabOptions, Node, Site};

/// What a successful demo built, so that a caller can check none of it is left.
#[derive(Clone, Debug)]
pub struct Report {
    pub namespaces: [String; 5],
}

/// Builds the lab, runs `binary` as the gateway of both sites, sends a ping and a TCP
/// transfer across, and writes what happens to `out`. Fails unless traffic crossed.
pub fn run(binary: &Path, keep: bool, out: &mut dyn Write) -> anyhow::Result<Report> {
    if !crate::is_root() {
        bail!("the demo builds network namespaces and TUN devices: run it as root");
    }
    writeln!(
        out,
        "building the lab: hostA - siteA - wan (IPv6-only ISP) - siteB - hostB"
    )?;
    let lab = Lab::two_sites(LabOptions::default()).context("building the lab")?;
    writeln!(
        out,
        "  siteA {}  <-- IPv6 underlay -->  siteB {}",
        Site::A.wan6(),
        Site::B.wan6()
    )?;
    writeln!(
        out,
        "  LAN A {} (hostA {})      LAN B {} (hostB {})",
        Site::A.lan4(),
        Site::A.host4(),
        Site::B.lan4(),
        Site::B.host4()
    )?;
    writeln!(
        out,
        "  the wan router has no IPv4 at all: IPv4 can only cross inside the tunnel\n"
    )?;

    let before = lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 1);
    writeln!(
        out,
        "without v6gate: ping hostA -> hostB {}",
        if before {
            "answered (unexpected!)"
        } else {
            "fails, as it should"
        }
    )?;

    let config_a = lab.site_config(Site::A);
    let config_b = lab.site_config(Site::B);
    writeln!(out, "\nsiteA config:\n{}", indent(&config_a.to_toml()))?;
    let gw_a = lab
        .start_gateway(binary, Node::SiteA, &config_a)
        .context("starting the gateway in siteA")?;
    let gw_b = lab
        .start_gateway(binary, Node::SiteB, &config_b)
        .context("starting the gateway in siteB")?;
    writeln!(
        out,
        "gateways running in siteA (pid {}) and siteB (pid {})",
        gw_a.pid(),
        gw_b.pid()
    )?;

    let ping = lab.ping_output(Node::HostA, IpAddr::V4(Site::B.host4()), 5, &[]);
    let ping_ok = ping.status.success();
    writeln!(
        out,
        "\nping hostA -> hostB through the tunnel: {}",
        if ping_ok { "ok" } else { "FAILED" }
    )?;
    write!(out, "{}", indent(&String::from_utf8_lossy(&ping.stdout)))?;

    let bytes = 20 * 1024 * 1024;
    let transfer = lab.tcp_transfer(
        Node::HostB,
        SocketAddr::new(IpAddr::V4(Site::B.host4()), 0),
        Node::HostA,
        bytes,
        Duration::from_secs(30),
    );
    let tcp_ok = match &transfer {
        Ok(t) if t.bytes == bytes => {
            writeln!(
                out,
                "TCP hostA -> hostB: {} MiB in {:.2} s ({:.0} Mbit/s)",
                t.bytes / (1024 * 1024),
                t.elapsed.as_secs_f64(),
                t.bits_per_second() / 1e6
            )?;
            true
        }
        Ok(t) => {
            writeln!(
                out,
                "TCP hostA -> hostB: only {} of {bytes} bytes arrived",
                t.bytes
            )?;
            false
        }
        Err(e) => {
            writeln!(out, "TCP hostA -> hostB FAILED: {e}")?;
            false
        }
    };

    let status = std::process::Command::new(binary)
        .args(["status", "--socket"])
        .arg(gw_a.control_socket())
        .output()
        .context("running v6gate status")?;
    writeln!(
        out,
        "\nv6gate status (siteA):\n{}",
        indent(&String::from_utf8_lossy(&status.stdout))
    )?;

    let worked = ping_ok && tcp_ok;
    let namespaces = lab.namespaces().clone();
    if keep {
        writeln!(out, "the lab stays up (--keep). Explore it with:")?;
        for node in Node::ALL {
            writeln!(
                out,
                "  ip netns exec {} bash    # {node}",
                lab.namespace(node)
            )?;
        }
        writeln!(
            out,
            "  {} status --socket {}",
            binary.display(),
            gw_a.control_socket().display()
        )?;
        writeln!(
            out,
            "  tcpdump -ni to-a -c 5 ip6 proto 4   # inside the wan namespace: the encapsulated packets"
        )?;
        writeln!(
            out,
            "to tear it down: kill {} {}; then `ip netns del` each namespace above",
            gw_a.pid(),
            gw_b.pid()
        )?;
        // Leaving the lab up means skipping the guards that would tear it down.
        std::mem::forget(lab);
        std::mem::forget(gw_a);
        std::mem::forget(gw_b);
    } else {
        gw_a.stop().context("stopping the siteA gateway")?;
        gw_b.stop().context("stopping the siteB gateway")?;
        drop(lab);
        writeln!(out, "lab torn down")?;
    }
    if !worked {
        bail!("traffic did not cross the tunnel");
    }
    writeln!(
        out,
        "demo ok: IPv4 crossed an IPv6-only network through v6gate"
    )?;
    Ok(Report { namespaces })
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
