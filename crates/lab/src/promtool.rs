//! Prometheus' own linter, `promtool check metrics` (Debian package prometheus), for the
//! unit tests of the exposition and the end-to-end tests that scrape a running gateway alike.

use std::io::Write;
use std::process::{Command, Stdio};

/// What promtool says of the exposition `text`: `None` when it accepts it without a word,
/// otherwise its exit status and output.
///
/// # Panics
/// When promtool cannot be run: the tests that call this need it.
pub fn promtool_objections(text: &str) -> Option<String> {
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
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool's output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (!out.status.success() || !said.is_empty())
        .then(|| format!("exit {:?}\n{said}", out.status.code()))
}
