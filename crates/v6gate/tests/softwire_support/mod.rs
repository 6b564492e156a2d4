//! Traffic for the softwire tests, counted where it arrives: a UDP socket and TCP listeners on
//! hostB report the source address and port of everything they receive, so what "the far side
//! sees" is what its sockets got, not what a packet capture kept. (A capture is not a faithful
//! counter of a burst: tcpdump's ring drops what it cannot take in time and only says so on
//! exit, as "packets dropped by kernel".) `ce` starts the CE and the BR.
#![allow(dead_code)]

pub mod ce;

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;
use v6gate_lab::{Lab, Node, Process, addr, dev};

use super::common::{PYTHON, text, wait_until};

/// Receives on a UDP port until `expect` datagrams came or the sender has been quiet for a
/// second; prints `[[source, port], ...]`. The receive buffer is forced large (root may pass
/// `net.core.rmem_max`) so that an unpaced burst waits in it rather than overflowing it.
const UDP_RECEIVER: &str = r#"
import json, socket, sys
port, expect = int(sys.argv[1]), int(sys.argv[2])
SO_RCVBUFFORCE = 33
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
s.bind(('0.0.0.0', port))
print('ready', flush=True)
s.settimeout(10)
seen = []
try:
    while len(seen) < expect:
        _, (src, sport) = s.recvfrom(64)
        seen.append([src, sport])
        s.settimeout(1)
except socket.timeout:
    pass
print(json.dumps(seen), flush=True)
"#;

/// One datagram from each of `count` sockets, sent back to back.
const UDP_SENDER: &str = r#"
import resource, socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 64)), hard))
sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
for s in sockets:
    s.sendto(b'x', (host, port))
"#;

/// Listens on the TCP ports of `argv[1]` (comma-separated) and accepts until `argv[2]`
/// connections each delivered their one byte `x`, which clients send only once all of them
/// are open: a connection that counts was established and still held then. Prints
/// `{"peers": [[source, port, listening port], ...], "confirmed": n}`.
const TCP_LISTENER: &str = r#"
import json, resource, selectors, socket, sys, time
ports = [int(p) for p in sys.argv[1].split(',')]
expect = int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, expect + 256)), hard))
sel = selectors.DefaultSelector()
for p in ports:
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(('0.0.0.0', p))
    l.listen(4096)
    l.setblocking(False)
    sel.register(l, selectors.EVENT_READ, None)
print('ready', flush=True)
peers, held, confirmed = [], [], 0
deadline = time.monotonic() + 90
while confirmed < expect and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        if key.data is None:
            try:
                c, (src, sport) = key.fileobj.accept()
            except BlockingIOError:
                continue
            c.setblocking(False)
            held.append(c)
            peers.append([src, sport, key.fileobj.getsockname()[1]])
            sel.register(c, selectors.EVENT_READ, 'held')
        else:
            try:
                data = key.fileobj.recv(16)
            except OSError:
                data = b''
            sel.unregister(key.fileobj)
            confirmed += data == b'x'
print(json.dumps({'peers': peers, 'confirmed': confirmed}), flush=True)
"#;

/// Opens `argv[3]` connections to each TCP port of `argv[2]` on `argv[1]`, one after the
/// other, prints `{"open": n, "seconds": s}`, then holds them all until the file `argv[4]`
/// exists and sends one `x` on each.
const TCP_CLIENT: &str = r#"
import json, os, resource, socket, sys, time
host, ports, each, go = sys.argv[1], [int(p) for p in sys.argv[2].split(',')], int(sys.argv[3]), sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, len(ports) * each + 256)), hard))
start = time.monotonic()
held = [socket.create_connection((host, p), timeout=10) for p in ports for _ in range(each)]
print(json.dumps({'open': len(held), 'seconds': time.monotonic() - start}), flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.05)
for s in held:
    s.sendall(b'x')
time.sleep(2)
"#;

/// Waits (bounded) for `process` to print `ready`.
/// One of the CE's NAPT counters in `inet v6gate` (`napt_mape_flows`, `napt_mape_outside`),
/// as nft lists it in siteA.
pub fn napt_counter(lab: &Lab, name: &str) -> String {
    lab.exec_ok(
        Node::SiteA,
        &["nft", "list", "counter", "inet", "v6gate", name],
    )
    .unwrap()
}

/// The access network also serves the re-delegated prefix (`2001:db8:0:3::/64`) on siteA's
/// link, as the wan router's `2001:db8:0:3::ff`.
pub fn serve_redelegated_prefix(lab: &Lab) {
    let wan_router = [
        "-6",
        "addr",
        "add",
        "2001:db8:0:3::ff/64",
        "dev",
        dev::WAN_TO_A6,
        "nodad",
    ];
    lab.ip(Node::Wan, &wan_router).unwrap();
}

/// A re-delegation as the CE sees it: siteA's wan gets a new /64 (`2001:db8:0:3::1`) and
/// the old one stops being preferred, so the daemon must follow the device's addresses.
pub fn redelegate_site_a(lab: &Lab) {
    let new_wan = [
        "-6",
        "addr",
        "add",
        "2001:db8:0:3::1/64",
        "dev",
        dev::WAN6,
        "nodad",
    ];
    lab.ip(Node::SiteA, &new_wan).unwrap();
    let old_wan = format!("{}/64", addr::SITE_A_WAN6);
    let deprecate = [
        "-6",
        "addr",
        "change",
        &old_wan,
        "dev",
        dev::WAN6,
        "preferred_lft",
        "0",
    ];
    lab.ip(Node::SiteA, &deprecate).unwrap();
}

fn wait_ready(process: &Process) {
    let ready = wait_until(Duration::from_secs(10), || {
        process.stdout().lines().any(|l| l == "ready")
    });
    assert!(
        ready,
        "{} is not ready: {}",
        process.label(),
        process.stderr()
    );
}

/// The last line `process` printed, once it exited (bounded by `timeout`).
fn last_line(process: &Process, timeout: Duration) -> String {
    let exited = process.wait_timeout(timeout).unwrap();
    assert!(
        exited.is_some_and(|s| s.success()),
        "{} ended {exited:?}: {}",
        process.label(),
        process.stderr()
    );
    process
        .stdout()
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

/// `count` datagrams from as many hostA sockets to hostB's `port`, unpaced; the
/// `(source, port)` of every datagram hostB's socket received.
pub fn udp_burst(lab: &Lab, port: u16, count: u32) -> Vec<(String, u16)> {
    let (port_arg, count_arg) = (port.to_string(), count.to_string());
    let receiver = lab
        .spawn(
            Node::HostB,
            "udp-receiver",
            &[PYTHON, "-c", UDP_RECEIVER, &port_arg, &count_arg],
        )
        .unwrap();
    wait_ready(&receiver);
    let host_b = addr::HOST_B4.to_string();
    let out = lab.exec(
        Node::HostA,
        &[PYTHON, "-c", UDP_SENDER, &host_b, &port_arg, &count_arg],
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = last_line(&receiver, Duration::from_secs(20));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// One datagram after another from `count` sends on one hostA socket bound to `source_port`.
const UDP_FLOW_SENDER: &str = r#"
import socket, sys
host, port, source, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', source))
for _ in range(count):
    s.sendto(b'x', (host, port))
"#;

/// `count` datagrams of one flow, hostA's UDP port `source_port` to hostB's `port`; the
/// `(source, port)` of every datagram hostB's socket received.
pub fn udp_flow(lab: &Lab, source_port: u16, port: u16, count: u32) -> Vec<(String, u16)> {
    let (port_arg, count_arg) = (port.to_string(), count.to_string());
    let receiver = lab
        .spawn(
            Node::HostB,
            "udp-receiver",
            &[PYTHON, "-c", UDP_RECEIVER, &port_arg, &count_arg],
        )
        .unwrap();
    wait_ready(&receiver);
    let host_b = addr::HOST_B4.to_string();
    let source_arg = source_port.to_string();
    let out = lab.exec(
        Node::HostA,
        &[
            PYTHON,
            "-c",
            UDP_FLOW_SENDER,
            &host_b,
            &port_arg,
            &source_arg,
            &count_arg,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let line = last_line(&receiver, Duration::from_secs(20));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// What the listeners of [`tcp_hold`] report.
#[derive(Debug, Deserialize)]
pub struct Held {
    /// `(source, source port, listening port)` of every accepted connection.
    pub peers: Vec<(String, u16, u16)>,
    /// Connections that were still open once all were.
    pub confirmed: usize,
}

impl Held {
    /// The distinct source ports the far side saw.
    pub fn ports(&self) -> BTreeSet<u16> {
        self.peers.iter().map(|p| p.1).collect()
    }
}

/// Opens `each` TCP connections from hostA to every one of `ports` on hostB, one after
/// another, and holds them all open while `while_held` runs; returns what hostB accepted and
/// how long opening them all took.
pub fn tcp_hold(lab: &Lab, ports: &[u16], each: usize, while_held: impl FnOnce()) -> (Held, f64) {
    let total = ports.len() * each;
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let listener = lab
        .spawn(
            Node::HostB,
            "tcp-listener",
            &[PYTHON, "-c", TCP_LISTENER, &list, &total.to_string()],
        )
        .unwrap();
    wait_ready(&listener);
    let go = lab.dir().join(format!("tcp-go-{}", ports[0]));
    let host_b = addr::HOST_B4.to_string();
    let go_arg = go.to_string_lossy().into_owned();
    let client = lab
        .spawn(
            Node::HostA,
            "tcp-client",
            &[
                PYTHON,
                "-c",
                TCP_CLIENT,
                &host_b,
                &list,
                &each.to_string(),
                &go_arg,
            ],
        )
        .unwrap();
    let opened = wait_until(Duration::from_secs(60), || {
        !client.stdout().is_empty() || client.exit_status().is_ok_and(|s| s.is_some())
    });
    let line = client.stdout();
    assert!(
        opened && !line.is_empty(),
        "the client did not open its connections: {}",
        client.stderr()
    );
    #[derive(Deserialize)]
    struct Opened {
        open: usize,
        seconds: f64,
    }
    let open: Opened = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(open.open, total, "{line}");
    while_held();
    std::fs::write(&go, b"").unwrap();
    let line = last_line(&listener, Duration::from_secs(30));
    let held: Held = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    let _ = client.wait_timeout(Duration::from_secs(10));
    (held, open.seconds)
}
