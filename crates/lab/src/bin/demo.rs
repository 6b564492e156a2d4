//! `v6gate-demo`: the two-site lab of `scripts/demo`, with `v6gate` as both gateways.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;

/// Build a two-site lab in network namespaces, send traffic through a v6gate tunnel, tear
/// down.
///
/// Needs root. The exit code says whether traffic crossed.
#[derive(Debug, Parser)]
#[command(name = "v6gate-demo", version)]
struct Args {
    /// Leave the lab running and print how to explore it.
    #[arg(long)]
    keep: bool,
    /// The v6gate binary both gateways run [default: the `v6gate` beside this program].
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = gateway_binary(args.binary)
        .and_then(|binary| v6gate_lab::demo::run(&binary, args.keep, &mut io::stdout()));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Cargo builds `v6gate` and `v6gate-demo` into the same directory, so the demo finds the
/// gateway there unless told otherwise.
fn gateway_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(binary) = given {
        return Ok(binary);
    }
    let me = std::env::current_exe().context("finding the v6gate-demo binary")?;
    let beside = me.with_file_name("v6gate");
    if !beside.is_file() {
        bail!(
            "no v6gate beside {}: build it with `cargo build -p v6gate` (same profile) or pass --binary",
            me.display()
        );
    }
    Ok(beside)
}
