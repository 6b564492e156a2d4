//! Configuration errors that point at the offending key and line.

use std::fmt;
use std::io;

use crate::quote::{MAX_KEY_CHARS, shorten, shorten_quoted};

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted key path with 0-based array indices, e.g. `tunnel[1].encap_limit`; empty when the
    /// problem is not tied to a key (unreadable file, TOML syntax).
    pub key: String,
    /// 1-based line and column (in characters) of the offending key or value.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

impl Diagnostic {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            location: None,
            message: shorten_quoted(&message.into()),
        }
    }

    /// `key: message`, or just the message when there is no key.
    fn fmt_body(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", shorten(&self.key, MAX_KEY_CHARS), self.message)
        }
    }
}

/// `line:col: key: message` (the origin is the caller's to add).
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, col)) = self.location {
            write!(f, "{line}:{col}: ")?;
        }
        self.fmt_body(f)
    }
}

/// Why a configuration was rejected: every problem found, each naming its key and line.
///
/// Displays one problem per line as `{origin}:{line}:{col}: {key}: {message}`.
#[derive(Debug)]
pub struct ConfigError {
    origin: String,
    diagnostics: Vec<Diagnostic>,
    io: Option<io::Error>,
}

impl ConfigError {
    /// Builds an error from at least one diagnostic.
    pub(crate) fn new(origin: &str, diagnostics: Vec<Diagnostic>) -> Self {
        debug_assert!(!diagnostics.is_empty());
        Self {
            origin: origin.to_owned(),
            diagnostics,
            io: None,
        }
    }

    pub(crate) fn io(origin: &str, error: io::Error) -> Self {
        Self {
            origin: origin.to_owned(),
            diagnostics: vec![Diagnostic::new("", format!("cannot read: {error}"))],
            io: Some(error),
        }
    }

    /// The file path (or other name) the configuration came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Key of the first problem (in file order), e.g. `tunnel[1].encap_limit`.
    pub fn key(&self) -> &str {
        self.diagnostics.first().map_or("", |d| d.key.as_str())
    }

    /// 1-based line of the first problem, if it has one.
    pub fn line(&self) -> Option<usize> {
        self.diagnostics
            .first()
            .and_then(|d| d.location)
            .map(|(line, _)| line)
    }

    /// Every problem, in file order.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            match d.location {
                Some((line, col)) => write!(f, "{}:{line}:{col}: ", self.origin)?,
                None => write!(f, "{}: ", self.origin)?,
            }
            d.fmt_body(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.io.as_ref().map(|e| e as _)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_one_problem_per_line() {
        let mut a = Diagnostic::new("tunnel[1].encap_limit", "expected 0..=255, found 300");
        a.location = Some((12, 15));
        let b = Diagnostic::new("", "no location");
        let e = ConfigError::new("/etc/v6gate.toml", vec![a, b]);
        assert_eq!(
            e.to_string(),
            "/etc/v6gate.toml:12:15: tunnel[1].encap_limit: expected 0..=255, found 300\n\
             /etc/v6gate.toml: no location"
        );
        assert_eq!(e.key(), "tunnel[1].encap_limit");
        assert_eq!(e.line(), Some(12));
    }

    #[test]
    fn io_error_is_the_source() {
        let e = ConfigError::io("/nope", io::Error::from(io::ErrorKind::NotFound));
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().starts_with("/nope: cannot read: "));
        assert_eq!(e.line(), None);
    }
}
