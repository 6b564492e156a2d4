//! `v6gate demo`: two sites joined by an ipip6 tunnel over an IPv6-only underlay, in network
//! namespaces, with real traffic across. Everything is torn down at the end unless `--keep`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::lab::{Lab, LabOptions, Node, Site};

pub fn run(keep: bool) -> anyhow::Result<()> {
    if !crate::lab::is_root() {
        bail!("the demo builds network namespaces and TUN devices: run it as root");
    }
    let binary = std::env::current_exe().context("finding the v6gate binary")?;
    println!("building the lab: hostA - siteA - wan (IPv6-only ISP) - siteB - hostB");
    let lab = Lab::two_sites(LabOptions::default()).context("building the lab")?;
    println!(
        "  siteA {}  <-- IPv6 underlay -->  siteB {}",
        Site::A.wan6(),
        Site::B.wan6()
    );
    println!(
        "  LAN A {} (hostA {})      LAN B {} (hostB {})",
        Site::A.lan4(),
        Site::A.host4(),
        Site::B.lan4(),
        Site::B.host4()
    );
    println!("  the wan router has no IPv4 at all: IPv4 can only cross inside the tunnel\n");

    let before = lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 1);
    println!(
        "without v6gate: ping hostA -> hostB {}",
        if before {
            "answered (unexpected!)"
        } else {
            "fails, as it should"
        }
    );

    let config_a = lab.site_config(Site::A);
    let config_b = lab.site_config(Site::B);
    println!("\nsiteA config:\n{}", indent(&config_a.to_toml()));
    let gw_a = lab
        .start_gateway(&binary, Node::SiteA, &config_a)
        .context("starting the gateway in siteA")?;
    let gw_b = lab
        .start_gateway(&binary, Node::SiteB, &config_b)
        .context("starting the gateway in siteB")?;
    println!(
        "gateways running in siteA (pid {}) and siteB (pid {})",
        gw_a.pid(),
        gw_b.pid()
    );

    let ping = lab.ping_output(Node::HostA, IpAddr::V4(Site::B.host4()), 5, &[]);
    let ping_ok = ping.status.success();
    println!(
        "\nping hostA -> hostB through the tunnel: {}",
        if ping_ok { "ok" } else { "FAILED" }
    );
    print!("{}", indent(&String::from_utf8_lossy(&ping.stdout)));

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
            println!(
                "TCP hostA -> hostB: {} MiB in {:.2} s ({:.0} Mbit/s)",
                t.bytes / (1024 * 1024),
                t.elapsed.as_secs_f64(),
                t.bits_per_second() / 1e6
            );
            true
        }
        Ok(t) => {
            println!(
                "TCP hostA -> hostB: only {} of {bytes} bytes arrived",
                t.bytes
            );
            false
        }
        Err(e) => {
            println!("TCP hostA -> hostB FAILED: {e}");
            false
        }
    };

    let status = std::process::Command::new(&binary)
        .args(["status", "--socket"])
        .arg(gw_a.control_socket())
        .output()
        .context("running v6gate status")?;
    println!(
        "\nv6gate status (siteA):\n{}",
        indent(&String::from_utf8_lossy(&status.stdout))
    );

    let worked = ping_ok && tcp_ok;
    if keep {
        println!("the lab stays up (--keep). Explore it with:");
        for node in Node::ALL {
            println!("  ip netns exec {} bash    # {node}", lab.namespace(node));
        }
        println!(
            "  {} status --socket {}",
            binary.display(),
            gw_a.control_socket().display()
        );
        println!(
            "  tcpdump -ni to-a -c 5 ip6 proto 4   # inside the wan namespace: the encapsulated packets"
        );
        println!(
            "to tear it down: kill {} {}; then `ip netns del` each namespace above",
            gw_a.pid(),
            gw_b.pid()
        );
        // Leaving the lab up means skipping the guards that would tear it down.
        std::mem::forget(lab);
        std::mem::forget(gw_a);
        std::mem::forget(gw_b);
    } else {
        gw_a.stop().context("stopping the siteA gateway")?;
        gw_b.stop().context("stopping the siteB gateway")?;
        drop(lab);
        println!("lab torn down");
    }
    if !worked {
        bail!("traffic did not cross the tunnel");
    }
    println!("demo ok: IPv4 crossed an IPv6-only network through v6gate");
    Ok(())
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}
