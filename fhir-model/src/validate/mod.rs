//! Validation of a resource: fhirbolt strict deserialization, the R4 JSON Schema and the
//! vital-sign rules.

mod schema;
pub(crate) mod typed;
mod vital_signs;

use serde_json::Value;
use time::OffsetDateTime;

use crate::resource_types::resource_type_of;
use crate::ModelError;

/// Longest issue message kept; schema errors quote the offending value, which can be a whole
/// subtree of the resource.
const MAX_MESSAGE_CHARS: usize = 300;

/// Validates `resource` (FHIR JSON). `now` is the server's clock, for the "effective time not
/// in the future" rule. Returns `Structure` for schema/fhirbolt failures (all issues found,
/// each naming its element), `Rule` for vital-sign rule violations, `UnknownResourceType`.
pub fn validate(resource: &Value, now: OffsetDateTime) -> Result<(), ModelError> {
    let resource_type = resource_type_of(resource)?;

    // Both structure checks always run, so that one response lists every problem: the schema
    // reports each violation with its exact location, fhirbolt catches what the schema allows
    // but the R4 model does not.
    let typed_error = typed::check(resource_type, resource).err();
    let mut issues = Vec::new();
    schema::check(resource_type, resource, &mut issues);
    if let Some(issue) = typed_error {
        // fhirbolt's messages carry no path. When the schema has already reported problems,
        // an unlocated fhirbolt issue (or one at an element the schema named) is almost always
        // the same problem seen again, so it is added only when it says something new.
        let located = issue.expression != resource_type;
        if issues.is_empty() || (located && !issues.iter().any(|i| i.expression == issue.expression)) {
            issues.insert(0, issue);
        }
    }
    if !issues.is_empty() {
        return Err(ModelError::Structure(issues));
    }

    let violations = vital_signs::check(resource_type, resource, now);
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ModelError::Rule(violations))
    }
}

/// Cuts `message` to at most `MAX_MESSAGE_CHARS` characters, marking the cut.
pub(crate) fn truncate(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_string(),
    }
}
