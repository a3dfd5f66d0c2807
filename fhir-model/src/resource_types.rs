//! The vendored R4 JSON Schema, parsed once, the resource types read from its discriminator,
//! and the rule every resource id follows.

use std::sync::OnceLock;

use serde_json::Value;

use crate::{Issue, ModelError};

/// The text of `data/fhir.schema.json`, compiled into the binary so that `fhir-model` stays
/// free of I/O.
const SCHEMA_TEXT: &str = include_str!("../data/fhir.schema.json");

/// The vendored schema as a JSON value. Parsed on first use and kept for the life of the
/// process, because validators borrow from it and parsing 2.8 MB costs tens of milliseconds.
pub(crate) fn schema_document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| serde_json::from_str(SCHEMA_TEXT).expect("the vendored fhir.schema.json is valid json"))
}

/// All R4 resource type names, sorted.
pub fn resource_types() -> &'static [String] {
    static TYPES: OnceLock<Vec<String>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let mapping = schema_document()
            .pointer("/discriminator/mapping")
            .and_then(Value::as_object)
            .expect("the vendored schema has a discriminator mapping");
        let mut types: Vec<String> = mapping.keys().cloned().collect();
        types.sort_unstable();
        types
    })
}

pub fn is_resource_type(name: &str) -> bool {
    resource_types().binary_search_by(|t| t.as_str().cmp(name)).is_ok()
}

/// The `resourceType` of a FHIR JSON resource, checked against the R4 types. A body that is not
/// an object with a string `resourceType` is a structure problem; a string naming no R4 type is
/// `UnknownResourceType`.
pub(crate) fn resource_type_of(resource: &Value) -> Result<&str, ModelError> {
    let Some(name) = resource.get("resourceType").and_then(Value::as_str) else {
        let message = if resource.is_object() {
            "resource has no string resourceType"
        } else {
            "resource must be a json object"
        };
        return Err(ModelError::Structure(vec![Issue::error("", "structure", message)]));
    };
    if is_resource_type(name) {
        Ok(name)
    } else {
        Err(ModelError::UnknownResourceType(name.to_string()))
    }
}

/// True when `id` is a valid FHIR logical id: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
