//! Shared by the DDNS end-to-end tests: the runner in a lab namespace, Knot DNS as the
//! authoritative server, credentials files.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::{Config, Ddns};
use v6gate::ddns::{DdnsRunner, DdnsStatus};
use v6gate_lab::{Lab, Node, Process, addr, enter_netns};

pub mod https;
pub mod steps;

/// Gives `node`'s `device` a further address in a /64, for a name to point to (no duplicate
/// address detection, so it is usable at once).
pub fn add_address(lab: &Lab, node: Node, device: &str, address: Ipv6Addr) {
    let prefix = format!("{address}/64");
    lab.ip(
        node,
        &["-6", "addr", "add", &prefix, "dev", device, "nodad"],
    )
    .unwrap_or_else(|e| panic!("adding {prefix} to {device}: {e}"));
}

/// The `[[ddns]]` entries of a config text.
pub fn entries(text: &str) -> Vec<Ddns> {
    match Config::from_toml_str(text, "ddns.toml") {
        Ok(config) => config.ddns,
        Err(e) => panic!("invalid config:\n{e}\n{text}"),
    }
}

/// A root-only credentials file in the lab's directory.
pub fn key_file(lab: &Lab, name: &str, secret: &str) -> PathBuf {
    let path = lab.dir().join(format!("{name}.secret"));
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A `DdnsRunner` on a thread of its own inside a lab namespace; stopped on drop.
pub struct RunnerInNetns {
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<Vec<DdnsStatus>>>,
    thread: Option<JoinHandle<()>>,
}

impl RunnerInNetns {
    pub fn start(lab: &Lab, node: Node, entries: Vec<Ddns>, state: &Path) -> Self {
        let namespace = lab.namespace(node).to_owned();
        let state = state.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let status = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, status) = (stop.clone(), status.clone());
            std::thread::spawn(move || {
                enter_netns(&namespace).expect("entering the namespace");
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let runner = match DdnsRunner::start(entries, &state) {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    while !stop.load(Ordering::Relaxed) {
                        *status.lock().unwrap() = runner.status();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    runner.stop().await;
                });
            })
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the runner did not start: {e}"),
            Err(e) => panic!("the runner did not start: {e}"),
        }
        Self {
            stop,
            status,
            thread: Some(thread),
        }
    }

    pub fn status(&self) -> Vec<DdnsStatus> {
        self.status.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for `condition` on the status of every entry.
    pub fn wait(&self, timeout: Duration, condition: impl Fn(&[DdnsStatus]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition(&self.status()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        condition(&self.status())
    }
}

impl Drop for RunnerInNetns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// knotd serving `example.jp` on siteB's underlay address, updatable with one TSIG key.
pub struct Knot {
    process: Process,
    server: String,
}

impl Knot {
    /// `key` as nsupdate writes it: `hmac-sha256:NAME:BASE64`.
    pub fn start(lab: &Lab, node: Node, key: &str) -> Self {
        Self::start_on(lab, node, key, addr::SITE_B_WAN6)
    }

    /// Like [`Knot::start`], listening on `listen` in `node` (the wan router's address stays
    /// put while a site's address moves).
    pub fn start_on(lab: &Lab, node: Node, key: &str, listen: Ipv6Addr) -> Self {
        Self::start_in(lab, node, key, listen, "knot")
    }

    /// Like [`Knot::start_on`], keeping its zone and state in the lab's directory `dir` (a
    /// second server in one lab needs its own).
    pub fn start_in(lab: &Lab, node: Node, key: &str, listen: Ipv6Addr, dir: &str) -> Self {
        let mut parts = key.splitn(3, ':');
        let (_, name, secret) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        let dir = lab.dir().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display();
        std::fs::write(
            dir.join("knot.conf"),
            format!(
                "server:\n  rundir: \"{d}\"\n  listen: \"{listen}@53\"\n\
                 database:\n  storage: \"{d}\"\n\
                 control:\n  listen: \"{d}/knot.sock\"\n\
                 log:\n  - target: stderr\n    any: info\n\
                 key:\n  - id: {name}\n    algorithm: hmac-sha256\n    secret: {secret}\n\
                 acl:\n  - id: update\n    key: {name}\n    action: update\n\
                 template:\n  - id: default\n    storage: \"{d}\"\n    zonefile-sync: -1\n\
                 zone:\n  - domain: example.jp\n    file: \"{d}/example.jp.zone\"\n    acl: update\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("example.jp.zone"),
            format!(
                "$ORIGIN example.jp.\n$TTL 5\n\
                 @ SOA ns.example.jp. admin.example.jp. 1 60 60 3600 5\n\
                 @ NS ns\nns AAAA {listen}\n"
            ),
        )
        .unwrap();
        let conf = dir.join("knot.conf");
        let process = lab
            .spawn(node, "knotd", &["knotd", "-c", conf.to_str().unwrap()])
            .unwrap();
        let knot = Self {
            process,
            server: listen.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while knot.soa(lab).is_none() {
            assert!(
                Instant::now() < deadline,
                "knotd does not answer:\n{}",
                knot.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        knot
    }

    pub fn log(&self) -> String {
        self.process.stderr()
    }

    fn dig(&self, lab: &Lab, name: &str, rtype: &str) -> String {
        let server = format!("@{}", self.server);
        let out = lab.exec(
            Node::SiteA,
            &["dig", &server, "+short", "+time=1", "+tries=1", name, rtype],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn soa(&self, lab: &Lab) -> Option<u32> {
        let text = self.dig(lab, "example.jp", "SOA");
        text.split_whitespace().nth(2)?.parse().ok()
    }

    /// A server on the wan router, started like [`Knot::start_in`], whose zone already has
    /// `name`'s AAAA at `address`.
    pub fn answering(
        lab: &Lab,
        key: &str,
        listen: Ipv6Addr,
        dir: &str,
        name: &str,
        address: Ipv6Addr,
    ) -> Self {
        let knot = Self::start_in(lab, Node::Wan, key, listen, dir);
        knot.update(lab, key, name, "AAAA", IpAddr::V6(address));
        knot
    }

    /// The zone's serial, which knot raises with every accepted update.
    pub fn serial(&self, lab: &Lab) -> u32 {
        self.soa(lab).expect("knotd answers SOA")
    }

    /// The first address served for `name`.
    pub fn lookup(&self, lab: &Lab, name: &str, rtype: &str) -> Option<IpAddr> {
        self.dig(lab, name, rtype)
            .lines()
            .find_map(|l| l.trim().parse().ok())
    }

    /// Replaces `name`'s records of `rtype` with `addr` (TTL 5 s) by `knsupdate`, the
    /// server's own client.
    pub fn update(&self, lab: &Lab, key: &str, name: &str, rtype: &str, addr: IpAddr) {
        let script = format!(
            "server {} 53\nzone example.jp.\nupdate delete {name}. {rtype}\n\
             update add {name}. 5 {rtype} {addr}\nsend\n",
            self.server
        );
        let path = lab.dir().join("knsupdate.txt");
        std::fs::write(&path, script).unwrap();
        let out = lab.exec(
            Node::SiteA,
            &["knsupdate", "-y", key, path.to_str().unwrap()],
        );
        assert!(
            out.status.success(),
            "knsupdate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Every answer served for `name` as it changes, polled until it is `want` or `timeout`
    /// has passed.
    pub fn follow(
        &self,
        lab: &Lab,
        name: &str,
        rtype: &str,
        want: IpAddr,
        timeout: Duration,
    ) -> Vec<Option<IpAddr>> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let served = self.lookup(lab, name, rtype);
            if seen.last() != Some(&served) {
                seen.push(served);
            }
            if served == Some(want) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    }

    /// Waits until `name` serves `want`.
    pub fn wait_for(
        &self,
        lab: &Lab,
        name: &str,
        rtype: &str,
        want: Option<IpAddr>,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.lookup(lab, name, rtype) == want {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
