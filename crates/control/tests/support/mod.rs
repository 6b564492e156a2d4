//! Shared helpers for the control crate's integration tests.
#![allow(dead_code)]

use control::{Config, ConfigError, Diagnostic};

/// A `[[tunnel]]` table with the required keys, followed by `extra` lines.
pub fn tunnel(name: &str, remote: &str, extra: &str) -> String {
    format!(
        "[[tunnel]]\nname = \"{name}\"\nmode = \"ipip6\"\nlocal = \"2001:db8:a::1\"\n\
         remote = \"{remote}\"\n{extra}"
    )
}

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, "test.toml")
}

pub fn valid(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got:\n{e}\n--- text:\n{text}"),
    }
}

pub fn invalid(text: &str) -> ConfigError {
    match parse(text) {
        Ok(config) => panic!("expected an error, got {config:?}\n--- text:\n{text}"),
        Err(e) => e,
    }
}

/// 1-based line of the first line of `text` containing `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in text"))
        + 1
}

/// The error has a problem at `key` on `line` whose message contains `needle`; returns it.
pub fn has_problem<'e>(e: &'e ConfigError, key: &str, line: usize, needle: &str) -> &'e Diagnostic {
    let found = e
        .diagnostics()
        .iter()
        .find(|d| d.key == key && d.message.contains(needle));
    let Some(d) = found else {
        panic!("no problem at {key} containing {needle:?} in:\n{e}");
    };
    assert_eq!(
        d.location.map(|(l, _)| l),
        Some(line),
        "wrong line for {key} in:\n{e}"
    );
    let shown = format!("test.toml:{line}:");
    assert!(
        e.to_string()
            .lines()
            .any(|l| l.starts_with(&shown) && l.contains(&format!(": {key}: "))),
        "Display does not show {key} on line {line}:\n{e}"
    );
    d
}

/// Exactly one problem, at `key` on `line`, whose message contains `needle`.
pub fn only_problem(text: &str, key: &str, needle: &str, line_needle: &str) {
    let e = invalid(text);
    has_problem(&e, key, line_of(text, line_needle), needle);
    assert_eq!(e.diagnostics().len(), 1, "expected one problem:\n{e}");
    assert_eq!(e.key(), key);
    assert_eq!(e.line(), Some(line_of(text, line_needle)));
}

/// 1-based line of the last line of `text` starting with `prefix`.
pub fn last_line_starting(text: &str, prefix: &str) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .last()
        .unwrap_or_else(|| panic!("no line starts with {prefix:?}"))
        .0
        + 1
}

/// A `[[watch]]` table with the required keys (route through `wan4` at metric 10), followed by
/// `extra` lines.
pub fn watch(name: &str, extra: &str) -> String {
    format!(
        "[[watch]]\nname = \"{name}\"\ntarget = \"198.18.2.254\"\ndevice = \"wan4\"\n\
         route = {{ dst = \"0.0.0.0/0\", device = \"wan4\", metric = 10 }}\n{extra}"
    )
}

/// Exactly one problem, at `key` on 1-based `line`, whose message contains `needle`.
pub fn only_problem_on(text: &str, key: &str, needle: &str, line: usize) {
    let e = invalid(text);
    has_problem(&e, key, line, needle);
    assert_eq!(e.diagnostics().len(), 1, "expected one problem:\n{e}");
    assert_eq!((e.key(), e.line()), (key, Some(line)));
}
