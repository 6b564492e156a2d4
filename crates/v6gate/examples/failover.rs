//! Failover benchmark (not a test): how many milliseconds of traffic a two-path tunnel loses
//! when its primary fails, for each kind of failure, measured with a 10 ms ping flood in the
//! netns lab. Run as root: `bench/failover` (or `cargo run --release -p v6gate --example
//! failover -- [ROUNDS]`).

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use v6gate_lab::is_root;
use v6gate_lab::multipath::{Failure, Kind, Timers, TwoPaths};

fn main() {
    if !is_root() {
        eprintln!("the failover benchmark builds network namespaces: run it as root");
        std::process::exit(2);
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("v6gate")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("target/release/v6gate"));
    let timers = Timers::default();
    println!(
        "two-path tunnels (IPv6 primary, IPv4 backup), probes every {} ms, timeout {} ms, \
         down after {}",
        timers.interval_ms, timers.timeout_ms, timers.down_after
    );
    println!(
        "{:<6} {:<12} {:>6} {:>12} {:>12} {:>12}",
        "tunnel", "failure", "round", "outage ms", "switch ms", "failback ms"
    );
    // "kernel": the ipip6 tunnel with `dataplane = "kernel"` (tc-BPF), failing over by a map
    // update of the programs.
    for ((label, kind, kernel), failure) in [
        ("ipip6", Kind::Ipip6, false),
        ("kernel", Kind::Ipip6, true),
        ("ipsec", Kind::Ipsec, false),
    ]
    .into_iter()
    .flat_map(|k| Failure::ALL.map(|f| (k, f)))
    {
        let mut outages = Vec::new();
        for round in 1..=rounds {
            let lab = TwoPaths::start_kind(&binary, kind, timers).expect("two-path lab");
            // `auto` would put the ipip6 row on the kernel path too: each row says its own.
            if kind == Kind::Ipip6 {
                set_dataplane(&lab, if kernel { "kernel" } else { "userspace" });
            }
            lab.wait_for_active("ipoe", Duration::from_secs(20))
                .expect("primary never became active");
            // Both paths must be up before the cut, or there is nothing to fail over to.
            lab.wait_for_path_up("pppoe", Duration::from_secs(20))
                .expect("backup never came up");
            let pings = lab.ping_flood(500);
            thread::sleep(Duration::from_secs(2));
            lab.cut(failure).expect("cut");
            let switch = lab.wait_for_active("pppoe", Duration::from_secs(5));
            let pings = pings.join().expect("ping thread");
            lab.restore(failure).expect("restore");
            let back = lab.wait_for_active("ipoe", Duration::from_secs(15));
            let ms = |d: Option<Duration>| {
                d.map_or_else(|| "never".to_string(), |d| d.as_millis().to_string())
            };
            println!(
                "{:<6} {:<12} {:>6} {:>12} {:>12} {:>12}",
                label,
                failure.as_str(),
                round,
                pings.outage_ms(),
                ms(switch),
                ms(back)
            );
            outages.push(pings.outage_ms());
        }
        outages.sort_unstable();
        println!(
            "{:<6} {:<12} median outage {} ms (min {}, max {})",
            label,
            failure.as_str(),
            outages[outages.len() / 2],
            outages[0],
            outages[outages.len() - 1]
        );
    }
}

/// Rewrites both sites' tunnel to `dataplane = "<word>"`, reloads, and waits until both run
/// it.
fn set_dataplane(lab: &TwoPaths, word: &str) {
    for gateway in [&lab.b, &lab.a] {
        let text = std::fs::read_to_string(gateway.config_path()).expect("config");
        let text = text.replace(
            "name = \"ab\"\n",
            &format!("name = \"ab\"\ndataplane = \"{word}\"\n"),
        );
        std::fs::write(gateway.config_path(), text).expect("config");
        gateway.reload().expect("reload");
    }
    for _ in 0..100 {
        if [&lab.a, &lab.b]
            .iter()
            .all(|g| g.tunnel_status("ab").is_ok_and(|t| t["dataplane"] == word))
        {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!("the tunnel never ran on dataplane {word}: {}", lab.a.log());
}
