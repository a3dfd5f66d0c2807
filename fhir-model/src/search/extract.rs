//! Extraction of index entries from a resource: each registry parameter's expression selects
//! items, and each item becomes index values according to the parameter's type and the item's
//! JSON shape. Composite parameters evaluate their components from each selected item and
//! index the tuples.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::date::parse_range;
use super::fhirpath::Node;
use super::number::parse_decimal;
use super::quantity::quantity_values;
use super::reference::split_reference;
use super::registry::{component_expression, expression, implicit_code_system, params_for};
use super::text::normalize;
use super::{IndexEntry, IndexValue, ParamType, SearchParamDef};

/// The parts of a HumanName or an Address (and the `text` of an Annotation or a Narrative-less
/// CodeableConcept) that a string parameter on the whole datatype searches. `use`, `type` and
/// `period` are left out: they are codes and dates, not text.
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

/// The codes of `ContactPoint.system`. An object with a `value` whose `system` is one of these
/// is a ContactPoint, whose token has no system; otherwise it is an Identifier, whose `system`
/// is the token's.
const CONTACT_POINT_SYSTEMS: &[&str] = &["phone", "fax", "email", "pager", "url", "sms", "other"];

/// The most tuples one item of a composite parameter may yield. Components with many values
/// each (a CodeableConcept with several codings, a quantity with its canonical form) multiply;
/// the bound keeps a pathological resource from exploding the index.
const MAX_TUPLES_PER_ITEM: usize = 64;

pub(super) fn extract_index(resource_type: &str, resource: &Value) -> Vec<IndexEntry> {
    let mut entries: Vec<IndexEntry> = Vec::new();
    for (index, def) in params_for(resource_type) {
        let Some(expr) = expression(index) else {
            continue;
        };
        let nodes = expr.evaluate(resource_type, resource);
        let values: Vec<IndexValue> = match def.kind {
            ParamType::Composite => composite_values(index, def, &nodes),
            kind => nodes.iter().flat_map(|n| index_values(kind, n)).collect(),
        };
        // Duplicates are dropped per parameter. The public value types carry no Hash (f64
        // has no Eq), so their debug form, which prints every field exactly, is the key.
        let mut seen = HashSet::new();
        for value in values {
            if seen.insert(format!("{value:?}")) {
                entries.push(IndexEntry {
                    param: def.name.to_string(),
                    value,
                });
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
        ParamType::Number => number_values(node.value),
        ParamType::Quantity => quantity_values(node.value),
        ParamType::Reference => reference_values(node.value),
        ParamType::Uri => node
            .value
            .as_str()
            .filter(|s| !s.is_empty())
            .map(|s| IndexValue::Uri(s.to_string()))
            .into_iter()
            .collect(),
        ParamType::Composite | ParamType::Special => Vec::new(),
    }
}

/// The tuples of a composite parameter: for each item its expression selects, the values of
/// every component evaluated from that item, crossed. An item where some component has no
/// value yields no tuple.
fn composite_values(index: usize, def: &SearchParamDef, nodes: &[Node<'_>]) -> Vec<IndexValue> {
    let mut out = Vec::new();
    for node in nodes {
        let mut tuples: Vec<Vec<IndexValue>> = vec![Vec::new()];
        for (i, component) in def.components.iter().enumerate() {
            let Some(expr) = component_expression(index, i) else {
                return Vec::new();
            };
            // Only the values a component predicate compares take part: the `:text` and
            // `:of-type` forms of a token are not composite search values.
            let values: Vec<IndexValue> = expr
                .evaluate_from(node)
                .iter()
                .flat_map(|n| index_values(component.kind, n))
                .filter(|v| {
                    !matches!(
                        v,
                        IndexValue::TokenText { .. } | IndexValue::IdentifierOfType { .. }
                    )
                })
                .collect();
            tuples = tuples
                .iter()
                .flat_map(|tuple| {
                    values.iter().map(move |v| {
                        let mut next = tuple.clone();
                        next.push(v.clone());
                        next
                    })
                })
                .take(MAX_TUPLES_PER_ITEM)
                .collect();
        }
        out.extend(
            tuples
                .into_iter()
                .filter(|t| !t.is_empty())
                .map(IndexValue::Composite),
        );
    }
    out
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
        Value::Object(object) if object.contains_key("coding") || is_text_only(object) => {
            codeable_concept(object)
        }
        // Identifier and ContactPoint carry `value`; a bare Coding carries `code`.
        Value::Object(object) if object.contains_key("value") => identifier(object),
        Value::Object(object) => coding(object),
        _ => Vec::new(),
    }
}

/// A CodeableConcept with no coding, only `text`.
fn is_text_only(object: &Map<String, Value>) -> bool {
    object.contains_key("text")
        && !["code", "value", "system"]
            .iter()
            .any(|k| object.contains_key(*k))
}

/// Every coding as a token (with its display as text), and the concept's own `text`.
fn codeable_concept(object: &Map<String, Value>) -> Vec<IndexValue> {
    let mut out: Vec<IndexValue> = object
        .get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(coding)
        .collect();
    out.extend(token_text(object.get("text")));
    out
}

fn coding(object: &Map<String, Value>) -> Vec<IndexValue> {
    let mut out: Vec<IndexValue> = token(text_field(object, "system"), text_field(object, "code"))
        .into_iter()
        .collect();
    out.extend(token_text(object.get("display")));
    out
}

/// An Identifier: its `system|value` token, its type's text, and `type.coding` paired with
/// the value for `:of-type`. A ContactPoint: its value, without system.
fn identifier(object: &Map<String, Value>) -> Vec<IndexValue> {
    let system = text_field(object, "system").filter(|s| !CONTACT_POINT_SYSTEMS.contains(s));
    let value = text_field(object, "value");
    let mut out: Vec<IndexValue> = token(system, value).into_iter().collect();
    let (Some(value), Some(ty)) = (value, object.get("type").and_then(Value::as_object)) else {
        return out;
    };
    out.extend(token_text(ty.get("text")));
    for c in ty
        .get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
    {
        if let Some(code) = text_field(c, "code") {
            out.push(IndexValue::IdentifierOfType {
                type_system: text_field(c, "system").map(str::to_string),
                type_code: code.to_string(),
                value: value.to_string(),
            });
        }
    }
    out
}

fn text_field<'v>(object: &'v Map<String, Value>, field: &str) -> Option<&'v str> {
    object
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn token(system: Option<&str>, code: Option<&str>) -> Option<IndexValue> {
    let code = code.filter(|c| !c.is_empty())?;
    Some(IndexValue::Token {
        system: system.map(str::to_string),
        code: code.to_string(),
    })
}

fn token_text(text: Option<&Value>) -> Option<IndexValue> {
    let text = text?.as_str().filter(|t| !t.trim().is_empty())?;
    Some(IndexValue::TokenText {
        normalized: normalize(text),
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

/// A decimal or integer as the range its written digits stand for; a Quantity-shaped item
/// (Duration, Age) by its value; a Range from the low end of `low` to the high end of `high`.
fn number_values(value: &Value) -> Vec<IndexValue> {
    // With serde_json's `arbitrary_precision`, a number's text is its digits as written.
    let decimal = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => parse_decimal(&n.to_string()),
        _ => None,
    };
    let (lo, hi) = match value {
        Value::Number(_) => match decimal(Some(value)) {
            Some(d) => (d.lo, d.hi),
            None => return Vec::new(),
        },
        Value::Object(o) if o.contains_key("low") || o.contains_key("high") => {
            let low = decimal(o.get("low").and_then(|l| l.get("value")));
            let high = decimal(o.get("high").and_then(|h| h.get("value")));
            if low.is_none() && high.is_none() {
                return Vec::new();
            }
            (
                low.map_or(f64::MIN, |d| d.lo),
                high.map_or(f64::MAX, |d| d.hi),
            )
        }
        Value::Object(o) => match decimal(o.get("value")) {
            Some(d) => (d.lo, d.hi),
            None => return Vec::new(),
        },
        _ => return Vec::new(),
    };
    if lo < hi {
        vec![IndexValue::Number { lo, hi }]
    } else {
        Vec::new()
    }
}

/// A Reference (by `reference`, and by `identifier` for `:identifier`), or a `canonical` /
/// `uri` string naming a resource, split like a reference when it has that shape (a version
/// after `|` is not part of the type/id).
fn reference_values(value: &Value) -> Vec<IndexValue> {
    match value {
        Value::String(url) => {
            let base = url.split('|').next().unwrap_or(url);
            match split_reference(base) {
                Some((Some(ty), id)) => vec![IndexValue::Reference {
                    target_type: Some(ty),
                    target_id: id,
                    url: url.clone(),
                }],
                Some((None, _)) => vec![IndexValue::Reference {
                    target_type: None,
                    target_id: url.clone(),
                    url: url.clone(),
                }],
                None => Vec::new(),
            }
        }
        Value::Object(object) => {
            let mut out = Vec::new();
            if let Some(url) = text_field(object, "reference") {
                if let Some((target_type, target_id)) = split_reference(url) {
                    out.push(IndexValue::Reference {
                        target_type,
                        target_id,
                        url: url.to_string(),
                    });
                }
            }
            if let Some(identifier) = object.get("identifier").and_then(Value::as_object) {
                if let Some(value) = text_field(identifier, "value") {
                    out.push(IndexValue::ReferenceIdentifier {
                        system: text_field(identifier, "system").map(str::to_string),
                        value: value.to_string(),
                    });
                }
            }
            out
        }
        _ => Vec::new(),
    }
}
