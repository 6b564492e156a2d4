//! Maps key paths (`tunnel[1].mtu`) to places in the TOML text and back.
//!
//! Validation speaks in key paths only; this index, built once from the spanned document,
//! turns them into lines and columns. Serde errors come the other way: they carry a byte span,
//! and the index finds which key it belongs to.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

struct Entry {
    path: String,
    key_span: Option<Range<usize>>,
    value_span: Range<usize>,
}

/// Every key and array element of a document with its path and spans.
pub(crate) struct KeyIndex<'t> {
    text: &'t str,
    entries: Vec<Entry>,
}

impl<'t> KeyIndex<'t> {
    pub(crate) fn new(text: &'t str, root: &Spanned<DeTable<'_>>) -> Self {
        let mut entries = Vec::new();
        walk_table(root.get_ref(), "", &mut entries);
        Self { text, entries }
    }

    /// An index with no keys, for documents that did not parse: it still turns offsets into
    /// lines.
    pub(crate) fn empty(text: &'t str) -> Self {
        Self {
            text,
            entries: Vec::new(),
        }
    }

    /// Line and column of the value at `path`; for a key left out (its default applies) the
    /// nearest enclosing table that is written in the file.
    pub(crate) fn locate(&self, path: &str) -> Option<(usize, usize)> {
        let mut path = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == path) {
                let start = e.key_span.as_ref().map_or(e.value_span.start, |k| k.start);
                // Point at the value when the key is on the same line (`mtu = 10`), at the
                // key for tables, whose value span may start far away.
                let at = match &e.key_span {
                    Some(k)
                        if !self.text[k.start..e.value_span.start.max(k.start)].contains('\n') =>
                    {
                        e.value_span.start
                    }
                    _ => start,
                };
                return Some(self.line_col(at));
            }
            path = parent(path)?;
        }
    }

    /// Path of the innermost key or value whose span holds byte `offset`.
    pub(crate) fn path_at(&self, offset: usize) -> Option<&str> {
        let holds = |r: &Range<usize>| r.start <= offset && offset < r.end.max(r.start + 1);
        self.entries
            .iter()
            .filter_map(|e| {
                let spans = e.key_span.iter().chain(std::iter::once(&e.value_span));
                spans
                    .filter(|s| holds(s))
                    .map(|s| s.end - s.start)
                    .min()
                    .map(|len| (len, e.path.as_str()))
            })
            .min_by_key(|(len, _)| *len)
            .map(|(_, path)| path)
    }

    /// 1-based line and column (counted in characters) of byte `offset`.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

/// `tunnel[1].mtu` -> `tunnel[1]` -> `tunnel` -> None.
fn parent(path: &str) -> Option<&str> {
    let cut = path.rfind(['.', '['])?;
    Some(&path[..cut])
}

fn walk_table(table: &DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        walk_value(value, path, Some(key.span()), out);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: String,
    key_span: Option<Range<usize>>,
    out: &mut Vec<Entry>,
) {
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, &path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, format!("{path}[{i}]"), None, out);
            }
        }
        _ => {}
    }
    out.push(Entry {
        path,
        key_span,
        value_span: value.span(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[gateway]\npin_table = 7\n\n[[tunnel]]\nname = \"a\"\naddress = [\"x\", \"y\"]\n\n[[tunnel]]\nname = \"b\"\nmtu = 1400\n";

    fn with_index(f: impl FnOnce(&KeyIndex<'_>)) {
        let doc = DeTable::parse(TEXT).unwrap();
        f(&KeyIndex::new(TEXT, &doc));
    }

    #[test]
    fn locates_values() {
        with_index(|ix| {
            assert_eq!(ix.locate("gateway.pin_table"), Some((2, 13)));
            assert_eq!(ix.locate("tunnel[1].mtu"), Some((10, 7)));
            assert_eq!(ix.locate("tunnel[0].address[1]"), Some((6, 17)));
        });
    }

    #[test]
    fn absent_keys_fall_back_to_their_table() {
        with_index(|ix| {
            let (line, _) = ix.locate("tunnel[1].hop_limit").unwrap();
            assert!((8..=10).contains(&line), "line {line}");
            assert_eq!(ix.locate("nothing.here"), None);
        });
    }

    #[test]
    fn finds_path_of_offset() {
        with_index(|ix| {
            let at = TEXT.find("1400").unwrap();
            assert_eq!(ix.path_at(at), Some("tunnel[1].mtu"));
            let at = TEXT.find("pin_table").unwrap();
            assert_eq!(ix.path_at(at), Some("gateway.pin_table"));
            let at = TEXT.find("\"y\"").unwrap();
            assert_eq!(ix.path_at(at), Some("tunnel[0].address[1]"));
        });
    }

    #[test]
    fn line_col_counts_characters() {
        let ix = KeyIndex::empty("ab\nñx = 1");
        assert_eq!(ix.line_col(0), (1, 1));
        assert_eq!(ix.line_col(3), (2, 1));
        assert_eq!(ix.line_col(5), (2, 2));
        assert_eq!(ix.line_col(4), (2, 1));
        assert_eq!(ix.line_col(999), (2, 7));
    }

    #[test]
    fn parents() {
        assert_eq!(parent("tunnel[1].mtu"), Some("tunnel[1]"));
        assert_eq!(parent("tunnel[1]"), Some("tunnel"));
        assert_eq!(parent("tunnel"), None);
    }
}
