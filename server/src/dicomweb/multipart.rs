//! `multipart/related` (RFC 2387 over RFC 2046) for DICOMweb: the boundary and type of a
//! Content-Type, an incremental reader that turns body chunks into parts without holding a
//! whole part in memory, and the writer of a part's header.

use bytes::{Bytes, BytesMut};

/// The longest header block of one part we read; a longer one is refused.
const MAX_PART_HEADERS: usize = 16 * 1024;
/// The longest line after a delimiter (transport padding) we read.
const MAX_DELIMITER_LINE: usize = 1024;

/// A malformed multipart body.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MultipartError {
    #[error("a part's headers are longer than {MAX_PART_HEADERS} bytes or never end")]
    HeadersTooLong,
    #[error("a part's header line {0:?} is not `Name: value`")]
    BadHeader(String),
    #[error("a multipart boundary is followed by {0:?}, not a line end")]
    BadDelimiter(String),
    #[error("the body ended inside a part, before the closing boundary")]
    Truncated,
}

/// A media type's essence (lower-case `type/subtype`) and parameters (names lower-case, values
/// unquoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaType {
    /// Parses `type/subtype; name=value; name="quoted; value"`. None when there is no `/`.
    pub fn parse(text: &str) -> Option<MediaType> {
        let mut pieces = split_unquoted(text, ';').into_iter();
        let essence = pieces.next()?.trim().to_ascii_lowercase();
        if !essence.contains('/') {
            return None;
        }
        let params = pieces
            .filter_map(|p| {
                let (name, value) = p.split_once('=')?;
                let value = value.trim();
                let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(quoted) => quoted.replace("\\\"", "\"").replace("\\\\", "\\"),
                    None => value.to_string(),
                };
                Some((name.trim().to_ascii_lowercase(), value))
            })
            .collect();
        Some(MediaType { essence, params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Splits on `separator` outside double quotes (for Accept lists and parameters).
pub fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                pieces.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    pieces.push(&text[start..]);
    pieces
}

/// The headers of one part, names lower-case.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartHeaders(pub Vec<(String, String)>);

impl PartHeaders {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What the reader found next in the body.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A part begins.
    Part(PartHeaders),
    /// More bytes of the current part.
    Data(Bytes),
    /// The current part ended.
    PartEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Preamble,
    AfterDelimiter,
    Headers,
    Body,
    /// After the closing delimiter: the rest is ignored.
    Epilogue,
}

/// Reads a multipart body incrementally: `push` each chunk as it arrives, then take `next`
/// events until it returns None (more bytes are needed); `finish` at the end of the body.
/// At most one delimiter's length of a part is held back, so a part streams through.
pub struct MultipartReader {
    /// `CRLF--boundary`.
    delimiter: Vec<u8>,
    buf: BytesMut,
    state: State,
}

impl MultipartReader {
    pub fn new(boundary: &str) -> MultipartReader {
        let mut delimiter = b"\r\n--".to_vec();
        delimiter.extend_from_slice(boundary.as_bytes());
        // A CRLF before the body lets the first delimiter match at its very start.
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(b"\r\n");
        MultipartReader { delimiter, buf, state: State::Preamble }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.state != State::Epilogue {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next event, or None when more input is needed (or the body is complete).
    pub fn next(&mut self) -> Result<Option<Event>, MultipartError> {
        loop {
            match self.state {
                State::Preamble => match memchr::memmem::find(&self.buf, &self.delimiter) {
                    Some(at) => {
                        let _ = self.buf.split_to(at + self.delimiter.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        let keep = self.delimiter.len() - 1;
                        if self.buf.len() > keep {
                            let _ = self.buf.split_to(self.buf.len() - keep);
                        }
                        return Ok(None);
                    }
                },
                State::AfterDelimiter => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    if self.buf.starts_with(b"--") {
                        self.state = State::Epilogue;
                        self.buf.clear();
                        return Ok(None);
                    }
                    let Some(end) = memchr::memmem::find(&self.buf, b"\r\n") else {
                        if self.buf.len() > MAX_DELIMITER_LINE {
                            return Err(MultipartError::BadDelimiter(String::from_utf8_lossy(&self.buf[..32]).into_owned()));
                        }
                        return Ok(None);
                    };
                    let padding = &self.buf[..end];
                    if !padding.iter().all(|b| *b == b' ' || *b == b'\t') {
                        let shown = String::from_utf8_lossy(&padding[..padding.len().min(32)]).into_owned();
                        return Err(MultipartError::BadDelimiter(shown));
                    }
                    let _ = self.buf.split_to(end + 2);
                    self.state = State::Headers;
                }
                State::Headers => {
                    let block_end = if self.buf.starts_with(b"\r\n") {
                        Some(0)
                    } else {
                        memchr::memmem::find(&self.buf, b"\r\n\r\n").map(|at| at + 2)
                    };
                    let Some(block_end) = block_end else {
                        if self.buf.len() > MAX_PART_HEADERS {
                            return Err(MultipartError::HeadersTooLong);
                        }
                        return Ok(None);
                    };
                    let block = self.buf.split_to(block_end + 2);
                    let headers = parse_headers(&block[..block_end])?;
                    self.state = State::Body;
                    return Ok(Some(Event::Part(headers)));
                }
                State::Body => {
                    return Ok(match memchr::memmem::find(&self.buf, &self.delimiter) {
                        Some(0) => {
                            let _ = self.buf.split_to(self.delimiter.len());
                            self.state = State::AfterDelimiter;
                            Some(Event::PartEnd)
                        }
                        Some(at) => Some(Event::Data(self.buf.split_to(at).freeze())),
                        None => {
                            // The tail may be the start of a delimiter split across chunks.
                            let safe = self.buf.len().saturating_sub(self.delimiter.len() - 1);
                            (safe > 0).then(|| Event::Data(self.buf.split_to(safe).freeze()))
                        }
                    });
                }
                State::Epilogue => return Ok(None),
            }
        }
    }

    /// True once the closing delimiter has been read.
    pub fn is_complete(&self) -> bool {
        self.state == State::Epilogue
    }

    /// Checks that the body ended where it may: after the closing delimiter.
    pub fn finish(&self) -> Result<(), MultipartError> {
        if self.is_complete() {
            Ok(())
        } else {
            Err(MultipartError::Truncated)
        }
    }

    /// True while a part's headers or body are being read.
    pub fn mid_part(&self) -> bool {
        matches!(self.state, State::Headers | State::Body)
    }
}

fn parse_headers(block: &[u8]) -> Result<PartHeaders, MultipartError> {
    let text = String::from_utf8_lossy(block);
    let mut headers = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or_else(|| MultipartError::BadHeader(line.chars().take(80).collect()))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(PartHeaders(headers))
}

/// A new random boundary.
pub fn new_boundary() -> String {
    format!("tessera-{}", uuid::Uuid::new_v4().simple())
}

/// The delimiter and headers that open a part (the first part's too: a leading CRLF before
/// the first delimiter is allowed preamble).
pub fn part_header(boundary: &str, content_type: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let mut out = format!("\r\n--{boundary}\r\nContent-Type: {content_type}\r\n");
    for (name, value) in extra {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The closing delimiter.
pub fn closing(boundary: &str) -> Vec<u8> {
    format!("\r\n--{boundary}--\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in chunks of `size` and collects the parts (headers, bytes).
    fn read_all(body: &[u8], boundary: &str, size: usize) -> Result<Vec<(PartHeaders, Vec<u8>)>, MultipartError> {
        let mut reader = MultipartReader::new(boundary);
        let mut parts: Vec<(PartHeaders, Vec<u8>)> = Vec::new();
        for chunk in body.chunks(size.max(1)) {
            reader.push(chunk);
            while let Some(event) = reader.next()? {
                match event {
                    Event::Part(headers) => parts.push((headers, Vec::new())),
                    Event::Data(bytes) => parts.last_mut().unwrap().1.extend_from_slice(&bytes),
                    Event::PartEnd => {}
                }
            }
        }
        reader.finish()?;
        Ok(parts)
    }

    fn body(boundary: &str, parts: &[&[u8]]) -> Vec<u8> {
        let mut out = b"preamble to ignore".to_vec();
        for part in parts {
            out.extend(part_header(boundary, "application/dicom", &[]));
            out.extend_from_slice(part);
        }
        out.extend(closing(boundary));
        out.extend_from_slice(b"epilogue");
        out
    }

    #[test]
    fn parts_come_out_whole_whatever_the_chunking() {
        let first: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        // Bytes that look like the start of a delimiter but are not one.
        let second = b"\r\n--bound\r\n--boundar\r\n-".to_vec();
        let wire = body("boundary", &[&first, &second, b""]);
        for size in [1, 2, 3, 7, 64, 1000, wire.len()] {
            let parts = read_all(&wire, "boundary", size).unwrap();
            assert_eq!(parts.len(), 3, "chunk size {size}");
            assert_eq!(parts[0].0.get("content-type"), Some("application/dicom"));
            assert_eq!(parts[0].1, first, "chunk size {size}");
            assert_eq!(parts[1].1, second, "chunk size {size}");
            assert!(parts[2].1.is_empty());
        }
    }

    #[test]
    fn a_body_starting_with_the_delimiter_and_parts_without_headers_are_read() {
        let wire = b"--b\r\n\r\nabc\r\n--b  \r\nX-A: 1\r\n\r\ndef\r\n--b--".to_vec();
        let parts = read_all(&wire, "b", 4).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], (PartHeaders::default(), b"abc".to_vec()));
        assert_eq!(parts[1].0.get("x-a"), Some("1"));
        assert_eq!(parts[1].1, b"def");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert_eq!(read_all(b"--b\r\n\r\nabc", "b", 3), Err(MultipartError::Truncated));
        assert_eq!(read_all(b"no delimiter at all", "b", 3), Err(MultipartError::Truncated));
        assert!(matches!(read_all(b"--bXYZ\r\n\r\nabc\r\n--b--", "b", 3), Err(MultipartError::BadDelimiter(_))));
        assert!(matches!(read_all(b"--b\r\nnot a header\r\n\r\nabc\r\n--b--", "b", 3), Err(MultipartError::BadHeader(_))));
        let endless = [b"--b\r\nX: ".to_vec(), vec![b'a'; MAX_PART_HEADERS + 10]].concat();
        assert_eq!(read_all(&endless, "b", 1000), Err(MultipartError::HeadersTooLong));
    }

    #[test]
    fn media_types_and_accept_lists_are_parsed() {
        let t = MediaType::parse(r#"Multipart/Related; type="application/dicom"; boundary="a;b c""#).unwrap();
        assert_eq!(t.essence, "multipart/related");
        assert_eq!(t.param("type"), Some("application/dicom"));
        assert_eq!(t.param("boundary"), Some("a;b c"));
        assert_eq!(MediaType::parse("dicom"), None);
        assert_eq!(
            split_unquoted(r#"multipart/related; type="application/dicom, x", */*;q=0.1"#, ','),
            vec![r#"multipart/related; type="application/dicom, x""#, " */*;q=0.1"]
        );
    }
}
