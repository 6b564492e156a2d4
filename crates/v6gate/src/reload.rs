//! `v6gate reload [--confirm DURATION]` and `v6gate confirm`: ask the running daemon to apply
//! its config file, optionally on trial, and keep a trial config.

use std::path::Path;
use std::process::ExitCode;

use crate::status::{self, Request, Response};

/// Longest trial: a revert that far away protects nothing.
const MAX_CONFIRM_SECS: u64 = 24 * 3600;

pub fn reload(socket: &Path, confirm: Option<&str>) -> ExitCode {
    let request = match confirm {
        None => Request::Reload,
        Some(text) => match control::parse_duration(text) {
            Ok(d) if (1..=MAX_CONFIRM_SECS).contains(&d.as_secs()) => Request::ReloadConfirm {
                seconds: d.as_secs(),
            },
            Ok(_) => {
                eprintln!("--confirm: {text}: give 1s to 24h");
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("--confirm: {text}: {e}");
                return ExitCode::from(2);
            }
        },
    };
    answer("reload", status::query(socket, &request))
}

pub fn confirm(socket: &Path) -> ExitCode {
    answer("confirm", status::query(socket, &Request::Confirm))
}

fn answer(what: &str, response: anyhow::Result<Response>) -> ExitCode {
    match response {
        Ok(Response::Reloaded { summary } | Response::Confirmed { summary }) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Ok(Response::Error { message }) => {
            eprintln!("{what} refused, running config kept:\n{message}");
            ExitCode::FAILURE
        }
        Ok(other) => {
            eprintln!("unexpected answer from the daemon: {other:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("v6gate {what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
