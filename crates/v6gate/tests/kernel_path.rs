//! Interop: siteA runs the tunnel on the kernel path (tc-BPF on its wan device, attached
//! through the loader), siteB runs v6gate with its TUN dataplane. Ping and TCP cross both ways.
//!
//! Checksum offload stays on: over veth, a BPF-encapsulated segment keeps CHECKSUM_PARTIAL,
//! so siteB's raw socket reads inner TCP checksum fields that hold only the pseudo-header sum,
//! and its TUN dataplane must have the kernel complete them (docs/performance.md).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::Duration;

use common::{lab, start_gateway};
use kpath::{KernelPath, Spec, SpecPath};
use v6gate_lab::{LabOptions, Node, Site, addr, dev, enter_netns};

#[test]
fn a_kernel_path_site_and_a_tun_dataplane_site_carry_ping_and_tcp() {
    let lab = lab(LabOptions {
        site_ipv4_forwarding: true,
        ..LabOptions::default()
    });
    let config_b = lab.site_config(Site::B);
    let gateway_b = start_gateway(&lab, Site::B, &config_b);

    // The inner route the kernel path needs: through the underlay next hop, with the
    // tunnel MTU, so that the kernel answers DF packets that do not fit.
    lab.ip(
        Node::SiteA,
        &[
            "route",
            "add",
            addr::LAN_B4,
            "via",
            "inet6",
            &addr::WAN_A6.to_string(),
            "dev",
            dev::WAN6,
            "mtu",
            "1460",
        ],
    )
    .unwrap();
    let spec = Spec {
        carry_ipv4: true,
        carry_ipv6: false,
        encap_limit: None,
        hop_limit: 64,
        traffic_class: Some(0),
        paths: vec![SpecPath {
            local: addr::SITE_A_WAN6.into(),
            remote: addr::SITE_B_WAN6.into(),
        }],
        routes: vec![addr::LAN_B4.parse().unwrap()],
        allowed_sources: vec![addr::LAN_B4.parse().unwrap()],
        probe_echo: false,
        active: 0,
    };
    let namespace = lab.namespace(Node::SiteA).to_owned();
    // Attaching resolves the device in the calling thread's namespace; the links are
    // descriptors, so the path can be dropped (and detached) from any thread.
    let kernel = thread::spawn(move || {
        enter_netns(&namespace).expect("enter siteA");
        let mut kernel = KernelPath::load(&spec).expect("load the kernel path");
        kernel
            .attach(dev::WAN6)
            .expect("attach to siteA's wan device");
        kernel
    })
    .join()
    .expect("attach thread");

    assert!(
        lab.ping(Node::HostA, IpAddr::V4(addr::HOST_B4), 3),
        "hostA -> hostB"
    );
    assert!(
        lab.ping(Node::HostB, IpAddr::V4(addr::HOST_A4), 3),
        "hostB -> hostA"
    );
    let counters = kernel.counters().unwrap();
    assert!(counters.tx_packets >= 6, "{counters:?}");
    assert!(counters.rx_packets >= 6, "{counters:?}");
    assert_eq!(counters.dropped(), 0, "{counters:?}");

    let bytes = 4 * 1024 * 1024 + 5;
    let transfer = lab
        .tcp_transfer(
            Node::HostB,
            SocketAddr::new(addr::HOST_B4.into(), 0),
            Node::HostA,
            bytes,
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(transfer.bytes, bytes);
    let transfer = lab
        .tcp_transfer(
            Node::HostA,
            SocketAddr::new(addr::HOST_A4.into(), 0),
            Node::HostB,
            bytes,
            Duration::from_secs(20),
        )
        .unwrap();
    assert_eq!(transfer.bytes, bytes);
    let after = kernel.counters().unwrap();
    assert!(after.tx_bytes > bytes, "{after:?}");
    assert!(after.rx_bytes > bytes, "{after:?}");

    drop(kernel);
    drop(gateway_b);
}
