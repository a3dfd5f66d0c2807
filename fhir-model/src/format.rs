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
///
/// XML is always written compactly, whatever `pretty` says: indenting would add whitespace
/// inside the XHTML narrative, where whitespace is content.
pub fn serialize_resource(resource: &Value, format: Format, pretty: bool) -> Result<Vec<u8>, ModelError> {
    match format {
        Format::Json => {
            let bytes = if pretty { serde_json::to_vec_pretty(resource) } else { serde_json::to_vec(resource) };
            // Serialising a `Value` into memory cannot fail; map it anyway rather than panic.
            bytes.map_err(|e| structure("", e.to_string()))
        }
        Format::Xml => {
            let resource_type = resource_type_of(resource)?;
            let mut value = resource.clone();
            let mut divs = Vec::new();
            take_json_divs(&mut value, &mut divs);
            let xml = write_xml(resource_type, resource, value)?;
            if divs.is_empty() {
                return Ok(xml);
            }
            match splice_divs(&xml, &divs) {
                Some(spliced) => Ok(spliced),
                // A marker was mangled or repeated (say, some string in the resource happens to
                // contain one): write the resource plainly, accepting fhirbolt's whitespace.
                None => write_xml(resource_type, resource, resource.clone()),
            }
        }
    }
}

fn write_xml(resource_type: &str, original: &Value, value: Value) -> Result<Vec<u8>, ModelError> {
    let typed = typed::to_typed(value)
        .map_err(|text| ModelError::Structure(vec![typed::issue(resource_type, &text, Some(original))]))?;
    fhirbolt::xml::to_vec(&typed, None).map_err(|e| structure(resource_type, e.to_string()))
}

/// FHIR XML → typed R4 model (strict) → FHIR JSON. The typed model is the only route fhirbolt
/// offers, and strictness means an unknown element is reported here rather than dropped.
fn parse_xml(body: &[u8]) -> Result<Value, ModelError> {
    if let Some((substituted, divs)) = take_xml_divs(body) {
        let parsed = fhirbolt::xml::from_slice::<Resource>(substituted.as_bytes(), typed::strict())
            .ok()
            .and_then(|typed| fhirbolt::json::to_json_value(typed, None).ok());
        if let Some(mut resource) = parsed {
            if restore_divs(&mut resource, &divs) {
                return Ok(resource);
            }
        }
        // Fall through: parsing the untouched body either reports the real error or, if the
        // substitution itself was the problem, still yields the resource.
    }
    let typed: Resource = fhirbolt::xml::from_slice(body, typed::strict()).map_err(|e| xml_error(body, e))?;
    fhirbolt::json::to_json_value(typed, None).map_err(|e| structure("", e.to_string()))
}

/// Sorts fhirbolt's XML errors into malformed XML (`Syntax`), a root element naming no R4
/// resource (`UnknownResourceType`), and well-formed XML that is not a valid R4 resource
/// (`Structure`).
fn xml_error(body: &[u8], error: XmlError) -> ModelError {
    let text = error.to_string();
    match error {
        XmlError::InvalidXml(_)
        | XmlError::InvalidXmlAttribute(_)
        | XmlError::InvalidXmlVersion(_)
        | XmlError::InvalidXmlEncoding(_)
        | XmlError::InvalidXmlStandalone(_)
        | XmlError::InvalidXmlEvent(_)
        | XmlError::Utf8Error(_) => ModelError::Syntax { format: "xml", message: text },
        XmlError::InvalidXmlNamespace(..) | XmlError::InvalidFhirEvent { .. } | XmlError::Message(_) => {
            match root_element(body) {
                Some(root) if !is_resource_type(root) => ModelError::UnknownResourceType(root.to_string()),
                root => {
                    let expression = root.unwrap_or_default();
                    ModelError::Structure(vec![typed::issue(expression, &text, None)])
                }
            }
        }
    }
}

/// The local name of the document's root element, skipping the XML declaration, comments and
/// processing instructions. Used only to explain an error, so a rough scan is enough.
fn root_element(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let mut rest = text;
    loop {
        let start = rest.find('<')?;
        rest = &rest[start + 1..];
        if rest.starts_with('?') || rest.starts_with('!') {
            continue;
        }
        let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
        let name = &rest[..end];
        // Drop a namespace prefix (`<fhir:Patient>`).
        return Some(name.rsplit(':').next().unwrap_or(name));
    }
}

fn structure(expression: &str, message: String) -> ModelError {
    ModelError::Structure(vec![Issue::error(expression, "structure", crate::validate::truncate(&message))])
}

// Narrative divs are carried around fhirbolt rather than through it. fhirbolt's XML reader and
// writer both trim the text next to every tag inside the XHTML (`Survey <span>` comes back as
// `Survey<span>`) and its writer indents the markup, so a narrative would not survive a round
// trip. Each div is therefore swapped for a placeholder div before fhirbolt sees the resource
// and swapped back, verbatim, afterwards. Whenever the swap cannot be done safely the code
// falls back to fhirbolt's own handling, which loses only whitespace.

/// Start of every placeholder's text; a body already containing it is not substituted.
const DIV_MARKER: &str = "tessera-narrative-";
const XHTML_DIV_START: &str = r#"<div xmlns="http://www.w3.org/1999/xhtml">"#;

/// The placeholder for the `index`th div; the `.` ends the number so that 1 never matches 10.
fn placeholder(index: usize) -> String {
    format!("{XHTML_DIV_START}{DIV_MARKER}{index}.</div>")
}

/// Replaces every well-formed narrative div (`text.div`) in `node` with a placeholder, pushing
/// the original onto `divs`. Divs that fail the check are left for fhirbolt to judge.
fn take_json_divs(node: &mut Value, divs: &mut Vec<String>) {
    match node {
        Value::Object(members) => {
            for (name, child) in members.iter_mut() {
                if name == "text" {
                    if let Some(div) = child.get_mut("div") {
                        if let Some(text) = div.as_str() {
                            if text.starts_with("<div") && xhtml_element_end(text, 0) == Some(text.len()) {
                                let original = std::mem::replace(div, Value::String(placeholder(divs.len())));
                                if let Value::String(original) = original {
                                    divs.push(original);
                                }
                            }
                        }
                    }
                }
                take_json_divs(child, divs);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| take_json_divs(item, divs)),
        _ => {}
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

/// Replaces each narrative div in an XML body with a placeholder, returning the new body and
/// the raw divs. Only the canonical form (`<div xmlns="http://www.w3.org/1999/xhtml">` with
/// unprefixed, balanced markup inside) is substituted; `None` when there is nothing to do or
/// the body is not simple enough to scan safely.
fn take_xml_divs(body: &[u8]) -> Option<(String, Vec<String>)> {
    let text = std::str::from_utf8(body).ok()?;
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
        let end = xhtml_element_end(text, at)?;
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

/// Swaps the raw divs back into the JSON fhirbolt produced from a substituted body.
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

/// For text starting with `<`: `Some(Some(n))` if it opens a comment, declaration or
/// processing instruction `n` bytes long, `Some(None)` if that markup never ends, `None` if it
/// is an ordinary tag.
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

/// Where the XHTML element starting at `start` ends, if its markup is balanced: every start
/// tag closed by a matching end tag, no prefixed names (their namespaces might be declared
/// outside the element), no CDATA or processing instructions (which fhirbolt rejects).
/// Comments are allowed and kept.
fn xhtml_element_end(text: &str, start: usize) -> Option<usize> {
    let mut open: Vec<&str> = Vec::new();
    let mut i = start;
    loop {
        let at = i + text[i..].find('<')?;
        let rest = &text[at..];
        if rest.starts_with("<!--") {
            i = at + skip_markup(rest)??;
            continue;
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            return None;
        }
        let end = at + tag_length(rest)?;
        let tag = &text[at..end];
        let name = tag_name(tag);
        if name.is_empty() || name.contains(':') {
            return None;
        }
        if tag.starts_with("</") {
            if open.pop()? != name {
                return None;
            }
        } else if !tag.ends_with("/>") {
            open.push(name);
        }
        if open.is_empty() {
            return Some(end);
        }
        i = end;
    }
}
