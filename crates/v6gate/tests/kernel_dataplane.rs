//! `dataplane = "kernel"` through `v6gate run`: both sites carry their tunnel on tc-BPF
//! programs on their wan device, with the inner route via the underlay next hop. Ping and TCP
//! cross, `status` says `kernel` and counts; a clean stop leaves no program and no route; a
//! SIGKILL leaves the route, which the next run removes before installing its own.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{Sites, assert_ping, assert_tcp_a_to_b, start_gateway};
use kpath::KernelPath;
use v6gate_lab::{Lab, LabOptions, Node, Site, addr, dev, enter_netns};

fn kernel(site: Site, config: &mut v6gate_lab::GatewayConfig) {
    let _ = site;
    config
        .tunnel_mut()
        .extra
        .push("dataplane = \"kernel\"".into());
}

/// Programs called v6gate_* attached to siteA's wan device (tcx, or tc before Linux 6.6).
fn attached_programs(lab: &Lab) -> usize {
    let namespace = lab.namespace(Node::SiteA).to_owned();
    let tcx = std::thread::spawn(move || {
        enter_netns(&namespace).expect("enter siteA");
        KernelPath::attached_tcx(dev::WAN6).expect("query tcx")
    })
    .join()
    .expect("query thread");
    let tc = ["ingress", "egress"].map(|hook| {
        let out = lab.exec(
            Node::SiteA,
            &["tc", "filter", "show", "dev", dev::WAN6, hook],
        );
        String::from_utf8_lossy(&out.stdout)
            .matches("v6gate_")
            .count()
    });
    tcx.iter().filter(|n| n.starts_with("v6gate_")).count() + tc.iter().sum::<usize>()
}

/// siteA's routes of LAN B through the underlay (`via inet6`).
fn kernel_routes(lab: &Lab) -> Vec<String> {
    lab.ip(Node::SiteA, &["-4", "route", "show", addr::LAN_B4])
        .unwrap()
        .lines()
        .filter(|l| l.contains("via inet6"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_daemon_runs_a_tunnel_on_the_kernel_path() {
    let mut sites = Sites::start(
        LabOptions {
            site_ipv4_forwarding: true,
            ..LabOptions::default()
        },
        kernel,
    );
    let a = sites.gateway(Site::A);
    let b = sites.gateway(Site::B);
    assert_ping(
        &sites.lab,
        Node::HostA,
        IpAddr::V4(addr::HOST_B4),
        3,
        &[a, b],
    );
    assert_ping(
        &sites.lab,
        Node::HostB,
        IpAddr::V4(addr::HOST_A4),
        3,
        &[a, b],
    );
    assert_tcp_a_to_b(
        &sites.lab,
        4 * 1024 * 1024,
        Duration::from_secs(20),
        &[a, b],
    );

    let name = sites.config_a.tunnels[0].name.clone();
    let t = a.tunnel_status(&name).unwrap();
    assert_eq!(t["dataplane"], "kernel", "{t:#}");
    let k = &t["kernel_path"];
    assert_eq!(k["device"], dev::WAN6, "{t:#}");
    assert!(k["tx_packets"].as_u64().unwrap() >= 3, "{t:#}");
    assert!(k["rx_packets"].as_u64().unwrap() >= 3, "{t:#}");
    assert!(k["tx_bytes"].as_u64().unwrap() > 4 * 1024 * 1024, "{t:#}");
    let routes = kernel_routes(&sites.lab);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(
        routes[0].contains(&format!("dev {}", dev::WAN6)),
        "{routes:?}"
    );
    assert!(routes[0].contains("mtu 1460"), "{routes:?}");
    assert_eq!(attached_programs(&sites.lab), 2);

    // A clean stop takes programs and routes away.
    sites.a.take().unwrap().stop().unwrap();
    assert_eq!(attached_programs(&sites.lab), 0);
    assert!(kernel_routes(&sites.lab).is_empty());

    // A crash leaves the route (the programs go with the process); the next run replaces it.
    let crashed = start_gateway(&sites.lab, Site::A, &sites.config_a);
    assert_ping(
        &sites.lab,
        Node::HostA,
        IpAddr::V4(addr::HOST_B4),
        2,
        &[&crashed],
    );
    crashed.kill().unwrap();
    assert_eq!(kernel_routes(&sites.lab).len(), 1);
    assert_eq!(attached_programs(&sites.lab), 0);
    let again = start_gateway(&sites.lab, Site::A, &sites.config_a);
    assert_ping(
        &sites.lab,
        Node::HostA,
        IpAddr::V4(addr::HOST_B4),
        3,
        &[&again],
    );
    assert_eq!(kernel_routes(&sites.lab).len(), 1);
    assert_eq!(attached_programs(&sites.lab), 2);
    assert_eq!(again.tunnel_status(&name).unwrap()["dataplane"], "kernel");
    sites.a = Some(again);
    sites.stop();
}

/// `auto` takes the kernel path where the tunnel needs nothing it lacks (here: no MSS
/// clamping), and says why it stays on the TUN dataplane otherwise.
#[test]
fn auto_takes_the_kernel_path_where_it_can() {
    let sites = Sites::start(
        LabOptions {
            site_ipv4_forwarding: true,
            ..LabOptions::default()
        },
        |site, config| {
            if site == Site::A {
                config.tunnel_mut().extra.push("mss_clamp = \"off\"".into());
            }
        },
    );
    let a = sites.gateway(Site::A);
    let b = sites.gateway(Site::B);
    assert_ping(
        &sites.lab,
        Node::HostA,
        IpAddr::V4(addr::HOST_B4),
        3,
        &[a, b],
    );
    let name = sites.config_a.tunnels[0].name.clone();
    let ta = a.tunnel_status(&name).unwrap();
    assert_eq!(ta["dataplane"], "kernel", "{ta:#}");
    assert!(ta.get("dataplane_fallback").is_none(), "{ta:#}");
    assert!(
        ta["kernel_path"]["tx_packets"].as_u64().unwrap() >= 3,
        "{ta:#}"
    );
    let tb = b.tunnel_status(&name).unwrap();
    assert_eq!(tb["dataplane"], "userspace", "{tb:#}");
    assert!(
        tb["dataplane_fallback"]
            .as_str()
            .unwrap()
            .contains("MSS clamping"),
        "{tb:#}"
    );
    // siteB's TUN dataplane decapsulates what siteA's programs sent.
    assert!(tb["rx_packets"].as_u64().unwrap() >= 3, "{tb:#}");
    sites.stop();
}

/// The far side of the wan is 1400 bytes: the router's Packet Too Big reaches siteA, whose
/// userspace core learns the path MTU, and the inner route's MTU follows, so that hostA gets
/// frag-needed from siteA's kernel for packets the path no longer carries.
#[test]
fn an_underlay_packet_too_big_lowers_the_inner_route_mtu() {
    let sites = Sites::start(
        LabOptions {
            site_ipv4_forwarding: true,
            wan_b_mtu: Some(1400),
            ..LabOptions::default()
        },
        kernel,
    );
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 1, &gateways);
    assert!(kernel_routes(lab)[0].contains("mtu 1460"));
    let mut outputs = String::new();
    let reported = common::wait_until(Duration::from_secs(8), || {
        let out = lab.ping_output(
            Node::HostA,
            IpAddr::V4(addr::HOST_B4),
            3,
            &["-M", "do", "-s", "1400"],
        );
        let out = common::text(&out);
        let found = out.contains("mtu = 1360");
        outputs.push_str(&out);
        found
    });
    let a = sites.gateway(Site::A);
    assert!(
        reported,
        "hostA never got frag-needed with mtu 1360:\n{outputs}\n{:?}\n{}",
        kernel_routes(lab),
        a.log()
    );
    let routes = kernel_routes(lab);
    assert!(routes[0].contains("mtu 1360"), "{routes:?}");
    let small = lab.ping_output(
        Node::HostA,
        IpAddr::V4(addr::HOST_B4),
        3,
        &["-M", "do", "-s", "1332"],
    );
    assert!(small.status.success(), "{}", common::text(&small));
    assert_eq!(
        a.tunnel_status(&sites.config_a.tunnels[0].name).unwrap()["dataplane"],
        "kernel"
    );
    sites.stop();
}
