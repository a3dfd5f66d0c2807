//! The string bound both backends' search translations turn "starts with" into: a prefix
//! search is the range `[prefix, prefix_successor(prefix))`, which an index can seek.

/// The smallest string greater than every string starting with `prefix`, or None when there
/// is none (every character is U+10FFFF). UTF-8 byte order equals code point order, so the
/// range is exactly "starts with" in SQLite's and MongoDB's binary string comparison.
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_successor;

    #[test]
    fn prefix_successor_bounds_exactly_the_prefixed_strings() {
        assert_eq!(prefix_successor("smi").as_deref(), Some("smj"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
    }
}
