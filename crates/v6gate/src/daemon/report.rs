//! The daemon's answer to `v6gate status`: configuration, host state and the packet thread's
//! counters, per tunnel and path.

use std::collections::HashMap;

use super::ipsec::IpsecTunnel;
use super::pin::Pin;
use super::watch::WatchTask;
use super::{Daemon, PathRuntime, link_name};
use crate::status::assemble::{self, Facts};
use crate::status::{GatewayStatus, PathState, PathStatus, PinnedRoute, RouteKind, TunnelStatus};

impl Daemon {
    pub(super) async fn status(&self) -> anyhow::Result<GatewayStatus> {
        let snapshot = self.datapath.snapshot().await?;
        let packet = crate::packet_status::PacketStatus {
            esp_not_peer: snapshot.esp_not_peer,
        }
        .nonzero();
        let esp_by_id: HashMap<_, _> = snapshot.esp.into_iter().map(|s| (s.id, s)).collect();
        let by_id: HashMap<_, _> = snapshot.tunnels.into_iter().map(|s| (s.id, s)).collect();
        let mut tunnels = Vec::new();
        for t in &self.tunnels {
            let snap = by_id.get(&t.id);
            let esp = esp_by_id.get(&t.id);
            let active = match esp {
                Some(e) => e.active_path,
                None => snap.and_then(|s| s.active_path).map_or(0, |p| p.index()),
            };
            let paths: Vec<PathStatus> = t
                .config
                .paths
                .iter()
                .zip(&t.paths)
                .enumerate()
                .map(|(i, (cfg, rt))| {
                    let stats = match esp {
                        Some(e) => e.paths.get(i).map(|p| &p.stats),
                        None => snap.and_then(|s| s.paths.get(i)),
                    };
                    PathStatus {
                        name: cfg.name.clone(),
                        local: cfg.local.to_string(),
                        remote: cfg.remote.to_string(),
                        cost: cfg.cost,
                        probe: cfg.probe.as_str().to_string(),
                        active: i == active,
                        state: stats.map_or(PathState::Unknown, |s| s.state.into()),
                        srtt_ms: stats.and_then(|s| s.srtt).map(|d| d.as_secs_f64() * 1000.0),
                        loss_percent: stats.map_or(0.0, |s| s.loss.percent()),
                        last_change_secs_ago: stats
                            .and_then(|s| s.last_change)
                            .map(|at| at.elapsed().as_secs()),
                        path_mtu: stats.map_or(t.mtu, |s| s.path_mtu),
                        tx_packets: stats.map_or(0, |s| s.tx_packets),
                        rx_packets: stats.map_or(0, |s| s.rx_packets),
                        probes_sent: stats.map_or(0, |s| s.probes_sent),
                        probes_answered: stats.map_or(0, |s| s.probes_answered),
                        pinned_route: pinned_route(rt),
                    }
                })
                .collect();
            let active_rt = &t.paths[active.min(t.paths.len() - 1)];
            let active_cfg = &t.config.paths[active.min(t.paths.len() - 1)];
            let active_path = match active_rt.pin {
                Pin::Via { oif, gateway } => {
                    let gw = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
                    format!(
                        "{} ({}{gw} dev {})",
                        active_cfg.name,
                        if active_rt.remote.is_ipv6() {
                            "ipv6"
                        } else {
                            "ipv4"
                        },
                        link_name(oif).unwrap_or_else(|| format!("if{oif}"))
                    )
                }
                Pin::Blackhole => format!("{} (underlay route lost)", active_cfg.name),
            };
            let ipsec_all: Vec<_> = t.ipsec.iter().map(IpsecTunnel::status).collect();
            // The IKE SA of the path that carries the traffic; every path has its own.
            let ipsec = ipsec_all.get(active).or(ipsec_all.first()).cloned();
            let state = assemble::tunnel_state(Facts {
                pinned: t.paths.iter().any(|p| p.pin.is_up()),
                held_down: false,
                paths: &paths,
                ipsec: &ipsec_all,
            });
            let mut status = TunnelStatus {
                name: t.config.name.clone(),
                device: t.config.device.clone(),
                mode: t.config.mode.to_string(),
                state,
                active_path,
                local: active_cfg.local.to_string(),
                remote: active_cfg.remote.to_string(),
                mtu: t.mtu,
                path_mtu: t.mtu,
                encap_limit: t.config.encap_limit,
                pinned_route: pinned_route(active_rt),
                paths,
                ipsec,
                dataplane: Some(t.dataplane.status()),
                ..TunnelStatus::default()
            };
            if let Some(s) = esp {
                // The active path's, lowered while a router reports a smaller link.
                if let Some(p) = s.paths.get(s.active_path) {
                    status.path_mtu = p.stats.path_mtu;
                }
                status.tx_packets = s.stats.tx_packets;
                status.tx_bytes = s.stats.tx_bytes;
                status.rx_packets = s.stats.rx_packets;
                status.rx_bytes = s.stats.rx_bytes;
                status.mss_clamped = s.stats.mss_clamped;
                status.icmp_sent = s.stats.icmp_sent;
                status.send_errors = s.shell.send_errors;
                status.udp_trains_sent = s.shell.udp_trains_sent;
                status.udp_trains_received = s.shell.udp_trains_received;
                status.failovers = s.stats.failovers;
                status.last_received_secs =
                    ipsec_all.iter().filter_map(|i| i.last_heard_secs).min();
                status.drops = s
                    .stats
                    .iter_drops()
                    .filter(|(_, n)| *n > 0)
                    .map(|(reason, n)| (reason.to_string(), n))
                    .collect();
                if let Some(ipsec) = status.ipsec.as_mut()
                    && let Some(p) = s.paths.get(active)
                {
                    ipsec.active_spi_out = p.active_outbound.map(|spi| format!("{spi:08x}"));
                    ipsec.inbound_sas = p.inbound_sas;
                    ipsec.keepalives_sent = p.keepalives_sent;
                }
                if t.ipsec.len() > 1 {
                    let each = t.ipsec.iter().zip(&s.paths).map(|(ike, p)| {
                        let mut ipsec = ike.status();
                        ipsec.active_spi_out = p.active_outbound.map(|spi| format!("{spi:08x}"));
                        ipsec.inbound_sas = p.inbound_sas;
                        ipsec.keepalives_sent = p.keepalives_sent;
                        ipsec
                    });
                    status.ipsec_paths = Some(crate::ipsec_paths::IpsecPaths(each.collect()));
                }
            }
            if let Some(s) = snap {
                status.tx_packets = s.stats.tx_packets;
                status.tx_bytes = s.stats.tx_bytes;
                status.rx_packets = s.stats.rx_packets;
                status.rx_bytes = s.stats.rx_bytes;
                status.mss_clamped = s.stats.mss_clamped;
                status.icmp_sent = s.stats.icmp_sent;
                status.path_mtu = s.stats.path_mtu;
                status.send_errors = s.shell.send_errors;
                status.underlay_gro_packets = s.stats.outer_gro_packets;
                status.failovers = s.stats.failovers;
                status.last_received_secs = s
                    .paths
                    .iter()
                    .filter_map(|p| p.last_received)
                    .max()
                    .map(|at| at.elapsed().as_secs());
                status.drops = s
                    .stats
                    .drops
                    .iter()
                    .map(|(reason, n)| (reason.to_string(), n))
                    .collect();
            }
            // What the programs decapsulated was heard too, though the core never saw it.
            if let super::kpath::Chosen::Kernel(k) = &t.dataplane
                && let Some(rx) = status
                    .dataplane
                    .as_ref()
                    .and_then(|d| d.kernel_path.as_ref())
                    .map(|p| p.rx_packets)
                && let Some(at) = k.note_received(rx)
            {
                let secs = at.elapsed().as_secs();
                status.last_received_secs =
                    Some(status.last_received_secs.map_or(secs, |s| s.min(secs)));
            }
            tunnels.push(status);
        }
        tunnels.extend(self.held_status());
        Ok(GatewayStatus {
            config: self.config_path.display().to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            tunnels,
            watches: self.watches.iter().map(WatchTask::status).collect(),
            names: self.names_status(),
            packet,
            firewall: self.firewall_status().map(Box::new),
            softwires: self.softwire_status(),
        })
    }
}

fn pinned_route(path: &PathRuntime) -> PinnedRoute {
    let (device, gateway) = match path.pin {
        Pin::Via { oif, gateway } => (
            Some(link_name(oif).unwrap_or_else(|| format!("if{oif}"))),
            gateway.map(|g| g.to_string()),
        ),
        Pin::Blackhole => (None, None),
    };
    PinnedRoute {
        destination: path.pin_route.dst.to_string(),
        kind: if path.pin.is_up() {
            RouteKind::Via
        } else {
            RouteKind::Blackhole
        },
        gateway,
        device,
        table: path.pin_route.table,
    }
}
