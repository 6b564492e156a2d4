//! "Did you mean": the closest word a place accepts, by edit distance.

/// Levenshtein distance over characters (insert, delete, substitute each cost one).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The candidate nearest to `word`, if it is near enough to be a slip of the keyboard or a
/// half-remembered name: at most a third of the word's length away (at least one edit), or the
/// word is a prefix of it (`enc` → `encap_limit`). The first of equally near candidates wins.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_len = word.chars().count();
    let bound = (word_len / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        if candidate == word {
            continue;
        }
        let d = edit_distance(word, candidate);
        let prefix = word_len >= 3 && candidate.starts_with(word);
        if (d <= bound || prefix) && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_the_textbook_cases() {
        // The classic pairs from Levenshtein distance write-ups.
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("flaw", "lawn"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("gumbo", "gambol"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn near_words_are_suggested_far_ones_not() {
        let modes = ["ipip6", "ip6ip6", "any", "ipsec", "map-e", "ds-lite"];
        assert_eq!(closest("ipip", modes), Some("ipip6"));
        assert_eq!(closest("ipsc", modes), Some("ipsec"));
        assert_eq!(closest("mape", modes), Some("map-e"));
        assert_eq!(closest("gre", modes), None);
        let keys = ["name", "device", "encap_limit", "remote", "routes"];
        assert_eq!(closest("nme", keys), Some("name"));
        assert_eq!(closest("encap", keys), Some("encap_limit"));
        assert_eq!(closest("peer", keys), None);
        assert_eq!(closest("remote_id", keys), Some("remote"));
    }
}
