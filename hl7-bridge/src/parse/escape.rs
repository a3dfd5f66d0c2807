//! HL7 v2 escape sequences (`\F\`, `\S\`, `\T\`, `\R\`, `\E\`, `\P\`, `\H\`, `\N\`, `\Xhh…\`,
//! `\Z…\`, `\C…\`, `\M…\`, `\.br\` …), decoded and encoded on characters, never on byte
//! offsets into multi-byte text.

use crate::message::{Charset, Delimiters};

/// Decodes the escape sequences of one raw value (a subcomponent as it appears on the wire).
///
/// Delimiter escapes give the delimiter; `\H\`/`\N\` (highlighting), `\Z…\` (locally defined),
/// `\C…\`/`\M…\` (character-set switches) and unknown formatting commands are dropped;
/// `\Xhh…\` gives the bytes read in `charset`; `\.br\` and `\.sp n\` give line breaks. An
/// escape character without a closing one is kept as written.
pub fn decode(raw: &str, delimiters: &Delimiters, charset: Charset) -> String {
    let Some(esc) = delimiters.escape else { return raw.to_string() };
    if !raw.contains(esc) {
        return raw.to_string();
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find(esc) {
        out.push_str(&rest[..start]);
        let after = &rest[start + esc.len_utf8()..];
        let Some(end) = after.find(esc) else {
            // An unterminated escape: keep the remainder verbatim.
            out.push_str(&rest[start..]);
            return out;
        };
        let body = &after[..end];
        if !expand(body, delimiters, charset, &mut out) {
            out.push(esc);
            out.push_str(body);
            out.push(esc);
        }
        rest = &after[end + esc.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Appends what the escape sequence `body` (between the escape characters) stands for;
/// false when it is not an escape sequence (then the caller keeps it literally).
fn expand(body: &str, d: &Delimiters, charset: Charset, out: &mut String) -> bool {
    let mut chars = body.chars();
    let Some(kind) = chars.next() else { return false };
    let arg = chars.as_str();
    match (kind, arg) {
        ('F', "") => out.push(d.field),
        ('S', "") => out.push(d.component),
        ('T', "") => out.push(d.subcomponent),
        ('R', "") => out.push(d.repetition),
        ('E', "") => out.extend(d.escape),
        ('P', "") => match d.truncation {
            Some(t) => out.push(t),
            None => return false,
        },
        ('H' | 'N', "") => {}
        ('X', hex) => match hex_bytes(hex) {
            Some(bytes) => out.push_str(&decode_bytes(&bytes, charset)),
            None => return false,
        },
        ('Z' | 'C' | 'M', _) => {}
        ('.', command) => formatting(command, out),
        _ => return false,
    }
    true
}

/// The formatted-text (FT) commands: line breaks and spaces are kept, layout hints dropped.
fn formatting(command: &str, out: &mut String) {
    let (name, count) = match command.find(|c: char| c == ' ' || c == '+' || c == '-' || c.is_ascii_digit()) {
        Some(i) => (&command[..i], command[i..].trim().trim_start_matches('+').parse::<usize>().unwrap_or(1)),
        None => (command, 1),
    };
    let count = count.min(100);
    match name {
        "br" => out.push('\n'),
        "sp" => out.extend(std::iter::repeat_n('\n', count)),
        "sk" => out.extend(std::iter::repeat_n(' ', count)),
        _ => {}
    }
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || hex.len() % 2 != 0 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect()
}

/// Text of raw bytes in the message's character set (invalid UTF-8 becomes U+FFFD).
pub(crate) fn decode_bytes(bytes: &[u8], charset: Charset) -> String {
    match charset {
        Charset::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
        Charset::Latin1 => bytes.iter().map(|&b| b as char).collect(),
        Charset::Ascii => bytes.iter().map(|&b| if b.is_ascii() { b as char } else { char::REPLACEMENT_CHARACTER }).collect(),
    }
}

/// Escapes the delimiters (and the escape character) in `text` so it can be written as one
/// subcomponent; line breaks become `\X0D\`/`\X0A\`, since a CR would end the segment.
pub fn encode(text: &str, d: &Delimiters) -> String {
    let Some(esc) = d.escape else {
        // Nothing can be escaped: drop what would break the structure.
        return text.chars().filter(|&c| !is_structural(c, d)).collect();
    };
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = match c {
            c if c == d.field => "F",
            c if c == d.component => "S",
            c if c == d.subcomponent => "T",
            c if c == d.repetition => "R",
            c if c == esc => "E",
            c if Some(c) == d.truncation => "P",
            '\r' => "X0D",
            '\n' => "X0A",
            c => {
                out.push(c);
                continue;
            }
        };
        out.push(esc);
        out.push_str(code);
        out.push(esc);
    }
    out
}

fn is_structural(c: char, d: &Delimiters) -> bool {
    c == d.field || c == d.component || c == d.subcomponent || c == d.repetition || c == '\r' || c == '\n' || Some(c) == d.truncation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(raw: &str) -> String {
        decode(raw, &Delimiters::default(), Charset::Utf8)
    }

    #[test]
    fn delimiter_escapes_after_multibyte_text_are_decoded_by_character() {
        assert_eq!(dec(r"ééé \T\ x"), "ééé & x");
        assert_eq!(dec(r"Grüße \F\ \S\ \R\ \E\ ü"), "Grüße | ^ ~ \\ ü");
    }

    #[test]
    fn highlight_charset_and_local_escapes_are_dropped() {
        assert_eq!(dec(r"\H\bold\N\ text"), "bold text");
        assert_eq!(dec(r"a\Zfoo\b\C2842\c\M2442\d"), "abcd");
    }

    #[test]
    fn hex_escapes_decode_in_the_message_charset() {
        assert_eq!(dec(r"line\X0D\\X0A\next"), "line\r\nnext");
        assert_eq!(dec(r"caf\XC3A9\"), "café");
        assert_eq!(decode(r"caf\XE9\", &Delimiters::default(), Charset::Latin1), "café");
        // Not hex: kept as written.
        assert_eq!(dec(r"\XZZ\"), r"\XZZ\");
    }

    #[test]
    fn formatting_commands_give_line_breaks() {
        assert_eq!(dec(r"one\.br\two\.sp 2\three\.in+4\"), "one\ntwo\n\nthree");
    }

    #[test]
    fn unterminated_and_unknown_escapes_stay_literal() {
        assert_eq!(dec(r"50\% off \Q\ end\"), r"50\% off \Q\ end\");
        assert_eq!(dec(r"a\\b"), r"a\\b");
    }

    #[test]
    fn truncation_escape_needs_a_truncation_character() {
        let d = Delimiters { truncation: Some('#'), ..Delimiters::default() };
        assert_eq!(decode(r"a\P\b", &d, Charset::Utf8), "a#b");
        assert_eq!(dec(r"a\P\b"), r"a\P\b");
    }

    #[test]
    fn encode_round_trips_through_decode() {
        let d = Delimiters::default();
        for text in ["plain", "a|b^c&d~e\\f", "ééé & x", "two\r\nlines"] {
            assert_eq!(decode(&encode(text, &d), &d, Charset::Utf8), text);
        }
    }
}
