//! Command line: parse, run one command, turn its result into an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::operate::{DEFAULT_CONFIG, Target};
use crate::status::Request;

/// v6gate: IPv4-over-IPv6 (RFC 2473) tunnels in userspace, from one TOML file.
///
/// v6gate builds tunnels on TUN devices, so it runs where the kernel has no ip6tnl or ESP
/// modules (containers, LXC VPSes). It pins every tunnel endpoint to the underlay so a tunnel
/// can never carry itself, sends no Tunnel Encapsulation Limit option unless asked (YAMAHA
/// RTX routers drop it), clamps TCP MSS and filters inner addresses.
///
/// Start with `scripts/demo` in the source tree to see two sites talk through a tunnel in
/// network namespaces, then `v6gate check --config FILE` and `v6gate run --config FILE`.
#[derive(Debug, Parser)]
#[command(name = "v6gate", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway in the foreground (systemd-friendly).
    ///
    /// SIGTERM or SIGINT stops it and removes everything it installed (TUN devices, routes,
    /// rules, sysctl changes). SIGHUP re-reads the config; an invalid config is reported and
    /// the running one kept.
    Run {
        /// The TOML config file.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Log filter (error, warn, info, debug, trace, or a tracing directive); overrides
        /// the RUST_LOG environment variable.
        #[arg(long)]
        log_level: Option<String>,
        /// Serve Prometheus metrics at http://ADDRESS/metrics (e.g. 127.0.0.1:9586); overrides
        /// [gateway] metrics.
        #[arg(long, value_name = "ADDRESS")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Validate a config file without touching the host.
    ///
    /// Errors name the file, line, column and key, all at once.
    Check {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show what a config means for the host, and what differs from what is there now.
    ///
    /// The nftables ruleset (in nft syntax), policy routes and rules, and sysctls; `=` marks
    /// what is in place, `+` what would be added. Changes nothing.
    Plan {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show each tunnel: state, path, endpoints, MTU, traffic and drops by reason.
    ///
    /// This is the default command.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Ask the running daemon to re-read its config (same as SIGHUP, but reports the result).
    ///
    /// With --confirm, the daemon goes back to the config it ran before unless `v6gate
    /// confirm` comes within that time (e.g. 120s); the management ports stay open throughout.
    Reload {
        #[command(flatten)]
        target: Target,
        /// Revert unless confirmed within this time (30s, 2m, ...).
        #[arg(long, value_name = "DURATION")]
        confirm: Option<String>,
    },
    /// Keep the config of a pending `reload --confirm`.
    Confirm {
        #[command(flatten)]
        target: Target,
    },
    /// Take one tunnel out of service: its SAs deleted, routes withdrawn, device closed.
    ///
    /// It stays down until `v6gate up`, a restart, or a reload that changes it.
    Down {
        tunnel: String,
        #[command(flatten)]
        target: Target,
    },
    /// Bring a tunnel taken down by `v6gate down` back.
    Up {
        tunnel: String,
        #[command(flatten)]
        target: Target,
    },
    /// Start IKE on an ipsec tunnel now, without waiting for the retry backoff or the peer.
    Initiate {
        tunnel: String,
        #[command(flatten)]
        target: Target,
    },
    /// Check the host for what breaks tunnels: forwarding, rp_filter, endpoint routes,
    /// firewall rules, MTU/MSS, IPv6, UDP 500/4500, TUN, clock, conntrack.
    ///
    /// Each check says pass, warn or fail, why it matters and the fix. The exit status is the
    /// worst result: 0 pass, 1 warn, 2 fail. Works with and without a running daemon.
    Doctor {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Machine-readable output: {"checks": [{"name", "result", "detail", "fix"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Print the other end's config for one tunnel, in that peer's words.
    ///
    /// Addresses and subnets are mirrored, suites, lifetimes, DPD and MSS clamping translated.
    /// The pre-shared key is a placeholder unless --with-secret is given.
    Export {
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// The tunnel whose peer is described.
        #[arg(long)]
        tunnel: String,
        #[arg(long, value_enum)]
        format: crate::export::Format,
        /// Write the real pre-shared key (the output is then a secret too).
        #[arg(long)]
        with_secret: bool,
        /// A prefix the peer routes into the tunnel (repeatable; default: our local_subnets,
        /// else the tunnel link's network).
        #[arg(long = "peer-route", value_name = "PREFIX")]
        peer_routes: Vec<ipnet::IpNet>,
    },
    /// Write the man pages and shell completions into a directory (used by packaging).
    #[command(hide = true)]
    Assets {
        #[arg(long)]
        out: PathBuf,
    },
    /// MAP-E calculator: the shared IPv4 address, PSID, ports, MAP address and BR a rule
    /// gives a prefix. Touches nothing.
    ///
    /// `--rule v6plus|ocn|biglobe` picks a built-in rule set; otherwise give the rule with
    /// --rule-ipv6-prefix, --rule-ipv4-prefix, --ea-bits, --br (and --psid-offset, --layout).
    Mape(crate::mape::MapeArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Status {
        json: false,
        target: Target::default(),
    });
    match command {
        Command::Run {
            config,
            log_level,
            metrics,
        } => {
            init_logging(log_level.as_deref());
            if let Some(why) = crate::mape::not_run_yet(&config) {
                tracing::error!("{why}");
                return ExitCode::from(2);
            }
            let loaded = control::Config::load(&config);
            // The command line wins over [gateway] metrics.
            let metrics = metrics.or_else(|| loaded.as_ref().ok().and_then(|c| c.gateway.metrics));
            let socket = loaded.map(|c| c.gateway.control_socket);
            let _watchdog = socket
                .as_ref()
                .ok()
                .and_then(|s| crate::systemd::Watchdog::start(s.clone()));
            let _metrics = match (metrics, &socket) {
                (Some(address), Ok(socket)) => {
                    match crate::metrics::server::MetricsServer::start(address, socket.clone()) {
                        Ok(server) => Some(server),
                        Err(e) => {
                            tracing::error!("metrics on {address}: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                _ => None,
            };
            match crate::daemon::run(&config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check { config } => match control::Config::load(&config) {
            Ok(cfg) => {
                for warning in &cfg.warnings {
                    eprintln!("{}:{warning} (warning)", config.display());
                }
                let names: Vec<&str> = (cfg.tunnels.iter().map(|t| t.name.as_str()))
                    .chain(cfg.softwires.iter().map(|s| s.name.as_str()))
                    .collect();
                println!(
                    "{}: ok, {} tunnel(s): {}{}",
                    config.display(),
                    names.len(),
                    names.join(", "),
                    crate::ddns::runner::check_summary(&cfg)
                );
                if let Some(summary) = crate::plan::summary(&cfg) {
                    println!("{summary}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Plan { config } => match crate::plan::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::from(2)
            }
        },
        Command::Status { json, target } => crate::operate::status(json, &target),
        Command::Reload { target, confirm } => {
            crate::operate::with_socket("reload", &target, |s| {
                crate::reload::reload(s, confirm.as_deref())
            })
        }
        Command::Confirm { target } => {
            crate::operate::with_socket("confirm", &target, crate::reload::confirm)
        }
        Command::Down { tunnel, target } => {
            crate::operate::act("down", &target, &Request::Down { tunnel })
        }
        Command::Up { tunnel, target } => {
            crate::operate::act("up", &target, &Request::Up { tunnel })
        }
        Command::Initiate { tunnel, target } => {
            crate::operate::act("initiate", &target, &Request::Initiate { tunnel })
        }
        Command::Doctor { config, json } => ExitCode::from(crate::doctor::main(&config, json)),
        Command::Export {
            config,
            tunnel,
            format,
            with_secret,
            peer_routes,
        } => {
            let options = crate::export::Options {
                with_secret,
                peer_routes,
            };
            ExitCode::from(crate::export::run(&config, &tunnel, format, &options))
        }
        Command::Assets { out } => match crate::assets::write(Cli::command(), &out) {
            Ok(files) => {
                for file in files {
                    println!("{}", file.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("v6gate assets: {}: {e}", out.display());
                ExitCode::FAILURE
            }
        },
        Command::Mape(args) => match crate::mape::run(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("v6gate mape: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn init_logging(level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into journals or files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn status_is_the_default_command() {
        let cli = Cli::try_parse_from(["v6gate"]).unwrap();
        assert!(cli.command.is_none());
    }

    #[test]
    fn run_takes_a_config() {
        let cli = Cli::try_parse_from(["v6gate", "run", "--config", "/tmp/x.toml"]).unwrap();
        match cli.command {
            Some(Command::Run { config, .. }) => assert_eq!(config, PathBuf::from("/tmp/x.toml")),
            other => panic!("parsed as {other:?}"),
        }
    }
}
