//! `v6gate doctor`: looks at the host the way the field's write-ups had to by hand, and says
//! for each finding whether it passes, deserves a look (warn) or breaks tunnels (fail), why it
//! matters, and the fix.
//!
//! Reads only: sysctls, /proc, the kernel's route lookups, the nftables ruleset, and the
//! running daemon's status when there is one. One file per group of checks.

mod firewall;
mod host;
mod names;
mod routes;
mod sockets;

use std::fmt::Write as _;
use std::path::Path;

use control::Config;
use serde::Serialize;

/// A check's verdict; ordered so that the worst is the greatest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Warn,
    Fail,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One finding: `{"name", "result", "detail", "fix"}` in `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub result: Outcome,
    /// What was found, and why it matters.
    pub detail: String,
    /// What to do; empty when nothing is to be done.
    pub fix: String,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            result: Outcome::Pass,
            detail: detail.into(),
            fix: String::new(),
        }
    }

    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            result: Outcome::Warn,
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            result: Outcome::Fail,
            detail: detail.into(),
            fix: fix.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// The worst result, `Pass` for no checks.
    pub fn worst(&self) -> Outcome {
        self.checks
            .iter()
            .map(|c| c.result)
            .max()
            .unwrap_or(Outcome::Pass)
    }

    /// Exit status: 0 all passed, 1 a warning, 2 a failure.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Outcome::Pass => 0,
            Outcome::Warn => 1,
            Outcome::Fail => 2,
        }
    }

    /// For a person: one line per check, the why and the fix indented under it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let _ = writeln!(out, "{:<4}  {}: {}", c.result.as_str(), c.name, c.detail);
            if !c.fix.is_empty() {
                let _ = writeln!(out, "      fix: {}", c.fix);
            }
        }
        let count = |o: Outcome| self.checks.iter().filter(|c| c.result == o).count();
        let _ = writeln!(
            out,
            "{} passed, {} warnings, {} failed",
            count(Outcome::Pass),
            count(Outcome::Warn),
            count(Outcome::Fail)
        );
        out
    }
}

/// Runs every check against this host for `config` (host-wide checks only without one).
pub fn run(config: Option<&Config>) -> Report {
    let mut checks = Vec::new();
    checks.extend(host::checks(config));
    checks.extend(routes::checks(config));
    checks.extend(firewall::checks(config));
    checks.extend(sockets::checks(config));
    checks.extend(names::checks(config));
    Report { checks }
}

/// `v6gate doctor` as the CLI runs it; returns the exit status.
pub fn main(config_path: &Path, json: bool) -> u8 {
    let loaded = Config::load(config_path);
    let mut report = match &loaded {
        Ok(config) => run(Some(config)),
        Err(_) => run(None),
    };
    if let Err(e) = &loaded {
        report.checks.insert(
            0,
            Check::fail(
                "config",
                format!(
                    "{} does not load, so no tunnel is checked: {e}",
                    config_path.display()
                ),
                format!(
                    "fix the config (`v6gate check --config {}`)",
                    config_path.display()
                ),
            ),
        );
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
    } else {
        print!("{}", report.render());
    }
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_result_sets_the_exit_status() {
        let mut report = Report::default();
        assert_eq!(report.exit_code(), 0);
        report.checks.push(Check::pass("a", "ok"));
        assert_eq!(report.exit_code(), 0);
        report.checks.push(Check::warn("b", "meh", "do x"));
        assert_eq!(report.exit_code(), 1);
        report.checks.push(Check::fail("c", "bad", "do y"));
        report.checks.push(Check::pass("d", "ok"));
        assert_eq!(report.exit_code(), 2);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["checks"][2]["result"], "fail");
        assert_eq!(json["checks"][2]["fix"], "do y");
        assert!(report.render().contains("2 passed, 1 warnings, 1 failed"));
    }
}
