//! Prometheus metrics: the gateway's status in the text exposition format, named like the
//! ecosystem's exporters (`v6gate_tunnel_rx_bytes_total{tunnel="home"}`, `_total` counters,
//! `_seconds` and `_ratio` units, labels `tunnel`, `path`, `reason`).
//!
//! [`render`] is pure: a [`GatewayStatus`] in, text out. [`server`] serves it over HTTP,
//! asking the daemon for its status at each scrape.

mod kpath;
pub mod server;

use std::fmt::Write as _;

use crate::status::{GatewayStatus, IkeState, PathState, PathStatus, TunnelState, TunnelStatus};

/// One metric family: HELP, TYPE and its samples, written together as the format requires.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, String)>,
}

#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        kind: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        value: impl ToString,
    ) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        let sample = (labels, value.to_string());
        match self.0.iter_mut().find(|f| f.name == name) {
            Some(family) => family.samples.push(sample),
            None => self.0.push(Family {
                name,
                help,
                kind,
                samples: vec![sample],
            }),
        }
    }

    fn counter(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: u64) {
        self.add(name, "counter", help, labels, v);
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.add(name, "gauge", help, labels, v);
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.0 {
            let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
            for (labels, value) in &f.samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{} {value}", f.name);
                } else {
                    let _ = writeln!(out, "{}{{{labels}}} {value}", f.name);
                }
            }
        }
        out
    }
}

/// Label values escape backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// The text exposition format of `status`.
pub fn render(status: &GatewayStatus) -> String {
    let mut m = Families::default();
    m.gauge(
        "v6gate_uptime_seconds",
        "Seconds since the daemon started.",
        &[],
        status.uptime_secs as f64,
    );
    for t in &status.tunnels {
        tunnel(&mut m, t);
    }
    for w in &status.watches {
        let l = [("watch", w.name.as_str())];
        m.gauge(
            "v6gate_watch_up",
            "Whether the watched uplink answers.",
            &l,
            flag(w.state == PathState::Up),
        );
        m.counter(
            "v6gate_watch_transitions_total",
            "Up/down changes of the watch.",
            &l,
            w.transitions,
        );
        m.gauge(
            "v6gate_watch_loss_ratio",
            "Share of recent probes of the watch that were lost.",
            &l,
            w.loss_percent / 100.0,
        );
        if let Some(rtt) = w.srtt_ms {
            m.gauge(
                "v6gate_watch_rtt_seconds",
                "Smoothed round-trip time of the watch's probes.",
                &l,
                rtt / 1000.0,
            );
        }
    }
    m.text()
}

fn tunnel(m: &mut Families, t: &TunnelStatus) {
    let l = [("tunnel", t.name.as_str())];
    m.gauge(
        "v6gate_tunnel_up",
        "Whether the tunnel carries traffic.",
        &l,
        flag(t.state == TunnelState::Up),
    );
    m.gauge(
        "v6gate_tunnel_mtu_bytes",
        "MTU of the tunnel device.",
        &l,
        f64::from(t.mtu),
    );
    m.counter(
        "v6gate_tunnel_tx_bytes_total",
        "Inner bytes sent into the tunnel.",
        &l,
        t.tx_bytes,
    );
    m.counter(
        "v6gate_tunnel_rx_bytes_total",
        "Inner bytes received from the tunnel.",
        &l,
        t.rx_bytes,
    );
    m.counter(
        "v6gate_tunnel_tx_packets_total",
        "Inner packets sent into the tunnel.",
        &l,
        t.tx_packets,
    );
    m.counter(
        "v6gate_tunnel_rx_packets_total",
        "Inner packets received from the tunnel.",
        &l,
        t.rx_packets,
    );
    m.counter(
        "v6gate_tunnel_mss_clamped_total",
        "TCP SYNs whose MSS was clamped.",
        &l,
        t.mss_clamped,
    );
    m.counter(
        "v6gate_tunnel_failovers_total",
        "Moves of the tunnel's traffic to another path by health (failovers and failbacks).",
        &l,
        t.failovers,
    );
    if let Some(secs) = t.last_received_secs {
        m.gauge(
            "v6gate_tunnel_last_received_seconds",
            "Seconds since the last packet from the peer was accepted.",
            &l,
            secs as f64,
        );
    }
    m.counter(
        "v6gate_tunnel_send_errors_total",
        "Outer packets the kernel refused to send.",
        &l,
        t.send_errors,
    );
    for (reason, count) in &t.drops {
        m.counter(
            "v6gate_tunnel_drops_total",
            "Packets dropped, by reason.",
            &[("tunnel", t.name.as_str()), ("reason", reason.as_str())],
            *count,
        );
    }
    if let Some(d) = &t.dataplane {
        kpath::dataplane(m, &t.name, d);
    }
    for p in &t.paths {
        path(m, &t.name, p);
    }
    if let Some(ipsec) = &t.ipsec {
        let l = [("tunnel", t.name.as_str()), ("path", ipsec.path.as_str())];
        m.gauge(
            "v6gate_ike_sa_established",
            "Whether the IKE SA is established.",
            &l,
            flag(ipsec.ike_state == IkeState::Established),
        );
        // One series per state, exactly one of them 1: the state-set idiom of the exporters.
        for state in IkeState::ALL {
            m.gauge(
                "v6gate_ike_sa_state",
                "Where the IKE SA stands: connecting, established, down or waiting.",
                &[
                    ("tunnel", t.name.as_str()),
                    ("path", ipsec.path.as_str()),
                    ("state", state.as_str()),
                ],
                flag(ipsec.ike_state == state),
            );
        }
        m.counter(
            "v6gate_ike_sa_rekeys_total",
            "IKE SAs replaced by a rekey.",
            &l,
            ipsec.ike_rekeys,
        );
        m.counter(
            "v6gate_child_sa_rekeys_total",
            "CHILD SAs replaced by a rekey.",
            &l,
            ipsec.child_rekeys,
        );
        m.counter(
            "v6gate_ike_dpd_timeouts_total",
            "IKE SAs given up because the peer stopped answering (dead peer detection).",
            &l,
            ipsec.dpd_timeouts,
        );
        if let Some(age) = ipsec.ike_age_secs {
            m.gauge(
                "v6gate_ike_sa_age_seconds",
                "Age of the IKE SA.",
                &l,
                age as f64,
            );
        }
        m.gauge(
            "v6gate_child_sas",
            "Installed CHILD SAs.",
            &l,
            ipsec.children.len() as f64,
        );
        if let Some(age) = ipsec.children.iter().map(|c| c.age_secs).min() {
            m.gauge(
                "v6gate_child_sa_age_seconds",
                "Age of the newest CHILD SA (it drops at each rekey).",
                &l,
                age as f64,
            );
        }
        m.counter(
            "v6gate_ike_attempts_total",
            "IKE SA establishment attempts.",
            &l,
            u64::from(ipsec.attempts),
        );
        if let Some(heard) = ipsec.last_heard_secs {
            m.gauge(
                "v6gate_ipsec_last_heard_seconds",
                "Seconds since the peer was last heard (what DPD watches).",
                &l,
                heard as f64,
            );
        }
        m.gauge(
            "v6gate_esp_udp_encap",
            "Whether ESP runs in UDP 4500.",
            &l,
            flag(ipsec.udp_encap),
        );
    }
}

fn path(m: &mut Families, tunnel: &str, p: &PathStatus) {
    let l = [("tunnel", tunnel), ("path", p.name.as_str())];
    m.gauge(
        "v6gate_path_up",
        "Whether the path is alive.",
        &l,
        flag(p.state == PathState::Up),
    );
    m.gauge(
        "v6gate_path_active",
        "Whether the path carries the tunnel's traffic.",
        &l,
        flag(p.active),
    );
    m.gauge(
        "v6gate_path_loss_ratio",
        "Share of recent probes on the path that were lost.",
        &l,
        p.loss_percent / 100.0,
    );
    if let Some(rtt) = p.srtt_ms {
        m.gauge(
            "v6gate_path_rtt_seconds",
            "Smoothed probe round-trip time.",
            &l,
            rtt / 1000.0,
        );
    }
    m.counter(
        "v6gate_path_tx_packets_total",
        "Outer packets sent on the path.",
        &l,
        p.tx_packets,
    );
    m.counter(
        "v6gate_path_rx_packets_total",
        "Outer packets received on the path.",
        &l,
        p.rx_packets,
    );
    m.counter(
        "v6gate_path_probes_sent_total",
        "Probes sent on the path.",
        &l,
        p.probes_sent,
    );
    m.counter(
        "v6gate_path_probes_answered_total",
        "Probes answered on the path.",
        &l,
        p.probes_answered,
    );
    m.gauge(
        "v6gate_path_mtu_bytes",
        "Path MTU for inner packets.",
        &l,
        f64::from(p.path_mtu),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ChildStatus, IpsecStatus, WatchStatus};

    /// A gateway with every section filled: an ipsec tunnel on two paths that failed over,
    /// rekeyed and lost an SA to DPD, with drops and a watch.
    fn busy() -> GatewayStatus {
        let path = |name: &str, active: bool, state: PathState| PathStatus {
            name: name.into(),
            active,
            state,
            srtt_ms: Some(12.5),
            loss_percent: 25.0,
            ..PathStatus::default()
        };
        let mut t = TunnelStatus {
            name: "vps".into(),
            state: TunnelState::Up,
            failovers: 3,
            last_received_secs: Some(2),
            paths: vec![
                path("fiber", false, PathState::Down),
                path("lte", true, PathState::Up),
            ],
            ipsec: Some(IpsecStatus {
                tunnel: "vps".into(),
                path: "lte".into(),
                ike_state: IkeState::Established,
                ike_age_secs: Some(600),
                children: vec![ChildStatus {
                    spi_in: "c0000001".into(),
                    spi_out: "c0000002".into(),
                    suite: "aes128gcm16".into(),
                    age_secs: 30,
                    rekey_in_secs: 3000,
                }],
                ike_rekeys: 1,
                child_rekeys: 4,
                dpd_timeouts: 2,
                ..IpsecStatus::default()
            }),
            ..TunnelStatus::default()
        };
        t.drops.insert("not_routed".into(), 7);
        t.drops.insert("replayed".into(), 1);
        GatewayStatus {
            tunnels: vec![t],
            watches: vec![WatchStatus {
                name: "wan".into(),
                state: PathState::Up,
                ..WatchStatus::default()
            }],
            ..GatewayStatus::default()
        }
    }

    #[test]
    fn failovers_ike_state_rekeys_dpd_rtt_loss_and_drops_are_exported() {
        let text = render(&busy());
        for line in [
            "v6gate_tunnel_failovers_total{tunnel=\"vps\"} 3\n",
            "v6gate_tunnel_last_received_seconds{tunnel=\"vps\"} 2\n",
            "v6gate_ike_sa_state{tunnel=\"vps\",path=\"lte\",state=\"established\"} 1\n",
            "v6gate_ike_sa_state{tunnel=\"vps\",path=\"lte\",state=\"connecting\"} 0\n",
            "v6gate_ike_sa_age_seconds{tunnel=\"vps\",path=\"lte\"} 600\n",
            "v6gate_child_sa_age_seconds{tunnel=\"vps\",path=\"lte\"} 30\n",
            "v6gate_ike_sa_rekeys_total{tunnel=\"vps\",path=\"lte\"} 1\n",
            "v6gate_child_sa_rekeys_total{tunnel=\"vps\",path=\"lte\"} 4\n",
            "v6gate_ike_dpd_timeouts_total{tunnel=\"vps\",path=\"lte\"} 2\n",
            "v6gate_path_rtt_seconds{tunnel=\"vps\",path=\"fiber\"} 0.0125\n",
            "v6gate_path_loss_ratio{tunnel=\"vps\",path=\"lte\"} 0.25\n",
            "v6gate_path_up{tunnel=\"vps\",path=\"fiber\"} 0\n",
            "v6gate_tunnel_drops_total{tunnel=\"vps\",reason=\"not_routed\"} 7\n",
            "v6gate_watch_up{watch=\"wan\"} 1\n",
        ] {
            assert!(text.contains(line), "{line}missing from:\n{text}");
        }
        assert_eq!(
            text.matches("v6gate_ike_sa_state{").count(),
            IkeState::ALL.len()
        );
    }

    /// What Prometheus' own linter says of `text`, if anything, with the text it read.
    pub(super) fn promtool(text: &str) -> Option<String> {
        v6gate_lab::promtool_objections(text).map(|said| format!("{said}\n{text}"))
    }

    #[test]
    fn promtool_accepts_every_family() {
        let said = promtool(&render(&busy()));
        assert!(said.is_none(), "{}", said.unwrap_or_default());
        // The linter does object: a counter without _total.
        let broken =
            render(&busy()).replace("v6gate_tunnel_tx_bytes_total", "v6gate_tunnel_tx_bytes");
        assert!(promtool(&broken).is_some());
    }

    #[test]
    fn families_are_grouped_and_labels_escaped() {
        let mut status = GatewayStatus {
            uptime_secs: 7,
            ..GatewayStatus::default()
        };
        for name in ["a", "b\"\\\n"] {
            let mut t = TunnelStatus {
                name: name.into(),
                state: TunnelState::Up,
                rx_bytes: 42,
                ..TunnelStatus::default()
            };
            t.drops.insert("not_routed".into(), 3);
            status.tunnels.push(t);
        }
        let text = render(&status);
        assert_eq!(
            text.matches("# TYPE v6gate_tunnel_rx_bytes_total counter")
                .count(),
            1
        );
        assert!(
            text.contains("v6gate_tunnel_rx_bytes_total{tunnel=\"a\"} 42\n"),
            "{text}"
        );
        assert!(
            text.contains("v6gate_tunnel_up{tunnel=\"b\\\"\\\\\\n\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("v6gate_tunnel_drops_total{tunnel=\"a\",reason=\"not_routed\"} 3\n"),
            "{text}"
        );
        assert!(text.starts_with("# HELP v6gate_uptime_seconds"), "{text}");
    }
}
