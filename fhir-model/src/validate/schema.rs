//! Validation against the vendored R4 JSON Schema, one lazily compiled validator for all
//! resource types, with schema errors turned into issues that name their element in FHIRPath style.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Registry, ValidationError, Validator};
use serde_json::{json, Value};

use crate::resource_types::{is_resource_type, schema_document};
use crate::Issue;

/// The `id` the vendored schema declares; `$ref`s into it are resolved against this URI.
const SCHEMA_ID: &str = "http://hl7.org/fhir/json-schema/4.0";

/// Appends one issue per schema violation of `resource` (all of them, not just the first).
pub(crate) fn check(resource_type: &str, resource: &Value, issues: &mut Vec<Issue>) {
    let validator = validator(resource_type);
    // `is_valid` short-circuits and builds no error values, so the common (valid) case stays
    // cheap; the full error walk runs only for resources that are going to be rejected.
    if validator.is_valid(resource) {
        return;
    }
    for error in validator.iter_errors(resource) {
        push_issues(resource_type, &error, issues);
    }
}

/// The one validator, for `#/definitions/ResourceList` (a `oneOf` over the 146 R4 types).
/// jsonschema dispatches that `oneOf` on the `resourceType` value, so a check costs the same as
/// against the type's own definition; and because `contained` and `Bundle.entry.resource`
/// reach every type anyway, a per-type validator compiles nearly the whole schema each time
/// (about 25 MB per type in use, 3.6 GB for all 146), where this one compiles it once.
/// `push_issues` reports the branch the `resourceType` selected, so messages stay specific.
fn validator(_resource_type: &str) -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| compile("ResourceList"))
}

/// The whole vendored schema, registered once under its id so that every per-type validator
/// resolves its `$ref`s against the same parsed document instead of re-reading it.
fn registry() -> &'static Registry<'static> {
    static REGISTRY: OnceLock<Registry<'static>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Registry::new()
            .draft(Draft::Draft6)
            .add(SCHEMA_ID, schema_document())
            .and_then(|builder| builder.prepare())
            .expect("the vendored fhir.schema.json can be registered")
    })
}

fn compile(resource_type: &str) -> Validator {
    let root = json!({ "$ref": format!("{SCHEMA_ID}#/definitions/{resource_type}") });
    // The ignored test `the_schema_compiles_for_every_resource_type` compiles all 146, to be
    // run after re-vendoring; a failure here is a broken build artefact, not a bad request.
    jsonschema::options()
        .with_draft(Draft::Draft6)
        .with_registry(registry())
        .build(&root)
        .unwrap_or_else(|e| panic!("the vendored schema for {resource_type} does not compile: {e}"))
}

fn push_issues(resource_type: &str, error: &ValidationError<'_>, issues: &mut Vec<Issue>) {
    let path = fhirpath(resource_type, error.instance_path().as_str());
    match error.kind() {
        // One issue per unknown member, located at the member itself rather than its parent.
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            for name in unexpected {
                issues.push(Issue::error(format!("{path}.{name}"), "json-schema", format!("unknown element '{name}'")));
            }
        }
        // `contained` and `Bundle.entry.resource` are a `oneOf` over every resource type. The
        // branch whose `resourceType` matched carries the real problems; the others only say
        // "wrong resourceType". Report that one branch rather than the whole union.
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            match matching_branch(context) {
                Some(branch) => {
                    for inner in branch {
                        push_issues(resource_type, inner, issues);
                    }
                }
                None => match error.instance().get("resourceType").and_then(Value::as_str) {
                    Some(name) if !is_resource_type(name) => issues.push(Issue::error(
                        format!("{path}.resourceType"),
                        "json-schema",
                        super::truncate(&format!("unknown resource type '{name}'")),
                    )),
                    _ => issues.push(Issue::error(path, "json-schema", "value matches none of the allowed types")),
                },
            }
        }
        // The FHIR primitive patterns are long regular expressions that help no one reading an
        // OperationOutcome; the primitive type's name says the same thing. A string given for
        // a boolean or number fails both `type` and `pattern`; the type error is enough.
        ValidationErrorKind::Pattern { pattern } => {
            if issues.last().is_some_and(|last| last.expression == path) {
                return;
            }
            let value = error.instance().to_string();
            let message = match primitive_patterns().get(pattern.as_str()) {
                Some(names) => format!("{value} is not a valid {names}"),
                None => format!("{value} does not match the required pattern"),
            };
            issues.push(Issue::error(path, "json-schema", super::truncate(&message)));
        }
        _ => issues.push(Issue::error(path, "json-schema", super::truncate(&lowercase_first(error.to_string())))),
    }
}

/// The FHIR primitive type(s) each schema pattern belongs to, e.g. the dateTime pattern →
/// `dateTime`. Choice elements (`effectiveDateTime`) repeat the pattern inline rather than
/// referring to the primitive's definition, so the pattern text is what identifies the type.
/// A few primitives share a pattern (`uri`, `url`, `canonical`); their names are joined.
fn primitive_patterns() -> &'static HashMap<String, String> {
    static PATTERNS: OnceLock<HashMap<String, String>> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let mut by_pattern: HashMap<String, Vec<&str>> = HashMap::new();
        if let Some(definitions) = schema_document().get("definitions").and_then(Value::as_object) {
            for (name, definition) in definitions {
                if let Some(pattern) = definition.get("pattern").and_then(Value::as_str) {
                    by_pattern.entry(pattern.to_string()).or_default().push(name);
                }
            }
        }
        by_pattern
            .into_iter()
            .map(|(pattern, mut names)| {
                names.sort_unstable();
                (pattern, names.join(" or "))
            })
            .collect()
    })
}

/// The one branch of a failed `oneOf` whose errors do not include a mismatched `resourceType`.
fn matching_branch<'a, 'e>(context: &'a [Vec<ValidationError<'e>>]) -> Option<&'a [ValidationError<'e>]> {
    let mut candidates = context.iter().filter(|branch| {
        !branch.iter().any(|e| {
            matches!(e.kind(), ValidationErrorKind::Constant { .. })
                && e.instance_path().as_str().ends_with("/resourceType")
        })
    });
    let first = candidates.next()?;
    if candidates.next().is_some() {
        return None;
    }
    Some(first.as_slice())
}

fn lowercase_first(message: String) -> String {
    let mut chars = message.chars();
    match chars.next() {
        Some(c) if c.is_uppercase() => c.to_lowercase().chain(chars).collect(),
        _ => message,
    }
}

/// Converts a JSON pointer into a FHIRPath-style expression rooted at the resource type:
/// `/component/0/code` → `Observation.component[0].code`. FHIR element names are never
/// numeric, so an all-digit segment is always an array index.
fn fhirpath(resource_type: &str, pointer: &str) -> String {
    let mut out = String::with_capacity(resource_type.len() + pointer.len() + 8);
    out.push_str(resource_type);
    for segment in pointer.split('/').skip(1) {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(segment);
            out.push(']');
        } else {
            out.push('.');
            // JSON pointer escapes: `~1` is `/`, `~0` is `~` (in that order, per RFC 6901).
            out.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::fhirpath;

    #[test]
    fn pointers_become_fhirpath() {
        assert_eq!(fhirpath("Observation", ""), "Observation");
        assert_eq!(fhirpath("Observation", "/valueQuantity/value"), "Observation.valueQuantity.value");
        assert_eq!(fhirpath("Observation", "/component/0/code"), "Observation.component[0].code");
        assert_eq!(fhirpath("Patient", "/name/1/given/0"), "Patient.name[1].given[0]");
        assert_eq!(fhirpath("Patient", "/a~1b/c~0d"), "Patient.a/b.c~d");
    }
}
