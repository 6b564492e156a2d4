//! The table a person reads.

use std::fmt::Write as _;

use super::{GatewayStatus, IpsecStatus};

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
            "tunnel {} ({}, {}) {}{}",
            t.name,
            t.mode,
            t.device,
            t.state,
            if t.held_down {
                " (held down: `v6gate up` brings it back)"
            } else {
                ""
            }
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
        // On the kernel path these count only what reached the TUN dataplane (probes and
        // what the programs passed on); the traffic is on the dataplane line above.
        let (tx, rx) = if t
            .dataplane
            .as_ref()
            .is_some_and(|d| d.kernel_path.is_some())
        {
            ("tx (TUN)  ", "rx (TUN)  ")
        } else {
            ("tx        ", "rx        ")
        };
        let _ = writeln!(
            out,
            "  {tx} {} packets, {}",
            t.tx_packets,
            human_bytes(t.tx_bytes)
        );
        let _ = writeln!(
            out,
            "  {rx} {} packets, {}, last received {}",
            t.rx_packets,
            human_bytes(t.rx_bytes),
            t.last_received_secs
                .map_or_else(|| "never".to_string(), |s| format!("{s}s ago"))
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
    if let Some(softwires) = &status.softwires {
        crate::softwire_status::render(&mut out, softwires);
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
    use crate::status::{TunnelState, TunnelStatus};

    #[test]
    fn render_says_when_the_peer_was_last_heard_and_a_hold() {
        let heard = TunnelStatus {
            name: "home".into(),
            state: TunnelState::Up,
            last_received_secs: Some(4),
            ..TunnelStatus::default()
        };
        let held = TunnelStatus {
            name: "vps".into(),
            held_down: true,
            ..TunnelStatus::default()
        };
        let s = GatewayStatus {
            tunnels: vec![heard, held],
            ..GatewayStatus::default()
        };
        let text = render(&s);
        assert!(text.contains("last received 4s ago"), "{text}");
        assert!(text.contains("last received never"), "{text}");
        assert!(text.contains("tunnel vps (, ) down (held down"), "{text}");
        assert!(text.contains("tunnel home (, ) up\n"), "{text}");
    }

    #[test]
    fn on_the_kernel_path_the_tunnel_counters_say_they_are_the_tun_dataplanes() {
        let kernel = TunnelStatus {
            name: "ab".into(),
            dataplane: Some(crate::kpath_status::DataplaneStatus {
                dataplane: "kernel".into(),
                dataplane_fallback: None,
                kernel_path: Some(crate::kpath_status::KernelPathStatus::default()),
            }),
            ..TunnelStatus::default()
        };
        let tun = TunnelStatus {
            name: "cd".into(),
            ..TunnelStatus::default()
        };
        let text = render(&GatewayStatus {
            tunnels: vec![kernel, tun],
            ..GatewayStatus::default()
        });
        let (ab, cd) = text.split_once("tunnel cd").unwrap();
        assert!(ab.contains("  tx (TUN)   0 packets"), "{text}");
        assert!(ab.contains("  rx (TUN)   0 packets"), "{text}");
        assert!(cd.contains("  tx         0 packets"), "{text}");
        assert!(!cd.contains("(TUN)"), "{text}");
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
