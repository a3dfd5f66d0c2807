//! Conversion between wire formats (FHIR JSON, FHIR XML) and the JSON value Tessera works on.

use fhirbolt::model::r4::Resource;
use fhirbolt::xml::Error as XmlError;
use serde_json::Value;

use crate::resource_types::{is_resource_type, resource_type_of};
use crate::validate::typed;
use crate::{Issue, ModelError};

/// A FHIR wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Json,
    Xml,
}

/// Parses a resource body in `format` into FHIR JSON. XML goes through fhirbolt (element
/// model → JSON). Only syntax is checked here; `validate` checks content.
pub fn parse_resource(body: &[u8], format: Format) -> Result<Value, ModelError> {
    let resource = match format {
        Format::Json => serde_json::from_slice::<Value>(body)
            // serde_json's message ends with "at line L column C".
            .map_err(|e| ModelError::Syntax { format: "json", message: e.to_string() })?,
        Format::Xml => parse_xml(body)?,
    };
    resource_type_of(&resource)?;
    Ok(resource)
}

/// Serialises FHIR JSON in `format`. XML goes through fhirbolt.
pub fn serialize_resource(resource: &Value, format: Format, pretty: bool) -> Result<Vec<u8>, ModelError> {
    match format {
        Format::Json => {
            let bytes = if pretty { serde_json::to_vec_pretty(resource) } else { serde_json::to_vec(resource) };
            // Serialising a `Value` into memory cannot fail; map it anyway rather than panic.
            bytes.map_err(|e| structure("", e.to_string()))
        }
        Format::Xml => serialize_xml(resource, pretty),
    }
}

/// FHIR JSON → typed R4 model (strict) → FHIR XML, with narratives carried around fhirbolt
/// (see below).
fn serialize_xml(resource: &Value, pretty: bool) -> Result<Vec<u8>, ModelError> {
    let resource_type = resource_type_of(resource)?;
    let mut value = resource.clone();
    let mut divs = Vec::new();
    let mut path = resource_type.to_string();
    take_json_divs(&mut value, &mut path, &mut divs)?;
    let xml = write_xml(resource_type, resource, value, pretty)?;
    if divs.is_empty() {
        return Ok(xml);
    }
    match splice_divs(&xml, &divs) {
        Some(spliced) => Ok(spliced),
        // A marker was mangled or repeated (say, some string in the resource happens to
        // contain one): write the resource plainly, accepting fhirbolt's whitespace.
        None => write_xml(resource_type, resource, resource.clone(), pretty),
    }
}

fn write_xml(resource_type: &str, original: &Value, value: Value, pretty: bool) -> Result<Vec<u8>, ModelError> {
    let typed = typed::to_typed(resource_type, original, value).map_err(|issue| ModelError::Structure(vec![issue]))?;
    let xml = typed::guarded(|| fhirbolt::xml::to_vec(&typed, None).map_err(|e| e.to_string()))
        .map_err(|message| structure(resource_type, message))?;
    Ok(if pretty { xml } else { compact(&xml) })
}

/// Removes the indentation fhirbolt always writes: every newline and the spaces after it when
/// they precede a tag. Outside the narrative FHIR XML has no mixed content, so that whitespace
/// carries nothing; `<` inside attribute values is always escaped, so the pattern cannot
/// occur there. Narratives are spliced in after this, untouched.
fn compact(xml: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(xml.len());
    let mut i = 0;
    while i < xml.len() {
        if xml[i] == b'\n' {
            let mut j = i + 1;
            while j < xml.len() && xml[j] == b' ' {
                j += 1;
            }
            if j < xml.len() && xml[j] == b'<' {
                i = j;
                continue;
            }
        }
        out.push(xml[i]);
        i += 1;
    }
    out
}

/// FHIR XML → typed R4 model (strict) → FHIR JSON. The typed model is the only route fhirbolt
/// offers, and strictness means an unknown element is reported here rather than dropped.
fn parse_xml(body: &[u8]) -> Result<Value, ModelError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ModelError::Syntax { format: "xml", message: format!("body is not utf-8: {e}") })?;
    // fhirbolt (through quick-xml) accepts a document that ends with elements still open, so
    // a body cut short after any `>` would be taken as a smaller, valid resource.
    check_document(text).map_err(|message| ModelError::Syntax { format: "xml", message })?;
    if let Some((substituted, divs)) = take_xml_divs(text) {
        let parsed = typed::guarded(|| {
            let typed = fhirbolt::xml::from_slice::<Resource>(substituted.as_bytes(), typed::strict())
                .map_err(|e| e.to_string())?;
            fhirbolt::json::to_json_value(typed, None).map_err(|e| e.to_string())
        });
        if let Ok(mut resource) = parsed {
            if restore_divs(&mut resource, &divs) {
                return Ok(resource);
            }
        }
        // Fall through: parsing the untouched body either reports the real error or, if the
        // substitution itself was the problem, still yields the resource.
    }
    let parsed = std::panic::catch_unwind(|| fhirbolt::xml::from_slice::<Resource>(body, typed::strict()));
    let typed = match parsed {
        Ok(result) => result.map_err(|e| xml_error(text, e))?,
        Err(_) => return Err(structure("", "fhirbolt failed on this resource".to_string())),
    };
    typed::guarded(|| fhirbolt::json::to_json_value(typed, None).map_err(|e| e.to_string()))
        .map_err(|message| structure("", message))
}

/// Sorts fhirbolt's XML errors into malformed XML (`Syntax`), a root element naming no R4
/// resource (`UnknownResourceType`), and well-formed XML that is not a valid R4 resource
/// (`Structure`).
fn xml_error(text: &str, error: XmlError) -> ModelError {
    let message = error.to_string();
    match error {
        XmlError::InvalidXml(_)
        | XmlError::InvalidXmlAttribute(_)
        | XmlError::InvalidXmlVersion(_)
        | XmlError::InvalidXmlEncoding(_)
        | XmlError::InvalidXmlStandalone(_)
        | XmlError::InvalidXmlEvent(_)
        | XmlError::Utf8Error(_) => ModelError::Syntax { format: "xml", message },
        XmlError::InvalidXmlNamespace(..) | XmlError::InvalidFhirEvent { .. } | XmlError::Message(_) => {
            match root_element(text) {
                None => ModelError::Syntax { format: "xml", message: "no root element".to_string() },
                Some(root) if !is_resource_type(root) => ModelError::UnknownResourceType(root.to_string()),
                Some(root) => ModelError::Structure(vec![typed::issue(root, &message, None)]),
            }
        }
    }
}

/// The local name of the document's root element (without a namespace prefix).
fn root_element(text: &str) -> Option<&str> {
    let start = root_start(text).ok()??;
    let name = tag_name(&text[start..]);
    Some(name.rsplit(':').next().unwrap_or(name))
}

fn structure(expression: &str, message: String) -> ModelError {
    ModelError::Structure(vec![Issue::error(expression, "structure", crate::validate::truncate(&message))])
}

// ---- a minimal scanner for XML markup ----
//
// This is not an XML parser: quick-xml (inside fhirbolt) does the parsing. The scanner only
// finds where elements start and end, to check that a document is complete and to cut out
// narratives; anything it does not understand makes it step aside.

/// What a scan of one element found.
enum Markup {
    /// Start and end tags balance; the element ends at this byte offset.
    Balanced(usize),
    /// Tags do not balance (a mismatched end tag, or the text ends with elements open).
    Malformed(String),
    /// Markup this scanner leaves to others (in narratives: prefixed names, CDATA, processing
    /// instructions).
    Unsupported,
}

/// Checks that the document has a root element whose tags balance, followed by nothing but
/// comments, processing instructions and whitespace. Documents the scanner cannot judge pass.
fn check_document(text: &str) -> Result<(), String> {
    let Some(start) = root_start(text)? else {
        return Ok(()); // No root element: fhirbolt reports that.
    };
    match element_end(text, start, true) {
        Markup::Malformed(message) => Err(message),
        Markup::Unsupported => Ok(()),
        Markup::Balanced(end) => {
            let mut rest = text[end..].trim_start();
            while rest.starts_with('<') {
                match skip_markup(rest) {
                    Some(Some(n)) if !rest.starts_with("<![CDATA[") => rest = rest[n..].trim_start(),
                    _ => return Err("content after the root element".to_string()),
                }
            }
            if rest.is_empty() { Ok(()) } else { Err("content after the root element".to_string()) }
        }
    }
}

/// Byte offset of the root element's start tag, skipping the prolog.
fn root_start(text: &str) -> Result<Option<usize>, String> {
    let mut i = 0;
    while let Some(found) = text[i..].find('<') {
        let at = i + found;
        match skip_markup(&text[at..]) {
            None => return Ok(Some(at)),
            Some(Some(n)) => i = at + n,
            Some(None) => return Err("unterminated markup before the root element".to_string()),
        }
    }
    Ok(None)
}

/// For text starting with `<`: `Some(Some(n))` if it opens a comment, CDATA section,
/// declaration or processing instruction `n` bytes long, `Some(None)` if that markup never
/// ends, `None` if it is an ordinary tag.
fn skip_markup(rest: &str) -> Option<Option<usize>> {
    let close = if rest.starts_with("<!--") {
        "-->"
    } else if rest.starts_with("<![CDATA[") {
        "]]>"
    } else if rest.starts_with("<?") {
        "?>"
    } else if rest.starts_with("<!") {
        ">"
    } else {
        return None;
    };
    Some(rest[2..].find(close).map(|n| 2 + n + close.len()))
}

/// Length of the tag at the start of `rest`, up to and including its `>`; a `>` inside a
/// quoted attribute value does not end it.
fn tag_length(rest: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// The element name of a start or end tag (`<p class="x">` → `p`, `</p>` → `p`).
fn tag_name(tag: &str) -> &str {
    let inner = tag.trim_start_matches('<').trim_start_matches('/');
    let end = inner.find(|c: char| c.is_whitespace() || c == '/' || c == '>').unwrap_or(inner.len());
    &inner[..end]
}

/// Scans the element whose start tag begins at `start`. With `whole_document` false (a
/// narrative), prefixed names, CDATA and processing instructions are `Unsupported`: a prefix
/// may be declared outside the narrative, and fhirbolt rejects the other two.
fn element_end(text: &str, start: usize, whole_document: bool) -> Markup {
    let mut open: Vec<&str> = Vec::new();
    let mut i = start;
    loop {
        let Some(found) = text[i..].find('<') else {
            return Markup::Malformed(match open.last() {
                Some(unclosed) => format!("text ends inside element <{unclosed}>"),
                None => "no element found".to_string(),
            });
        };
        let at = i + found;
        let rest = &text[at..];
        if let Some(skip) = skip_markup(rest) {
            let is_comment = rest.starts_with("<!--");
            match skip {
                Some(n) if is_comment || whole_document => {
                    i = at + n;
                    continue;
                }
                Some(_) => return Markup::Unsupported,
                None => return Markup::Malformed("unterminated comment or declaration".to_string()),
            }
        }
        let Some(length) = tag_length(rest) else {
            return Markup::Malformed("unterminated tag".to_string());
        };
        let tag = &rest[..length];
        let name = tag_name(tag);
        if name.is_empty() {
            return Markup::Malformed(format!("invalid tag {}", crate::validate::truncate(tag)));
        }
        if name.contains(':') && !whole_document {
            return Markup::Unsupported;
        }
        if tag.starts_with("</") {
            match open.pop() {
                Some(expected) if expected == name => {}
                Some(expected) => return Markup::Malformed(format!("expected </{expected}>, found </{name}>")),
                None => return Markup::Malformed(format!("unexpected </{name}>")),
            }
        } else if !tag.ends_with("/>") {
            open.push(name);
        }
        i = at + length;
        if open.is_empty() {
            return Markup::Balanced(i);
        }
    }
}

// ---- narratives ----
//
// Narrative divs are carried around fhirbolt rather than through it. fhirbolt's XML reader and
// writer both trim the text next to every tag inside the XHTML (`Survey <span>` comes back as
// `Survey<span>`), and its writer indents the markup, so a narrative would not survive a round
// trip. Each div is therefore swapped for a placeholder div before fhirbolt sees the resource
// and swapped back, verbatim, afterwards. Whenever the swap cannot be done safely the code
// falls back to fhirbolt's own handling, which loses only that whitespace.

/// Start of every placeholder's text; a body already containing it is not substituted.
const DIV_MARKER: &str = "tessera-narrative-";
const XHTML_DIV_START: &str = r#"<div xmlns="http://www.w3.org/1999/xhtml">"#;

/// The placeholder for the `index`th div; the `.` ends the number so that 1 never matches 10.
fn placeholder(index: usize) -> String {
    format!("{XHTML_DIV_START}{DIV_MARKER}{index}.</div>")
}

/// Replaces every narrative div (`text.div`) in `node` with a placeholder, pushing the
/// original onto `divs`. `path` is the FHIRPath of `node`. A div whose tags do not balance is
/// an error here: fhirbolt would write it out as malformed XML.
fn take_json_divs(node: &mut Value, path: &mut String, divs: &mut Vec<String>) -> Result<(), ModelError> {
    let base = path.len();
    match node {
        Value::Object(members) => {
            for (name, child) in members.iter_mut() {
                path.push('.');
                path.push_str(name);
                if name == "text" {
                    if let Some(div) = child.get_mut("div") {
                        take_json_div(div, path, divs)?;
                    }
                }
                take_json_divs(child, path, divs)?;
                path.truncate(base);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                take_json_divs(item, path, divs)?;
                path.truncate(base);
            }
        }
        _ => {}
    }
    Ok(())
}

fn take_json_div(div: &mut Value, text_path: &str, divs: &mut Vec<String>) -> Result<(), ModelError> {
    let Some(xhtml) = div.as_str() else { return Ok(()) };
    match element_end(xhtml, 0, false) {
        Markup::Balanced(end) if end == xhtml.len() && xhtml.starts_with("<div") => {
            let original = std::mem::replace(div, Value::String(placeholder(divs.len())));
            if let Value::String(original) = original {
                divs.push(original);
            }
            Ok(())
        }
        Markup::Malformed(problem) => Err(ModelError::Structure(vec![Issue::error(
            format!("{text_path}.div"),
            "structure",
            crate::validate::truncate(&format!("narrative is not well-formed xhtml: {problem}")),
        )])),
        // Left to fhirbolt, which judges it itself.
        _ => Ok(()),
    }
}

/// Puts the original divs back in place of their placeholders in fhirbolt's XML output.
/// `None` unless every placeholder is found exactly once and nothing else looks like one.
fn splice_divs(xml: &[u8], divs: &[String]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(xml).ok()?;
    let mut out = String::with_capacity(text.len() + divs.iter().map(String::len).sum::<usize>());
    let mut used = vec![false; divs.len()];
    let mut pos = 0;
    while let Some(found) = text[pos..].find(DIV_MARKER) {
        let at = pos + found;
        let digits = &text[at + DIV_MARKER.len()..];
        let index: usize = digits[..digits.find('.')?].parse().ok()?;
        let start = text[..at].rfind("<div")?;
        let end = at + text[at..].find("</div>")? + "</div>".len();
        if start < pos || std::mem::replace(used.get_mut(index)?, true) {
            return None;
        }
        out.push_str(&text[pos..start]);
        out.push_str(&divs[index]);
        pos = end;
    }
    out.push_str(&text[pos..]);
    used.iter().all(|u| *u).then(|| out.into_bytes())
}

/// Replaces each narrative div in an XML document with a placeholder, returning the new
/// document and the raw divs. Only the canonical form (`<div
/// xmlns="http://www.w3.org/1999/xhtml">` with unprefixed markup inside) is substituted;
/// `None` when there is nothing to substitute or the document is not simple enough to scan.
fn take_xml_divs(text: &str) -> Option<(String, Vec<String>)> {
    if text.contains(DIV_MARKER) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut divs = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while let Some(found) = text[i..].find('<') {
        let at = i + found;
        let rest = &text[at..];
        if let Some(skip) = skip_markup(rest) {
            i = at + skip?;
            continue;
        }
        let tag_end = at + tag_length(rest)?;
        let tag = &text[at..tag_end];
        let canonical_div = tag_name(tag) == "div"
            && !tag.ends_with("/>")
            && (tag.contains(r#"xmlns="http://www.w3.org/1999/xhtml""#)
                || tag.contains("xmlns='http://www.w3.org/1999/xhtml'"));
        if !canonical_div {
            i = tag_end;
            continue;
        }
        let Markup::Balanced(end) = element_end(text, at, false) else {
            return None;
        };
        out.push_str(&text[copied..at]);
        out.push_str(&placeholder(divs.len()));
        // XML parsers turn CRLF into LF; the raw copy does the same so both paths agree.
        divs.push(text[at..end].replace("\r\n", "\n"));
        copied = end;
        i = end;
    }
    if divs.is_empty() {
        return None;
    }
    out.push_str(&text[copied..]);
    Some((out, divs))
}

/// Swaps the raw divs back into the JSON fhirbolt produced from a substituted document.
fn restore_divs(node: &mut Value, divs: &[String]) -> bool {
    fn walk(node: &mut Value, divs: &[String], used: &mut [bool]) -> bool {
        match node {
            Value::Object(members) => members.iter_mut().all(|(name, child)| {
                if name == "div" {
                    if let Some(index) = child.as_str().and_then(placeholder_index) {
                        let Some(slot) = used.get_mut(index) else { return false };
                        if std::mem::replace(slot, true) {
                            return false;
                        }
                        *child = Value::String(divs[index].clone());
                        return true;
                    }
                }
                walk(child, divs, used)
            }),
            Value::Array(items) => items.iter_mut().all(|item| walk(item, divs, used)),
            _ => true,
        }
    }
    let mut used = vec![false; divs.len()];
    walk(node, divs, &mut used) && used.iter().all(|u| *u)
}

fn placeholder_index(div: &str) -> Option<usize> {
    div.strip_prefix(XHTML_DIV_START)?.strip_prefix(DIV_MARKER)?.strip_suffix(".</div>")?.parse().ok()
}

/// An instant as FHIR writes `meta.lastUpdated`: UTC, millisecond precision, `Z`.
pub fn format_instant(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}
