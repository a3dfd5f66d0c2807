//! Text handling shared by indexing and search: string normalisation and the FHIR search
//! escapes (`\,` `\|` `\$` `\\`).

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The form string search compares: lowercase, decomposed (NFD), combining marks dropped, so
/// `Zoë`, `ZOE` and `zoe` all become `zoe`. Lowercasing first matters: some capitals lowercase
/// to a letter plus a combining mark, which the next step must see.
pub(crate) fn normalize(text: &str) -> String {
    text.to_lowercase()
        .nfd()
        .filter(|c| !is_combining_mark(*c))
        .collect()
}

/// Splits `value` on every `sep` not escaped by a backslash. Pieces keep their escapes so a
/// later split on another separator (`|` inside a token) still sees them.
pub(crate) fn split_unescaped(value: &str, sep: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            pieces.push(&value[start..i]);
            start = i + c.len_utf8();
        }
    }
    pieces.push(&value[start..]);
    pieces
}

/// Removes the search escapes. A backslash before any other character is kept as it is,
/// since the spec defines only these four and a literal backslash is otherwise harmless.
pub(crate) fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&next @ (',' | '|' | '$' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_case_and_accents() {
        assert_eq!(normalize("Zoë"), "zoe");
        assert_eq!(normalize("ÅSTRÖM"), "astrom");
        assert_eq!(normalize("Müller-Lüdenscheidt"), "muller-ludenscheidt");
        assert_eq!(normalize("İpek"), "ipek");
    }

    #[test]
    fn escapes_protect_separators() {
        assert_eq!(split_unescaped(r"a,b\,c,d", ','), vec!["a", r"b\,c", "d"]);
        assert_eq!(split_unescaped(r"a\\,b", ','), vec![r"a\\", "b"]);
        assert_eq!(split_unescaped("", ','), vec![""]);
        assert_eq!(unescape(r"b\,c\|d\$e\\f\g"), r"b,c|d$e\f\g");
    }
}
