//! The firewall end to end, driven through the daemon: `v6gate run` in the gateway's network
//! namespace installs the ruleset, policy route and rule of the config, which are then probed
//! from outside with nmap and real connections, reloaded, confirmed or reverted, broken behind
//! the daemon's back, crashed and stopped.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use control::Config;
use control::firewall::ruleset::{FAMILY, TABLE};
use sys::nft::Installed;
use v6gate_lab::firewall::{FirewallDaemon, FirewallLab, Role, addr, dev};

const BIN: &str = env!("CARGO_BIN_EXE_v6gate");

/// A sysctl the config sets and the stop restores (the lab's namespaces start with 1).
const REDIRECTS: &str = "net.ipv4.conf.all.send_redirects";

/// The S2 gateway of the lab, plus an IPsec peer for the underlay rules.
fn config_text(socket: &Path) -> String {
    format!(
        r#"
        [gateway]
        control_socket = "{socket}"

        [[tunnel]]
        name = "peer"
        mode = "ipsec"
        local = "{gw}"
        remote = "{peer}"
        local_subnets = ["198.51.100.0/24"]
        routes = ["203.0.113.128/25"]
        [tunnel.ike]
        psk = "lab-only-key"

        [firewall]
        input = "drop"
        forward = "drop"
        management = ["tcp/22"]

        [[zone]]
        name = "wan"
        devices = ["{wan6}", "{map}"]
        masquerade = true
        [[zone]]
        name = "wan_pppoe"
        devices = ["{ppp}"]
        masquerade = true
        mss_clamp = true
        [[zone]]
        name = "lan"
        devices = ["{lan}"]
        tunnels = ["peer"]
        input = "accept"
        forward_to = ["wan", "wan_pppoe"]

        [[allow]]
        name = "server-https"
        from = "wan"
        to = "lan"
        family = "ipv6"
        proto = ["tcp", "udp"]
        dest = ["{server6}/128"]
        ports = "443"

        [[port_forward]]
        name = "https-v4"
        from = "wan_pppoe"
        proto = ["tcp"]
        port = 443
        to = "{server4}"
        to_port = 443

        [[table]]
        name = "pppoe"
        id = 300
        routes = [{{ dst = "0.0.0.0/0", via = "{inet_ppp}", device = "{ppp}", metric = 10 }}]

        [[rule]]
        name = "server-via-pppoe"
        from = "{server4}/32"
        iif = "{lan}"
        table = "pppoe"

        # S3's filter-based routing: NAT-T leaves by the PPPoE uplink, through the firewall's mark.
        [[rule]]
        name = "nat-t-via-pppoe"
        to = "0.0.0.0/0"
        proto = ["udp"]
        ports = "4500"
        table = "pppoe"

        [sysctl]
        "{REDIRECTS}" = "0"
        "#,
        socket = socket.display(),
        gw = addr::GW_WAN6,
        peer = addr::PEER6,
        wan6 = dev::WAN6,
        map = dev::MAP,
        ppp = dev::PPP,
        lan = dev::LAN,
        server6 = addr::SERVER6,
        server4 = addr::SERVER4,
        inet_ppp = addr::INET_PPP4,
    )
}

/// The config without the policy rule the port forward's replies need.
fn without_server_rule(text: &str) -> String {
    let start = text
        .find("[[rule]]\n        name = \"server-via-pppoe\"")
        .expect("the rule");
    let end = start + text[start..].find("table = \"pppoe\"").expect("its table") + 16;
    format!("{}{}", &text[..start], &text[end..])
}

/// A lab with its config written and a daemon ready to start on it.
struct Gateway {
    lab: FirewallLab,
    config: PathBuf,
    socket: PathBuf,
}

impl Gateway {
    fn new() -> Self {
        assert!(v6gate_lab::is_root(), "needs root for network namespaces");
        let lab = FirewallLab::new().unwrap_or_else(|e| panic!("{e}"));
        let socket = lab.dir().join("gw.sock");
        let config = lab.dir().join("gateway.toml");
        let gateway = Self {
            lab,
            config,
            socket,
        };
        gateway.write(&gateway.text());
        // Parses as the daemon will read it.
        Config::from_toml_str(&gateway.text(), "gateway.toml").unwrap_or_else(|e| panic!("{e}"));
        gateway
    }

    fn text(&self) -> String {
        config_text(&self.socket)
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    fn start(&self) -> FirewallDaemon {
        self.lab
            .start_daemon(BIN.as_ref(), &self.config, &self.socket)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `v6gate ARGS --socket S` in the gateway: (success, stdout + stderr).
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let socket = self.socket.to_string_lossy();
        let mut full = vec![BIN];
        full.extend_from_slice(args);
        full.extend(["--socket", &socket]);
        let out = self.lab.exec(Role::Gateway, &full).unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `v6gate plan` of the config file.
    fn plan(&self) -> String {
        let path = self.config.to_string_lossy();
        self.lab
            .exec_ok(Role::Gateway, &[BIN, "plan", "--config", &path])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Our table as the kernel holds it now.
    fn installed(&self) -> Option<Installed> {
        self.lab
            .on(Role::Gateway, || sys::nft::installed(FAMILY, TABLE))
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Polls (every 20 ms, at most `limit`) until `check` holds; how long it took.
    fn until(&self, limit: Duration, check: impl Fn(&Self) -> bool) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if check(self) {
                return Some(start.elapsed());
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn sysctl(&self, key: &str) -> String {
        self.lab
            .exec_ok(Role::Gateway, &["sysctl", "-n", key])
            .unwrap()
            .trim()
            .to_owned()
    }

    /// The IPv4 rules at the policy rule's priority.
    fn policy_rules(&self) -> Vec<String> {
        self.lab
            .ip(Role::Gateway, &["-4", "rule", "show", "priority", "1000"])
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn pppoe_routes(&self) -> String {
        let out = self
            .lab
            .exec(
                Role::Gateway,
                &["ip", "-4", "route", "show", "table", "300"],
            )
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The user's own table, v6gate must never touch it.
    fn add_user_table(&self) -> String {
        let file = self.lab.dir().join("user.nft");
        std::fs::write(&file, USER_TABLE).unwrap();
        self.lab
            .exec_ok(Role::Gateway, &["nft", "-f", file.to_str().unwrap()])
            .unwrap();
        let table = user_table(&self.lab);
        assert!(table.contains("the user's own"), "{table}");
        table
    }
}

/// A named counter of the daemon's status: (packets, bytes).
fn counter(daemon: &FirewallDaemon, prefix: &str) -> u64 {
    let status = daemon.status().unwrap_or_else(|e| panic!("{e}"));
    status["firewall"]["counters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .map(|c| c["packets"].as_u64().unwrap_or(0))
        .sum()
}

/// TCP listeners and UDP echoes in one namespace; each TCP connection is answered with
/// "ROLE PEER" and closed, each datagram echoed. Every peer seen is recorded.
struct Services {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<(String, SocketAddr)>>>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Services {
    fn start(lab: &FirewallLab, role: Role, tcp: &[SocketAddr], udp: &[SocketAddr]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns = lab.namespace(role).to_owned();
        for (bind, is_tcp) in tcp
            .iter()
            .map(|a| (*a, true))
            .chain(udp.iter().map(|a| (*a, false)))
        {
            let (stop, seen, ns, ready) =
                (stop.clone(), seen.clone(), ns.clone(), ready_tx.clone());
            threads.push(thread::spawn(move || {
                v6gate_lab::enter_netns(&ns).expect("enter namespace");
                // Bounded even if the test forgets to stop it.
                let deadline = Instant::now() + Duration::from_secs(120);
                let tag = |peer: SocketAddr| {
                    (
                        format!("{}/{}", bind.port(), if is_tcp { "tcp" } else { "udp" }),
                        peer,
                    )
                };
                if is_tcp {
                    let listener = TcpListener::bind(bind).expect("bind tcp");
                    listener.set_nonblocking(true).unwrap();
                    ready.send(()).unwrap();
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        match listener.accept() {
                            Ok((mut s, peer)) => {
                                seen.lock().unwrap().push(tag(peer));
                                let _ = s.set_nonblocking(false);
                                let _ = writeln!(s, "{role:?} {}", peer.ip().to_canonical());
                            }
                            Err(_) => thread::sleep(Duration::from_millis(5)),
                        }
                    }
                } else {
                    let socket = UdpSocket::bind(bind).expect("bind udp");
                    socket
                        .set_read_timeout(Some(Duration::from_millis(20)))
                        .unwrap();
                    ready.send(()).unwrap();
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        if let Ok((n, peer)) = socket.recv_from(&mut buf) {
                            seen.lock().unwrap().push(tag(peer));
                            let _ = socket.send_to(&buf[..n], peer);
                        }
                    }
                }
            }));
        }
        for _ in 0..threads.len() {
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("services listen");
        }
        Self {
            stop,
            seen,
            threads,
        }
    }

    fn seen(&self) -> Vec<(String, SocketAddr)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn any(port: u16) -> SocketAddr {
    SocketAddr::new("::".parse().unwrap(), port)
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Connects from `role` (from `source` when given) to `dst` and returns the first line the
/// listener answers, or why not.
fn fetch(
    lab: &FirewallLab,
    role: Role,
    source: Option<&str>,
    dst: SocketAddr,
) -> Result<String, String> {
    let source = source.map(ip);
    lab.on(role, move || -> Result<String, String> {
        let domain = socket2::Domain::for_address(dst);
        let socket =
            socket2::Socket::new(domain, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
        if let Some(src) = source {
            socket
                .bind(&SocketAddr::new(src, 0).into())
                .map_err(|e| e.to_string())?;
        }
        socket
            .connect_timeout(&dst.into(), Duration::from_secs(2))
            .map_err(|e| format!("connect {dst}: {e}"))?;
        let mut stream: TcpStream = socket.into();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut text = String::new();
        stream
            .read_to_string(&mut text)
            .map_err(|e| e.to_string())?;
        Ok(text.trim().to_owned())
    })
    .map_err(|e| e.to_string())?
}

fn udp_send(lab: &FirewallLab, role: Role, source: &str, dst: SocketAddr, payload: &'static [u8]) {
    let src = SocketAddr::new(ip(source), 0);
    lab.on(role, move || {
        let socket = UdpSocket::bind(src).expect("bind");
        for _ in 0..3 {
            socket.send_to(payload, dst).expect("send");
        }
    })
    .unwrap();
}

/// `nmap` from the internet; port/proto -> state.
fn nmap(lab: &FirewallLab, target: &str, ports: &str, udp: bool) -> BTreeMap<String, String> {
    let mut args = vec![
        "nmap",
        "-n",
        "-Pn",
        "--max-retries",
        "1",
        "--initial-rtt-timeout",
        "100ms",
        "--max-rtt-timeout",
        "300ms",
        "--host-timeout",
        "30s",
        "-oG",
        "-",
        "-sS",
    ];
    if udp {
        args.push("-sU");
    }
    if target.contains(':') {
        args.push("-6");
    }
    args.extend(["-p", ports, target]);
    let out = lab
        .exec_ok(Role::Internet, &args)
        .unwrap_or_else(|e| panic!("{e}"));
    let line = out
        .lines()
        .find_map(|l| l.split("Ports: ").nth(1))
        .unwrap_or_else(|| panic!("no ports in nmap output:\n{out}"));
    line.split(", ")
        .filter_map(|entry| {
            let fields: Vec<&str> = entry.split('/').collect();
            (fields.len() >= 3)
                .then(|| (format!("{}/{}", fields[0], fields[2]), fields[1].to_owned()))
        })
        .collect()
}

fn states(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
        .collect()
}

const USER_TABLE: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\tcounter comment \"the user's own\"\n\t}\n}\n";

fn user_table(lab: &FirewallLab) -> String {
    lab.exec_ok(Role::Gateway, &["nft", "list", "table", "inet", "filter"])
        .unwrap_or_default()
        .replace(|c: char| c.is_ascii_digit(), "")
}

#[test]
fn gateway_firewall_end_to_end() {
    let gw = Gateway::new();
    let lab = &gw.lab;
    let started = Instant::now();
    let user_before = gw.add_user_table();
    let redirects_before = gw.sysctl(REDIRECTS);
    assert_eq!(redirects_before, "1", "the lab's starting value");

    // Before the daemon runs, plan shows it all as to be added.
    let before = gw.plan();
    for line in [
        "# ruleset: not installed; would be:",
        "table inet v6gate {",
        "+ 0.0.0.0/0 via 198.18.1.254 dev ppp0 table 300 metric 10",
        "+ -4 priority 1000 from 198.51.100.5/32 iif br0 lookup 300",
    ] {
        assert!(before.contains(line), "{line:?} not in plan:\n{before}");
    }

    let daemon = gw.start();
    assert_eq!(
        user_table(lab),
        user_before,
        "the user's table changed at start"
    );
    assert_eq!(gw.sysctl(REDIRECTS), "0");
    // Now plan finds all of it in place, the tunnel's underlay device included.
    let after = gw.plan();
    for line in [
        "# ruleset: installed, unchanged",
        "= 0.0.0.0/0 via 198.18.1.254 dev ppp0 table 300 metric 10",
        "= -4 priority 1000 from 198.51.100.5/32 iif br0 lookup 300",
    ] {
        assert!(after.contains(line), "{line:?} not in plan:\n{after}");
    }

    let _gw_services = Services::start(lab, Role::Gateway, &[any(22), any(80), any(443)], &[]);
    let _srv = Services::start(
        lab,
        Role::Server,
        &[any(22), any(80), any(443)],
        &[any(443), any(444)],
    );
    let _cli = Services::start(
        lab,
        Role::Client,
        &[any(22), any(80), any(443)],
        &[any(443), any(444)],
    );
    let far_side = Services::start(
        lab,
        Role::Internet,
        &[SocketAddr::new(ip(addr::INTERNET4), 80)],
        &[
            SocketAddr::new(ip(addr::INTERNET4), 4500),
            SocketAddr::new(ip(addr::INTERNET4), 4501),
        ],
    );

    // From the internet the gateway shows only the management port, on every uplink.
    let only_ssh = states(&[
        ("22/tcp", "open"),
        ("80/tcp", "filtered"),
        ("443/tcp", "filtered"),
    ]);
    assert_eq!(
        nmap(lab, addr::GW_WAN6, "22,80,443", false),
        only_ssh,
        "gateway over IPv6"
    );
    assert_eq!(
        nmap(lab, addr::GW_MAP4, "22,80,443", false),
        only_ssh,
        "gateway over map0"
    );
    assert_eq!(
        nmap(lab, addr::GW_PPP4, "22,80,8443", false),
        states(&[
            ("22/tcp", "open"),
            ("80/tcp", "filtered"),
            ("8443/tcp", "filtered")
        ]),
        "gateway over PPPoE"
    );

    // The pinhole: 443 over TCP and UDP on the server's GUA and nothing else; the server
    // listens on all of these, so "filtered" is the firewall's doing.
    assert_eq!(
        nmap(lab, addr::SERVER6, "T:22,80,443,U:443,444", true),
        states(&[
            ("22/tcp", "filtered"),
            ("80/tcp", "filtered"),
            ("443/tcp", "open"),
            ("443/udp", "open"),
            ("444/udp", "open|filtered"),
        ]),
        "server"
    );
    // Another LAN host listening on the same ports shows nothing.
    assert_eq!(
        nmap(lab, addr::CLIENT6, "T:22,80,443,U:443,444", true),
        states(&[
            ("22/tcp", "filtered"),
            ("80/tcp", "filtered"),
            ("443/tcp", "filtered"),
            ("443/udp", "open|filtered"),
            ("444/udp", "open|filtered"),
        ]),
        "client"
    );

    // IPv4 from the LAN leaves masqueraded: the far side sees the uplink's address.
    let answer = fetch(
        lab,
        Role::Client,
        None,
        SocketAddr::new(ip(addr::INTERNET4), 80),
    )
    .unwrap();
    assert_eq!(answer, format!("Internet {}", addr::GW_MAP4));
    assert!(
        far_side
            .seen()
            .iter()
            .all(|(_, peer)| peer.ip() == ip(addr::GW_MAP4))
    );

    // Policy routing by protocol and port: UDP 4500, the gateway's own and the LAN's, leaves
    // by the PPPoE uplink (masqueraded there); UDP 4501 by the main table's uplink.
    for role in [Role::Gateway, Role::Client] {
        for port in [4500, 4501] {
            udp_send(
                lab,
                role,
                "0.0.0.0",
                SocketAddr::new(ip(addr::INTERNET4), port),
                b"nat-t",
            );
        }
    }
    thread::sleep(Duration::from_millis(300));
    let mut by_port: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for (port, peer) in far_side.seen() {
        if port.ends_with("udp") {
            by_port.entry(port).or_default().push(peer.ip());
        }
    }
    let (ppp, map) = (ip(addr::GW_PPP4), ip(addr::GW_MAP4));
    assert_eq!(
        by_port.get("4500/udp").map(Vec::len),
        Some(6),
        "{by_port:?}"
    );
    assert!(by_port["4500/udp"].iter().all(|a| *a == ppp), "{by_port:?}");
    assert_eq!(
        by_port.get("4501/udp").map(Vec::len),
        Some(6),
        "{by_port:?}"
    );
    assert!(by_port["4501/udp"].iter().all(|a| *a == map), "{by_port:?}");

    // The port forward on the PPPoE address reaches the server, and works only because the
    // server's replies leave by table pppoe while the main default route points to map0: the
    // internet drops sources from the wrong link. A reload without the rule shows it.
    let forward = SocketAddr::new(ip(addr::GW_PPP4), 443);
    let answer = fetch(lab, Role::Internet, Some(addr::INTERNET4), forward).unwrap();
    assert_eq!(answer, format!("Server {}", addr::INTERNET4));
    gw.write(&without_server_rule(&gw.text()));
    let (ok, summary) = gw.cli(&["reload"]);
    assert!(ok, "{summary}");
    assert!(
        summary.contains("-ipv4 rule priority 1000 from 198.51.100.5/32 iif br0 table 300"),
        "{summary}"
    );
    let without_rule = fetch(lab, Role::Internet, Some(addr::INTERNET4), forward);
    assert!(
        without_rule.is_err(),
        "replies took the main table and still arrived: {without_rule:?}"
    );
    gw.write(&gw.text());
    let (ok, summary) = gw.cli(&["reload"]);
    assert!(
        ok && summary.contains("+ipv4 rule priority 1000"),
        "{summary}"
    );
    assert!(fetch(lab, Role::Internet, Some(addr::INTERNET4), forward).is_ok());
    assert_eq!(
        user_table(lab),
        user_before,
        "the user's table changed on reload"
    );

    // A Packet Too Big from the router beyond the gateway reaches the LAN host, which then
    // knows the path MTU.
    let _ = lab.exec(
        Role::Client,
        &[
            "ping",
            "-6",
            "-n",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-M",
            "do",
            "-s",
            "1400",
            addr::FAR6,
        ],
    );
    let route = lab
        .ip(Role::Client, &["-6", "route", "get", addr::FAR6])
        .unwrap();
    assert!(route.contains("mtu 1280"), "no PMTU learnt: {route}");

    // IKE from the configured peer passes the tunnel's own rule; from another address of the
    // same router it meets the input policy.
    let (tunnel_before, policy_before) = (
        counter(&daemon, "tunnel peer"),
        counter(&daemon, "input policy"),
    );
    for port in [500, 4500] {
        let dst = SocketAddr::new(ip(addr::GW_WAN6), port);
        udp_send(lab, Role::Internet, addr::PEER6, dst, b"from the peer");
    }
    let tunnel_after = counter(&daemon, "tunnel peer");
    assert!(
        tunnel_after >= tunnel_before + 6,
        "peer's IKE: {tunnel_before} -> {tunnel_after}"
    );
    for port in [500, 4500] {
        let dst = SocketAddr::new(ip(addr::GW_WAN6), port);
        udp_send(
            lab,
            Role::Internet,
            addr::STRANGER6,
            dst,
            b"from a stranger",
        );
    }
    assert_eq!(
        counter(&daemon, "tunnel peer"),
        tunnel_after,
        "a stranger's IKE was accepted"
    );
    assert!(counter(&daemon, "input policy") >= policy_before + 6);

    // Status names the zones and counts what passed the pinhole, the port forward and the
    // zone forwards.
    let status = daemon.status().unwrap();
    let firewall = &status["firewall"];
    assert_eq!(firewall["table"], "installed", "{firewall}");
    assert_eq!(firewall["zones"][2]["name"], "lan");
    assert!(
        firewall["zones"][2]["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "v6g-peer"),
        "{firewall}"
    );
    for name in [
        "allow server-https",
        "port_forward https-v4",
        "forward lan to wan",
        "forward policy",
    ] {
        assert!(
            counter(&daemon, name) > 0,
            "{name} never counted: {firewall}"
        );
    }
    assert!(
        firewall["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "ipv4 rule priority 1000 from 198.51.100.5/32 iif br0 table 300"),
        "{firewall}"
    );
    let (_, text) = gw.cli(&["status"]);
    assert!(
        text.contains("firewall: table inet v6gate installed; input drop, forward drop"),
        "{text}"
    );

    // What someone else removes or adds behind the daemon's back is put back.
    let whole = gw.installed().expect("installed");
    lab.exec_ok(
        Role::Gateway,
        &["nft", "add", "rule", "inet", TABLE, "input", "accept"],
    )
    .unwrap();
    let added = gw.until(Duration::from_secs(3), |g| {
        g.installed().as_ref() == Some(&whole)
    });
    assert!(added.is_some(), "an added rule stayed:\n{}", daemon.log());
    lab.exec_ok(Role::Gateway, &["nft", "delete", "table", "inet", TABLE])
        .unwrap();
    let deleted = gw.until(Duration::from_secs(3), |g| {
        g.installed().as_ref() == Some(&whole)
    });
    assert!(deleted.is_some(), "a deleted table stayed gone");
    lab.ip(Role::Gateway, &["-4", "rule", "del", "priority", "1000"])
        .unwrap();
    let rule = gw.until(Duration::from_secs(3), |g| g.policy_rules().len() == 1);
    assert!(rule.is_some(), "a deleted rule stayed gone");
    eprintln!(
        "repaired: an added nft rule in {added:?}, a deleted table in {deleted:?}, a deleted \
         ip rule in {rule:?}"
    );

    // A clean stop takes it all off and restores the sysctl; the user's table stays.
    daemon.stop().unwrap_or_else(|e| panic!("{e}"));
    assert!(gw.installed().is_none(), "table left after stop");
    assert_eq!(gw.pppoe_routes(), "", "routes left after stop");
    assert!(gw.policy_rules().is_empty(), "{:?}", gw.policy_rules());
    assert_eq!(gw.sysctl(REDIRECTS), redirects_before);
    assert_eq!(
        user_table(lab),
        user_before,
        "the user's table changed at stop"
    );
    eprintln!("firewall end to end: {} ms", started.elapsed().as_millis());
}

#[test]
fn confirm_reverts_in_time_and_a_crash_is_reconciled() {
    const TRIAL: Duration = Duration::from_secs(2);
    let gw = Gateway::new();
    let lab = &gw.lab;
    let user_before = gw.add_user_table();
    let daemon = gw.start();
    let first = gw.installed().expect("installed at start");
    let _ssh = Services::start(lab, Role::Gateway, &[any(22)], &[]);
    let ssh = SocketAddr::new(ip(addr::GW_WAN6), 22);

    // An invalid config changes nothing.
    gw.write(&gw.text().replace("input = \"drop\"", "input = \"maybe\""));
    let (ok, text) = gw.cli(&["reload", "--confirm", "2s"]);
    assert!(!ok && text.contains("input"), "{text}");
    assert_eq!(gw.installed().as_ref(), Some(&first));

    // On trial: applied, named, shown as pending, then reverted without `confirm`.
    let trial = gw.text().replace(
        "management = [\"tcp/22\"]",
        "management = [\"tcp/22\", \"tcp/2222\"]",
    );
    gw.write(&trial);
    let (ok, text) = gw.cli(&["reload", "--confirm", "2s"]);
    let applied = Instant::now();
    assert!(ok, "{text}");
    assert!(text.contains("+input: management tcp/2222"), "{text}");
    let second = gw.installed().expect("installed");
    assert_ne!(second, first);
    let pending = daemon.status().unwrap()["firewall"]["revert_in_secs"].clone();
    assert!(pending.as_u64().is_some_and(|s| s <= 2), "{pending}");
    // The management port stays open while the change waits.
    assert!(fetch(lab, Role::Internet, None, ssh).is_ok());
    let reverted = gw
        .until(TRIAL + Duration::from_secs(3), |g| {
            g.installed().as_ref() == Some(&first)
        })
        .map(|_| applied.elapsed());
    eprintln!("reload --confirm {TRIAL:?} reverted after {reverted:?}");
    let reverted = reverted.unwrap_or_else(|| {
        panic!(
            "never reverted:\n{}\nfirst {}\nnow {}",
            daemon.log(),
            first.fingerprint(),
            gw.installed().unwrap().fingerprint()
        )
    });
    assert!(
        reverted >= TRIAL - Duration::from_millis(200)
            && reverted <= TRIAL + Duration::from_secs(1),
        "reverted after {reverted:?}"
    );
    assert!(daemon.status().unwrap()["firewall"]["revert_in_secs"].is_null());
    assert!(fetch(lab, Role::Internet, None, ssh).is_ok());

    // Confirmed in time, it stays.
    let (ok, text) = gw.cli(&["reload", "--confirm", "2s"]);
    assert!(ok, "{text}");
    let (ok, text) = gw.cli(&["confirm"]);
    assert!(ok && text.contains("confirmed"), "{text}");
    thread::sleep(TRIAL + Duration::from_millis(300));
    assert_eq!(gw.installed().as_ref(), Some(&second));
    let (ok, text) = gw.cli(&["confirm"]);
    assert!(!ok && text.contains("nothing to confirm"), "{text}");

    // A crash leaves everything in place; the next start takes it over without doubling it,
    // and its stop restores the sysctl to what it was before the crashed run.
    let log = daemon.kill().unwrap();
    assert!(!log.contains("stopped;"), "{log}");
    assert_eq!(gw.installed().as_ref(), Some(&second));
    assert_eq!(gw.policy_rules().len(), 1);
    assert_eq!(gw.sysctl(REDIRECTS), "0");
    let daemon = gw.start();
    assert!(
        daemon.log().contains("did not stop cleanly"),
        "{}",
        daemon.log()
    );
    assert_eq!(gw.installed().as_ref(), Some(&second));
    assert_eq!(gw.policy_rules().len(), 1, "{:?}", gw.policy_rules());
    assert_eq!(
        gw.pppoe_routes().lines().count(),
        1,
        "{}",
        gw.pppoe_routes()
    );
    daemon.stop().unwrap_or_else(|e| panic!("{e}"));
    assert!(gw.installed().is_none());
    assert!(gw.policy_rules().is_empty());
    assert_eq!(gw.pppoe_routes(), "");
    assert_eq!(gw.sysctl(REDIRECTS), "1");
    assert_eq!(user_table(lab), user_before, "the user's table changed");
}
