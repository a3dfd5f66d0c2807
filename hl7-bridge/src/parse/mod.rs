//! Turns the bytes of one MLLP frame into a [`Message`], around `hl7-parser`, so that none of
//! its known faults reach users: a UTF-8 BOM and LF/CRLF line endings are normalised, MSH-1
//! and MSH-2 (with the v2.7 truncation character) are read here, the MSH-18 character set is
//! honoured, the whole input must be consumed (one message per frame), segment names are
//! checked, and escape sequences are decoded by our own character-correct code.

mod charset;
mod escape;
mod header;

use crate::error::{ErrorCode, Hl7Error};
use crate::message::{Component, Delimiters, Field, Location, Message, Repetition, Segment};

pub use escape::{decode as decode_escapes, encode as encode_escapes};
pub use header::{sniff_header, RawHeader};
pub(crate) use charset::{charset_named, encode_text};

/// Parses one message. Never panics; every failure is an [`Hl7Error`] with a table-0357 code.
pub fn parse(bytes: &[u8]) -> Result<Message, Hl7Error> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = bytes.iter().position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t')).unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    if bytes.is_empty() {
        return Err(Hl7Error::new(ErrorCode::SegmentSequence, None, "the message is empty"));
    }
    if !bytes.starts_with(b"MSH") {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(3)]).into_owned();
        return Err(Hl7Error::new(
            ErrorCode::SegmentSequence,
            Some(Location { segment: "MSH".into(), sequence: 1, ..Location::default() }),
            format!("a message must start with an MSH segment, not {head:?}"),
        ));
    }
    let delimiters = read_delimiters(bytes)?;
    let (text, charset) = charset::decode(bytes, charset::declared(bytes, &delimiters)?)?;
    let text = normalise(&text, &delimiters);

    let parsed = hl7_parser::Message::parse(&text).map_err(|e| {
        let at = match &e {
            hl7_parser::parser::ParseError::FailedToParse { position, .. } => *position,
            hl7_parser::parser::ParseError::IncompleteInput(_) => text.len(),
        };
        structure_error(&text, at, &e.to_string())
    })?;
    let consumed = parsed.raw_value().len();
    if consumed < text.len() {
        return Err(structure_error(&text, consumed, "it does not follow the segment syntax (name, field separator, fields)"));
    }

    let mut segments: Vec<Segment> = Vec::with_capacity(parsed.segments.len());
    for (index, raw) in parsed.segments.iter().enumerate() {
        let name = raw.name;
        if !(name.len() == 3 && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())) {
            return Err(segment_error(&text, index + 1, format!("{name:?} is not a segment name (three letters or digits)")));
        }
        if index > 0 && matches!(name, "MSH" | "FHS" | "BHS") {
            return Err(segment_error(
                &text,
                index + 1,
                format!("a second header ({name}) in segment {}: one frame must carry exactly one message", index + 1),
            ));
        }
        let sequence = segments.iter().filter(|s| s.name == name).count() + 1;
        let mut fields: Vec<Field> = raw
            .fields
            .iter()
            .map(|f| Field {
                repetitions: f
                    .repeats
                    .iter()
                    .map(|r| Repetition {
                        components: r
                            .components
                            .iter()
                            .map(|c| Component {
                                subcomponents: c
                                    .subcomponents
                                    .iter()
                                    .map(|s| escape::decode(s.value, &delimiters, charset))
                                    .collect(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        if index == 0 {
            // MSH-1 and MSH-2 are the delimiters themselves, not escaped values.
            let single = |text: String| Field {
                repetitions: vec![Repetition { components: vec![Component { subcomponents: vec![text] }] }],
            };
            if fields.len() >= 2 {
                fields[0] = single(delimiters.field.to_string());
                fields[1] = single(delimiters.encoding_characters());
            }
        }
        segments.push(Segment { name: name.to_string(), sequence, fields });
    }
    Ok(Message { segments, delimiters, charset })
}

/// Reads MSH-1 and MSH-2 from the raw bytes: the field separator, then 4 encoding characters
/// (component, repetition, escape, subcomponent) and an optional fifth, the truncation
/// character of v2.7+.
pub(super) fn read_delimiters(bytes: &[u8]) -> Result<Delimiters, Hl7Error> {
    let msh2 = Location::field("MSH", 1, 2);
    let field = *bytes.get(3).ok_or_else(|| Hl7Error::missing(Location::field("MSH", 1, 1), "MSH-1 (field separator)"))?;
    if !field.is_ascii_punctuation() {
        return Err(Hl7Error::data_type(Location::field("MSH", 1, 1), format!("{:?} cannot be the field separator", field as char)));
    }
    let declared: Vec<u8> = bytes[4..].iter().take_while(|&&b| b != field && b != b'\r' && b != b'\n').copied().collect();
    if !(4..=5).contains(&declared.len()) {
        return Err(Hl7Error::data_type(
            msh2,
            format!("MSH-2 must hold 4 encoding characters (5 with the truncation character), found {}", declared.len()),
        ));
    }
    let mut all = declared.clone();
    all.push(field);
    let distinct = all.iter().enumerate().all(|(i, b)| !all[..i].contains(b));
    if !distinct || !declared.iter().all(|b| b.is_ascii_punctuation() || *b == b' ') {
        return Err(Hl7Error::data_type(msh2, format!("{:?} are not distinct delimiter characters", String::from_utf8_lossy(&declared))));
    }
    let c = |i: usize| declared[i] as char;
    Ok(Delimiters {
        field: field as char,
        component: c(0),
        repetition: c(1),
        escape: Some(c(2)).filter(|&e| e != ' '),
        subcomponent: c(3),
        truncation: declared.get(4).map(|&b| b as char),
    })
}

/// Segment terminators to CR, blank lines and trailing whitespace removed, MSH-2 cut to the
/// four characters `hl7-parser` reads (the truncation character is kept in `Delimiters`),
/// and a field separator added to a bare segment name (`NTE`) so it parses as a segment.
fn normalise(text: &str, delimiters: &Delimiters) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for (index, line) in text.split(['\r', '\n']).filter(|l| !l.trim().is_empty()).enumerate() {
        if index > 0 {
            out.push('\r');
        }
        if index == 0 && delimiters.truncation.is_some() {
            // "MSH|^~\&#|…" → "MSH|^~\&|…": every MSH field then lands where the parser expects.
            let mut chars = line.char_indices();
            let cut = chars.nth(8).map(|(i, _)| i).unwrap_or(line.len());
            let resume = line[cut..].chars().next().map(|c| cut + c.len_utf8()).unwrap_or(line.len());
            out.push_str(&line[..cut]);
            out.push_str(&line[resume..]);
        } else {
            out.push_str(line.trim_end_matches([' ', '\t']));
        }
        if line.len() == 3 {
            out.push(delimiters.field);
        }
    }
    out
}

/// An error in the segment where structural parsing stopped (byte `at` of the normalised text).
fn structure_error(text: &str, at: usize, detail: &str) -> Hl7Error {
    let before = text.get(..at).unwrap_or(text);
    let index = before.matches('\r').count() + 1;
    segment_error(text, index, format!("segment {index} cannot be read: {detail}"))
}

/// An error located at the `index`-th (1-based) segment of the normalised text, named by its
/// first three characters and numbered among the segments of that name.
fn segment_error(text: &str, index: usize, message: String) -> Hl7Error {
    let name_of = |line: &str| line.chars().take(3).collect::<String>();
    let lines: Vec<&str> = text.split('\r').take(index).collect();
    let name = lines.last().map(|l| name_of(l)).unwrap_or_default();
    let sequence = lines.iter().filter(|l| name_of(l) == name).count().max(1);
    Hl7Error::new(ErrorCode::SegmentSequence, Some(Location { segment: name, sequence, ..Location::default() }), message)
}
