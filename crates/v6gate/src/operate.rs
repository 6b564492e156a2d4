//! The commands that talk to a running daemon: `status`, `reload`, `confirm`, `up`, `down`,
//! `initiate`.
//! Each finds the daemon's control socket from `--socket`, else from the config's
//! `[gateway] control_socket`, else at the default place.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::status::{self, Request, Response};

pub const DEFAULT_CONFIG: &str = "/etc/v6gate/v6gate.toml";
pub const DEFAULT_SOCKET: &str = "/run/v6gate/v6gate.sock";

/// Which daemon to talk to.
#[derive(Debug, Clone, Default, Args)]
pub struct Target {
    /// The daemon's config file; its [gateway] control_socket is used (default
    /// /etc/v6gate/v6gate.toml, when it exists).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The control socket itself (default /run/v6gate/v6gate.sock).
    #[arg(long, conflicts_with = "config")]
    pub socket: Option<PathBuf>,
}

impl Target {
    /// The socket to connect to. A config named on the command line must load; the default
    /// one is only a hint (a file being edited must not keep `status` from the daemon).
    pub fn socket(&self) -> anyhow::Result<PathBuf> {
        if let Some(socket) = &self.socket {
            return Ok(socket.clone());
        }
        match &self.config {
            Some(config) => socket_of(config),
            None => Ok(socket_of(Path::new(DEFAULT_CONFIG))
                .unwrap_or_else(|_| PathBuf::from(DEFAULT_SOCKET))),
        }
    }
}

fn socket_of(config: &Path) -> anyhow::Result<PathBuf> {
    let config = control::Config::load(config)
        .with_context(|| format!("finding the control socket in {}", config.display()))?;
    Ok(config.gateway.control_socket)
}

fn ask(command: &str, target: &Target, request: &Request) -> Result<Response, ExitCode> {
    let answer = target
        .socket()
        .and_then(|socket| status::query(&socket, request));
    answer.map_err(|e| {
        eprintln!("v6gate {command}: {e:#}");
        ExitCode::FAILURE
    })
}

pub fn status(json: bool, target: &Target) -> ExitCode {
    match ask("status", target, &Request::Status) {
        Ok(Response::Status(s)) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s).expect("status serialises")
                );
            } else {
                print!("{}", status::render(&s));
            }
            ExitCode::SUCCESS
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

/// Runs `command` on the socket `target` names, or says why there is none.
pub fn with_socket(
    command: &str,
    target: &Target,
    run: impl FnOnce(&Path) -> ExitCode,
) -> ExitCode {
    match target.socket() {
        Ok(socket) => run(&socket),
        Err(e) => {
            eprintln!("v6gate {command}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `up`, `down` or `initiate` on one tunnel.
pub fn act(command: &str, target: &Target, request: &Request) -> ExitCode {
    match ask(command, target, request) {
        Ok(Response::Done { summary }) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Ok(Response::Error { message }) => {
            eprintln!("v6gate {command}: {message}");
            ExitCode::FAILURE
        }
        Ok(other) => unexpected(&other),
        Err(code) => code,
    }
}

fn unexpected(answer: &Response) -> ExitCode {
    eprintln!("unexpected answer from the daemon: {answer:?}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_comes_from_the_flag_then_the_config() {
        let dir = std::env::temp_dir().join(format!("v6gate-operate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gw.toml");
        std::fs::write(
            &file,
            "[gateway]\ncontrol_socket = \"/run/v6gate/site-b.sock\"\n",
        )
        .unwrap();
        let by_config = Target {
            config: Some(file.clone()),
            socket: None,
        };
        assert_eq!(
            by_config.socket().unwrap(),
            PathBuf::from("/run/v6gate/site-b.sock")
        );
        let by_flag = Target {
            config: None,
            socket: Some("/tmp/x.sock".into()),
        };
        assert_eq!(by_flag.socket().unwrap(), PathBuf::from("/tmp/x.sock"));
        // A named config that does not load is an error, not a silent default.
        let missing = Target {
            config: Some(dir.join("absent.toml")),
            socket: None,
        };
        let e = missing.socket().unwrap_err();
        assert!(format!("{e:#}").contains("absent.toml"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
