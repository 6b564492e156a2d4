//! Unknown keys, all of them: serde stops at the first key a table does not know, so each one
//! it names is recorded (with the nearest key valid at that place) and taken out of the
//! document, and the document deserialised again, until only known keys are left. The rest
//! of the checks then run on what remains, so one `check` reports everything.

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::serde_diagnostic;
use crate::error::Diagnostic;
use crate::file::FileConfig;
use crate::locate::KeyIndex;
use crate::suggest::closest;

/// Most unknown keys reported before giving up on the file; each costs one deserialisation.
const MAX_UNKNOWN: usize = 64;
/// Longest key a suggestion is looked for; a longer one is no slip of the keyboard.
const MAX_SUGGESTED: usize = 64;

/// The file's shape, and a diagnostic for each unknown key taken out of it; or, when the
/// shape is wrong beyond unknown keys, every diagnostic found until then.
pub(super) fn deserialize(
    mut doc: Spanned<DeTable<'_>>,
    index: &KeyIndex<'_>,
) -> Result<(FileConfig, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut unknown = Vec::new();
    loop {
        let e = match FileConfig::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(file) => return Ok((file, unknown)),
            Err(e) => e,
        };
        let d = serde_diagnostic(&e, index);
        let Some((field, expected)) = unknown_field(e.message()) else {
            unknown.push(d);
            return Err(in_file_order(unknown));
        };
        let removed = e
            .span()
            .is_some_and(|at| remove_key_at(doc.get_mut(), at.start));
        let near = if field.len() <= MAX_SUGGESTED {
            closest(&field, expected.iter().map(String::as_str))
        } else {
            None
        };
        let message = match near {
            Some(near) => format!("unknown field `{field}`; did you mean `{near}`?"),
            None if expected.is_empty() => format!("unknown field `{field}`, there are no fields"),
            None => format!(
                "unknown field `{field}`, expected one of {}",
                expected.join(", ")
            ),
        };
        let mut named = Diagnostic::new(d.key, message);
        named.location = d.location;
        unknown.push(named);
        if !removed || unknown.len() >= MAX_UNKNOWN {
            return Err(in_file_order(unknown));
        }
    }
}

fn in_file_order(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by_key(|d| d.location.unwrap_or((usize::MAX, 0)));
    diagnostics
}

/// The key and the keys valid in its place, from serde's `unknown field `x`, expected …`.
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((field.to_owned(), expected))
}

/// Removes the key whose name starts at byte `at`, wherever it is nested.
fn remove_key_at(table: &mut DeTable<'_>, at: usize) -> bool {
    let found = table
        .iter()
        .find(|(k, _)| k.span().contains(&at))
        .map(|(k, _)| k.get_ref().clone());
    if let Some(key) = found {
        return table.remove(key.as_ref()).is_some();
    }
    table.iter_mut().any(|(_, v)| remove_in(v.get_mut(), at))
}

fn remove_in(value: &mut DeValue<'_>, at: usize) -> bool {
    match value {
        DeValue::Table(t) => remove_key_at(t, at),
        DeValue::Array(items) => items.iter_mut().any(|v| remove_in(v.get_mut(), at)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_words_are_read_back() {
        let (f, e) =
            unknown_field("unknown field `nme`, expected one of `name`, `mode`, `local`").unwrap();
        assert_eq!(f, "nme");
        assert_eq!(e, ["name", "mode", "local"]);
        let (f, e) = unknown_field("unknown field `x`, expected `y` or `z`").unwrap();
        assert_eq!((f.as_str(), e), ("x", vec!["y".to_owned(), "z".to_owned()]));
        let (_, e) = unknown_field("unknown field `x`, there are no fields").unwrap();
        assert!(e.is_empty());
        assert!(unknown_field("missing field `name`").is_none());
    }
}
