//! The two network namespaces and the strongSwan charon that the IKEv2 and IKEv1 interop
//! tests share: a veth pair (198.51.100.0/24), charon with kernel-libipsec in the second
//! namespace and a host address behind it; all removed on drop, also on panic.
#![allow(dead_code)]

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dataplane::esp::{Integrity, Suite};
use ike::ChildSaInfo;
use ike::crypto::{Encr, Integ};

pub const PSK: &str = "correct horse battery staple";
pub const US: &str = "198.51.100.1";
pub const THEM: &str = "198.51.100.2";
pub const OUR_HOST: &str = "198.18.1.1";
pub const THEIR_HOST: &str = "198.18.2.1";

pub mod endpoint;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The network namespaces, charon, and the files they use; removed on drop, also on panic.
pub struct Lab {
    pub ns_a: String,
    pub ns_b: String,
    pub dir: PathBuf,
    pub etc: PathBuf,
    charon: Option<Child>,
}

pub fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?} failed");
}

impl Lab {
    /// Namespaces `<tag>-<id>-a` (ours) and `-b` (charon's, with 198.18.2.1 behind it) on
    /// a veth pair, and charon running in the second with kernel-libipsec.
    pub fn new(tag: &str) -> Self {
        let id = format!(
            "{}{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ns_a = format!("{tag}-{id}-a");
        let ns_b = format!("{tag}-{id}-b");
        let mut lab = Self {
            dir: std::env::temp_dir().join(format!("{tag}-{id}")),
            etc: PathBuf::from(format!("/etc/netns/{ns_b}")),
            ns_a,
            ns_b,
            charon: None,
        };
        let (a, b) = (lab.ns_a.clone(), lab.ns_b.clone());
        // Interface names stay within 15 bytes.
        let (va, vb) = (format!("{}{id}a", &tag[..3]), format!("{}{id}b", &tag[..3]));
        run("ip", &["netns", "add", &a]);
        run("ip", &["netns", "add", &b]);
        run(
            "ip",
            &[
                "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b,
            ],
        );
        run(
            "ip",
            &["-n", &a, "addr", "add", &format!("{US}/24"), "dev", &va],
        );
        run(
            "ip",
            &["-n", &b, "addr", "add", &format!("{THEM}/24"), "dev", &vb],
        );
        for (ns, dev) in [(&a, &va), (&b, &vb)] {
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        // The host behind charon that answers our pings and sends its own.
        run(
            "ip",
            &[
                "-n",
                &b,
                "addr",
                "add",
                &format!("{THEIR_HOST}/32"),
                "dev",
                "lo",
            ],
        );
        fs::create_dir_all(&lab.dir).unwrap();
        fs::create_dir_all(lab.etc.join("swanctl/conf.d")).unwrap();
        fs::write(
            lab.etc.join("swanctl/swanctl.conf"),
            "include conf.d/*.conf\n",
        )
        .unwrap();
        let conf = format!(
            "charon {{\n  port = 500\n  port_nat_t = 4500\n  retransmit_tries = 2\n  plugins {{\n    include /etc/strongswan.d/charon/*.conf\n    kernel-libipsec {{\n      load = yes\n    }}\n    vici {{\n      socket = unix://{}/charon.vici\n    }}\n  }}\n  filelog {{\n    log {{\n      path = {}/charon.log\n      default = 1\n      ike = 2\n      flush_line = yes\n    }}\n  }}\n}}\n",
            lab.dir.display(),
            lab.dir.display()
        );
        fs::write(lab.etc.join("strongswan.conf"), conf).unwrap();
        // A private /run so charon's pid file and sockets cannot collide with another charon.
        let child = Command::new("ip")
            .args(["netns", "exec", &b, "unshare", "-m", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /run && exec /usr/lib/ipsec/charon")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        lab.charon = Some(child);
        let vici = lab.dir.join("charon.vici");
        let start = Instant::now();
        while !vici.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "charon did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        lab
    }

    pub fn swanctl(&self, args: &[&str]) -> std::process::Output {
        let uri = format!("unix://{}/charon.vici", self.dir.display());
        Command::new("ip")
            .args(["netns", "exec", &self.ns_b, "swanctl"])
            .args(args)
            .args(["--uri", &uri])
            .output()
            .unwrap()
    }

    /// Replaces charon's connections with `conf` (swanctl.conf syntax), which must define
    /// the connection `v6gate`.
    pub fn load(&self, conf: &str) {
        fs::write(self.etc.join("swanctl/conf.d/v6gate.conf"), conf).unwrap();
        let out = self.swanctl(&["--load-all", "--clear"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("loaded connection 'v6gate'"),
            "swanctl: {text}"
        );
    }

    /// The end of charon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut c) = self.charon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.ns_a, &self.ns_b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = fs::remove_dir_all(&self.etc);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The dataplane's suite for the one IKE negotiated.
pub fn esp_suite(c: &ChildSaInfo) -> Suite {
    match (c.suite.encr, c.suite.integ) {
        (Encr::AesGcm16(bits), _) => Suite::AesGcm16 { key_bits: bits },
        (Encr::AesCbc(bits), Some(Integ::HmacSha1_96)) => Suite::AesCbc {
            key_bits: bits,
            integrity: Integrity::HmacSha1_96,
        },
        (Encr::AesCbc(bits), Some(Integ::HmacSha256_128)) => Suite::AesCbc {
            key_bits: bits,
            integrity: Integrity::HmacSha256_128,
        },
        other => panic!("no ESP implementation for {other:?}"),
    }
}
