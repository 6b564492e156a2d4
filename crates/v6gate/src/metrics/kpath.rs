//! The dataplane of each tunnel and, on the kernel path, the tc-BPF programs' counters. On the
//! kernel path the TUN device sees only what the programs punt, so the `v6gate_tunnel_*`
//! traffic counters read low there; these families carry the rest.

use super::{Families, flag};
use crate::kpath_status::DataplaneStatus;

/// The dataplanes a tunnel can run on, each given a series so that exactly one reads 1.
const DATAPLANES: [&str; 2] = ["kernel", "userspace"];

pub(super) fn dataplane(m: &mut Families, tunnel: &str, d: &DataplaneStatus) {
    let known = DATAPLANES.contains(&d.dataplane.as_str());
    let unknown = (!known).then_some(d.dataplane.as_str());
    for name in DATAPLANES.into_iter().chain(unknown) {
        m.gauge(
            "v6gate_tunnel_dataplane",
            "Which dataplane moves the tunnel's packets: kernel (tc-BPF) or userspace (TUN).",
            &[("tunnel", tunnel), ("dataplane", name)],
            flag(d.dataplane == name),
        );
    }
    let Some(k) = &d.kernel_path else {
        return;
    };
    let l = [("tunnel", tunnel)];
    m.gauge(
        "v6gate_kernel_path_info",
        "The underlay device the tunnel's tc-BPF programs are on and how they are attached.",
        &[
            ("tunnel", tunnel),
            ("device", k.device.as_str()),
            ("attach", k.attach.as_str()),
        ],
        1.0,
    );
    m.counter(
        "v6gate_kernel_path_tx_packets_total",
        "Inner packets the kernel path encapsulated (a GSO super-packet counts as its segments).",
        &l,
        k.tx_packets,
    );
    m.counter(
        "v6gate_kernel_path_tx_bytes_total",
        "Inner bytes the kernel path encapsulated.",
        &l,
        k.tx_bytes,
    );
    m.counter(
        "v6gate_kernel_path_rx_packets_total",
        "Inner packets the kernel path decapsulated (a GRO super-packet counts as its segments).",
        &l,
        k.rx_packets,
    );
    m.counter(
        "v6gate_kernel_path_rx_bytes_total",
        "Inner bytes the kernel path decapsulated.",
        &l,
        k.rx_bytes,
    );
    m.counter(
        "v6gate_kernel_path_punted_total",
        "Packets the kernel path left to the stack and the TUN dataplane (probes, fragments, unusual headers).",
        &l,
        k.punted,
    );
    m.counter(
        "v6gate_kernel_path_gso_tx_total",
        "Super-packets the kernel path encapsulated whole.",
        &l,
        k.gso_tx,
    );
    m.counter(
        "v6gate_kernel_path_gso_rx_total",
        "Super-packets the kernel path decapsulated whole.",
        &l,
        k.gso_rx,
    );
    for (reason, count) in &k.drops {
        m.counter(
            "v6gate_kernel_path_drops_total",
            "Packets the kernel path dropped, by reason.",
            &[("tunnel", tunnel), ("reason", reason.as_str())],
            *count,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::kpath_status::{DataplaneStatus, KernelPathStatus};
    use crate::metrics::render;
    use crate::status::{GatewayStatus, TunnelStatus};

    fn tunnel(name: &str, dataplane: DataplaneStatus) -> TunnelStatus {
        TunnelStatus {
            name: name.into(),
            tx_packets: 2,
            dataplane: Some(dataplane),
            ..TunnelStatus::default()
        }
    }

    /// A kernel-path tunnel with distinct counters, next to a TUN-dataplane tunnel.
    fn two_dataplanes() -> GatewayStatus {
        let mut k = KernelPathStatus {
            device: "wan0".into(),
            attach: "tcx".into(),
            tx_packets: 11,
            tx_bytes: 12,
            rx_packets: 13,
            rx_bytes: 14,
            punted: 15,
            gso_tx: 16,
            gso_rx: 17,
            ..KernelPathStatus::default()
        };
        k.drops.insert("not_routed".into(), 18);
        k.drops.insert("spoofed_outer_source".into(), 19);
        GatewayStatus {
            tunnels: vec![
                tunnel(
                    "home",
                    DataplaneStatus {
                        dataplane: "kernel".into(),
                        dataplane_fallback: None,
                        kernel_path: Some(k),
                    },
                ),
                tunnel(
                    "vps",
                    DataplaneStatus {
                        dataplane: "userspace".into(),
                        dataplane_fallback: Some("MSS clamping".into()),
                        kernel_path: None,
                    },
                ),
            ],
            ..GatewayStatus::default()
        }
    }

    #[test]
    fn kernel_path_counters_are_exported_beside_the_tunnels() {
        let text = render(&two_dataplanes());
        for line in [
            "v6gate_tunnel_dataplane{tunnel=\"home\",dataplane=\"kernel\"} 1\n",
            "v6gate_tunnel_dataplane{tunnel=\"home\",dataplane=\"userspace\"} 0\n",
            "v6gate_tunnel_dataplane{tunnel=\"vps\",dataplane=\"kernel\"} 0\n",
            "v6gate_tunnel_dataplane{tunnel=\"vps\",dataplane=\"userspace\"} 1\n",
            "v6gate_kernel_path_info{tunnel=\"home\",device=\"wan0\",attach=\"tcx\"} 1\n",
            "v6gate_kernel_path_tx_packets_total{tunnel=\"home\"} 11\n",
            "v6gate_kernel_path_tx_bytes_total{tunnel=\"home\"} 12\n",
            "v6gate_kernel_path_rx_packets_total{tunnel=\"home\"} 13\n",
            "v6gate_kernel_path_rx_bytes_total{tunnel=\"home\"} 14\n",
            "v6gate_kernel_path_punted_total{tunnel=\"home\"} 15\n",
            "v6gate_kernel_path_gso_tx_total{tunnel=\"home\"} 16\n",
            "v6gate_kernel_path_gso_rx_total{tunnel=\"home\"} 17\n",
            "v6gate_kernel_path_drops_total{tunnel=\"home\",reason=\"not_routed\"} 18\n",
            "v6gate_kernel_path_drops_total{tunnel=\"home\",reason=\"spoofed_outer_source\"} 19\n",
            // The TUN device's own counters stay what they were.
            "v6gate_tunnel_tx_packets_total{tunnel=\"home\"} 2\n",
        ] {
            assert!(text.contains(line), "{line}missing from:\n{text}");
        }
        // The TUN-dataplane tunnel has no kernel-path series.
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("v6gate_kernel_path_") && l.contains("\"vps\"")),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE v6gate_kernel_path_").count(), 9);
        assert_eq!(
            text.matches("# TYPE v6gate_tunnel_dataplane gauge\n")
                .count(),
            1
        );
    }

    #[test]
    fn a_dataplane_without_a_series_of_its_own_still_reads_1() {
        let text = render(&GatewayStatus {
            tunnels: vec![tunnel(
                "x",
                DataplaneStatus {
                    dataplane: "xdp".into(),
                    ..DataplaneStatus::default()
                },
            )],
            ..GatewayStatus::default()
        });
        assert!(
            text.contains("v6gate_tunnel_dataplane{tunnel=\"x\",dataplane=\"xdp\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.matches("v6gate_tunnel_dataplane{").count(), 3);
    }

    #[test]
    fn promtool_accepts_the_kernel_path_families() {
        let said = crate::metrics::tests::promtool(&render(&two_dataplanes()));
        assert!(said.is_none(), "{}", said.unwrap_or_default());
    }
}
