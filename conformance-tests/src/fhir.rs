//! FHIR helpers shared by the cases: test data scoped to one case, common interactions,
//! Bundle paging, query strings, a minimal look into XML, and JSON comparison.

use std::collections::BTreeMap;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::ctx::Ctx;
use crate::CaseFailure;

/// Characters escaped in a query value. `,` stays literal because it is FHIR's OR separator;
/// `|`, `+`, `&` and `=` are escaped so that token systems and time zones arrive intact.
const QUERY_VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'|')
    .add(b'\'');

/// Most pages a paged read may follow before the case gives up (a loop guard).
const MAX_PAGES: usize = 10_000;

/// Test data that belongs to one case: an identifier system no other case or run uses, so a
/// search restricted to it sees only this case's resources even on a shared server.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Lowercase letters, unique to this case run; usable inside names.
    pub tag: String,
    pub system: String,
}

impl Scope {
    pub fn new(area: &str) -> Scope {
        let tag = unique_letters();
        Scope { system: format!("https://tessera.test/conformance/{area}/{tag}"), tag }
    }

    /// The search value `system|` matching every identifier of this scope.
    pub fn any(&self) -> String {
        format!("{}|", self.system)
    }

    /// The search value `system|value`.
    pub fn token(&self, value: &str) -> String {
        format!("{}|{value}", self.system)
    }

    pub fn identifier(&self, value: &str) -> Value {
        json!([{ "system": self.system, "value": value }])
    }

    /// A minimal valid Patient with one identifier in this scope.
    pub fn patient(&self, value: &str) -> Value {
        json!({
            "resourceType": "Patient",
            "identifier": self.identifier(value),
            "active": true,
            "name": [{ "family": "Conformance", "given": [format!("Case{}", self.tag)] }],
            "gender": "unknown",
            "birthDate": "1970-01-01"
        })
    }
}

/// Twelve random lowercase letters.
pub fn unique_letters() -> String {
    uuid::Uuid::new_v4().as_bytes()[..12].iter().map(|b| char::from(b'a' + b % 26)).collect()
}

/// A fresh logical id that no server has seen.
pub fn new_id() -> String {
    format!("cf-{}", uuid::Uuid::new_v4().simple())
}

/// A valid heart-rate Observation of `subject` (a reference string like `Patient/1`).
pub fn heart_rate(subject: &str, beats_per_minute: u32) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"
        }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8867-4", "display": "Heart rate" }] },
        "subject": { "reference": subject },
        "effectiveDateTime": "2021-03-04T10:00:00Z",
        "valueQuantity": {
            "value": beats_per_minute,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min"
        }
    })
}

/// POSTs `resource` to its type and returns the created resource (201 expected).
pub async fn create(ctx: &Ctx, resource: &Value) -> Result<Value, CaseFailure> {
    let resource_type = resource_type(resource)?;
    let reply = ctx.post(resource_type).json(resource).send().await?;
    reply.expect(201)?.resource(resource_type)
}

/// PUTs `resource` to `{type}/{id}` and returns what the server stored (200 or 201).
pub async fn update(ctx: &Ctx, resource: &Value) -> Result<Value, CaseFailure> {
    let resource_type = resource_type(resource)?;
    let id = id_of(resource)?;
    let reply = ctx.put(&format!("{resource_type}/{id}")).json(resource).send().await?;
    reply.expect_any(&[200, 201])?.resource(resource_type)
}

/// GETs `{type}/{id}` as JSON (200 expected).
pub async fn read(ctx: &Ctx, resource_type: &str, id: &str) -> Result<Value, CaseFailure> {
    ctx.get(&format!("{resource_type}/{id}")).send().await?.expect(200)?.resource(resource_type)
}

pub fn resource_type(resource: &Value) -> Result<&str, CaseFailure> {
    resource["resourceType"]
        .as_str()
        .ok_or_else(|| CaseFailure::new(format!("resource without resourceType: {resource}")))
}

pub fn id_of(resource: &Value) -> Result<&str, CaseFailure> {
    resource["id"].as_str().ok_or_else(|| CaseFailure::new(format!("resource without id: {}", excerpt(resource))))
}

pub fn version_of(resource: &Value) -> Option<&str> {
    resource["meta"]["versionId"].as_str()
}

/// `Patient/123` for a resource that has an id.
pub fn reference_to(resource: &Value) -> Result<String, CaseFailure> {
    Ok(format!("{}/{}", resource_type(resource)?, id_of(resource)?))
}

/// The version in a weak ETag `W/"3"` (a strong `"3"` is accepted too).
pub fn etag_version(etag: &str) -> Option<String> {
    let quoted = etag.trim().strip_prefix("W/").unwrap_or(etag.trim());
    quoted.strip_prefix('"')?.strip_suffix('"').map(str::to_string)
}

/// A compact one-line rendering of a JSON value for messages.
pub fn excerpt(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `a=1&b=x%7Cy`: each value percent-encoded, names taken as given.
pub fn query(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, QUERY_VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn entries(bundle: &Value) -> &[Value] {
    bundle["entry"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The URL of the Bundle link with relation `rel`.
pub fn link<'a>(bundle: &'a Value, rel: &str) -> Option<&'a str> {
    bundle["link"].as_array()?.iter().find(|l| l["relation"] == rel)?["url"].as_str()
}

/// Every entry of a paged Bundle result.
#[derive(Debug)]
pub struct Pages {
    pub entries: Vec<Value>,
    pub pages: usize,
    /// The first page, for checks of its links.
    pub first: Value,
}

/// GETs `first_url` and follows `next` links to the end, checking every page is a Bundle of
/// `bundle_type` and that no page is visited twice.
pub async fn collect_pages(ctx: &Ctx, first_url: &str, bundle_type: &str) -> Result<Pages, CaseFailure> {
    let mut seen = std::collections::HashSet::new();
    let mut url = ctx.url(first_url);
    let mut collected = Pages { entries: Vec::new(), pages: 0, first: Value::Null };
    loop {
        if !seen.insert(url.clone()) {
            fail!("next link loops back to {url}");
        }
        check!(collected.pages < MAX_PAGES, "more than {MAX_PAGES} pages from {first_url}");
        let reply = ctx.get(&url).send().await?;
        let page = reply.expect(200)?.resource("Bundle")?;
        check!(
            page["type"] == bundle_type,
            "{}: expected Bundle.type {bundle_type}, got {}",
            reply.request_line(),
            page["type"]
        );
        collected.entries.extend(entries(&page).iter().cloned());
        collected.pages += 1;
        let next = link(&page, "next").map(str::to_string);
        if collected.pages == 1 {
            collected.first = page;
        }
        match next {
            Some(next) => url = ctx.url(&next),
            None => return Ok(collected),
        }
    }
}

/// Runs a search of `resource_type` and follows every page.
pub async fn search(ctx: &Ctx, resource_type: &str, params: &[(&str, &str)]) -> Result<Pages, CaseFailure> {
    collect_pages(ctx, &format!("{resource_type}?{}", query(params)), "searchset").await
}

/// Fails unless the search finds exactly the resources with `expected` ids, each once.
pub async fn expect_search(
    ctx: &Ctx,
    resource_type: &str,
    params: &[(&str, &str)],
    expected: &[&str],
) -> Result<(), CaseFailure> {
    let found = search(ctx, resource_type, params).await?;
    compare_ids(&match_ids(&found.entries), expected)
        .map_err(|e| e.context(format!("search {resource_type}?{}", query(params))))
}

/// The ids of the searchset entries that are matches, leaving out included resources and
/// OperationOutcome entries (search.mode `include` or `outcome`).
pub fn match_ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| e["search"]["mode"].as_str().unwrap_or("match") == "match")
        .map(|e| e["resource"]["id"].as_str().unwrap_or("<no id>").to_string())
        .collect()
}

/// Compares found ids (in any order) with the expected set, naming repeats, misses and extras.
pub fn compare_ids(found: &[String], expected: &[&str]) -> Result<(), CaseFailure> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in found {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let repeated: Vec<&str> = counts.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect();
    let missing: Vec<&str> = expected.iter().copied().filter(|id| !counts.contains_key(id)).collect();
    let extra: Vec<&str> = counts.keys().copied().filter(|id| !expected.contains(id)).collect();
    if repeated.is_empty() && missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    fail!("expected ids {expected:?}, got {found:?} (repeated {repeated:?}, missing {missing:?}, unexpected {extra:?})")
}

/// A copy of `value` without the top-level `keys`.
pub fn without(value: &Value, keys: &[&str]) -> Value {
    let mut copy = value.clone();
    if let Some(object) = copy.as_object_mut() {
        for key in keys {
            object.remove(*key);
        }
    }
    copy
}

/// The first place two JSON values differ, as `path: expected … got …`; None when equal.
pub fn first_difference(expected: &Value, got: &Value) -> Option<String> {
    difference_at("$", expected, got)
}

fn difference_at(path: &str, expected: &Value, got: &Value) -> Option<String> {
    match (expected, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                match b.get(key) {
                    Some(other) => {
                        if let Some(d) = difference_at(&format!("{path}.{key}"), value, other) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{path}.{key}: missing (expected {})", excerpt(value))),
                }
            }
            b.iter()
                .find(|(key, _)| !a.contains_key(*key))
                .map(|(key, value)| format!("{path}.{key}: unexpected {}", excerpt(value)))
        }
        (Value::Array(a), Value::Array(b)) => {
            if let Some(d) =
                a.iter().zip(b).enumerate().find_map(|(i, (x, y))| difference_at(&format!("{path}[{i}]"), x, y))
            {
                return Some(d);
            }
            (a.len() != b.len()).then(|| format!("{path}: expected {} items, got {}", a.len(), b.len()))
        }
        _ => (expected != got).then(|| format!("{path}: expected {}, got {}", excerpt(expected), excerpt(got))),
    }
}

pub fn parse_instant(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

pub fn format_instant(instant: OffsetDateTime) -> String {
    instant.format(&Rfc3339).unwrap_or_default()
}

/// The root element of an XML document: its name and its `xmlns`.
pub fn xml_root(text: &str) -> Option<(String, Option<String>)> {
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("<?") {
            rest = after.split_once("?>")?.1.trim_start();
        } else if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.split_once("-->")?.1.trim_start();
        } else if let Some(after) = rest.strip_prefix("<!") {
            rest = after.split_once('>')?.1.trim_start();
        } else {
            break;
        }
    }
    let tag = rest.strip_prefix('<')?;
    let tag = &tag[..tag.find('>')?];
    let name_end = tag.find(|c: char| c.is_whitespace() || c == '/').unwrap_or(tag.len());
    let xmlns = attribute(&tag[name_end..], "xmlns");
    Some((tag[..name_end].to_string(), xmlns))
}

/// The `value` of the first `<id>` element: in FHIR XML, the root resource's id (it precedes
/// any contained resource, and element ids are attributes, not `<id>` elements).
pub fn xml_id(text: &str) -> Option<String> {
    xml_id_span(text).map(|(start, end)| text[start..end].to_string())
}

/// The document with the root resource's id replaced by `new_id`.
pub fn with_xml_id(text: &str, new_id: &str) -> Option<String> {
    let (start, end) = xml_id_span(text)?;
    Some(format!("{}{new_id}{}", &text[..start], &text[end..]))
}

fn xml_id_span(text: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(found) = text[from..].find("<id") {
        let tag_start = from + found;
        let after_name = tag_start + 3;
        let next = text[after_name..].chars().next()?;
        if next.is_whitespace() || next == '/' || next == '>' {
            let tag_end = after_name + text[after_name..].find('>')?;
            let tag = &text[after_name..tag_end];
            let (offset, len) = attribute_span(tag, "value")?;
            return Some((after_name + offset, after_name + offset + len));
        }
        from = after_name;
    }
    None
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    attribute_span(tag, name).map(|(offset, len)| tag[offset..offset + len].to_string())
}

/// Offset and length of attribute `name`'s value inside the text of a start tag.
fn attribute_span(tag: &str, name: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(found) = tag[from..].find(name) {
        let start = from + found;
        let preceded_by_space = tag[..start].chars().next_back().is_some_and(char::is_whitespace);
        let rest = tag[start + name.len()..].trim_start();
        if preceded_by_space {
            if let Some(value) = rest.strip_prefix('=') {
                let value = value.trim_start();
                let quote = value.chars().next()?;
                if quote == '"' || quote == '\'' {
                    let value_start = tag.len() - value.len() + 1;
                    let len = tag[value_start..].find(quote)?;
                    return Some((value_start, len));
                }
            }
        }
        from = start + name.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_root_skips_declaration_and_comments() {
        let doc = "<?xml version=\"1.0\"?>\n<!-- x -->\n<Patient xmlns=\"http://hl7.org/fhir\">\n  <id value=\"abc\"/></Patient>";
        assert_eq!(xml_root(doc), Some(("Patient".into(), Some("http://hl7.org/fhir".into()))));
        assert_eq!(xml_id(doc).as_deref(), Some("abc"));
        assert_eq!(with_xml_id(doc, "abc-x").unwrap(), doc.replace("\"abc\"", "\"abc-x\""));
    }

    #[test]
    fn xml_id_ignores_longer_element_names() {
        let doc = "<Patient xmlns=\"http://hl7.org/fhir\"><identifier><value value=\"v\"/></identifier><id value='p1' /></Patient>";
        assert_eq!(xml_id(doc).as_deref(), Some("p1"));
    }

    #[test]
    fn etag_versions() {
        assert_eq!(etag_version("W/\"12\"").as_deref(), Some("12"));
        assert_eq!(etag_version("\"3\"").as_deref(), Some("3"));
        assert_eq!(etag_version("3"), None);
    }

    #[test]
    fn query_escapes_token_separators_but_not_commas() {
        assert_eq!(
            query(&[("identifier", "http://x|1"), ("date", "ge2020-01-01T00:00:00+01:00,lt1")]),
            "identifier=http://x%7C1&date=ge2020-01-01T00:00:00%2B01:00,lt1"
        );
    }

    #[test]
    fn differences_name_the_path() {
        let a = json!({"a": [1, {"b": "x"}]});
        let b = json!({"a": [1, {"b": "y"}]});
        assert_eq!(first_difference(&a, &b).unwrap(), "$.a[1].b: expected \"x\", got \"y\"");
        assert_eq!(first_difference(&a, &a), None);
        assert!(first_difference(&json!({}), &json!({"c": 1})).unwrap().contains("unexpected"));
    }
}
