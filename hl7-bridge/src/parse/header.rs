//! The MSH fields read straight from raw bytes, for the cases where the message as a whole
//! cannot be parsed (or is too large to be read) but the sender still needs an ACK that names
//! its control id, its applications and its version.

use crate::message::Delimiters;

/// MSH fields of a message that may be broken everywhere after its first segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHeader {
    pub field_separator: char,
    pub encoding_characters: String,
    /// MSH-1 and MSH-2 as the parser reads them; None when they are not usable delimiters.
    pub delimiters: Option<Delimiters>,
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    /// MSH-9.1 and MSH-9.2.
    pub message_code: String,
    pub trigger_event: String,
    pub control_id: String,
    pub processing_id: String,
    pub version: String,
    pub accept_ack_type: String,
    pub application_ack_type: String,
    /// MSH-18 as written (empty when not declared).
    pub character_set: String,
}

/// Reads what it can of the MSH segment at the start of `bytes` (after an optional BOM and
/// blank lines); None when the input does not start with `MSH` and a field separator.
/// Values are raw (escape sequences not decoded); non-UTF-8 bytes are replaced.
pub fn sniff_header(bytes: &[u8]) -> Option<RawHeader> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'))?;
    let bytes = &bytes[start..];
    if !bytes.starts_with(b"MSH") || bytes.len() < 4 || !bytes[3].is_ascii_punctuation() {
        return None;
    }
    let sep = bytes[3];
    let text = |n: usize| String::from_utf8_lossy(raw_msh_field(bytes, sep, n)).into_owned();
    let encoding_characters = text(2);
    let component = encoding_characters.chars().next().unwrap_or('^');
    let part = |n: usize, c: usize| text(n).split(component).nth(c - 1).unwrap_or("").to_string();
    Some(RawHeader {
        field_separator: sep as char,
        encoding_characters: encoding_characters.clone(),
        delimiters: super::read_delimiters(bytes).ok(),
        sending_application: text(3),
        sending_facility: text(4),
        receiving_application: text(5),
        receiving_facility: text(6),
        message_code: part(9, 1),
        trigger_event: part(9, 2),
        control_id: text(10),
        processing_id: part(11, 1),
        version: part(12, 1),
        accept_ack_type: text(15),
        application_ack_type: text(16),
        character_set: text(18),
    })
}

/// MSH field `n` (1-based, MSH-1 being the separator itself) of the first line of `bytes`.
pub(super) fn raw_msh_field(bytes: &[u8], sep: u8, n: usize) -> &[u8] {
    let end = bytes.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(bytes.len());
    let line = &bytes[..end];
    match n {
        0 => &[],
        1 => line.get(3..4).unwrap_or(&[]),
        // Field k ≥ 2 is the (k-1)-th piece after "MSH" when splitting on the separator.
        _ => line.get(4..).and_then(|rest| rest.split(|&b| b == sep).nth(n - 2)).unwrap_or(&[]),
    }
}
