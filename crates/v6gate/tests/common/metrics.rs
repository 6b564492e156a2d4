//! Scraping a gateway's `/metrics` inside its namespace and reading its samples (promtool's
//! check is `v6gate_lab::promtool_objections`, shared with the exposition's unit tests).

use std::process::Command;

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

/// The value of the sample `series` (name with its labels, as rendered).
pub fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
