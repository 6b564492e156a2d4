//! Scraping a gateway's `/metrics` inside its namespace and checking it with Prometheus' own
//! `promtool check metrics` (Debian package prometheus).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use super::PYTHON;

/// GET http://`address`/metrics from inside `namespace` (the server listens on that
/// namespace's loopback).
pub fn scrape(namespace: &str, address: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", namespace, PYTHON, "-c"])
        .arg(format!(
            "import urllib.request\nprint(urllib.request.urlopen('http://{address}/metrics', \
             timeout=5).read().decode(), end='')"
        ))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn promtool(metrics: &str) -> Output {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Whether promtool said nothing and succeeded.
pub fn promtool_accepts(check: &Output) -> bool {
    check.status.success() && check.stdout.is_empty() && check.stderr.is_empty()
}

/// The value of the sample `series` (name with its labels, as rendered).
pub fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
