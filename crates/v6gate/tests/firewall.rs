//! The firewall end to end: the ruleset rendered from a config is installed with the real
//! `nft` on a gateway in network namespaces (with its policy route and rule set up by `ip`),
//! then probed from outside with nmap and real connections.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use control::Config;
use control::firewall::routing;
use control::firewall::ruleset::{FAMILY, TABLE, ruleset};
use v6gate_lab::firewall::{FirewallLab, Role, addr, dev};

/// The S2 gateway of the lab, plus an IPsec peer for the underlay rules.
fn config_text() -> String {
    format!(
        r#"
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
        "#,
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

fn config() -> Config {
    Config::from_toml_str(&config_text(), "firewall-lab.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// `v6gate plan` in the gateway's namespace.
fn plan(lab: &FirewallLab) -> String {
    let path = lab.dir().join("gateway.toml");
    std::fs::write(&path, config_text()).unwrap();
    let bin = env!("CARGO_BIN_EXE_v6gate");
    lab.exec_ok(
        Role::Gateway,
        &[bin, "plan", "--config", path.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("{e}"))
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

fn policy_routing(lab: &FirewallLab, config: &Config, add: bool) {
    let verb = if add { "add" } else { "del" };
    for r in routing::routes(config) {
        let mut args = vec!["route".to_owned(), verb.to_owned(), r.dst.to_string()];
        if let Some(via) = r.via {
            args.extend(["via".into(), via.to_string()]);
        }
        if let Some(d) = &r.device {
            args.extend(["dev".into(), d.clone()]);
        }
        args.extend([
            "table".into(),
            r.table.to_string(),
            "metric".into(),
            r.metric.to_string(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.ip(Role::Gateway, &args).unwrap();
    }
    for r in routing::rules(config) {
        let mut args = vec![
            if r.ipv4 { "-4" } else { "-6" }.to_owned(),
            "rule".into(),
            verb.into(),
            "priority".into(),
            r.priority.to_string(),
        ];
        if let Some(from) = r.from {
            args.extend(["from".into(), from.to_string()]);
        }
        if let Some(iif) = &r.iif {
            args.extend(["iif".into(), iif.clone()]);
        }
        if let Some(mark) = r.fwmark {
            args.extend(["fwmark".into(), mark.to_string()]);
        }
        args.extend(["lookup".into(), r.table.to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.ip(Role::Gateway, &args).unwrap();
    }
}

const USER_TABLE: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\tcounter comment \"the user's own\"\n\t}\n}\n";

fn user_table(lab: &FirewallLab) -> String {
    lab.exec_ok(Role::Gateway, &["nft", "list", "table", "inet", "filter"])
        .unwrap_or_default()
        .replace(|c: char| c.is_ascii_digit(), "")
}

#[test]
fn gateway_firewall_end_to_end() {
    assert!(v6gate_lab::is_root(), "needs root for network namespaces");
    let config = config();
    let lab = FirewallLab::new().unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();

    // A user's own table, which v6gate must never touch.
    let file = lab.dir().join("user.nft");
    std::fs::write(&file, USER_TABLE).unwrap();
    lab.exec_ok(Role::Gateway, &["nft", "-f", file.to_str().unwrap()])
        .unwrap();
    let user_before = user_table(&lab);
    assert!(user_before.contains("the user's own"), "{user_before}");

    // Before anything is installed, plan shows it all as to be added.
    let before = plan(&lab);
    for line in [
        "# ruleset: not installed; would be:",
        "table inet v6gate {",
        "+ 0.0.0.0/0 via 198.18.1.254 dev ppp0 table 300 metric 10",
        "+ -4 priority 1000 from 198.51.100.5/32 iif br0 lookup 300",
    ] {
        assert!(before.contains(line), "{line:?} not in plan:\n{before}");
    }

    let r = ruleset(&config, |_, _| Some(dev::WAN6.to_owned())).expect("a firewall");
    let (table, content) = (r.table.clone(), r.content.clone());
    let installed = lab
        .on(Role::Gateway, move || {
            sys::nft::replace_table(&table, &content)?;
            // Applying the same ruleset again is a replacement, not a duplicate.
            sys::nft::replace_table(&table, &content)?;
            sys::nft::installed(FAMILY, TABLE)
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("table installed");
    assert_eq!(
        user_table(&lab),
        user_before,
        "the user's table changed on apply"
    );
    policy_routing(&lab, &config, true);
    // Now plan finds all of it in place (the peer's underlay device comes from the host's
    // routes, as the test gave it).
    let after = plan(&lab);
    for line in [
        "# ruleset: installed, unchanged",
        "= 0.0.0.0/0 via 198.18.1.254 dev ppp0 table 300 metric 10",
        "= -4 priority 1000 from 198.51.100.5/32 iif br0 lookup 300",
    ] {
        assert!(after.contains(line), "{line:?} not in plan:\n{after}");
    }

    let _gw = Services::start(
        &lab,
        Role::Gateway,
        &[any(22), any(80), any(443)],
        &[any(500), any(4500)],
    );
    let _srv = Services::start(
        &lab,
        Role::Server,
        &[any(22), any(80), any(443)],
        &[any(443), any(444)],
    );
    let _cli = Services::start(
        &lab,
        Role::Client,
        &[any(22), any(80), any(443)],
        &[any(443), any(444)],
    );
    let far_side = Services::start(
        &lab,
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
        nmap(&lab, addr::GW_WAN6, "22,80,443", false),
        only_ssh,
        "gateway over IPv6"
    );
    assert_eq!(
        nmap(&lab, addr::GW_MAP4, "22,80,443", false),
        only_ssh,
        "gateway over map0"
    );
    assert_eq!(
        nmap(&lab, addr::GW_PPP4, "22,80,8443", false),
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
        nmap(&lab, addr::SERVER6, "T:22,80,443,U:443,444", true),
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
        nmap(&lab, addr::CLIENT6, "T:22,80,443,U:443,444", true),
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
        &lab,
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
                &lab,
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
    let ppp = ip(addr::GW_PPP4);
    let map = ip(addr::GW_MAP4);
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

    // The port forward on the PPPoE address reaches the server, and only works because the
    // server's replies leave by table pppoe: the internet drops sources from the wrong link.
    let forward = SocketAddr::new(ip(addr::GW_PPP4), 443);
    let answer = fetch(&lab, Role::Internet, Some(addr::INTERNET4), forward).unwrap();
    assert_eq!(answer, format!("Server {}", addr::INTERNET4));
    policy_routing(&lab, &config, false);
    let without_rule = fetch(&lab, Role::Internet, Some(addr::INTERNET4), forward);
    assert!(
        without_rule.is_err(),
        "replies took the main table and still arrived: {without_rule:?}"
    );
    policy_routing(&lab, &config, true);
    assert!(fetch(&lab, Role::Internet, Some(addr::INTERNET4), forward).is_ok());

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

    // IKE from the configured peer passes; from another address of the same router not.
    for port in [500, 4500] {
        let dst = SocketAddr::new(ip(addr::GW_WAN6), port);
        udp_send(&lab, Role::Internet, addr::PEER6, dst, b"from the peer");
        udp_send(
            &lab,
            Role::Internet,
            addr::STRANGER6,
            dst,
            b"from a stranger",
        );
    }
    thread::sleep(Duration::from_millis(300));
    let ike: Vec<IpAddr> = _gw
        .seen()
        .iter()
        .filter(|(p, _)| p.ends_with("udp"))
        .map(|(_, a)| a.ip())
        .collect();
    assert!(
        ike.contains(&ip(addr::PEER6)),
        "peer's IKE dropped: {ike:?}"
    );
    assert!(
        !ike.contains(&ip(addr::STRANGER6)),
        "stranger's IKE accepted: {ike:?}"
    );

    // Someone else's change to our table is seen as drift; the user's table survives delete.
    let drift = lab
        .on(Role::Gateway, move || {
            let now = sys::nft::installed(FAMILY, TABLE)?;
            let unchanged = now.as_ref() == Some(&installed);
            std::process::Command::new("nft")
                .args(["add", "rule", "inet", TABLE, "input", "accept"])
                .status()
                .expect("nft");
            let changed = sys::nft::installed(FAMILY, TABLE)?;
            sys::nft::delete_table(FAMILY, TABLE)?;
            sys::nft::delete_table(FAMILY, TABLE)?;
            let gone = sys::nft::installed(FAMILY, TABLE)?;
            Ok::<_, sys::nft::NftError>((
                unchanged,
                changed.as_ref() != Some(&installed),
                gone.is_none(),
            ))
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        drift,
        (true, true, true),
        "(read back unchanged, drift seen, deleted)"
    );
    assert_eq!(
        user_table(&lab),
        user_before,
        "the user's table changed on delete"
    );
    eprintln!("firewall end to end: {} ms", started.elapsed().as_millis());
}
