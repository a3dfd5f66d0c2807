//! The character set of a message (MSH-18): read from the raw bytes before anything is
//! decoded, then used to turn the bytes into text.

use crate::error::{ErrorCode, Hl7Error};
use crate::message::{Charset, Delimiters, Location};

use super::header::raw_msh_field;

/// The character set MSH-18 declares; `Ok(None)` inside means "not declared".
pub(super) fn declared(bytes: &[u8], delimiters: &Delimiters) -> Result<Option<Charset>, Hl7Error> {
    let value = raw_msh_field(bytes, delimiters.field as u8, 18);
    let first = value.split(|&b| b == delimiters.repetition as u8 || b == delimiters.component as u8).next().unwrap_or(&[]);
    let name = String::from_utf8_lossy(first).trim().to_ascii_uppercase();
    if name.is_empty() {
        return Ok(None);
    }
    match charset_named(&name) {
        Some(charset) => Ok(Some(charset)),
        None => Err(Hl7Error::new(
            ErrorCode::TableValueNotFound,
            Some(Location::field("MSH", 1, 18)),
            format!("character set {name:?} is not supported (use ASCII, 8859/1 or UNICODE UTF-8)"),
        )),
    }
}

/// Decodes the whole message. Without a declared character set, valid UTF-8 is read as UTF-8
/// and anything else as ISO 8859-1 (every byte is a character there, so nothing is lost).
pub(super) fn decode(bytes: &[u8], declared: Option<Charset>) -> Result<(String, Charset), Hl7Error> {
    let bad = |message: String| Hl7Error::data_type(Location::field("MSH", 1, 18), message);
    match declared {
        Some(Charset::Ascii) => match bytes.iter().position(|b| !b.is_ascii()) {
            Some(at) => Err(bad(format!("byte 0x{:02X} at offset {at} is not ASCII, as MSH-18 declares", bytes[at]))),
            None => Ok((latin1(bytes), Charset::Ascii)),
        },
        Some(Charset::Latin1) => Ok((latin1(bytes), Charset::Latin1)),
        Some(Charset::Utf8) => match std::str::from_utf8(bytes) {
            Ok(text) => Ok((text.to_string(), Charset::Utf8)),
            Err(e) => Err(bad(format!("invalid UTF-8 at offset {}, although MSH-18 declares UTF-8", e.valid_up_to()))),
        },
        None => match std::str::from_utf8(bytes) {
            Ok(text) => Ok((text.to_string(), Charset::Utf8)),
            Err(_) => Ok((latin1(bytes), Charset::Latin1)),
        },
    }
}

/// The character set an MSH-18 value names (table 0211 and common spellings); None when it
/// is empty or not one Tessera reads.
pub fn charset_named(name: &str) -> Option<Charset> {
    match name.trim().to_ascii_uppercase().as_str() {
        "ASCII" | "US-ASCII" => Some(Charset::Ascii),
        "8859/1" | "ISO-8859-1" | "ISO IR100" | "LATIN1" => Some(Charset::Latin1),
        "UNICODE UTF-8" | "UTF-8" | "UTF8" | "UNICODE" => Some(Charset::Utf8),
        _ => None,
    }
}

/// `text` as bytes of `charset`; a character it cannot hold becomes `?`.
pub fn encode_text(text: &str, charset: Charset) -> Vec<u8> {
    match charset {
        Charset::Ascii => text.chars().map(|ch| if ch.is_ascii() { ch as u8 } else { b'?' }).collect(),
        Charset::Latin1 => text.chars().map(|ch| u8::try_from(u32::from(ch)).unwrap_or(b'?')).collect(),
        Charset::Utf8 => text.as_bytes().to_vec(),
    }
}

fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}
