//! Values a person wrote, quoted back in messages at a length a terminal and a log can take:
//! a config may hold a name of megabytes, and the problem with it fits in a line.

/// Longest quoted value, in characters, before it is cut and marked with "…".
pub const MAX_QUOTED_CHARS: usize = 64;

/// Longest key path printed, in characters: keys are made of names the file chose.
pub const MAX_KEY_CHARS: usize = 128;

/// `text` with every run between double quotes or backticks cut to [`MAX_QUOTED_CHARS`].
/// Escapes inside double quotes (`\"`) do not end the run.
pub fn shorten_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4096));
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let close = c;
        let mut kept = 0usize;
        let mut cut = false;
        let mut closed = false;
        while let Some((_, d)) = chars.next() {
            if d == close {
                closed = true;
                break;
            }
            let escaped = (close == '"' && d == '\\').then(|| chars.next().map(|(_, e)| e));
            if kept < MAX_QUOTED_CHARS {
                out.push(d);
                if let Some(Some(e)) = escaped {
                    out.push(e);
                }
            } else {
                cut = true;
            }
            kept += 1;
        }
        if cut {
            out.push('…');
        }
        if closed {
            out.push(close);
        }
    }
    out
}

/// `key` cut to [`MAX_KEY_CHARS`], marked with "…" when cut.
pub fn shorten(key: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match key.char_indices().nth(max) {
        None => key.into(),
        Some((at, _)) => format!("{}…", &key[..at]).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_left_alone() {
        let m = "\"v6g-a\" is already the device of tunnel[0]; unknown field `nme`";
        assert_eq!(shorten_quoted(m), m);
    }

    #[test]
    fn a_long_value_is_cut_and_marked() {
        let name = "x".repeat(10_000);
        let m = format!("name {name:?} is too long; also `{name}`");
        let want = format!(
            "name \"{}…\" is too long; also `{}…`",
            "x".repeat(64),
            "x".repeat(64)
        );
        assert_eq!(shorten_quoted(&m), want);
    }

    #[test]
    fn escapes_count_as_one_and_do_not_end_the_value() {
        let m = format!("found {:?} here", format!("a\"b{}", "é".repeat(100)));
        let got = shorten_quoted(&m);
        assert!(got.starts_with("found \"a\\\"bé"), "{got}");
        assert!(got.ends_with("é…\" here"), "{got}");
        assert_eq!(got.chars().filter(|&c| c == 'é').count(), 61);
    }

    #[test]
    fn an_unclosed_quote_is_cut_too() {
        let m = format!("odd \"{}", "y".repeat(100));
        assert_eq!(shorten_quoted(&m), format!("odd \"{}…", "y".repeat(64)));
    }

    #[test]
    fn keys_are_cut_by_characters() {
        assert_eq!(shorten("tunnel[0].name", MAX_KEY_CHARS), "tunnel[0].name");
        let long = "k".repeat(200);
        assert_eq!(shorten(&long, 128), format!("{}…", "k".repeat(128)));
    }
}
