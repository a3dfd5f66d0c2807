//! The bridge to fhirbolt's typed R4 model: strict deserialization of FHIR JSON values and the
//! translation of fhirbolt's error text into issues.

use std::fmt::Write;

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use serde_json::Value;

use crate::Issue;

/// Strict mode rejects every element the R4 model does not know, which is what makes the typed
/// model a structure check rather than a lenient parser.
pub(crate) fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig { mode: DeserializationMode::Strict })
}

/// Deserializes `owned` (a copy of `original`) into the typed R4 model. fhirbolt's
/// deserializers only accept owned values; `original` is kept to locate problems.
///
/// This goes through the `Resource` enum even though the type is known: in fhirbolt 0.4 the
/// concrete resource structs (`resources::Observation`) cannot be deserialized from JSON on
/// their own (they reject every decimal), only through the enum, which builds fhirbolt's
/// element tree first.
pub(crate) fn to_typed(resource_type: &str, original: &Value, owned: Value) -> Result<Resource, Issue> {
    // fhirbolt 0.4 panics (an `unwrap` in its element deserializer) on an empty array, which
    // FHIR JSON forbids anyway; such resources are turned away before fhirbolt sees them.
    let mut path = resource_type.to_string();
    if find_empty_array(original, &mut path) {
        return Err(Issue::error(path, "structure", "empty arrays are not allowed in fhir json"));
    }
    guarded(|| fhirbolt::json::from_json_value::<Resource>(owned, strict()).map_err(|e| e.to_string()))
        .map_err(|text| issue(resource_type, &text, Some(original)))
}

/// Checks that `resource` deserializes strictly, without keeping the typed value.
pub(crate) fn check(resource_type: &str, resource: &Value) -> Result<(), Issue> {
    to_typed(resource_type, resource, resource.clone()).map(drop)
}

/// Runs a fhirbolt call, turning a panic inside fhirbolt into an error so that one odd
/// resource cannot take down the thread that validates it.
pub(crate) fn guarded<T>(call: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .unwrap_or_else(|_| Err("fhirbolt failed on this resource".to_string()))
}

/// Whether `node` contains an empty array; if so, `path` is left naming the first one.
fn find_empty_array(node: &Value, path: &mut String) -> bool {
    let base = path.len();
    match node {
        Value::Array(items) if items.is_empty() => true,
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if matches!(item, Value::Array(_) | Value::Object(_)) {
                    // Writing into a String cannot fail.
                    let _ = write!(path, "[{i}]");
                    if find_empty_array(item, path) {
                        return true;
                    }
                    path.truncate(base);
                }
            }
            false
        }
        Value::Object(members) => {
            for (name, child) in members {
                if matches!(child, Value::Array(_) | Value::Object(_)) {
                    path.push('.');
                    path.push_str(name);
                    if find_empty_array(child, path) {
                        return true;
                    }
                    path.truncate(base);
                }
            }
            false
        }
        _ => false,
    }
}

/// Turns one fhirbolt (serde) error message into an issue. serde's messages carry no path, so
/// the element is named only when the message names a field (`unknown field `x`, expected one
/// of ...`, `duplicate field `x``): it is located by searching `resource` for that key, and
/// used only when the key occurs exactly once (otherwise the issue points at the resource).
pub(crate) fn issue(resource_type: &str, error_text: &str, resource: Option<&Value>) -> Issue {
    let unknown = quoted_field(error_text, "unknown field `");
    let duplicate = quoted_field(error_text, "duplicate field `");
    let expression = match (unknown.or(duplicate), resource) {
        (Some(field), Some(resource)) => {
            let mut found = Vec::new();
            find_key(resource, field, resource_type.to_string(), &mut found);
            if found.len() == 1 { found.pop().unwrap_or_default() } else { resource_type.to_string() }
        }
        _ => resource_type.to_string(),
    };
    let message = match (unknown, duplicate) {
        (Some(field), _) => format!("unknown element '{field}'"),
        // In JSON a key cannot repeat in a `Value`; what fhirbolt sees twice is a choice
        // element given in two types (`deceasedBoolean` and `deceasedDateTime`).
        (None, Some(field)) => format!("element '{field}' is given more than once (a choice element takes one type only)"),
        // serde appends the full list of allowed names, which can run to dozens of fields.
        (None, None) => crate::validate::truncate(&format!(
            "not a valid r4 resource: {}",
            error_text.split(", expected one of").next().unwrap_or(error_text)
        )),
    };
    Issue::error(expression, "structure", message)
}

/// The field name serde quotes after `prefix` (e.g. "unknown field `"), if present.
fn quoted_field<'a>(error_text: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = error_text.split_once(prefix)?.1;
    rest.split_once('`').map(|(field, _)| field)
}

/// Collects the FHIRPath-style location of every object member named `key`.
fn find_key(node: &Value, key: &str, path: String, found: &mut Vec<String>) {
    match node {
        Value::Object(members) => {
            for (name, child) in members {
                let child_path = format!("{path}.{name}");
                if name == key {
                    found.push(child_path.clone());
                }
                find_key(child, key, child_path, found);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_key(item, key, format!("{path}[{i}]"), found);
            }
        }
        _ => {}
    }
}
