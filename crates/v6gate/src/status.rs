//! The control socket protocol and the `status` view of a running gateway.
//!
//! One request per connection, one JSON object per line each way. The same types serialise the
//! `--json` output, so scripts see exactly what the daemon reported.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

mod ipsec;
mod watch;

pub use ipsec::{ChildStatus, IpsecStatus};
pub use watch::WatchStatus;

/// What a client asks the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    Reload,
    /// Reload, and go back to the running config unless [`Request::Confirm`] comes within
    /// `seconds`.
    ReloadConfirm {
        seconds: u64,
    },
    /// Keep the config of a pending [`Request::ReloadConfirm`].
    Confirm,
}

/// What the daemon answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(GatewayStatus),
    Reloaded { summary: String },
    Confirmed { summary: String },
    Error { message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub config: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub tunnels: Vec<TunnelStatus>,
    #[serde(default)]
    pub watches: Vec<WatchStatus>,
    /// `[[ddns]]` entries and path ends given by name or device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<crate::names::NamesStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet: Option<crate::packet_status::PacketStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<Box<crate::firewall_status::FirewallStatus>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TunnelStatus {
    pub name: String,
    pub device: String,
    pub mode: String,
    /// `up` when the tunnel carries traffic; `down` while its endpoint has no underlay route.
    pub state: String,
    /// The underlay path in use, in words (`ipv6 via fe80::1 dev eth0`).
    pub active_path: String,
    pub local: String,
    pub remote: String,
    pub mtu: u16,
    pub path_mtu: u16,
    pub encap_limit: Option<u8>,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub mss_clamped: u64,
    pub icmp_sent: u64,
    pub send_errors: u64,
    /// Inner TCP packets longer than the tunnel MTU that arrived merged by the underlay's GRO
    /// (and left through the TUN as GSO frames).
    #[serde(default)]
    pub underlay_gro_packets: u64,
    /// ESP-in-UDP sends that carried a train of datagrams (UDP segmentation offload).
    #[serde(default)]
    pub udp_trains_sent: u64,
    /// ESP-in-UDP receives that brought a train (UDP receive offload).
    #[serde(default)]
    pub udp_trains_received: u64,
    pub drops: BTreeMap<String, u64>,
    /// The active path's pinned endpoint route.
    pub pinned_route: PinnedRoute,
    #[serde(default)]
    pub paths: Vec<PathStatus>,
    /// IKE and ESP state of an ipsec tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsec: Option<IpsecStatus>,
    /// Every path's IKE SA, when the tunnel has more than one path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsec_paths: Option<crate::ipsec_paths::IpsecPaths>,
    /// Which dataplane moves the tunnel's packets (`"dataplane": "kernel"`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub dataplane: Option<crate::kpath_status::DataplaneStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PathStatus {
    pub name: String,
    pub local: String,
    pub remote: String,
    pub cost: u32,
    pub probe: String,
    /// Carries the tunnel's traffic now.
    pub active: bool,
    /// `up`, `down` or `unknown` (no verdict yet).
    pub state: String,
    pub srtt_ms: Option<f64>,
    pub loss_percent: f64,
    pub last_change_secs_ago: Option<u64>,
    pub path_mtu: u16,
    pub tx_packets: u64,
    pub rx_packets: u64,
    pub probes_sent: u64,
    pub probes_answered: u64,
    pub pinned_route: PinnedRoute,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinnedRoute {
    pub destination: String,
    /// `via` / `blackhole`
    pub kind: String,
    pub gateway: Option<String>,
    pub device: Option<String>,
    pub table: u32,
}

impl PinnedRoute {
    fn describe(&self) -> String {
        match (&self.gateway, &self.device) {
            _ if self.kind == "blackhole" => format!("blackhole {}", self.destination),
            (Some(gw), Some(dev)) => format!("{} via {gw} dev {dev}", self.destination),
            (None, Some(dev)) => format!("{} dev {dev}", self.destination),
            (Some(gw), None) => format!("{} via {gw}", self.destination),
            (None, None) => self.destination.clone(),
        }
    }
}

/// Sends one request and waits (bounded) for the answer.
pub fn query(socket: &Path, request: &Request) -> anyhow::Result<Response> {
    let mut stream = UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the v6gate daemon at {} (is `v6gate run` running, and is this the \
             socket named by [gateway] control_socket?)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    if answer.trim().is_empty() {
        bail!("the daemon closed the connection without answering");
    }
    serde_json::from_str(&answer).context("the daemon's answer is not valid JSON")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn render_ipsec(out: &mut String, s: &IpsecStatus) {
    let spis = s
        .ike_spis
        .as_ref()
        .map_or_else(|| "-".to_string(), |(i, r)| format!("{i}_i {r}_r"));
    let _ = writeln!(
        out,
        "  ike        {} {}, {}, age {}",
        s.ike_state,
        spis,
        s.ike_suite.as_deref().unwrap_or("-"),
        s.ike_age_secs
            .map_or_else(|| "-".to_string(), |a| format!("{a}s"))
    );
    for c in &s.children {
        let active = s.active_spi_out.as_deref() == Some(c.spi_out.as_str());
        let _ = writeln!(
            out,
            "  {} child    {}_i {}_o {}, age {}s, rekey in {}s",
            if active { "*" } else { " " },
            c.spi_in,
            c.spi_out,
            c.suite,
            c.age_secs,
            c.rekey_in_secs
        );
    }
    let _ = writeln!(
        out,
        "  esp        {}, last heard {}, {} inbound SA(s){}",
        if s.udp_encap {
            "in UDP 4500"
        } else {
            "raw (protocol 50)"
        },
        s.last_heard_secs
            .map_or_else(|| "never".to_string(), |a| format!("{a}s ago")),
        s.inbound_sas,
        s.last_down_reason
            .as_deref()
            .map_or_else(String::new, |r| format!(", last down: {r}"))
    );
}

/// The table a person reads.
pub fn render(status: &GatewayStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "v6gate pid {}, up {}s, config {}",
        status.pid, status.uptime_secs, status.config
    );
    if status.tunnels.is_empty() {
        out.push_str("no tunnels configured\n");
    }
    for t in &status.tunnels {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "tunnel {} ({}, {}) {}",
            t.name, t.mode, t.device, t.state
        );
        let _ = writeln!(out, "  local {}  remote {}", t.local, t.remote);
        let _ = writeln!(out, "  path       {}", t.active_path);
        let _ = writeln!(out, "  pinned     {}", t.pinned_route.describe());
        if let Some(d) = &t.dataplane {
            let _ = writeln!(out, "  {}", d.render());
        }
        let limit = t
            .encap_limit
            .map_or_else(|| "none".to_string(), |l| l.to_string());
        let _ = writeln!(
            out,
            "  mtu        {} (path {}), encap_limit {}",
            t.mtu, t.path_mtu, limit
        );
        let _ = writeln!(
            out,
            "  tx         {} packets, {}",
            t.tx_packets,
            human_bytes(t.tx_bytes)
        );
        let _ = writeln!(
            out,
            "  rx         {} packets, {}",
            t.rx_packets,
            human_bytes(t.rx_bytes)
        );
        let _ = writeln!(
            out,
            "  mss clamped {}, icmp errors sent {}, send errors {}",
            t.mss_clamped, t.icmp_sent, t.send_errors
        );
        if t.underlay_gro_packets > 0 {
            let _ = writeln!(
                out,
                "  underlay gro {} merged packets received",
                t.underlay_gro_packets
            );
        }
        if t.udp_trains_sent + t.udp_trains_received > 0 {
            let _ = writeln!(
                out,
                "  udp trains {} sent, {} received (segmentation/receive offload)",
                t.udp_trains_sent, t.udp_trains_received
            );
        }
        if t.paths.len() > 1 {
            for p in &t.paths {
                let rtt = p
                    .srtt_ms
                    .map_or_else(|| "-".to_string(), |ms| format!("{ms:.1} ms"));
                let since = p
                    .last_change_secs_ago
                    .map_or_else(String::new, |s| format!(", changed {s}s ago"));
                let _ = writeln!(
                    out,
                    "  {} path {} ({} -> {}, cost {}): {}, rtt {rtt}, loss {:.0}%{since}",
                    if p.active { "*" } else { " " },
                    p.name,
                    p.local,
                    p.remote,
                    p.cost,
                    p.state,
                    p.loss_percent
                );
            }
        }
        if let Some(ipsec) = &t.ipsec {
            render_ipsec(&mut out, ipsec);
        }
        if let Some(paths) = &t.ipsec_paths {
            crate::ipsec_paths::render(&mut out, paths);
        }
        let drops: Vec<String> = t
            .drops
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if drops.is_empty() {
            let _ = writeln!(out, "  drops      none");
        } else {
            let _ = writeln!(out, "  drops      {}", drops.join(", "));
        }
    }
    if let Some(names) = &status.names {
        crate::names::render(&mut out, names);
    }
    for w in &status.watches {
        let _ = writeln!(out);
        let rtt = w
            .srtt_ms
            .map_or_else(|| "-".to_string(), |ms| format!("{ms:.1} ms"));
        let _ = writeln!(
            out,
            "watch {} {}: {} via {}, rtt {rtt}, loss {:.0}%",
            w.name, w.state, w.target, w.device, w.loss_percent
        );
        let _ = writeln!(
            out,
            "  route {} {}",
            w.route,
            if w.route_installed {
                "installed"
            } else {
                "withdrawn"
            }
        );
    }
    crate::packet_status::render(&mut out, status.packet.as_ref());
    if let Some(firewall) = &status.firewall {
        out.push_str(&firewall.render());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format_is_stable() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"cmd":"status"}"#
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"reload"}"#).unwrap();
        assert_eq!(r, Request::Reload);
    }

    #[test]
    fn render_lists_nonzero_drops_only() {
        let mut t = TunnelStatus {
            name: "home".into(),
            ..TunnelStatus::default()
        };
        t.drops.insert("spoofed_outer_source".into(), 3);
        t.drops.insert("malformed".into(), 0);
        let s = GatewayStatus {
            tunnels: vec![t],
            ..GatewayStatus::default()
        };
        let text = render(&s);
        assert!(text.contains("spoofed_outer_source 3"), "{text}");
        assert!(!text.contains("malformed"), "{text}");
    }

    #[test]
    fn render_shows_offload_counters_only_when_used() {
        let idle = TunnelStatus {
            name: "home".into(),
            ..TunnelStatus::default()
        };
        let busy = TunnelStatus {
            name: "vps".into(),
            udp_trains_sent: 12,
            udp_trains_received: 7,
            underlay_gro_packets: 3,
            ..TunnelStatus::default()
        };
        let s = GatewayStatus {
            tunnels: vec![idle, busy],
            ..GatewayStatus::default()
        };
        let text = render(&s);
        assert_eq!(text.matches("udp trains").count(), 1, "{text}");
        assert!(text.contains("udp trains 12 sent, 7 received"), "{text}");
        assert!(text.contains("underlay gro 3 merged packets"), "{text}");
        // Older daemons answer without the fields: they read as zero.
        let mut old = serde_json::to_value(TunnelStatus::default()).unwrap();
        for key in [
            "udp_trains_sent",
            "udp_trains_received",
            "underlay_gro_packets",
        ] {
            assert!(old.as_object_mut().unwrap().remove(key).is_some(), "{key}");
        }
        let old: TunnelStatus = serde_json::from_value(old).unwrap();
        assert_eq!(
            (
                old.udp_trains_sent,
                old.udp_trains_received,
                old.underlay_gro_packets
            ),
            (0, 0, 0)
        );
    }

    #[test]
    fn bytes_are_humanised() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
