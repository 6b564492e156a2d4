//! A host that does not let v6gate load BPF programs, as in an unprivileged container: siteA's
//! daemon is started without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (`setpriv` takes them out
//! of the bounding set before it execs `v6gate run`, so the kernel refuses `bpf()`). With
//! `dataplane = "auto"` the tunnel runs on the TUN dataplane, `status` and the log say so and
//! why, and traffic crosses to a siteB on the kernel path. With `dataplane = "kernel"` the same
//! host is the tunnel's failure: the daemon refuses to start, naming the key, and leaves
//! neither its TUN device nor a route behind.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{BIN, assert_ping, assert_tcp_a_to_b, link_exists, start_gateway, tunnel_device};
use v6gate_lab::{Dataplane, LabError, LabOptions, Node, Site, addr};

/// Runs what follows without the capabilities `bpf()` needs, on a kernel that allows
/// unprivileged BPF (the sysctl default on Debian refuses it anyway).
const WITHOUT_BPF: &[&str] = &[
    "setpriv",
    "--bounding-set",
    "-bpf,-perfmon,-sys_admin",
    "--",
];

const BYTES: u64 = 1 << 20;

fn forwarding() -> LabOptions {
    LabOptions {
        site_ipv4_forwarding: true,
        ..LabOptions::default()
    }
}

#[test]
fn auto_without_bpf_falls_back_to_the_tun_dataplane_and_says_why() {
    let lab = common::lab(forwarding());
    let config_a = lab.site_config(Site::A);
    let config_b = lab.site_config(Site::B);
    let a = lab
        .start_gateway_wrapped(BIN.as_ref(), Node::SiteA, &config_a, WITHOUT_BPF)
        .unwrap_or_else(|e| panic!("starting siteA without BPF: {e}"));
    let b = start_gateway(&lab, Site::B, &config_b);
    let name = config_a.tunnels[0].name.clone();

    assert_ping(&lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 3, &[&a, &b]);
    assert_ping(&lab, Node::HostB, IpAddr::V4(addr::HOST_A4), 3, &[&a, &b]);

    // The TUN dataplane carries a transfer: its own byte counter takes all of it (on the
    // kernel path it would count probes only).
    let before = common::counter(&a.tunnel_status(&name).unwrap(), "tx_bytes");
    assert_tcp_a_to_b(&lab, BYTES, Duration::from_secs(30), &[&a, &b]);
    let t = a.tunnel_status(&name).unwrap();
    assert!(common::counter(&t, "tx_bytes") >= before + BYTES, "{t:#}");
    assert_eq!(t["dataplane"], "userspace", "{t:#}");
    let why = t["dataplane_fallback"].as_str().unwrap_or_default();
    assert!(why.contains("BPF"), "the fallback names BPF: {t:#}");
    assert!(t.get("kernel_path").is_none(), "{t:#}");
    let log = a.log();
    assert!(
        log.contains("kernel path not used"),
        "the log says the kernel path was not taken:\n{log}"
    );
    // The far side is not held back by siteA's host.
    let far = b.tunnel_status(&name).unwrap();
    assert_eq!(far["dataplane"], "kernel", "{far:#}");
    a.stop().unwrap();
    b.stop().unwrap();
}

#[test]
fn kernel_without_bpf_refuses_to_start_and_leaves_nothing() {
    let lab = common::lab(forwarding());
    let mut config_a = lab.site_config(Site::A);
    config_a.tunnel_mut().dataplane = Some(Dataplane::Kernel);
    let started = lab.start_gateway_wrapped(BIN.as_ref(), Node::SiteA, &config_a, WITHOUT_BPF);
    let Err(LabError::Gateway { message, log }) = started else {
        panic!("siteA started with dataplane = \"kernel\" and no BPF");
    };
    assert!(message.contains("exited"), "{message}\n{log}");
    let name = &config_a.tunnels[0].name;
    assert!(
        log.contains(&format!("tunnel {name}")) && log.contains("dataplane = \"kernel\""),
        "the error names the tunnel and the key:\n{log}"
    );
    assert!(!link_exists(&lab, Node::SiteA, &tunnel_device(&config_a)));
    let routes = lab
        .exec_ok(Node::SiteA, &["ip", "-4", "route", "show", "proto", "118"])
        .unwrap();
    assert!(routes.trim().is_empty(), "routes left behind: {routes}");
}
