//! Running external commands to completion (`ip`, `sysctl`, `v6gate status`).

use std::fs;
use std::process::{Command, Output, Stdio};

use crate::error::LabError;

/// True when the process runs as root.
pub fn is_root() -> bool {
    // The real uid from /proc avoids an unsafe libc call; the "Uid:" line is
    // "real effective saved fs".
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

pub(crate) fn describe(program: &str, args: &[&str]) -> String {
    let mut text = program.to_owned();
    for arg in args {
        text.push(' ');
        text.push_str(arg);
    }
    text
}

/// Runs a command to completion with no stdin and returns its output, an error only when
/// it could not be started.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<Output, LabError> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::io(format!("cannot run `{}`", describe(program, args)), e))
}

/// Runs a command and insists on exit code 0; returns stdout.
pub(crate) fn run_ok(program: &str, args: &[&str]) -> Result<String, LabError> {
    let output = run(program, args)?;
    checked(describe(program, args), output)
}

pub(crate) fn checked(command: String, output: Output) -> Result<String, LabError> {
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(LabError::Command {
            command,
            status: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
