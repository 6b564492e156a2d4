//! Attaches one tunnel's kernel path to an underlay device and keeps it attached while
//! standard input stays open: the lab's and the benchmark's way to run the kernel path on
//! its own, before the daemon owns it.
//!
//! Lines on standard input: `active N` switches to path N (one map update), `counters`
//! prints the counters; end of input detaches and prints them a last time. Run it inside
//! the namespace of the device (`ip netns exec NS v6gate-kpath …`). The programs are bound
//! to this process (tcx links): they go when it exits, however it exits.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::process::ExitCode;

use clap::Parser;
use ipnet::IpNet;
use kpath::{Counters, KernelPath, Spec, SpecPath};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Run one tunnel's tc-BPF kernel path on an underlay device"
)]
struct Args {
    /// The underlay device.
    #[arg(long)]
    device: String,
    /// A path as LOCAL,REMOTE (both IPv6 or both IPv4); the first is active.
    #[arg(long = "path", value_parser = parse_path, required = true)]
    paths: Vec<SpecPath>,
    /// Inner destinations that enter the tunnel.
    #[arg(long = "route")]
    routes: Vec<IpNet>,
    /// Inner sources accepted from the tunnel.
    #[arg(long = "source")]
    sources: Vec<IpNet>,
    /// ipip6, ip6ip6 or any.
    #[arg(long, default_value = "ipip6")]
    mode: String,
    /// Send the Tunnel Encapsulation Limit option with this limit.
    #[arg(long)]
    encap_limit: Option<u8>,
    #[arg(long, default_value_t = 64)]
    hop_limit: u8,
    /// Outer DSCP (times 4, as the traffic class byte); omitted: copy the inner one.
    #[arg(long)]
    traffic_class: Option<u8>,
}

fn parse_path(text: &str) -> Result<SpecPath, String> {
    let (local, remote) = text
        .split_once(',')
        .ok_or_else(|| format!("{text}: want LOCAL,REMOTE"))?;
    let parse = |s: &str| s.parse::<IpAddr>().map_err(|e| format!("{text}: {s}: {e}"));
    Ok(SpecPath {
        local: parse(local)?,
        remote: parse(remote)?,
    })
}

fn line(counters: &Counters) -> String {
    format!(
        "rx_packets={} rx_bytes={} tx_packets={} tx_bytes={} gso_tx={} gso_rx={} punted={} \
         dropped={} adjust_failed={}",
        counters.rx_packets,
        counters.rx_bytes,
        counters.tx_packets,
        counters.tx_bytes,
        counters.gso_tx,
        counters.gso_rx,
        counters.punted,
        counters.dropped(),
        counters.adjust_failed,
    )
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (carry_ipv4, carry_ipv6) = match args.mode.as_str() {
        "ipip6" => (true, false),
        "ip6ip6" => (false, true),
        "any" => (true, true),
        other => {
            eprintln!("--mode {other}: want ipip6, ip6ip6 or any");
            return ExitCode::from(2);
        }
    };
    let spec = Spec {
        carry_ipv4,
        carry_ipv6,
        encap_limit: args.encap_limit,
        hop_limit: args.hop_limit,
        traffic_class: args.traffic_class,
        paths: args.paths,
        routes: args.routes,
        allowed_sources: args.sources,
        probe_echo: false,
        active: 0,
    };
    let mut path = match KernelPath::load(&spec) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match path.attach(&args.device) {
        Ok(a) => println!("attached {} tcx={}", a.device, a.tcx),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    let _ = std::io::stdout().flush();
    for command in std::io::stdin().lock().lines() {
        let Ok(command) = command else { break };
        let reply = match command.split_whitespace().collect::<Vec<_>>()[..] {
            ["active", n] => match n.parse() {
                Ok(n) => path.set_active(n).map(|()| format!("active {n}")),
                Err(e) => Ok(format!("error: active {n}: {e}")),
            },
            ["counters"] => path.counters().map(|c| line(&c)),
            _ => Ok(format!("error: unknown command {command:?}")),
        };
        match reply {
            Ok(reply) => println!("{reply}"),
            Err(e) => println!("error: {e}"),
        }
        let _ = std::io::stdout().flush();
    }
    let detached = path.detach();
    if let Ok(counters) = path.counters() {
        println!("{}", line(&counters));
    }
    match detached {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
