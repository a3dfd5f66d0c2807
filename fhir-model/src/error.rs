//! The one error type of `fhir-model` and the issues it carries.

/// How bad one issue is, in the sense of OperationOutcome.issue.severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueSeverity {
    Error,
    Warning,
}

/// One problem found in a resource or a request, ready to become an OperationOutcome issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: IssueSeverity,
    /// FHIRPath-style location of the element, e.g. `Observation.valueQuantity.value`.
    /// Empty when the problem is not tied to one element.
    pub expression: String,
    /// Short machine-readable name of the rule, e.g. `vital-sign-range`, `json-schema`,
    /// `structure`, `search-parameter`.
    pub rule: String,
    /// Human-readable explanation, lowercase, naming the values involved.
    pub message: String,
}

impl Issue {
    pub fn error(expression: impl Into<String>, rule: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            severity: IssueSeverity::Error,
            expression: expression.into(),
            rule: rule.into(),
            message: message.into(),
        }
    }
}

/// Everything that can go wrong in `fhir-model`. The server maps each variant to one HTTP
/// status: `Syntax` and `Structure` and `Search` → 400, `Rule` → 422,
/// `UnknownResourceType` → 404.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not well-formed JSON or XML.
    #[error("malformed {format} body: {message}")]
    Syntax { format: &'static str, message: String },
    /// Well-formed, but not a valid FHIR R4 resource (unknown element, wrong type, fails the
    /// R4 JSON Schema or fhirbolt's strict deserialization).
    #[error("invalid resource: {}", summary(.0))]
    Structure(Vec<Issue>),
    /// A valid resource that breaks a business rule (vital-sign ranges, future effective time).
    #[error("resource violates rules: {}", summary(.0))]
    Rule(Vec<Issue>),
    /// `resourceType` (or a URL segment) names no R4 resource type.
    #[error("unknown resource type {0}")]
    UnknownResourceType(String),
    /// A search request that cannot be run: malformed value, unknown parameter under
    /// strict handling.
    #[error("invalid search: {}", summary(.0))]
    Search(Vec<Issue>),
}

impl ModelError {
    /// The issues this error carries (one synthesised issue for variants without a list).
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            ModelError::Structure(i) | ModelError::Rule(i) | ModelError::Search(i) => i.clone(),
            ModelError::Syntax { .. } => vec![Issue::error("", "syntax", self.to_string())],
            ModelError::UnknownResourceType(_) => vec![Issue::error("", "resource-type", self.to_string())],
        }
    }
}

fn summary(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| if i.expression.is_empty() { i.message.clone() } else { format!("{}: {}", i.expression, i.message) })
        .collect::<Vec<_>>()
        .join("; ")
}
