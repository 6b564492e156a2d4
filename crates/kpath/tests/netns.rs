//! Two sites in network namespaces joined by one veth pair, the underlay, whose ends carry
//! the kernel path (attached by `v6gate-kpath` through the loader): ping and TCP cross, TCP
//! super-packets cross the underlay whole, and traffic moves to the other path on one map
//! update. Everything is named per test and removed by a guard, even when a step fails.
//!
//! Needs root, `ip`, `ping` and `iperf3`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One site's kernel path: the loader process, its input and output.
struct Site {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Site {
    fn command(&mut self, line: &str) -> String {
        writeln!(self.input, "{line}").expect("kernel path process is alive");
        self.input.flush().unwrap();
        let mut reply = String::new();
        self.output.read_line(&mut reply).unwrap();
        reply.trim().to_owned()
    }

    fn counter(&mut self, name: &str) -> u64 {
        let line = self.command("counters");
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    }
}

/// The two namespaces and everything in them; dropping it kills the processes it started
/// (by their pids) and deletes the namespaces, which takes the devices, routes and programs.
struct Lab {
    a: String,
    b: String,
    dev_a: String,
    dev_b: String,
    sites: Vec<Site>,
    others: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for site in &mut self.sites {
            let _ = site.child.kill();
            let _ = site.child.wait();
        }
        for child in &mut self.others {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.a, &self.b] {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

impl Lab {
    fn new() -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id() % 100_000);
        let lab = Self {
            a: format!("v6gk-{id}-a"),
            b: format!("v6gk-{id}-b"),
            dev_a: format!("kp{id}a"),
            dev_b: format!("kp{id}b"),
            sites: Vec::new(),
            others: Vec::new(),
        };
        for ns in [&lab.a, &lab.b] {
            must(&["ip", "netns", "add", ns]);
        }
        must(&[
            "ip", "-n", &lab.a, "link", "add", &lab.dev_a, "type", "veth", "peer", "name",
            &lab.dev_b, "netns", &lab.b,
        ]);
        for (ns, dev, v6, v4, lan) in [
            (
                &lab.a,
                &lab.dev_a,
                "2001:db8:ff::1/64",
                "198.18.0.1/24",
                "198.51.100.1/32",
            ),
            (
                &lab.b,
                &lab.dev_b,
                "2001:db8:ff::2/64",
                "198.18.0.2/24",
                "203.0.113.1/32",
            ),
        ] {
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            // Decapsulated packets arrive on the underlay device from addresses routed
            // elsewhere.
            for key in ["all", "default", dev.as_str()] {
                must(&[
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{key}.rp_filter=0"),
                ]);
            }
            must(&["ip", "-n", ns, "addr", "add", v6, "dev", dev, "nodad"]);
            must(&["ip", "-n", ns, "addr", "add", v4, "dev", dev]);
            must(&["ip", "-n", ns, "addr", "add", lan, "dev", "lo"]);
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        lab
    }

    /// Inner routes as the daemon will install them: through the underlay next hop, with
    /// the tunnel's MTU so that the kernel sends frag-needed for DF packets itself.
    fn routes(&self, via_a: &[&str], via_b: &[&str]) {
        for (ns, dev, dst, src, via) in [
            (
                &self.a,
                &self.dev_a,
                "203.0.113.0/24",
                "198.51.100.1",
                via_a,
            ),
            (
                &self.b,
                &self.dev_b,
                "198.51.100.0/24",
                "203.0.113.1",
                via_b,
            ),
        ] {
            let mut args = vec!["ip", "-n", ns, "route", "replace", dst, "via"];
            args.extend_from_slice(via);
            args.extend_from_slice(&["dev", dev, "src", src]);
            let mtu = if via[0] == "inet6" { "1460" } else { "1480" };
            args.extend_from_slice(&["mtu", mtu]);
            must(&args);
        }
    }

    fn attach(&mut self, a_paths: &[&str], b_paths: &[&str]) {
        for (ns, dev, route, paths) in [
            (
                self.a.clone(),
                self.dev_a.clone(),
                "203.0.113.0/24",
                a_paths,
            ),
            (
                self.b.clone(),
                self.dev_b.clone(),
                "198.51.100.0/24",
                b_paths,
            ),
        ] {
            let source = if route.starts_with("203") {
                "203.0.113.0/24"
            } else {
                "198.51.100.0/24"
            };
            let peer_lan = if source.starts_with("203") {
                "203.0.113.0/24"
            } else {
                "198.51.100.0/24"
            };
            let mut args = vec![
                "netns".to_owned(),
                "exec".to_owned(),
                ns,
                env!("CARGO_BIN_EXE_v6gate-kpath").to_owned(),
                "--device".to_owned(),
                dev,
                "--route".to_owned(),
                route.to_owned(),
                "--source".to_owned(),
                peer_lan.to_owned(),
            ];
            for p in paths {
                args.extend(["--path".to_owned(), (*p).to_owned()]);
            }
            let mut child = Command::new("ip")
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn v6gate-kpath");
            let input = child.stdin.take().unwrap();
            let mut output = BufReader::new(child.stdout.take().unwrap());
            let mut first = String::new();
            output.read_line(&mut first).unwrap();
            self.sites.push(Site {
                child,
                input,
                output,
            });
            assert!(first.starts_with("attached"), "loader said {first:?}");
        }
    }

    fn ping(&self, count: &str) -> bool {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.a,
            "ping",
            "-q",
            "-c",
            count,
            "-i",
            "0.2",
            "-W",
            "2",
            "-I",
            "198.51.100.1",
            "203.0.113.1",
        ])
        .status
        .success()
    }

    /// Bytes a bounded iperf3 TCP transfer moved from a to b.
    fn tcp(&mut self) -> u64 {
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.b,
                "iperf3",
                "-s",
                "-1",
                "-B",
                "203.0.113.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server");
        self.others.push(server);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = run(&[
                "ip",
                "netns",
                "exec",
                &self.a,
                "timeout",
                "15",
                "iperf3",
                "-c",
                "203.0.113.1",
                "-B",
                "198.51.100.1",
                "-t",
                "1",
                "-J",
            ]);
            let text = String::from_utf8_lossy(&out.stdout);
            // The server may not listen yet: iperf3 then reports the error in its JSON.
            if out.status.success()
                && let Some(bytes) = received_bytes(&text)
            {
                return bytes;
            }
            assert!(
                Instant::now() < deadline,
                "iperf3 failed: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `end.sum_received.bytes` of iperf3's JSON, read without a JSON parser.
fn received_bytes(json: &str) -> Option<u64> {
    let rest = &json[json.find("\"sum_received\"")?..];
    let bytes = rest.find("\"bytes\"")? + "\"bytes\"".len();
    rest[bytes..]
        .trim_start_matches([':', ' ', '\t'])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

fn can_run() -> bool {
    let tools = ["ip", "ping", "iperf3"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok());
    let root = run(&["id", "-u"]).stdout.starts_with(b"0");
    if !(tools && root) {
        eprintln!("skipped: needs root, ip, ping and iperf3");
    }
    tools && root
}

#[test]
fn ipip6_over_ipv6_carries_ping_and_tcp_super_packets_and_fails_over() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new();
    lab.routes(&["inet6", "2001:db8:ff::2"], &["inet6", "2001:db8:ff::1"]);
    lab.attach(
        &["2001:db8:ff::1,2001:db8:ff::2", "198.18.0.1,198.18.0.2"],
        &["2001:db8:ff::2,2001:db8:ff::1", "198.18.0.2,198.18.0.1"],
    );
    assert!(lab.ping("3"), "ping across the kernel path");
    let bytes = lab.tcp();
    assert!(bytes > 1_000_000, "TCP moved {bytes} bytes");

    let [a, b] = &mut lab.sites[..] else {
        unreachable!()
    };
    let (gso_tx, gso_rx) = (a.counter("gso_tx"), b.counter("gso_rx"));
    assert!(gso_tx > 0, "super-packets encapsulated whole");
    assert!(gso_rx > 0, "and decapsulated whole on the other side");
    assert_eq!(a.counter("tx_packets"), b.counter("rx_packets"));
    assert_eq!(a.counter("dropped") + b.counter("dropped"), 0);
    assert_eq!(a.counter("adjust_failed") + b.counter("adjust_failed"), 0);

    // Failover: site a now sends over the IPv4 path, b still answers over IPv6.
    assert_eq!(a.command("active 1"), "active 1");
    let before = b.counter("rx_packets");
    assert!(lab.ping("3"), "ping after switching to the IPv4 path");
    let [_, b] = &mut lab.sites[..] else {
        unreachable!()
    };
    assert!(b.counter("rx_packets") >= before + 3);
}

#[test]
fn ipip_over_an_ipv4_path_carries_tcp() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new();
    lab.routes(&["198.18.0.2"], &["198.18.0.1"]);
    lab.attach(&["198.18.0.1,198.18.0.2"], &["198.18.0.2,198.18.0.1"]);
    assert!(lab.ping("3"), "ping across an RFC 2003 path");
    let bytes = lab.tcp();
    assert!(bytes > 1_000_000, "TCP moved {bytes} bytes");
    let [a, b] = &mut lab.sites[..] else {
        unreachable!()
    };
    assert!(a.counter("gso_tx") > 0 && b.counter("gso_rx") > 0);
    assert_eq!(a.counter("dropped") + b.counter("dropped"), 0);
}
