//! End-to-end: what `v6gate export` writes is accepted by the peer software it is meant for.
//! strongSwan's swanctl.conf is loaded into a real charon that establishes with v6gate and
//! carries a ping; the networkd files go through systemd-networkd's own parser; the libreswan
//! conn through libreswan's `addconn --checkconfig`.

mod common;

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{BIN, assert_ping, text, wait_until};
use v6gate_lab::strongswan::{Charon, LAB_PSK, StrongswanConfig};
use v6gate_lab::{LabOptions, Node, Site, addr};

const TUNNEL: &str = "ab";

fn run_export(config: &Path, format: &str, extra: &[&str]) -> Output {
    let config = config.to_string_lossy();
    let mut args = vec![
        "export", "--config", &config, "--tunnel", TUNNEL, "--format", format,
    ];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("run v6gate")
}

fn exported(config: &Path, format: &str, extra: &[&str]) -> String {
    let out = run_export(config, format, extra);
    assert!(out.status.success(), "export failed: {}", text(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Site A's ipsec tunnel to site B; v6gate answers, so the exported peer starts the SA.
/// IKEv2 (the default) with AES-GCM.
const IKEV2: &str =
    "proposals = [\"aes128gcm16-prfsha256-modp2048\"]\nesp_proposals = [\"aes128gcm16\"]\n";

fn write_ipsec_config(dir: &Path, socket: &Path) -> PathBuf {
    write_ipsec_config_with(dir, socket, IKEV2)
}

/// IKEv1 main mode, AES-256/SHA2-256/MODP-2048 in both phases (IKEv1 has no AEAD phase 1).
const IKEV1: &str = "version = 1\nproposals = [\"aes256-sha256-modp2048\"]\n\
                     esp_proposals = [\"aes256-sha256-modp2048\"]\n";

/// Site A's ipsec tunnel, responding, with `ike` lines for the suites (and version).
fn write_ipsec_config_with(dir: &Path, socket: &Path, ike: &str) -> PathBuf {
    let psk = dir.join("export.psk");
    fs::write(&psk, LAB_PSK).unwrap();
    fs::set_permissions(&psk, fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "[gateway]\ncontrol_socket = {:?}\nipv4_forwarding = true\n\n[[tunnel]]\nname = \
         {TUNNEL:?}\nmode = \"ipsec\"\nlocal = \"{}\"\nremote = \"{}\"\nlocal_subnets = \
         [{:?}]\nroutes = [{:?}]\n[tunnel.ike]\npsk_file = {:?}\nstart = \"respond\"\n\
         {ike}dpd_delay = \"10s\"\n",
        socket.display().to_string(),
        Site::A.wan6(),
        Site::B.wan6(),
        Site::A.lan4(),
        Site::B.lan4(),
        psk.display().to_string(),
    );
    let path = dir.join("export-a.toml");
    fs::write(&path, text).unwrap();
    path
}

fn strongswan_export_establishes(ike: &str) {
    let lab = common::lab(LabOptions {
        site_ipv4_forwarding: true,
        ..LabOptions::default()
    });
    let socket = lab.dir().join("export-a.sock");
    let config = write_ipsec_config_with(lab.dir(), &socket, ike);

    let swanctl = exported(&config, "strongswan", &["--with-secret"]);
    let placeholder = exported(&config, "strongswan", &[]);
    assert!(!placeholder.contains(LAB_PSK), "{placeholder}");
    assert!(swanctl.contains("start_action = start"), "{swanctl}");

    let gateway = lab
        .start_gateway_with(BIN.as_ref(), Node::SiteA, &config, &socket)
        .unwrap_or_else(|e| panic!("starting v6gate: {e}"));
    // The lab's charon set-up (libipsec, private /run), then the exported connections only.
    let charon = Charon::start(&lab, Node::SiteB, &StrongswanConfig::site_to_site(Site::B))
        .unwrap_or_else(|e| panic!("starting charon: {e}"));
    charon
        .load_swanctl(&swanctl)
        .unwrap_or_else(|e| panic!("charon refused the export: {e}\n{swanctl}"));
    charon
        .wait_child_installed(TUNNEL, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n--- v6gate ---\n{}\n{swanctl}", gateway.log()));
    let up = wait_until(Duration::from_secs(10), || {
        gateway
            .tunnel_status(TUNNEL)
            .is_ok_and(|t| t["state"] == "up")
    });
    assert!(up, "v6gate has no CHILD SA:\n{}", gateway.log());

    assert_ping(&lab, Node::HostA, IpAddr::V4(addr::HOST_B4), 3, &[&gateway]);
    let sas = charon.ike_sas().unwrap();
    assert_eq!(sas.len(), 1, "{sas:?}");
    let child = &sas[0].children[0];
    assert!(child.packets_in >= 3 && child.packets_out >= 3, "{child:?}");
    gateway.stop().unwrap();
    charon.stop().unwrap();
}

#[test]
fn strongswan_export_establishes_with_v6gate() {
    strongswan_export_establishes(IKEV2);
}

/// `version = 1`: the export says so, and charon speaks IKEv1 main mode with v6gate.
#[test]
fn strongswan_ikev1_export_establishes_with_v6gate() {
    strongswan_export_establishes(IKEV1);
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace of its own, deleted on drop (also when the test panics).
struct Netns(String);

impl Netns {
    fn new(stem: &str) -> Self {
        let name = format!(
            "v6gx-{stem}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add: {}", text(&out));
        Self(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Splits networkd export text at its `# ==> PATH <==` lines into (file name, content).
fn networkd_files(text: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ==> ") {
            let path = rest.trim_end_matches(" <==");
            let name = path.rsplit('/').next().unwrap_or(path).to_owned();
            files.push((name, String::new()));
        } else if let Some((_, body)) = files.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    files
}

#[test]
fn networkd_export_passes_networkd_parser() {
    assert!(v6gate_lab::is_root(), "needs root for network namespaces");
    let networkd = Path::new("/lib/systemd/systemd-networkd");
    assert!(
        networkd.exists(),
        "systemd-networkd is missing (Debian package systemd)"
    );
    let dir = std::env::temp_dir().join(format!("v6gate-export-nd-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let config = dir.join("s1-vps.toml");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/s1-vps.toml");
    let body = fs::read_to_string(example)
        .unwrap()
        .replace("\"home\"", &format!("{TUNNEL:?}"));
    fs::write(&config, body).unwrap();
    let export = exported(&config, "networkd", &["--peer-route", "0.0.0.0/0"]);
    let files = networkd_files(&export);
    assert_eq!(files.len(), 2, "{export}");
    let confdir = dir.join("network");
    fs::create_dir_all(&confdir).unwrap();
    for (name, body) in &files {
        fs::write(confdir.join(name), body).unwrap();
    }
    // A planted mistake proves the parser is reading these files.
    fs::write(
        confdir.join("99-probe.netdev"),
        "[NetDev]\nName=probe0\nKind=dummy\nNoSuchKey=1\n",
    )
    .unwrap();

    // networkd in a namespace of its own, with a private /run and the export as its only
    // config; it loads the files at start and is stopped after a bounded time.
    let ns = Netns::new("nd");
    let script = "mount -t tmpfs none /run && mount --bind \"$1\" /etc/systemd/network && \
                  SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console exec timeout -s INT 3 \"$2\"";
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "unshare", "-m", "sh", "-c", script, "networkd",
        ])
        .arg(&confdir)
        .arg(networkd)
        .output()
        .unwrap();
    let log = text(&out);
    assert!(
        log.contains("99-probe.netdev:4: Unknown key"),
        "networkd did not parse the directory:\n{log}"
    );
    let device = "ip6t-ab";
    assert!(
        log.contains(&format!("{device}: loaded \"ip6tnl\"")),
        "networkd did not load the netdev:\n{log}"
    );
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("60-ip6t-"))
        .filter(|l| {
            l.contains("Unknown")
                || l.contains("Failed")
                || l.contains("ignoring")
                || l.contains("Invalid")
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "networkd complains: {complaints:#?}\n{export}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

/// libreswan conflicts with strongSwan's packages, so its checker runs from the package's
/// files unpacked into a directory (`scripts/test` fetches it with `apt-get download`).
fn libreswan_root() -> String {
    std::env::var("V6GATE_LIBRESWAN_ROOT")
        .unwrap_or_else(|_| "/var/cache/v6gate-test/libreswan".to_owned())
}

fn libreswan_addconn() -> Option<PathBuf> {
    let addconn = Path::new(&libreswan_root()).join("usr/libexec/ipsec/addconn");
    addconn.exists().then_some(addconn)
}

#[test]
fn libreswan_export_passes_addconn_checkconfig() {
    let Some(addconn) = libreswan_addconn() else {
        panic!(
            "libreswan's addconn not found under {}: scripts/test unpacks the libreswan \
             package there (or set V6GATE_LIBRESWAN_ROOT)",
            libreswan_root()
        );
    };
    let dir = std::env::temp_dir().join(format!("v6gate-export-ls-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let v1_config = write_ipsec_config_with(&dir, &dir.join("unused.sock"), IKEV1);
    let v1 = exported(&v1_config, "libreswan", &[]);
    assert!(v1.contains("ikev2=no"), "{v1}");
    let (v1_conf, _) = v1.split_once("# ipsec.secrets").expect("two parts");
    let v1_path = dir.join("ipsec-v1.conf");
    fs::write(&v1_path, format!("config setup\n\n{v1_conf}")).unwrap();
    let config = write_ipsec_config(&dir, &dir.join("unused.sock"));
    let export = exported(&config, "libreswan", &[]);
    let (conf, _secrets) = export.split_once("# ipsec.secrets").expect("two parts");
    let path = dir.join("ipsec.conf");
    fs::write(&path, format!("config setup\n\n{conf}")).unwrap();
    let check = |path: &Path| {
        Command::new(&addconn)
            .args(["--checkconfig", "--config"])
            .arg(path)
            .env("LD_LIBRARY_PATH", lib_path())
            .output()
            .unwrap()
    };
    let out = check(&path);
    assert!(
        out.status.success(),
        "addconn rejects the export:\n{}\n{conf}",
        text(&out)
    );
    let out = check(&v1_path);
    assert!(
        out.status.success(),
        "addconn rejects the IKEv1 export:\n{}\n{v1_conf}",
        text(&out)
    );
    // And it is a checker that can fail.
    let broken = dir.join("broken.conf");
    fs::write(&broken, format!("config setup\n\n{conf}    nosuchkey=1\n")).unwrap();
    assert!(
        !check(&broken).status.success(),
        "addconn accepts an unknown key"
    );
    fs::remove_dir_all(&dir).unwrap();
}

fn lib_path() -> String {
    let root = libreswan_root();
    format!("{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu")
}
