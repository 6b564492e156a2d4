//! Shared by the end-to-end tests: lab set-up with two gateways, bounded waits, pcap
//! decoding, scapy injection and host-state snapshots.
//!
//! Every test file compiles this module on its own and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Output;
use std::thread;
use std::time::{Duration, Instant};

use v6gate_lab::{Gateway, GatewayConfig, Lab, LabOptions, Node, Site, dev};

pub mod ipsec;
pub mod kernel;
pub mod metrics;

/// The daemon under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_v6gate");

/// The system interpreter: Debian's python3-scapy is installed for it, while a `python3`
/// earlier in PATH may be another one.
pub const PYTHON: &str = "/usr/bin/python3";

/// Builds a lab, failing with a clear message when not root.
pub fn lab(options: LabOptions) -> Lab {
    assert!(
        v6gate_lab::is_root(),
        "the end-to-end tests build network namespaces and TUN devices and must run as \
         root (CI runs them as root; locally: sudo -E cargo test -p v6gate)"
    );
    Lab::two_sites(options).unwrap_or_else(|e| panic!("cannot build the lab: {e}"))
}

/// A lab with a gateway in each site. Fields drop in order: gateways before the lab.
pub struct Sites {
    pub a: Option<Gateway>,
    pub b: Option<Gateway>,
    pub config_a: GatewayConfig,
    pub config_b: GatewayConfig,
    pub lab: Lab,
}

impl Sites {
    /// Starts both gateways with the lab's standard configs, after `adjust` had its say.
    pub fn start(options: LabOptions, adjust: impl Fn(Site, &mut GatewayConfig)) -> Self {
        let lab = lab(options);
        let mut config_a = lab.site_config(Site::A);
        let mut config_b = lab.site_config(Site::B);
        adjust(Site::A, &mut config_a);
        adjust(Site::B, &mut config_b);
        let a = start_gateway(&lab, Site::A, &config_a);
        let b = start_gateway(&lab, Site::B, &config_b);
        Self {
            a: Some(a),
            b: Some(b),
            config_a,
            config_b,
            lab,
        }
    }

    pub fn gateway(&self, site: Site) -> &Gateway {
        match site {
            Site::A => self.a.as_ref(),
            Site::B => self.b.as_ref(),
        }
        .expect("gateway already stopped")
    }

    /// Stops both gateways, insisting on clean exits.
    pub fn stop(mut self) {
        for gateway in [self.a.take(), self.b.take()].into_iter().flatten() {
            let node = gateway.node();
            gateway
                .stop()
                .unwrap_or_else(|e| panic!("stopping the gateway in {node}: {e}"));
        }
    }
}

pub fn start_gateway(lab: &Lab, site: Site, config: &GatewayConfig) -> Gateway {
    lab.start_gateway(BIN.as_ref(), site.node(), config)
        .unwrap_or_else(|e| panic!("starting the gateway in {}: {e}", site.node()))
}

/// Polls `condition` every 100 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Single pings until one is answered (neighbour discovery and the first packets through
/// a fresh tunnel may be lost), at most `timeout`.
pub fn wait_ping(lab: &Lab, from: Node, to: IpAddr, timeout: Duration) -> bool {
    wait_until(timeout, || lab.ping(from, to, 1))
}

/// Waits for the path, then insists that `count` pings in a row are all answered.
pub fn assert_ping(lab: &Lab, from: Node, to: IpAddr, count: u32, gateways: &[&Gateway]) {
    let reachable = wait_ping(lab, from, to, Duration::from_secs(10));
    let output = lab.ping_output(from, to, count, &[]);
    if !reachable || !output.status.success() {
        let logs: String = gateways
            .iter()
            .map(|g| format!("\n--- gateway in {} ---\n{}", g.node(), g.log()))
            .collect();
        panic!("ping {from} -> {to} failed:\n{}{logs}", text(&output));
    }
}

/// Sends `bytes` over TCP from hostA to hostB's IPv4 address within `timeout` and insists
/// that every byte arrived as sent; a failure names the transfer and the gateways' logs.
pub fn assert_tcp_a_to_b(lab: &Lab, bytes: u64, timeout: Duration, gateways: &[&Gateway]) {
    let server = IpAddr::V4(v6gate_lab::addr::HOST_B4);
    assert_tcp(
        lab,
        Node::HostA,
        (Node::HostB, server),
        bytes,
        timeout,
        gateways,
    );
}

/// The same from hostB to hostA.
pub fn assert_tcp_b_to_a(lab: &Lab, bytes: u64, timeout: Duration, gateways: &[&Gateway]) {
    let server = IpAddr::V4(v6gate_lab::addr::HOST_A4);
    assert_tcp(
        lab,
        Node::HostB,
        (Node::HostA, server),
        bytes,
        timeout,
        gateways,
    );
}

fn assert_tcp(
    lab: &Lab,
    client: Node,
    (server, address): (Node, IpAddr),
    bytes: u64,
    timeout: Duration,
    gateways: &[&Gateway],
) {
    let bound = std::net::SocketAddr::new(address, 0);
    let transfer = lab
        .tcp_transfer(server, bound, client, bytes, timeout)
        .unwrap_or_else(|e| {
            let logs: String = gateways
                .iter()
                .map(|g| format!("\n--- gateway in {} ---\n{}", g.node(), g.log()))
                .collect();
            panic!("TCP {client} -> {server} ({bytes} bytes): {e}{logs}")
        });
    assert_eq!(transfer.bytes, bytes);
}

/// A drop counter from a tunnel's status object (absent counts as 0).
pub fn drops(tunnel: &serde_json::Value, reason: &str) -> u64 {
    tunnel["drops"][reason].as_u64().unwrap_or(0)
}

pub fn counter(tunnel: &serde_json::Value, key: &str) -> u64 {
    tunnel[key]
        .as_u64()
        .unwrap_or_else(|| panic!("status has no counter {key:?}: {tunnel}"))
}

/// Runs a scapy script with the system python inside `node`; `args` land in `sys.argv[1:]`.
pub fn scapy(lab: &Lab, node: Node, script: &str, args: &[&str]) -> String {
    let mut full = vec![PYTHON, "-c", script];
    full.extend_from_slice(args);
    let output = lab.exec(node, &full);
    assert!(
        output.status.success(),
        "scapy script in {node} failed:\n{}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Link-layer types tcpdump writes for the devices in the lab.
const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_LINUX_SLL2: u32 = 276;

/// The network-layer packets of a classic pcap file, link-layer header removed.
pub fn pcap_packets(file: &[u8]) -> Vec<Vec<u8>> {
    assert!(
        file.len() >= 24,
        "pcap file too short: {} bytes",
        file.len()
    );
    let magic = [file[0], file[1], file[2], file[3]];
    let little = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => panic!("not a pcap file (magic {magic:02x?})"),
    };
    let u32_at = |at: usize| {
        let bytes = [file[at], file[at + 1], file[at + 2], file[at + 3]];
        if little {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        }
    };
    let linktype = u32_at(20) & 0x0fff_ffff;
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= file.len() {
        let captured = u32_at(at + 8) as usize;
        let start = at + 16;
        let Some(frame) = file.get(start..start + captured) else {
            break;
        };
        at = start + captured;
        let network = match linktype {
            LINKTYPE_ETHERNET => {
                let mut offset = 12;
                // Skip 802.1Q tags to the real EtherType.
                while frame.get(offset..offset + 2) == Some(&[0x81, 0x00]) {
                    offset += 4;
                }
                frame.get(offset + 2..)
            }
            LINKTYPE_RAW => Some(frame),
            LINKTYPE_LINUX_SLL => frame.get(16..),
            LINKTYPE_LINUX_SLL2 => frame.get(20..),
            other => panic!("unexpected pcap link type {other}"),
        };
        if let Some(network) = network {
            packets.push(network.to_vec());
        }
    }
    packets
}

/// One IPv6 destination option (type, data); Pad1 is reported with empty data.
pub type Ipv6Option = (u8, Vec<u8>);

/// The outer IPv6 header of a captured packet and its Destination Options, if any.
#[derive(Debug, Clone)]
pub struct Outer {
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    /// The fixed header's Next Header.
    pub next_header: u8,
    /// Length in bytes of the Destination Options header, when there is one.
    pub destination_options_len: Option<usize>,
    pub destination_options: Vec<Ipv6Option>,
    /// The protocol after the extension headers, and its bytes.
    pub upper_protocol: u8,
    pub upper: Vec<u8>,
}

/// Decodes an IPv6 packet with at most one Destination Options header; None if not IPv6.
pub fn outer_ipv6(packet: &[u8]) -> Option<Outer> {
    if packet.len() < 40 || packet[0] >> 4 != 6 {
        return None;
    }
    let address = |at: usize| {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&packet[at..at + 16]);
        Ipv6Addr::from(bytes)
    };
    let next_header = packet[6];
    let mut outer = Outer {
        source: address(8),
        destination: address(24),
        next_header,
        destination_options_len: None,
        destination_options: Vec::new(),
        upper_protocol: next_header,
        upper: packet[40..].to_vec(),
    };
    if next_header == 60 {
        let header = &packet[40..];
        let len = (usize::from(*header.get(1)?) + 1) * 8;
        let body = header.get(2..len)?;
        let mut i = 0;
        while i < body.len() {
            let kind = body[i];
            if kind == 0 {
                outer.destination_options.push((0, Vec::new()));
                i += 1;
                continue;
            }
            let len = usize::from(*body.get(i + 1)?);
            outer
                .destination_options
                .push((kind, body.get(i + 2..i + 2 + len)?.to_vec()));
            i += 2 + len;
        }
        outer.destination_options_len = Some(len);
        outer.upper_protocol = header[0];
        outer.upper = header[len..].to_vec();
    }
    Some(outer)
}

/// The source and destination of an IPv4 packet and its protocol.
pub fn ipv4_summary(packet: &[u8]) -> Option<(IpAddr, IpAddr, u8)> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let source = IpAddr::from([packet[12], packet[13], packet[14], packet[15]]);
    let destination = IpAddr::from([packet[16], packet[17], packet[18], packet[19]]);
    Some((source, destination, packet[9]))
}

/// Tunnel packets (outer IPv6 between the two sites) of a wan capture.
pub fn tunnel_packets(pcap: &[u8]) -> Vec<Outer> {
    pcap_packets(pcap)
        .iter()
        .filter_map(|p| outer_ipv6(p))
        .filter(|o| {
            let ends = [Site::A.wan6(), Site::B.wan6()];
            ends.contains(&o.source) && ends.contains(&o.destination)
        })
        .collect()
}

/// What a gateway may change in its namespace, as text, for before/after comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState(pub BTreeMap<&'static str, String>);

impl HostState {
    pub fn capture(lab: &Lab, node: Node) -> Self {
        let mut state = BTreeMap::new();
        let commands: [(&'static str, &[&str]); 6] = [
            ("links", &["ip", "-d", "link", "show"]),
            ("ipv4 routes", &["ip", "route", "show", "table", "all"]),
            (
                "ipv6 routes",
                &["ip", "-6", "route", "show", "table", "all"],
            ),
            ("ipv4 rules", &["ip", "rule", "show"]),
            ("ipv6 rules", &["ip", "-6", "rule", "show"]),
            ("addresses", &["ip", "address", "show"]),
        ];
        for (name, command) in commands {
            let output = lab.exec_ok(node, command).unwrap_or_else(|e| panic!("{e}"));
            state.insert(name, output);
        }
        for key in [
            "net.ipv4.ip_forward",
            "net.ipv6.conf.all.forwarding",
            "net.ipv4.conf.all.rp_filter",
        ] {
            let value = lab.sysctl(node, key).unwrap_or_else(|e| panic!("{e}"));
            state.insert(key, value);
        }
        Self(state)
    }

    /// Each part that differs, as a readable before/after.
    pub fn differences(&self, after: &Self) -> String {
        let mut out = String::new();
        for (name, before) in &self.0 {
            let now = after.0.get(name).map(String::as_str).unwrap_or("");
            if before != now {
                out.push_str(&format!(
                    "--- {name} before ---\n{before}\n--- {name} after ---\n{now}\n"
                ));
            }
        }
        out
    }
}

/// The TUN device of the lab's standard tunnel.
pub fn tunnel_device(config: &GatewayConfig) -> String {
    config.tunnels[0].device_name()
}

/// True when `device` exists in `node`.
pub fn link_exists(lab: &Lab, node: Node, device: &str) -> bool {
    lab.exec(node, &["ip", "link", "show", "dev", device])
        .status
        .success()
}

/// The kernel's index of `device` in `node`: unchanged while the device is not re-created.
pub fn ifindex(lab: &Lab, node: Node, device: &str) -> u32 {
    let line = lab
        .ip(node, &["-o", "link", "show", "dev", device])
        .unwrap_or_else(|e| panic!("{device}: {e}"));
    line.split(':')
        .next()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ifindex in {line:?}"))
}

/// The MSS options of the TCP segments from `from` carrying `flags` (as tcpdump prints
/// them, `Flags [S]` or `Flags [S.]`) in a text capture.
pub fn mss_options(seen: &str, from: Ipv4Addr, flags: &str) -> Vec<u16> {
    seen.lines()
        .filter(|l| l.contains(&format!("{from}.")) && l.contains(flags))
        .filter_map(|l| {
            let rest = &l[l.find("mss ")? + 4..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The wan router's link towards `site`, where a capture sees the tunnel's outer packets.
pub fn wan_link(site: Site) -> &'static str {
    match site {
        Site::A => dev::WAN_TO_A6,
        Site::B => dev::WAN_TO_B6,
    }
}

/// (transmitted, received) from ping's summary line.
pub fn ping_counts(output: &str) -> (u64, u64) {
    let line = output
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in {output}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

/// The inbound SPIs of an ipsec tunnel's CHILD SAs in a status document.
pub fn child_spis(status: &serde_json::Value) -> Vec<String> {
    status["ipsec"]["children"]
        .as_array()
        .map(|c| c.iter().map(|c| c["spi_in"].to_string()).collect())
        .unwrap_or_default()
}
