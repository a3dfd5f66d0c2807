//! The bridge to fhirbolt's typed R4 model: strict deserialization of FHIR JSON values and the
//! translation of fhirbolt's error text into issues.

use fhirbolt::model::r4::Resource;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};
use serde_json::Value;

use crate::Issue;

/// Strict mode rejects every element the R4 model does not know, which is what makes the typed
/// model a structure check rather than a lenient parser.
pub(crate) fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig { mode: DeserializationMode::Strict })
}

/// Deserializes `resource` into the typed R4 model, returning fhirbolt's error text on failure.
pub(crate) fn to_typed(resource: Value) -> Result<Resource, String> {
    fhirbolt::json::from_json_value::<Resource>(resource, strict()).map_err(|e| e.to_string())
}

/// Checks that `resource` deserializes strictly, without keeping the typed value. fhirbolt's
/// deserializers only accept owned values, hence the clone.
///
/// This goes through the `Resource` enum even though the type is known: in fhirbolt 0.4 the
/// concrete resource structs (`resources::Observation`) cannot be deserialized from JSON on
/// their own (they reject every decimal), only through the enum, which builds fhirbolt's
/// element tree first.
pub(crate) fn check(resource: &Value) -> Result<(), String> {
    to_typed(resource.clone()).map(drop)
}

/// Turns one fhirbolt (serde) error message into an issue. serde's messages carry no path, so
/// the element is named only when the message names a field: `unknown field `x`, expected one
/// of ...` is located by searching `resource` for that key, and used only when the key occurs
/// exactly once (otherwise the issue points at the resource as a whole).
pub(crate) fn issue(resource_type: &str, error_text: &str, resource: Option<&Value>) -> Issue {
    let unknown = unknown_field(error_text);
    let expression = match (unknown, resource) {
        (Some(field), Some(resource)) => {
            let mut found = Vec::new();
            find_key(resource, field, resource_type.to_string(), &mut found);
            if found.len() == 1 { found.pop().unwrap_or_default() } else { resource_type.to_string() }
        }
        _ => resource_type.to_string(),
    };
    let message = match unknown {
        Some(field) => format!("unknown element '{field}'"),
        // serde appends the full list of allowed names, which can run to dozens of fields.
        None => crate::validate::truncate(&format!(
            "not a valid r4 resource: {}",
            error_text.split(", expected one of").next().unwrap_or(error_text)
        )),
    };
    Issue::error(expression, "structure", message)
}

/// The field name in serde's `unknown field `name`` message, if that is what this is.
pub(crate) fn unknown_field(error_text: &str) -> Option<&str> {
    let rest = error_text.split_once("unknown field `")?.1;
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
