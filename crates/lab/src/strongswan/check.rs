//! Checks on config values: what strongSwan would misread is rejected, not escaped.

use std::fmt;
use std::time::Duration;

/// A config value strongSwan would not read back as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrongswanConfigError {
    /// Where, as a swanctl.conf / strongswan.conf key path.
    pub field: String,
    pub problem: String,
}

impl StrongswanConfigError {
    pub(super) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for StrongswanConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "strongSwan config {}: {}", self.field, self.problem)
    }
}

impl std::error::Error for StrongswanConfigError {}

/// Section names: strongSwan allows more, but these never need quoting anywhere.
pub(super) fn check_name(name: &str, field: &str) -> Result<(), StrongswanConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(StrongswanConfigError::new(
            field,
            format!("name {name:?} must be non-empty ASCII letters, digits, '-' or '_'"),
        ))
    }
}

/// Values written inside double quotes: no quote, backslash or control character.
pub(super) fn check_quotable(value: &str, field: &str) -> Result<(), StrongswanConfigError> {
    if value
        .chars()
        .any(|c| c == '"' || c == '\\' || c.is_control())
    {
        Err(StrongswanConfigError::new(
            field,
            format!("{value:?} contains a quote, backslash or control character"),
        ))
    } else {
        Ok(())
    }
}

/// A comma-separated list of bare tokens (proposals, traffic selectors).
pub(super) fn token_list(items: &[String], field: &str) -> Result<String, StrongswanConfigError> {
    if items.is_empty() {
        return Err(StrongswanConfigError::new(field, "the list is empty"));
    }
    for item in items {
        // Commas separate list items; the others end values or open sections and comments.
        let bad = item.is_empty()
            || item
                .chars()
                .any(|c| !c.is_ascii_graphic() || matches!(c, ',' | '{' | '}' | '"' | '#' | '='));
        if bad {
            return Err(StrongswanConfigError::new(
                field,
                format!("{item:?} is not a bare token (no spaces, ',', braces, quotes, '#', '=')"),
            ));
        }
    }
    Ok(items.join(","))
}

/// strongSwan's time values have whole-second resolution.
pub(super) fn seconds(duration: Duration, field: &str) -> Result<String, StrongswanConfigError> {
    if duration.is_zero() || duration.subsec_nanos() != 0 {
        return Err(StrongswanConfigError::new(
            field,
            format!("{duration:?} is not a positive whole number of seconds"),
        ));
    }
    Ok(format!("{}s", duration.as_secs()))
}
