//! The shipped systemd unit passes `systemd-analyze verify`; `v6gate run` under a service
//! manager says READY=1 and pings the watchdog while it answers; its log has no colour codes
//! when it goes to a file or the journal.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, text};
use v6gate_lab::{LabOptions, Site};

fn unit_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd/v6gate.service")
}

/// The unit with its binary path pointed at the one under test (verify insists that
/// ExecStart's program exists).
fn verify(unit: &str, dir: &Path) -> std::process::Output {
    let path = dir.join("v6gate.service");
    fs::write(&path, unit.replace("/usr/bin/v6gate", BIN)).unwrap();
    // The man pages are installed by the package, not on a build machine.
    Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian package systemd)")
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let dir = std::env::temp_dir().join(format!("v6gate-unit-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let unit = fs::read_to_string(unit_path()).unwrap();
    for line in [
        "Type=notify",
        "RuntimeDirectory=v6gate",
        "RuntimeDirectoryMode=0700",
        "ExecReload=/usr/bin/v6gate reload",
        "WatchdogSec=",
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
    ] {
        assert!(unit.contains(line), "unit lacks {line}");
    }
    let out = verify(&unit, &dir);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        text(&out)
    );
    // The checker reads what it is given: a planted mistake is reported.
    let broken = unit.replace("[Service]\n", "[Service]\nNoSuchSetting=1\n");
    let out = verify(&broken, &dir);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NoSuchSetting"),
        "{}",
        text(&out)
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_says_ready_and_pings_the_watchdog() {
    let lab = common::lab(LabOptions::default());
    let config = lab.site_config(Site::A);
    let config_path = lab.dir().join("notify-a.toml");
    fs::write(&config_path, config.to_toml()).unwrap();
    let notify_path = lab.dir().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();

    let socket_env = format!("NOTIFY_SOCKET={}", notify_path.display());
    let config_arg = config_path.to_string_lossy().into_owned();
    // 600 ms watchdog: pings every 300 ms.
    let daemon = lab
        .spawn(
            Site::A.node(),
            "v6gate",
            &[
                "env",
                &socket_env,
                "WATCHDOG_USEC=600000",
                BIN,
                "run",
                "--config",
                &config_arg,
            ],
        )
        .unwrap();

    let mut messages: Vec<(Instant, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(n) = notify.recv(&mut buf) {
            messages.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).trim().to_owned(),
            ));
        }
        if messages.iter().filter(|(_, m)| m == "WATCHDOG=1").count() >= 5 {
            break;
        }
    }
    drop(daemon);
    let ready = messages.iter().position(|(_, m)| m.contains("READY=1"));
    let pings: Vec<Instant> = messages
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    let all: Vec<&String> = messages.iter().map(|(_, m)| m).collect();
    assert!(ready.is_some(), "no READY=1: {all:?}");
    assert!(pings.len() >= 5, "pings: {all:?}");
    // Each gap well under the 600 ms the service manager would wait.
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap < Duration::from_millis(600), "gap {gap:?}: {all:?}");
    }
}

#[test]
fn logs_carry_no_colour_codes_off_a_terminal() {
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/v6gate.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nonexistent"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");
}
