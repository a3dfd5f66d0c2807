//! Extraction of index entries from a resource: each registry parameter's expression selects
//! items, and each item becomes index values according to the parameter's type and the item's
//! JSON shape.

use serde_json::{Map, Value};

use super::date::parse_range;
use super::fhirpath::Node;
use super::reference::split_reference;
use super::registry::{expression, implicit_code_system, params_for};
use super::text::normalize;
use super::{IndexEntry, IndexValue, ParamType};

/// The parts of a HumanName or an Address that a string parameter on the whole datatype
/// searches. `use`, `type` and `period` are left out: they are codes and dates, not text.
const STRING_PARTS: &[&str] = &[
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

pub(super) fn extract_index(resource_type: &str, resource: &Value) -> Vec<IndexEntry> {
    let mut entries: Vec<IndexEntry> = Vec::new();
    for (index, def) in params_for(resource_type) {
        let Some(expr) = expression(index) else {
            continue;
        };
        for node in expr.evaluate(resource_type, resource) {
            for value in index_values(def.kind, &node) {
                let entry = IndexEntry {
                    param: def.name.to_string(),
                    value,
                };
                // A linear check is fine: a resource yields tens of entries, not thousands, and
                // the public types deliberately carry no Hash.
                if !entries.contains(&entry) {
                    entries.push(entry);
                }
            }
        }
    }
    entries
}

/// The index values of one selected item. Values that do not fit the parameter's type, or
/// are malformed, yield nothing: a resource that got past validation must still never make
/// indexing fail.
fn index_values(kind: ParamType, node: &Node<'_>) -> Vec<IndexValue> {
    match kind {
        ParamType::String => string_values(node.value),
        ParamType::Token => token_values(node),
        ParamType::Date => date_values(node.value),
        ParamType::Reference => reference_value(node.value).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn string_values(value: &Value) -> Vec<IndexValue> {
    match value {
        Value::String(s) => string_value(s).into_iter().collect(),
        Value::Object(object) => STRING_PARTS
            .iter()
            .filter_map(|part| object.get(*part))
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
                other => other.as_str().into_iter().collect(),
            })
            .filter_map(string_value)
            .collect(),
        _ => Vec::new(),
    }
}

fn string_value(text: &str) -> Option<IndexValue> {
    (!text.trim().is_empty()).then(|| IndexValue::String {
        normalized: normalize(text),
        exact: text.to_string(),
    })
}

fn token_values(node: &Node<'_>) -> Vec<IndexValue> {
    match node.value {
        // A plain `code`, `id`, `uri` or `string`: its system, if any, comes from the binding.
        Value::String(code) => token(implicit_code_system(&node.path), Some(code))
            .into_iter()
            .collect(),
        Value::Bool(flag) => token(None, Some(if *flag { "true" } else { "false" }))
            .into_iter()
            .collect(),
        Value::Object(object) => match object.get("coding") {
            // CodeableConcept: every coding is a token; its text is for `:text`, not indexed.
            Some(codings) => codings
                .as_array()
                .map(|codings| {
                    codings
                        .iter()
                        .filter_map(Value::as_object)
                        .filter_map(|c| system_and(c, "code"))
                        .collect()
                })
                .unwrap_or_default(),
            // Identifier and ContactPoint carry `value`; a bare Coding carries `code`.
            None if object.contains_key("value") => {
                system_and(object, "value").into_iter().collect()
            }
            None => system_and(object, "code").into_iter().collect(),
        },
        _ => Vec::new(),
    }
}

/// The token `(system, object[field])` of a Coding (`code`) or Identifier (`value`).
fn system_and(object: &Map<String, Value>, field: &str) -> Option<IndexValue> {
    let system = object
        .get("system")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    token(system, object.get(field).and_then(Value::as_str))
}

fn token(system: Option<&str>, code: Option<&str>) -> Option<IndexValue> {
    let code = code.filter(|c| !c.is_empty())?;
    Some(IndexValue::Token {
        system: system.map(str::to_string),
        code: code.to_string(),
    })
}

fn date_values(value: &Value) -> Vec<IndexValue> {
    let range = |lo, hi| IndexValue::Date { lo, hi };
    match value {
        Value::String(text) => parse_range(text)
            .map(|(lo, hi)| range(lo, hi))
            .into_iter()
            .collect(),
        // Timing: each scheduled event. Its `repeat` rules describe no finite set of instants.
        Value::Object(object) if object.contains_key("event") => object["event"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(parse_range)
            .map(|(lo, hi)| range(lo, hi))
            .collect(),
        // Period: from the start of `start` to the end of `end`; a missing end is open.
        Value::Object(object) if object.contains_key("start") || object.contains_key("end") => {
            let bound = |key: &str| -> Option<Option<(i64, i64)>> {
                match object.get(key) {
                    None | Some(Value::Null) => Some(None),
                    Some(v) => v.as_str().and_then(parse_range).map(Some),
                }
            };
            match (bound("start"), bound("end")) {
                (Some(start), Some(end)) => {
                    let lo = start.map_or(i64::MIN, |(lo, _)| lo);
                    let hi = end.map_or(i64::MAX, |(_, hi)| hi);
                    // An end before the start breaks R4's per-1; such a period matches nothing.
                    if lo < hi {
                        vec![range(lo, hi)]
                    } else {
                        Vec::new()
                    }
                }
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

fn reference_value(value: &Value) -> Option<IndexValue> {
    let url = value.get("reference")?.as_str()?;
    let (target_type, target_id) = split_reference(url)?;
    Some(IndexValue::Reference {
        target_type,
        target_id,
        url: url.to_string(),
    })
}
