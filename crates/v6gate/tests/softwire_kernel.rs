//! End-to-end: a DS-Lite B4 on the kernel path (`dataplane = "kernel"`), run by `v6gate run`
//! in siteA against AFTRs in siteB, follows its AFTR's name to a second AFTR and carries
//! traffic through it: the tc-BPF programs, their maps and the inner routes all move to the
//! new remote, and the first AFTR receives nothing more.
//!
//! Both AFTRs run in siteB on the same wan device with overlapping prefixes (the first
//! routes hostA's /24 back, the second hostA's /32), so they stay on the TUN dataplane: on
//! the kernel path each one's egress program claims packets by its own prefixes, not by the
//! route the kernel chose, and the first would encapsulate the second's replies from its own
//! address, which the B4 then drops as a spoofed outer source.

mod common;
mod ddns_support;
mod softwire_support;

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use common::wait_ping;
use softwire_support::ce::{AFTR_NAME, aftr_config, start_named_b4};
use v6gate_lab::{Gateway, GatewayConfig, LabOptions, Node, Site, addr, dev};

const HOST_B: IpAddr = IpAddr::V4(addr::HOST_B4);

/// An AFTR of this file on the TUN dataplane, whatever `auto` chooses (see the module doc).
fn userspace(config: &mut GatewayConfig) {
    config
        .tunnel_mut()
        .extra
        .push("dataplane = \"userspace\"".into());
}

#[test]
fn daemon_ds_lite_on_the_kernel_path_follows_its_aftr_name_to_another_aftr() {
    const KEY: &str = "hmac-sha256:ddns-key:c2VjcmV0LWtleS1mb3ItdGVzdHMtMDEyMzQ1Njc4OWFiY2RlZg==";
    let second: Ipv6Addr = "2001:db8:0:2::2".parse().unwrap();
    let lab = common::lab(LabOptions::default());
    ddns_support::add_address(&lab, Node::SiteB, dev::WAN6, second);
    let knot = ddns_support::Knot::answering(
        &lab,
        KEY,
        addr::WAN_B6,
        "knot",
        AFTR_NAME,
        addr::SITE_B_WAN6,
    );
    let first = aftr_config(&lab);
    let mut first = first;
    userspace(&mut first);
    let first = common::start_gateway(&lab, Site::B, &first);
    let ce = start_named_b4(&lab, "dataplane = \"kernel\"\n");
    let remote_is = |a: Ipv6Addr| {
        ce.tunnel_status("b4")
            .is_ok_and(|s| s["remote"] == a.to_string())
    };
    assert!(
        common::wait_until(Duration::from_secs(10), || remote_is(addr::SITE_B_WAN6)),
        "{}",
        ce.log()
    );
    let b4 = ce.tunnel_status("b4").unwrap();
    assert_eq!(b4["dataplane"], "kernel", "{b4:#}\n{}", ce.log());
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "{}",
        ce.log()
    );

    let mut config = lab.site_config(Site::B);
    config.control_socket = lab.dir().join("aftr2.sock");
    let tunnel = config.tunnel_mut();
    tunnel.name = "aftr2".to_owned();
    tunnel.local = second;
    tunnel.routes = vec![format!("{}/32", addr::HOST_A4)];
    userspace(&mut config);
    let second_aftr = common::start_gateway(&lab, Site::B, &config);
    knot.update(&lab, KEY, AFTR_NAME, "AAAA", IpAddr::V6(second));
    let followed = common::wait_until(Duration::from_secs(45), || remote_is(second));
    assert!(
        followed,
        "the B4 stayed with {}:\n{}",
        ce.tunnel_status("b4").unwrap(),
        ce.log()
    );
    let b4 = ce.tunnel_status("b4").unwrap();
    assert_eq!(b4["dataplane"], "kernel", "{b4:#}\n{}", ce.log());
    assert!(
        wait_ping(&lab, Node::HostA, HOST_B, Duration::from_secs(10)),
        "no traffic through the second AFTR:\n{}\n{}\n{}",
        ce.tunnel_status("b4").unwrap(),
        ce.log(),
        second_aftr.log()
    );

    // The echo requests crossed the programs towards the second AFTR, not the first.
    let rx =
        |g: &Gateway, name: &str| common::counter(&g.tunnel_status(name).unwrap(), "rx_packets");
    let kernel_tx = |g: &Gateway| {
        let t = g.tunnel_status("b4").unwrap();
        common::counter(&t["kernel_path"], "tx_packets")
    };
    let (first_before, second_before, tx_before) =
        (rx(&first, "ab"), rx(&second_aftr, "aftr2"), kernel_tx(&ce));
    let out = lab.ping_output(Node::HostA, HOST_B, 3, &[]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(
        rx(&first, "ab"),
        first_before,
        "the first AFTR still receives"
    );
    assert!(rx(&second_aftr, "aftr2") >= second_before + 3);
    assert!(
        kernel_tx(&ce) >= tx_before + 3,
        "{:#}",
        ce.tunnel_status("b4").unwrap()
    );
    ce.stop().unwrap();
    second_aftr.stop().unwrap();
    first.stop().unwrap();
}
