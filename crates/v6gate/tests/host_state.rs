//! End-to-end: the host state a daemon instance owns. A second daemon with the same socket
//! refuses and leaves the first alone; two instances share a namespace; a crash's leftovers
//! are taken over; state deleted behind the daemon's back is put back; the runtime directory
//! and the control socket cannot be turned against root; reload changes a tunnel in place.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use common::{BIN, HostState, Sites, assert_ping, start_gateway, text, wait_ping};
use v6gate_lab::{GatewayConfig, Lab, LabOptions, Node, Site, TunnelConfig, addr, dev};

const HOST_B4: IpAddr = IpAddr::V4(addr::HOST_B4);
const HOST_B6: IpAddr = IpAddr::V6(addr::HOST_B6);

/// Second underlay addresses of the sites, for a second tunnel between them.
const SITE_A_WAN6_2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 2);
const SITE_B_WAN6_2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 2);

/// `count` pings 10 ms apart from `from`; returns (sent, received) and the output.
fn fast_ping(lab: &Lab, from: Node, to: IpAddr, count: u32) -> (u32, u32, String) {
    let output = lab.ping_output(from, to, count, &["-i", "0.01"]);
    let all = text(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let numbers = stdout
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .map(|l| {
            l.split(',')
                .filter_map(|part| part.split_whitespace().next()?.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let sent = numbers.first().copied().unwrap_or(0);
    let received = numbers.get(1).copied().unwrap_or(0);
    (sent, received, all)
}

/// `v6gate run` in `node` on `config_path` in the foreground, at most 20 s.
fn run_to_exit(lab: &Lab, node: Node, config_path: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let process = lab
        .spawn(
            node,
            "v6gate-second",
            &[BIN, "run", "--config", &config_path.to_string_lossy()],
        )
        .unwrap();
    let status = process.wait_timeout(Duration::from_secs(20)).unwrap();
    let took = started.elapsed();
    let status = status.unwrap_or_else(|| {
        let _ = process.kill();
        panic!(
            "the daemon neither started nor exited: {}",
            process.stderr()
        )
    });
    (
        Output {
            status,
            stdout: process.stdout().into_bytes(),
            stderr: process.stderr().into_bytes(),
        },
        took,
    )
}

fn journal_of(config: &GatewayConfig) -> PathBuf {
    config.control_socket.with_extension("journal")
}

fn write_config(lab: &Lab, name: &str, config: &GatewayConfig) -> PathBuf {
    let path = lab.dir().join(format!("{name}.toml"));
    fs::write(&path, config.to_toml()).unwrap();
    path
}

#[test]
fn a_second_daemon_with_the_same_socket_refuses_and_leaves_the_first_alone() {
    let sites = Sites::start(LabOptions::default(), |_, _| {});
    let lab = &sites.lab;
    let a = sites.gateway(Site::A);
    assert_ping(lab, Node::HostA, HOST_B4, 2, &[a, sites.gateway(Site::B)]);
    let before = HostState::capture(lab, Node::SiteA);
    let journal = fs::read(journal_of(&sites.config_a)).unwrap();

    let (second, (sent, received, ping)) = thread::scope(|s| {
        let ping = s.spawn(|| fast_ping(lab, Node::HostA, HOST_B4, 300));
        thread::sleep(Duration::from_millis(500));
        let (second, _) = run_to_exit(lab, Node::SiteA, a.config_path());
        (second, ping.join().unwrap())
    });
    let out = text(&second);
    assert!(!second.status.success(), "second daemon started:\n{out}");
    assert!(
        out.contains(&format!("another v6gate, pid {}, owns", a.pid())),
        "the refusal does not name the owner:\n{out}"
    );
    eprintln!("10 ms pings through the first daemon meanwhile: {received}/{sent}");
    assert!(sent >= 290 && received == sent, "pings lost:\n{ping}");
    let after = HostState::capture(lab, Node::SiteA);
    assert!(before == after, "{}", before.differences(&after));
    assert_eq!(fs::read(journal_of(&sites.config_a)).unwrap(), journal);
    let status = a.tunnel_status("ab").unwrap();
    assert_eq!(status["state"], "up", "{status}");
    sites.stop();
}

/// Site configs with a second tunnel "cd", ip6ip6 between the sites' second underlay
/// addresses, carrying their IPv6 LANs. With `split`, siteA runs it in a second instance.
struct Dual {
    lab: Lab,
    a: GatewayConfig,
    a2: Option<GatewayConfig>,
    b: GatewayConfig,
}

fn dual(split: bool) -> Dual {
    let lab = common::lab(LabOptions::default());
    for (node, address) in [(Node::SiteA, SITE_A_WAN6_2), (Node::SiteB, SITE_B_WAN6_2)] {
        lab.ip(
            node,
            &[
                "-6",
                "addr",
                "add",
                &format!("{address}/64"),
                "dev",
                dev::WAN6,
                "nodad",
            ],
        )
        .unwrap();
    }
    let cd = |site: Site| {
        let (local, remote) = match site {
            Site::A => (SITE_A_WAN6_2, SITE_B_WAN6_2),
            Site::B => (SITE_B_WAN6_2, SITE_A_WAN6_2),
        };
        TunnelConfig {
            name: "cd".to_owned(),
            mode: "ip6ip6".to_owned(),
            local,
            remote,
            routes: vec![site.peer().lan6().to_owned()],
            ..TunnelConfig::between(site)
        }
    };
    let mut a = lab.site_config(Site::A);
    let mut b = lab.site_config(Site::B);
    b.tunnels.push(cd(Site::B));
    let a2 = if split {
        Some(GatewayConfig {
            control_socket: lab.dir().join("site-a2.sock"),
            ipv4_forwarding: None,
            ipv6_forwarding: Some(true),
            extra: Vec::new(),
            tunnels: vec![cd(Site::A)],
        })
    } else {
        a.tunnels.push(cd(Site::A));
        None
    };
    Dual { lab, a, a2, b }
}

/// `nft list table inet <name>` in siteA, or `None` when there is no such table.
fn nft_table(lab: &Lab, name: &str) -> Option<String> {
    let out = lab.exec(Node::SiteA, &["nft", "list", "table", "inet", name]);
    out.status.success().then(|| text(&out))
}

#[test]
fn two_instances_in_one_namespace_carry_traffic_and_stop_independently() {
    let Dual { lab, a, a2, b } = dual(true);
    let a2 = a2.unwrap();
    let gw_b = start_gateway(&lab, Site::B, &b);
    let gw_a2 = lab
        .start_gateway(BIN.as_ref(), Node::SiteA, &a2)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ping(&lab, Node::HostA, HOST_B6, 2, &[&gw_a2, &gw_b]);
    let alone = HostState::capture(&lab, Node::SiteA);

    let gw_a = start_gateway(&lab, Site::A, &a);
    let gateways = [&gw_a, &gw_a2, &gw_b];
    assert_ping(&lab, Node::HostA, HOST_B4, 3, &gateways);
    assert_ping(&lab, Node::HostA, HOST_B6, 3, &gateways);
    let both = lab
        .ip(Node::SiteA, &["-6", "route", "show", "table", "6464"])
        .unwrap();
    assert_eq!(both.lines().count(), 2, "one pin per instance:\n{both}");
    // Each instance clamps its own kernel-path tunnel in a table named after its socket;
    // neither has a `[firewall]`, so there is no `inet v6gate`.
    for (gateway, table) in [(&gw_a, "v6gate_mss_site_a"), (&gw_a2, "v6gate_mss_site_a2")] {
        let status = gateway.status().unwrap();
        assert_eq!(status["tunnels"][0]["dataplane"], "kernel", "{status:#}");
        assert!(nft_table(&lab, table).is_some(), "no table {table}");
    }
    assert_eq!(nft_table(&lab, "v6gate"), None);
    let clamping_a2 = nft_table(&lab, "v6gate_mss_site_a2");

    gw_a.stop().unwrap_or_else(|e| panic!("{e}"));
    let after = HostState::capture(&lab, Node::SiteA);
    assert!(
        alone == after,
        "stopping one instance changed the other's state:\n{}",
        alone.differences(&after)
    );
    assert_eq!(nft_table(&lab, "v6gate_mss_site_a"), None);
    assert_eq!(nft_table(&lab, "v6gate_mss_site_a2"), clamping_a2);
    // The survivor did not have to repair anything either.
    thread::sleep(Duration::from_millis(300));
    assert!(!gw_a2.log().contains("restored"), "{}", gw_a2.log());
    assert_ping(&lab, Node::HostA, HOST_B6, 3, &[&gw_a2, &gw_b]);
    gw_a2.stop().unwrap_or_else(|e| panic!("{e}"));
    gw_b.stop().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn restart_after_sigkill_under_traffic_takes_over_without_duplicates() {
    let lab = common::lab(LabOptions::default());
    let before = HostState::capture(&lab, Node::SiteA);
    let config_a = lab.site_config(Site::A);
    let gw_b = start_gateway(&lab, Site::B, &lab.site_config(Site::B));
    let gw_a = start_gateway(&lab, Site::A, &config_a);
    assert_ping(&lab, Node::HostA, HOST_B4, 2, &[&gw_a, &gw_b]);
    let config_path = gw_a.config_path().to_owned();

    let (down, restart, (sent, received, _)) = thread::scope(|s| {
        let ping = s.spawn(|| fast_ping(&lab, Node::HostA, HOST_B4, 400));
        thread::sleep(Duration::from_millis(300));
        let killed = Instant::now();
        gw_a.kill().unwrap();
        let gw_a = lab
            .start_gateway_with(
                BIN.as_ref(),
                Node::SiteA,
                &config_path,
                &config_a.control_socket,
            )
            .unwrap_or_else(|e| panic!("restart after SIGKILL: {e}"));
        let restart = killed.elapsed();
        assert!(wait_ping(
            &lab,
            Node::HostA,
            HOST_B4,
            Duration::from_secs(10)
        ));
        let down = killed.elapsed();
        (down, (restart, gw_a), ping.join().unwrap())
    });
    let (restart, gw_a) = restart;
    eprintln!(
        "SIGKILL -> restarted daemon answering: {} ms; -> first ping through: {} ms; \
         10 ms pings meanwhile: {received}/{sent}",
        restart.as_millis(),
        down.as_millis()
    );
    let rules = lab.ip(Node::SiteA, &["-6", "rule", "show"]).unwrap();
    assert_eq!(rules.matches("lookup 6464").count(), 1, "{rules}");
    // One route into the TUN device and one, a metric better, through the kernel path.
    let lan = lab
        .ip(Node::SiteA, &["route", "show", addr::LAN_B4])
        .unwrap();
    assert_eq!(lan.lines().count(), 2, "{lan}");
    assert_eq!(lan.matches("dev v6g-ab").count(), 1, "{lan}");
    let pins = lab
        .ip(Node::SiteA, &["-6", "route", "show", "table", "6464"])
        .unwrap();
    assert_eq!(pins.lines().count(), 1, "{pins}");
    let remote = Site::B.wan6().to_string();
    let guards = lab
        .ip(
            Node::SiteA,
            &["-6", "route", "show", "table", "main", &remote],
        )
        .unwrap();
    assert_eq!(guards.lines().count(), 1, "{guards}");
    assert!(
        gw_a.log().contains("did not stop cleanly"),
        "{}",
        gw_a.log()
    );

    gw_a.stop().unwrap_or_else(|e| panic!("{e}"));
    let after = HostState::capture(&lab, Node::SiteA);
    assert!(before == after, "{}", before.differences(&after));
    assert!(!journal_of(&config_a).exists());
    gw_b.stop().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_fresh_host_without_the_runtime_directory_starts() {
    let lab = common::lab(LabOptions::default());
    let run = lab.dir().join("fresh/run/v6gate");
    let mut config = lab.site_config(Site::A);
    config.control_socket = run.join("v6gate.sock");
    assert!(!run.exists());
    let gw_a = start_gateway(&lab, Site::A, &config);
    let meta = fs::metadata(&run).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert_eq!(meta.uid(), 0);
    assert_eq!(
        lab.sysctl(Node::SiteA, "net.ipv4.ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    assert!(run.join("v6gate.lock").exists() && run.join("v6gate.journal").exists());
    gw_a.stop().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        lab.sysctl(Node::SiteA, "net.ipv4.ip_forward")
            .unwrap()
            .trim(),
        "0"
    );
    assert!(!run.join("v6gate.journal").exists() && !run.join("v6gate.sock").exists());
}

#[test]
fn state_removed_behind_the_daemons_back_is_restored_within_a_second() {
    // Scenario S0's trap: with the pin gone the remote would route into the tunnel.
    let sites = Sites::start(LabOptions::default(), |site, config| {
        if site == Site::A {
            let tunnel = config.tunnel_mut();
            tunnel.mode = "any".to_owned();
            tunnel.routes = vec![addr::LAN_B4.to_owned()];
            tunnel.addresses = vec!["2001:db8:0:2::abcd/64".to_owned()];
        }
    });
    let lab = &sites.lab;
    let gateways = [sites.gateway(Site::A), sites.gateway(Site::B)];
    assert_ping(lab, Node::HostA, HOST_B4, 2, &gateways);
    let remote = Site::B.wan6().to_string();
    let trap = lab
        .ip(Node::SiteA, &["-6", "route", "show", "2001:db8:0:2::/64"])
        .unwrap();
    assert!(trap.contains("dev v6g-ab"), "the trap is not set: {trap}");
    let lan_route = format!("{} dev v6g-ab", addr::LAN_B4);
    let cases: [(&str, String, &[&str]); 5] = [
        (
            // The kernel takes the device's routes with it; both come back.
            "set the tunnel device down",
            "ip link set v6g-ab down".to_owned(),
            &[
                "sh",
                "-c",
                "ip -o link show v6g-ab; ip route show 203.0.113.0/24",
            ],
        ),
        (
            "delete the LAN route",
            format!("ip route del {lan_route}"),
            &["ip", "route", "show", addr::LAN_B4],
        ),
        (
            "flush the pin table",
            format!("ip -6 route flush table 6464; ip -6 route get {remote}"),
            &["ip", "-6", "route", "show", "table", "6464"],
        ),
        (
            "delete the pin rule",
            format!("ip -6 rule del priority 100; ip -6 route get {remote}"),
            &["ip", "-6", "rule", "show"],
        ),
        (
            "set ip_forward=0",
            "sysctl -qw net.ipv4.ip_forward=0".to_owned(),
            &["sysctl", "-n", "net.ipv4.ip_forward"],
        ),
    ];
    for (what, command, probe) in cases {
        let healthy = lab.exec_ok(Node::SiteA, probe).unwrap();
        let done = Instant::now();
        let output = lab.exec(Node::SiteA, &["sh", "-c", &command]);
        let lookup = text(&output);
        if command.contains("route get") {
            // Looked up right after the deletion, before any repair: the loop guard drops
            // (the kernel answers a lookup that hits a blackhole with EINVAL) or the pin
            // is already back; never into the tunnel.
            assert!(
                !lookup.contains("v6g-ab")
                    && (lookup.contains("Invalid argument") || lookup.contains("dev wan0")),
                "{what}: remote routed into the tunnel: {lookup}"
            );
        }
        let restored = wait_until_ms(Duration::from_secs(1), || {
            lab.exec_ok(Node::SiteA, probe)
                .is_ok_and(|now| now == healthy)
        });
        let took = done.elapsed();
        eprintln!("{what}: restored after {} ms", took.as_millis());
        assert!(
            restored,
            "{what}: not restored within 1 s (now {:?}, was {healthy:?}):\n{}",
            lab.exec_ok(Node::SiteA, probe),
            gateways[0].log()
        );
        assert_ping(lab, Node::HostA, HOST_B4, 2, &gateways);
    }
    let log = gateways[0].log();
    assert!(log.contains("restored route 203.0.113.0/24"), "{log}");
    assert!(
        log.contains("restored sysctl net/ipv4/ip_forward = 1"),
        "{log}"
    );
    sites.stop();
}

/// Polls every 20 ms, at most `timeout`.
fn wait_until_ms(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn planted_files_are_refused_and_left_as_they_are() {
    let lab = common::lab(LabOptions::default());
    let before = HostState::capture(&lab, Node::SiteA);
    let config = lab.site_config(Site::A);
    let path = write_config(&lab, "planted", &config);
    let journal = journal_of(&config);
    let aside = config.control_socket.with_extension("journal-new");
    let refused = |what: &str, expect: &str| {
        let (out, _) = run_to_exit(&lab, Node::SiteA, &path);
        let all = text(&out);
        assert!(!out.status.success(), "{what}: started anyway:\n{all}");
        assert!(
            all.contains(expect),
            "{what}: expected {expect:?} in:\n{all}"
        );
        let after = HostState::capture(&lab, Node::SiteA);
        assert!(before == after, "{what}:\n{}", before.differences(&after));
    };

    // A journal of another user that names a sysctl root must never write.
    fs::write(
        &journal,
        "v6gate journal 1\noriginal\tkernel/core_pattern\t|/tmp/x\n",
    )
    .unwrap();
    std::os::unix::fs::chown(&journal, Some(65534), Some(65534)).unwrap();
    refused("journal owned by another user", "owned by uid 65534");
    assert!(journal.exists());
    fs::remove_file(&journal).unwrap();

    let target = lab.dir().join("precious");
    fs::write(&target, "precious").unwrap();
    fs::set_permissions(&target, fs::Permissions::from_mode(0o600)).unwrap();
    symlink(&target, &aside).unwrap();
    refused("symlinked journal-new", "is a symlink");
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
    assert!(
        fs::symlink_metadata(&aside)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    fs::remove_file(&aside).unwrap();

    fs::write(&config.control_socket, "not a socket").unwrap();
    refused("control_socket names a regular file", "is not a socket");
    assert_eq!(
        fs::read_to_string(&config.control_socket).unwrap(),
        "not a socket"
    );
    fs::remove_file(&config.control_socket).unwrap();
}

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn an_oversized_control_request_gets_an_error_and_memory_stays_bounded() {
    let lab = common::lab(LabOptions::default());
    let gw_a = start_gateway(&lab, Site::A, &lab.site_config(Site::A));
    let rss_before = rss_kib(gw_a.pid());
    let mut stream = UnixStream::connect(gw_a.control_socket()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = thread::spawn(move || {
        // One megabyte and no newline; the daemon may close before taking all of it.
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..16 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    sender.join().unwrap();
    let rss_after = rss_kib(gw_a.pid());
    eprintln!("RSS before {rss_before} KiB, after a 1 MB request {rss_after} KiB");
    assert!(reply.contains("\"result\":\"error\""), "{reply:?}");
    assert!(reply.contains("longer than 65536 bytes"), "{reply:?}");
    assert!(
        rss_after < rss_before + 1024,
        "{rss_before} -> {rss_after} KiB"
    );
    // Still answering.
    gw_a.status().unwrap();
    gw_a.stop().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn reload_changes_one_tunnels_routes_in_place_while_the_other_carries_on() {
    let Dual { lab, a, b, .. } = dual(false);
    let gw_b = start_gateway(&lab, Site::B, &b);
    let gw_a = start_gateway(&lab, Site::A, &a);
    assert_ping(&lab, Node::HostA, HOST_B4, 2, &[&gw_a, &gw_b]);
    assert_ping(&lab, Node::HostA, HOST_B6, 2, &[&gw_a, &gw_b]);
    let ifindex = |name: &str| {
        lab.exec_ok(
            Node::SiteA,
            &["cat", &format!("/sys/class/net/{name}/ifindex")],
        )
        .unwrap()
    };
    let (ab, cd) = (ifindex("v6g-ab"), ifindex("v6g-cd"));

    let mut changed = a.clone();
    changed.tunnels[0].routes.push("198.18.200.0/24".to_owned());
    gw_a.rewrite_config(&changed).unwrap();
    let (reload, changed_ping, other_ping) = thread::scope(|s| {
        let other = s.spawn(|| fast_ping(&lab, Node::HostA, HOST_B6, 300));
        let this = s.spawn(|| fast_ping(&lab, Node::HostA, HOST_B4, 300));
        thread::sleep(Duration::from_millis(1000));
        let reload = Command::new(BIN)
            .args(["reload", "--socket"])
            .arg(gw_a.control_socket())
            .output()
            .unwrap();
        (reload, this.join().unwrap(), other.join().unwrap())
    });
    let summary = text(&reload);
    assert!(reload.status.success(), "{summary}");
    eprintln!(
        "during reload, 10 ms pings: changed tunnel {}/{}, other tunnel {}/{}",
        changed_ping.1, changed_ping.0, other_ping.1, other_ping.0
    );
    assert!(
        summary.contains("tunnel ab: changed in place: +route 198.18.200.0/24"),
        "{summary}"
    );
    assert!(!summary.contains("tunnel cd"), "{summary}");
    assert!(
        other_ping.0 >= 290 && other_ping.1 == other_ping.0,
        "{}",
        other_ping.2
    );
    assert_eq!(
        ifindex("v6g-ab"),
        ab,
        "the changed tunnel's device was re-created"
    );
    assert_eq!(ifindex("v6g-cd"), cd);
    let routes = lab
        .ip(Node::SiteA, &["route", "show", "198.18.200.0/24"])
        .unwrap();
    assert!(routes.contains("dev v6g-ab"), "{routes}");
    assert_ping(&lab, Node::HostA, HOST_B4, 2, &[&gw_a, &gw_b]);
    gw_a.stop().unwrap_or_else(|e| panic!("{e}"));
    gw_b.stop().unwrap_or_else(|e| panic!("{e}"));
}
