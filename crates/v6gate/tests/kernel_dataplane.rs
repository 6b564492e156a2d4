//! `dataplane = "kernel"` through `v6gate run`: both sites carry their tunnel on tc-BPF
//! programs on their wan device, with the inner route via the underlay next hop. Ping and TCP
//! cross, `status` says `kernel` and counts, and /metrics exports those counts; a clean stop
//! leaves no program and no route; a SIGKILL leaves the route, which the next run removes
//! before installing its own. `auto` takes the kernel path with MSS clamping (nftables clamps
//! the SYNs); a kernel-path site and a TUN-dataplane site carry TCP both ways and UDP; the
//! route MTU follows the path MTU; failover moves the programs' active path and the routes;
//! what the gateway itself sends into the tunnel carries the tunnel's address; a reload that
//! adds a route changes the kernel path in place.

mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::kernel::{attached_programs, underlay_routes};
use common::metrics::{scrape, value};
use common::{
    Sites, assert_ping, assert_tcp_a_to_b, assert_tcp_b_to_a, mss_options, start_gateway,
};
use kpath::KernelPath;
use v6gate_lab::multipath::{Failure, Timers, TwoPaths};
use v6gate_lab::{
    Dataplane, Gateway, GatewayConfig, Lab, LabOptions, MssClamp, Node, Site, addr, dev,
    enter_netns, promtool_objections,
};

fn kernel(site: Site, config: &mut GatewayConfig) {
    let _ = site;
    config.tunnel_mut().dataplane = Some(Dataplane::Kernel);
}

/// The lab these tests share: sites that forward IPv4, as a kernel-path tunnel needs.
fn forwarding() -> LabOptions {
    LabOptions {
        site_ipv4_forwarding: true,
        ..LabOptions::default()
    }
}

/// Both sites of the forwarding lab on their standard configs after `adjust`.
fn start_sites(adjust: impl Fn(Site, &mut GatewayConfig)) -> Sites {
    Sites::start(forwarding(), adjust)
}

/// Like [`start_sites`] with both tunnels on the kernel path before `adjust`.
fn start_kernel_sites(adjust: impl Fn(Site, &mut GatewayConfig)) -> Sites {
    start_sites(|site, config| {
        kernel(site, config);
        adjust(site, config);
    })
}

/// siteA's `[gateway] metrics`, on its namespace's loopback.
const METRICS: &str = "127.0.0.1:9586";

/// Three pings from hostA to hostB and three back, through both gateways.
fn ping_both_ways(sites: &Sites) {
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    for (from, to) in [(Node::HostA, addr::HOST_B4), (Node::HostB, addr::HOST_A4)] {
        assert_ping(&sites.lab, from, IpAddr::V4(to), 3, &gateways);
    }
}

/// siteA's routes of LAN B through the underlay (`via inet6`).
fn kernel_routes(lab: &Lab) -> Vec<String> {
    underlay_routes(lab, &[addr::LAN_B4])
}

#[test]
fn the_daemon_runs_a_tunnel_on_the_kernel_path() {
    let mut sites = start_kernel_sites(|site, config| {
        if site == Site::A {
            config.extra.push(format!("metrics = \"{METRICS}\""));
        }
    });
    let a = sites.gateway(Site::A);
    let b = sites.gateway(Site::B);
    ping_both_ways(&sites);
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
    // The peer was heard through the programs, which the TUN dataplane never saw (the
    // tunnel is not probed).
    assert!(
        t["last_received_secs"].as_u64().is_some_and(|s| s <= 5),
        "{t:#}"
    );
    assert_kernel_path_metrics(&sites, &name, &t);
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

/// siteA's /metrics, scraped after `status` said `t`: the programs' counters (at least what
/// `status` counted, as they only grow), the dataplane in use, and promtool's approval.
fn assert_kernel_path_metrics(sites: &Sites, name: &str, t: &serde_json::Value) {
    let namespace = sites.lab.namespace(Node::SiteA).to_owned();
    let mut metrics = String::new();
    let served = common::wait_until(Duration::from_secs(10), || {
        metrics = scrape(&namespace, METRICS).unwrap_or_default();
        metrics.contains("v6gate_kernel_path_tx_packets_total")
    });
    assert!(served, "no kernel-path series at {METRICS}:\n{metrics}");
    let k = &t["kernel_path"];
    for key in [
        "tx_packets",
        "rx_packets",
        "tx_bytes",
        "rx_bytes",
        "punted",
        "gso_tx",
        "gso_rx",
    ] {
        let series = format!("v6gate_kernel_path_{key}_total{{tunnel=\"{name}\"}}");
        let counted = k[key].as_u64().unwrap() as f64;
        assert!(
            value(&metrics, &series).is_some_and(|v| v >= counted),
            "{series} below status' {counted}:\n{metrics}"
        );
    }
    let tx = format!("v6gate_kernel_path_tx_packets_total{{tunnel=\"{name}\"}}");
    assert!(value(&metrics, &tx).is_some_and(|v| v >= 3.0), "{metrics}");
    for (dataplane, on) in [("kernel", 1.0), ("userspace", 0.0)] {
        let series =
            format!("v6gate_tunnel_dataplane{{tunnel=\"{name}\",dataplane=\"{dataplane}\"}}");
        assert_eq!(value(&metrics, &series), Some(on), "{series}:\n{metrics}");
    }
    let info = format!(
        "v6gate_kernel_path_info{{tunnel=\"{name}\",device=\"{}\",attach=\"{}\"}}",
        dev::WAN6,
        k["attach"].as_str().unwrap()
    );
    assert_eq!(value(&metrics, &info), Some(1.0), "{info}:\n{metrics}");
    let said = promtool_objections(&metrics);
    assert!(said.is_none(), "promtool: {said:?}\n{metrics}");
}

/// Tunnel addresses inside each site's own LAN prefix, which the peer routes into the tunnel.
const TUNNEL_A4: &str = "198.51.100.254";
const TUNNEL_B4: &str = "203.0.113.254";

/// What the gateway itself sends into a kernel-path tunnel leaves with the tunnel's address,
/// as it does through the TUN device: the inner route names it as preferred source (`src`),
/// where the kernel would otherwise pick the LAN's.
#[test]
fn the_gateways_own_packets_carry_the_tunnel_address() {
    let sites = start_kernel_sites(|site, config| {
        let address = match site {
            Site::A => TUNNEL_A4,
            Site::B => TUNNEL_B4,
        };
        config.tunnel_mut().addresses = vec![format!("{address}/32")];
    });
    let lab = &sites.lab;
    let a = sites.gateway(Site::A);
    let b = sites.gateway(Site::B);
    let routes = kernel_routes(lab);
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(
        routes[0].contains(&format!("src {TUNNEL_A4}")),
        "{routes:?}"
    );

    let name = sites.config_a.tunnels[0].name.clone();
    let sent = |g: &Gateway| {
        let t = g.tunnel_status(&name).unwrap();
        assert_eq!(t["dataplane"], "kernel", "{t:#}");
        t["kernel_path"]["tx_packets"].as_u64().unwrap()
    };
    let before = sent(a);
    let echo = lab
        .capture_text(Node::HostB, dev::LAN, "icmp[icmptype] == icmp-echo")
        .unwrap();
    assert_ping(lab, Node::SiteA, IpAddr::V4(addr::HOST_B4), 3, &[a, b]);
    let seen = echo.finish().unwrap();
    let sources: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("ICMP echo request"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(sources.len() >= 3, "{seen}");
    assert!(sources.iter().all(|s| *s == TUNNEL_A4), "{seen}");
    // The echo requests took the programs, not the TUN device.
    assert!(sent(a) >= before + 3);

    // The source is part of what the daemon owns: a route changed to go without it is
    // repaired.
    let without = routes[0].replace(&format!(" src {TUNNEL_A4}"), "");
    let mut replace = vec!["-4", "route", "replace"];
    replace.extend(without.split_whitespace());
    lab.ip(Node::SiteA, &replace).unwrap();
    let repaired = common::wait_until(Duration::from_secs(5), || kernel_routes(lab) == routes);
    assert!(repaired, "{:?}\n{}", kernel_routes(lab), a.log());
    sites.stop();
}

/// The MSS options of hostA's SYNs as seen at hostB and of hostB's SYN-ACKs as seen at
/// hostA, on one TCP transfer from hostA to hostB. Both hosts offer 1460 (LAN MTU 1500).
fn syn_mss(sites: &Sites) -> (Vec<u16>, Vec<u16>) {
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 1, &gateways);
    let filter = "tcp[tcpflags] & tcp-syn != 0";
    let at_b = lab.capture_text(Node::HostB, dev::LAN, filter).unwrap();
    let at_a = lab.capture_text(Node::HostA, dev::LAN, filter).unwrap();
    assert_tcp_a_to_b(lab, 64 * 1024, Duration::from_secs(15), &gateways);
    let (at_b, at_a) = (at_b.finish().unwrap(), at_a.finish().unwrap());
    let syns = mss_options(&at_b, addr::HOST_A4, "Flags [S]");
    let syn_acks = mss_options(&at_a, addr::HOST_B4, "Flags [S.]");
    assert!(!syns.is_empty(), "no SYN from hostA at hostB:\n{at_b}");
    assert!(
        !syn_acks.is_empty(),
        "no SYN-ACK from hostB at hostA:\n{at_a}"
    );
    (syns, syn_acks)
}

fn assert_kernel_without_fallback(sites: &Sites) {
    let name = sites.config_a.tunnels[0].name.clone();
    for site in [Site::A, Site::B] {
        assert_on_kernel_path(sites.gateway(site), &name, 1);
    }
}

/// `gateway` carries `name` on the kernel path, by choice, and its programs sent at least
/// `sent` packets.
fn assert_on_kernel_path(gateway: &Gateway, name: &str, sent: u64) {
    let t = gateway.tunnel_status(name).unwrap();
    assert_eq!(t["dataplane"], "kernel", "{t:#}");
    assert!(t.get("dataplane_fallback").is_none(), "{t:#}");
    assert!(
        t["kernel_path"]["tx_packets"].as_u64().unwrap() >= sent,
        "{t:#}"
    );
}

/// `auto` with the default `mss_clamp = "auto"` on both sites takes the kernel path, and
/// the SYNs are clamped both ways (siteA's tunnel MTU 1400: 1360 into its tunnel, and out of
/// it, where hostB's SYN-ACK crossed siteB's 1460-byte tunnel with 1420), by rules in the
/// instance's own table: no `[firewall]`, so no `inet v6gate`. A clean stop removes the
/// table, and so does the take-over of a crashed run's.
#[test]
fn auto_takes_the_kernel_path_with_mss_clamping() {
    let mut sites = start_sites(|site, config| {
        if site == Site::A {
            config.tunnel_mut().mtu = Some(1400);
        }
    });
    let (syns, syn_acks) = syn_mss(&sites);
    assert!(syns.iter().all(|m| *m == 1360), "{syns:?}");
    assert!(syn_acks.iter().all(|m| *m == 1360), "{syn_acks:?}");
    assert_kernel_without_fallback(&sites);
    let table = nft_table(&sites.lab, "v6gate_mss_site_a").expect("the clamping table");
    assert!(table.contains("maxseg size set rt mtu"), "{table}");
    assert_eq!(nft_table(&sites.lab, "v6gate"), None);
    sites.a.take().unwrap().stop().unwrap();
    assert_eq!(nft_table(&sites.lab, "v6gate_mss_site_a"), None);

    // A crash leaves the table; the next run of the instance takes it over from the journal
    // and, with nothing left to clamp, removes it.
    let crashed = start_gateway(&sites.lab, Site::A, &sites.config_a);
    assert_on_kernel_path(&crashed, &sites.config_a.tunnels[0].name, 0);
    crashed.kill().unwrap();
    assert!(nft_table(&sites.lab, "v6gate_mss_site_a").is_some());
    let mut unclamped = sites.config_a.clone();
    unclamped.tunnel_mut().mss_clamp = Some(MssClamp::Off);
    let again = start_gateway(&sites.lab, Site::A, &unclamped);
    assert_on_kernel_path(&again, &unclamped.tunnels[0].name, 0);
    assert_eq!(
        nft_table(&sites.lab, "v6gate_mss_site_a"),
        None,
        "{}",
        again.log()
    );
    sites.a = Some(again);
    sites.stop();
}

/// `nft list table inet <name>` in siteA, or `None` when there is no such table.
fn nft_table(lab: &Lab, name: &str) -> Option<String> {
    let out = lab.exec(Node::SiteA, &["nft", "list", "table", "inet", name]);
    out.status.success().then(|| common::text(&out))
}

/// A second tunnel to another far end, leaving on the same wan device with a route in another
/// table inside the first one's prefix, stays off the kernel path: the first tunnel's egress program
/// would take its packets. `auto` says why; the first keeps carrying on the kernel path.
#[test]
fn overlapping_routes_on_one_device_keep_the_second_tunnel_off_the_kernel_path() {
    let sites = Sites::start(
        LabOptions {
            site_ipv4_forwarding: true,
            ..LabOptions::default()
        },
        |site, config| {
            kernel(site, config);
            if site == Site::A {
                let mut second = config.tunnel_mut().clone();
                second.name = "ab2".into();
                second.device = None;
                second.remote = "2001:db8:0:2::2".parse().unwrap();
                second.routes = vec![format!("{}/32", addr::HOST_B4)];
                second.addresses = Vec::new();
                // `auto`: it falls back rather than fail to start.
                second.dataplane = None;
                // Another table (policy routing), where the config allows the overlap.
                second.extra = vec!["mss_clamp = \"off\"".into(), "route_table = 200".into()];
                config.tunnels.push(second);
            }
        },
    );
    let a = sites.gateway(Site::A);
    let name = sites.config_a.tunnels[0].name.clone();
    let first = a.tunnel_status(&name).unwrap();
    assert_eq!(first["dataplane"], "kernel", "{first:#}");
    let second = a.tunnel_status("ab2").unwrap();
    assert_eq!(second["dataplane"], "userspace", "{second:#}\n{}", a.log());
    let why = second["dataplane_fallback"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("tunnel {name}")) && why.contains("overlapping routes"),
        "{second:#}"
    );
    // The LAN beside hostB's /32 still crosses the first tunnel's programs.
    assert_ping(
        &sites.lab,
        Node::HostA,
        IpAddr::V4(addr::HOST_B4),
        1,
        &[a, sites.gateway(Site::B)],
    );
    sites.stop();
}

/// `dataplane = "kernel"` with the default `mss_clamp = "auto"` on both sites: the SYNs are
/// clamped by nftables, leaving siteA to the route MTU of its kernel path (its tunnel MTU,
/// 1400), arriving at siteA to that MTU too (hostB's SYN-ACK crossed siteB's 1460-byte
/// tunnel with 1420).
#[test]
fn the_kernel_path_clamps_the_mss() {
    let sites = start_kernel_sites(|site, config| {
        if site == Site::A {
            config.tunnel_mut().mtu = Some(1400);
        }
    });
    let (syns, syn_acks) = syn_mss(&sites);
    assert!(syns.iter().all(|m| *m == 1360), "{syns:?}");
    assert!(syn_acks.iter().all(|m| *m == 1360), "{syn_acks:?}");
    assert_kernel_without_fallback(&sites);
    let table = common::text(&sites.lab.exec(
        Node::SiteA,
        &[
            "nft",
            "list",
            "chain",
            "inet",
            "v6gate_mss_site_a",
            "kernel_mss_forward",
        ],
    ));
    assert!(table.contains("maxseg size set rt mtu"), "{table}");
    // A clean stop takes the clamping with the table.
    let mut sites = sites;
    sites.a.take().unwrap().stop().unwrap();
    assert_eq!(nft_table(&sites.lab, "v6gate_mss_site_a"), None);
    sites.stop();
}

/// A fixed `mss_clamp` on siteB's kernel path: hostA's SYN is clamped as it comes out of
/// siteB's tunnel, hostB's SYN-ACK as it goes in.
#[test]
fn a_fixed_mss_clamp_on_the_kernel_path() {
    let sites = start_kernel_sites(|site, config| {
        if site == Site::B {
            config.tunnel_mut().mss_clamp = Some(MssClamp::Fixed(1300));
        }
    });
    let (syns, syn_acks) = syn_mss(&sites);
    assert!(syns.iter().all(|m| *m == 1300), "{syns:?}");
    assert!(syn_acks.iter().all(|m| *m == 1300), "{syn_acks:?}");
    assert_kernel_without_fallback(&sites);
    sites.stop();
}

/// siteA on the kernel path without clamping, siteB on the TUN dataplane clamping the MSS.
/// hostA's segments leave it with CHECKSUM_PARTIAL (veth), siteA's programs encapsulate them
/// as they are, and siteB's TUN dataplane reads checksum fields that hold only the
/// pseudo-header sum, lowers the SYN's MSS and must still hand hostB segments that verify.
/// Nothing turns checksum offload off here.
#[test]
fn a_kernel_path_site_and_a_tun_dataplane_site_carry_tcp_and_udp() {
    let sites = start_sites(|site, config| {
        let tunnel = config.tunnel_mut();
        if site == Site::A {
            tunnel.dataplane = Some(Dataplane::Kernel);
            tunnel.mss_clamp = Some(MssClamp::Off);
        } else {
            tunnel.dataplane = Some(Dataplane::Userspace);
        }
    });
    let a = sites.gateway(Site::A);
    let b = sites.gateway(Site::B);
    ping_both_ways(&sites);
    let name = sites.config_a.tunnels[0].name.clone();
    assert_eq!(a.tunnel_status(&name).unwrap()["dataplane"], "kernel");
    assert_eq!(b.tunnel_status(&name).unwrap()["dataplane"], "userspace");

    let bytes = 4 * 1024 * 1024 + 3;
    assert_tcp_a_to_b(&sites.lab, bytes, Duration::from_secs(30), &[a, b]);
    assert_tcp_b_to_a(&sites.lab, bytes, Duration::from_secs(30), &[a, b]);
    let ta = a.tunnel_status(&name).unwrap();
    assert!(
        ta["kernel_path"]["tx_bytes"].as_u64().unwrap() > bytes,
        "{ta:#}"
    );
    assert!(
        ta["kernel_path"]["rx_bytes"].as_u64().unwrap() > bytes,
        "{ta:#}"
    );
    // siteB lowered the MSS of hostA's SYNs (and of hostB's SYN-ACKs) itself.
    let tb = b.tunnel_status(&name).unwrap();
    assert!(tb["mss_clamped"].as_u64().unwrap() >= 2, "{tb:#}");
    assert_eq!(udp_a_to_b(&sites.lab).unwrap(), UDP_PAYLOAD);
    sites.stop();
}

const UDP_PAYLOAD: &[u8] = b"a datagram whose checksum hostA's stack left to the NIC";

/// The first of up to 20 datagrams from hostA (one every 100 ms) that a socket on hostB
/// takes: hostB's stack drops any whose UDP checksum is wrong, and then none arrives.
fn udp_a_to_b(lab: &Lab) -> io::Result<Vec<u8>> {
    let (ns_a, ns_b) = (
        lab.namespace(Node::HostA).to_owned(),
        lab.namespace(Node::HostB).to_owned(),
    );
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || -> io::Result<Vec<u8>> {
        enter_netns(&ns_b)?;
        let socket = UdpSocket::bind(SocketAddr::new(addr::HOST_B4.into(), 0))?;
        let _ = bound_tx.send(socket.local_addr());
        socket.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 2048];
        let (n, _) = socket.recv_from(&mut buf)?;
        Ok(buf[..n].to_vec())
    });
    let to = bound_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(io::Error::other)??;
    let sender = std::thread::spawn(move || -> io::Result<()> {
        enter_netns(&ns_a)?;
        let socket = UdpSocket::bind(SocketAddr::new(addr::HOST_A4.into(), 0))?;
        for _ in 0..20 {
            socket.send_to(UDP_PAYLOAD, to)?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    });
    let received = receiver
        .join()
        .map_err(|_| io::Error::other("receiver panicked"))?;
    sender
        .join()
        .map_err(|_| io::Error::other("sender panicked"))??;
    received
}

/// The far side of the wan is 1400 bytes: the router's Packet Too Big reaches siteA, whose
/// userspace core learns the path MTU, and the inner route's MTU follows, so that hostA gets
/// frag-needed from siteA's kernel for packets the path no longer carries.
#[test]
fn an_underlay_packet_too_big_lowers_the_inner_route_mtu() {
    let sites = Sites::start(
        LabOptions {
            wan_b_mtu: Some(1400),
            ..forwarding()
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

/// Both sites of the two-path lab (IPv6 "IPoE" primary, IPv4 "PPPoE" backup) on the kernel
/// path: when the primary's link goes down, the core's probes move the tunnel to the backup
/// and the programs and routes follow by a map update, while pings and TCP keep flowing.
#[test]
fn failover_on_the_kernel_path_is_a_map_update() {
    let lab = TwoPaths::start(Path::new(common::BIN), Timers::default()).expect("two-path lab");
    for gateway in [&lab.b, &lab.a] {
        let text = std::fs::read_to_string(gateway.config_path()).unwrap();
        let text = text.replace("name = \"ab\"\n", "name = \"ab\"\ndataplane = \"kernel\"\n");
        std::fs::write(gateway.config_path(), text).unwrap();
        gateway.reload().unwrap();
    }
    let on_kernel = common::wait_until(Duration::from_secs(10), || {
        [&lab.a, &lab.b].iter().all(|g| {
            g.tunnel_status("ab")
                .is_ok_and(|t| t["dataplane"] == "kernel")
        })
    });
    assert!(on_kernel, "{}", lab.a.log());
    assert!(
        lab.wait_for_active("ipoe", Duration::from_secs(10))
            .is_some(),
        "{}",
        lab.a.log()
    );
    assert!(lab.lab.ping(Node::HostA, IpAddr::V4(Site::B.host4()), 3));
    let before = lab.a.tunnel_status("ab").unwrap();
    let primary_device = before["kernel_path"]["device"].clone();

    let bytes = 16 * 1024 * 1024;
    let run = lab.run_through_failure(Failure::LinkDown, bytes);
    assert!(run.switched.is_some(), "{}", lab.a.log());
    let pings = run.pings;
    eprintln!(
        "kernel path failover: {} pings sent, {} received: outage about {} ms",
        pings.sent,
        pings.received,
        pings.outage_ms()
    );
    assert!(pings.sent > 0);
    assert!(pings.outage_ms() <= 1500, "outage {} ms", pings.outage_ms());
    assert_eq!(run.transfer.expect("TCP across the failover").bytes, bytes);
    let after = lab.a.tunnel_status("ab").unwrap();
    assert_eq!(after["dataplane"], "kernel", "{after:#}");
    assert_ne!(after["kernel_path"]["device"], primary_device, "{after:#}");
    assert!(
        lab.a.log().contains("kernel path: path 0 -> 1"),
        "{}",
        lab.a.log()
    );
    let TwoPaths { lab: _lab, a, b } = lab;
    a.stop().expect("siteA stops cleanly");
    b.stop().expect("siteB stops cleanly");
}

/// v6gate filters on siteA's wan device, on the `clsact` qdisc (what tcx links never leave).
fn clsact_filters(lab: &Lab) -> usize {
    ["ingress", "egress"]
        .map(|hook| {
            let out = lab.exec(
                Node::SiteA,
                &["tc", "filter", "show", "dev", dev::WAN6, hook],
            );
            // One line per filter, which names its program twice.
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("v6gate_"))
                .count()
        })
        .iter()
        .sum()
}

/// Programs attached as `clsact` filters, as on a kernel before 6.6, are objects of the
/// host state: a filter someone deletes is attached again, and the filters a SIGKILLed run
/// left are removed by the next start although its config no longer has the tunnel.
#[test]
fn clsact_filters_are_repaired_and_a_crashed_runs_are_removed() {
    let lab = common::lab(forwarding());
    let mut config_a = lab.site_config(Site::A);
    let mut config_b = lab.site_config(Site::B);
    kernel(Site::A, &mut config_a);
    kernel(Site::B, &mut config_b);
    // The daemon, with the attach mode of kernels without tcx.
    let wrapper = lab.dir().join("v6gate-clsact");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n{}=1 exec {} \"$@\"\n",
            kpath::FORCE_CLSACT_ENV,
            common::BIN
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let b = start_gateway(&lab, Site::B, &config_b);
    let a = lab
        .start_gateway(&wrapper, Node::SiteA, &config_a)
        .expect("siteA with clsact filters");
    assert_ping(&lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 3, &[&a, &b]);
    let name = config_a.tunnels[0].name.clone();
    let t = a.tunnel_status(&name).unwrap();
    assert_eq!(t["kernel_path"]["attach"], "clsact", "{t:#}");
    assert_eq!(clsact_filters(&lab), 2);

    // Someone deletes the decapsulation filter: the owner notices and attaches it again.
    lab.exec_ok(
        Node::SiteA,
        &["tc", "filter", "del", "dev", dev::WAN6, "ingress"],
    )
    .unwrap();
    let repaired = common::wait_until(Duration::from_secs(5), || clsact_filters(&lab) == 2);
    assert!(repaired, "{}", a.log());
    assert!(
        a.log().contains("restored program v6gate_decap"),
        "{}",
        a.log()
    );
    assert_ping(&lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 2, &[&a, &b]);

    // A crash leaves the filters; a start with a config without the tunnel removes them.
    a.kill().unwrap();
    assert_eq!(clsact_filters(&lab), 2);
    let mut without = config_a.clone();
    without.tunnels.clear();
    let again = start_gateway(&lab, Site::A, &without);
    assert_eq!(clsact_filters(&lab), 0, "{}", again.log());
    assert!(
        again
            .log()
            .contains("removed leftover program v6gate_encap"),
        "{}",
        again.log()
    );
    again.stop().unwrap();
    b.stop().unwrap();
}

/// A prefix behind siteB that the standard configs do not route, and an address in it on
/// hostB.
const FURTHER_B4: &str = "198.18.200.0/24";
const FURTHER_HOST_B4: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);

/// The kernel's ids of the programs on siteA's wan device (tcx), egress then ingress.
fn program_ids(lab: &Lab) -> Vec<u32> {
    let namespace = lab.namespace(Node::SiteA).to_owned();
    std::thread::spawn(move || {
        enter_netns(&namespace).expect("enter siteA");
        kpath::Hook::BOTH
            .iter()
            .flat_map(|hook| KernelPath::tcx_ids(dev::WAN6, *hook).expect("query tcx"))
            .collect()
    })
    .join()
    .expect("query thread")
}

/// A reload that adds a route to siteA's kernel-path tunnel changes its maps, routes and
/// clamping in place: hostB's address in the new prefix answers through the programs, which
/// keep their ids and counters, the TUN device keeps its index, and of 300 pings 10 ms
/// apart across the reload no more than a few go missing.
#[test]
fn a_reload_adds_a_route_to_a_kernel_path_tunnel_in_place() {
    let sites = start_sites(|_, _| {});
    let lab = &sites.lab;
    let (a, b) = (sites.gateway(Site::A), sites.gateway(Site::B));
    lab.ip(
        Node::HostB,
        &[
            "addr",
            "add",
            &format!("{FURTHER_HOST_B4}/32"),
            "dev",
            dev::LAN,
        ],
    )
    .unwrap();
    let via = addr::HOST_B4.to_string();
    lab.ip(Node::SiteB, &["route", "add", FURTHER_B4, "via", &via])
        .unwrap();
    ping_both_ways(&sites);
    let name = sites.config_a.tunnels[0].name.clone();
    assert_on_kernel_path(a, &name, 3);
    let device = common::tunnel_device(&sites.config_a);
    let ifindex = common::ifindex(lab, Node::SiteA, &device);
    let programs = program_ids(lab);
    assert_eq!(programs.len(), 2, "{programs:?}");
    let sent_before = a.tunnel_status(&name).unwrap()["kernel_path"]["tx_packets"]
        .as_u64()
        .unwrap();

    let mut changed = sites.config_a.clone();
    changed.tunnels[0].routes.push(FURTHER_B4.to_owned());
    a.rewrite_config(&changed).unwrap();
    let (reload, pings) = std::thread::scope(|s| {
        let pings = s.spawn(|| {
            lab.ping_output(Node::HostA, IpAddr::V4(addr::HOST_B4), 300, &["-i", "0.01"])
        });
        std::thread::sleep(Duration::from_millis(1000));
        let reload = Command::new(common::BIN)
            .args(["reload", "--socket"])
            .arg(a.control_socket())
            .output()
            .unwrap();
        (reload, pings.join().unwrap())
    });
    let summary = common::text(&reload);
    assert!(reload.status.success(), "{summary}");
    assert!(
        summary.contains(&format!("tunnel {name}: changed in place")),
        "{summary}\n{}",
        a.log()
    );
    let (sent, received) = common::ping_counts(&common::text(&pings));
    eprintln!("10 ms pings across the reload: {received}/{sent}");
    assert!(
        sent >= 290 && received + 3 >= sent,
        "{}",
        common::text(&pings)
    );

    assert_ping(lab, Node::HostA, IpAddr::V4(FURTHER_HOST_B4), 3, &[a, b]);
    assert_eq!(
        program_ids(lab),
        programs,
        "the programs were attached anew"
    );
    assert_eq!(
        common::ifindex(lab, Node::SiteA, &device),
        ifindex,
        "the TUN device was re-created"
    );
    // Counters kept: what the programs sent before the reload is still counted.
    assert_on_kernel_path(a, &name, sent_before + received + 3);
    let routes = lab
        .ip(Node::SiteA, &["-4", "route", "show", FURTHER_B4])
        .unwrap();
    assert!(routes.contains("via inet6"), "{routes}");
    let table = nft_table(lab, "v6gate_mss_site_a").expect("the clamping table");
    assert!(table.contains(FURTHER_B4), "{table}");
    sites.stop();
}
