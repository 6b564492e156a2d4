//! `[gateway] metrics` (or `v6gate run --metrics`) serves the running gateway's status in
//! Prometheus' text format, and Prometheus' own `promtool check metrics` accepts what it serves.

mod common;

use std::fs;
use std::net::IpAddr;
use std::time::Duration;

use common::metrics::{scrape, value};
use common::{BIN, assert_ping, wait_until};
use v6gate_lab::{Dataplane, LabOptions, Site, addr, promtool_objections};

const ADDRESS: &str = "127.0.0.1:9586";

#[test]
fn running_gateway_metrics_pass_promtool() {
    let lab = common::lab(LabOptions::default());
    let mut config_a = lab.site_config(Site::A);
    // The address comes from the file's [gateway] metrics, as an operator writes it.
    config_a.extra.push(format!("metrics = \"{ADDRESS}\""));
    // The tunnel counters checked below are the TUN dataplane's (kernel_dataplane.rs checks
    // the kernel path's series).
    config_a.tunnel_mut().dataplane = Some(Dataplane::Userspace);
    let config_b = lab.site_config(Site::B);
    let tunnel = config_a.tunnels[0].name.clone();
    let path = lab.dir().join("metrics-a.toml");
    fs::write(&path, config_a.to_toml()).unwrap();
    let path_arg = path.to_string_lossy().into_owned();
    let _a = lab
        .spawn(
            Site::A.node(),
            "v6gate",
            &[BIN, "run", "--config", &path_arg],
        )
        .unwrap();
    let b = common::start_gateway(&lab, Site::B, &config_b);
    let namespace = lab.namespace(Site::A.node()).to_owned();

    let mut metrics = String::new();
    let served = wait_until(Duration::from_secs(15), || {
        metrics = scrape(&namespace, ADDRESS).unwrap_or_default();
        metrics.contains("v6gate_tunnel_up")
    });
    assert!(served, "no metrics from {ADDRESS}: {metrics}");
    assert_ping(&lab, Site::A.host(), IpAddr::V4(addr::HOST_B4), 3, &[&b]);
    metrics = scrape(&namespace, ADDRESS).unwrap();

    let up = format!("v6gate_tunnel_up{{tunnel=\"{tunnel}\"}}");
    assert_eq!(value(&metrics, &up), Some(1.0), "{metrics}");
    let tx = format!("v6gate_tunnel_tx_packets_total{{tunnel=\"{tunnel}\"}}");
    assert!(value(&metrics, &tx).is_some_and(|v| v >= 3.0), "{metrics}");
    assert!(
        metrics.contains("# TYPE v6gate_path_active gauge"),
        "{metrics}"
    );

    let said = promtool_objections(&metrics);
    assert!(said.is_none(), "promtool: {said:?}\n{metrics}");
    // promtool does find mistakes: a counter without _total.
    let broken = metrics.replace("v6gate_tunnel_tx_bytes_total", "v6gate_tunnel_tx_bytes");
    assert!(promtool_objections(&broken).is_some());
}
