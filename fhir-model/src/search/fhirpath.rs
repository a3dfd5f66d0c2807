//! The small subset of FHIRPath that R4 search-parameter expressions use, evaluated on FHIR JSON.
//!
//! Supported: unions of branches (`A.x | B.y`), each a path from a resource type through
//! element names, optionally narrowed by `.where(resolve() is Type)`, `.ofType(Type)`,
//! `.as(Type)` or `(path as Type)`. That covers the shapes of the great majority of the R4
//! definitions; anything else fails to compile, and the registry test catches it before a
//! parameter silently indexes nothing.

use serde_json::Value;

use super::reference::split_reference;

/// A compiled expression: one branch per union member.
#[derive(Debug, Clone)]
pub(crate) struct Expression {
    branches: Vec<Branch>,
}

#[derive(Debug, Clone)]
struct Branch {
    /// The resource type the branch starts from; `Resource` and `DomainResource` match all.
    base: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    /// An element name; a choice element `effective` also matches `effectiveDateTime` etc.
    Child(String),
    /// Keep items of this type. Only choice elements tell us their type in JSON, so items of
    /// unknown type are kept rather than guessed at.
    OfType(String),
    /// `where(resolve() is T)`: keep references whose target is of type `T`.
    ResolvesTo(String),
}

/// One item an expression selected: the JSON value and the element path that led to it
/// (`Patient.gender`), which is what a binding (and so an implicit code system) belongs to.
#[derive(Debug)]
pub(crate) struct Node<'a> {
    pub(crate) value: &'a Value,
    pub(crate) path: String,
    /// For an item reached through a choice element, the type suffix (`DateTime`, `Period`).
    choice: Option<&'a str>,
}

impl Expression {
    pub(crate) fn compile(text: &str) -> Result<Expression, String> {
        let branches = split_top_level(text, '|')
            .into_iter()
            .map(compile_branch)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Expression { branches })
    }

    /// Whether any branch reads resources of `resource_type`. Only the registry's own check
    /// needs to ask; evaluation filters branches itself.
    #[cfg(test)]
    pub(crate) fn applies_to(&self, resource_type: &str) -> bool {
        self.branches.iter().any(|b| b.applies_to(resource_type))
    }

    /// The items the expression selects in `resource`, which is of `resource_type`.
    pub(crate) fn evaluate<'a>(&self, resource_type: &str, resource: &'a Value) -> Vec<Node<'a>> {
        let mut out = Vec::new();
        for branch in self.branches.iter().filter(|b| b.applies_to(resource_type)) {
            out.extend(branch.evaluate(resource));
        }
        out
    }
}

impl Branch {
    fn applies_to(&self, resource_type: &str) -> bool {
        self.base == resource_type || self.base == "Resource" || self.base == "DomainResource"
    }

    fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Node<'a>> {
        let mut nodes = vec![Node {
            value: resource,
            path: self.base.clone(),
            choice: None,
        }];
        for step in &self.steps {
            nodes = match step {
                Step::Child(name) => {
                    let mut next = Vec::new();
                    for node in &nodes {
                        children(node, name, &mut next);
                    }
                    next
                }
                Step::OfType(ty) => {
                    nodes.retain(|n| n.choice.is_none_or(|c| c.eq_ignore_ascii_case(ty)));
                    nodes
                }
                Step::ResolvesTo(ty) => {
                    nodes.retain(|n| reference_type(n.value).as_deref() == Some(ty.as_str()));
                    nodes
                }
            };
        }
        nodes
    }
}

/// Appends the items of element `name` under `node`, flattening arrays.
fn children<'a>(node: &Node<'a>, name: &str, out: &mut Vec<Node<'a>>) {
    let Some(object) = node.value.as_object() else {
        return;
    };
    let path = format!("{}.{name}", node.path);
    if let Some(value) = object.get(name) {
        push_items(value, &path, None, out);
        return;
    }
    // A choice element `x[x]` appears in JSON as `xType`. An element name followed by an
    // upper-case letter is never an ordinary sibling in R4, so the prefix test is safe.
    for (key, value) in object {
        if let Some(suffix) = key.strip_prefix(name) {
            if suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
                push_items(value, &path, Some(suffix), out);
            }
        }
    }
}

fn push_items<'a>(value: &'a Value, path: &str, choice: Option<&'a str>, out: &mut Vec<Node<'a>>) {
    match value {
        Value::Null => {}
        Value::Array(items) => {
            for item in items.iter().filter(|i| !i.is_null()) {
                out.push(Node {
                    value: item,
                    path: path.to_string(),
                    choice,
                });
            }
        }
        _ => out.push(Node {
            value,
            path: path.to_string(),
            choice,
        }),
    }
}

/// The target type of a Reference: from its `reference` string, else its `type` element.
fn reference_type(value: &Value) -> Option<String> {
    let typed = value
        .get("reference")
        .and_then(Value::as_str)
        .and_then(split_reference)
        .and_then(|(ty, _)| ty);
    typed.or_else(|| {
        value
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}

fn compile_branch(text: &str) -> Result<Branch, String> {
    let text = strip_outer_parens(text.trim());
    let words: Vec<&str> = split_top_level(text, ' ')
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect();
    let (path, cast) = match words.as_slice() {
        [path] => (*path, None),
        [path, "as", ty] if is_identifier(ty) => (*path, Some(*ty)),
        _ => return Err(format!("unsupported fhirpath expression {text:?}")),
    };
    let mut segments = split_top_level(path, '.').into_iter();
    let base = segments.next().unwrap_or_default();
    if !base.starts_with(|c: char| c.is_ascii_uppercase()) || !is_identifier(base) {
        return Err(format!(
            "fhirpath branch {text:?} does not start with a resource type"
        ));
    }
    let mut steps = Vec::new();
    for segment in segments {
        let step = if is_identifier(segment) {
            Step::Child(segment.to_string())
        } else if let Some(arg) = call(segment, "where") {
            let target = arg
                .strip_prefix("resolve() is ")
                .map(str::trim)
                .filter(|t| is_identifier(t))
                .ok_or_else(|| format!("unsupported fhirpath filter {segment:?}"))?;
            Step::ResolvesTo(target.to_string())
        } else if let Some(ty) = call(segment, "ofType").or_else(|| call(segment, "as")) {
            if !is_identifier(ty) {
                return Err(format!("unsupported fhirpath type {ty:?}"));
            }
            Step::OfType(ty.to_string())
        } else {
            return Err(format!("unsupported fhirpath step {segment:?}"));
        };
        steps.push(step);
    }
    if let Some(ty) = cast {
        steps.push(Step::OfType(ty.to_string()));
    }
    Ok(Branch {
        base: base.to_string(),
        steps,
    })
}

/// The argument text of `name(arg)`, if `segment` is that call.
fn call<'s>(segment: &'s str, name: &str) -> Option<&'s str> {
    segment
        .strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
        .map(str::trim)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Removes parentheses that enclose the whole of `text`, as in `(Observation.value as Quantity)`.
fn strip_outer_parens(mut text: &str) -> &str {
    while text.starts_with('(') && text.ends_with(')') {
        // Only strip when the first parenthesis closes at the very end: `(a).b(c)` must stay.
        let mut depth = 0;
        let closes_at_end = text.char_indices().all(|(i, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            depth > 0 || i == text.len() - 1
        });
        if !closes_at_end {
            break;
        }
        text = text[1..text.len() - 1].trim();
    }
    text
}

/// Splits on `sep` outside parentheses and string literals, trimming each piece.
fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            c if c == sep && depth == 0 && !quoted => {
                pieces.push(text[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    pieces.push(text[start..].trim());
    pieces
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(expr: &str, resource_type: &str, resource: &Value) -> Vec<(String, Value)> {
        Expression::compile(expr)
            .unwrap()
            .evaluate(resource_type, resource)
            .into_iter()
            .map(|n| (n.path, n.value.clone()))
            .collect()
    }

    #[test]
    fn union_takes_only_the_branches_of_the_resource_type() {
        let patient = json!({"resourceType": "Patient", "birthDate": "1970"});
        let got = paths("Patient.birthDate | Person.birthDate", "Patient", &patient);
        assert_eq!(got, vec![("Patient.birthDate".to_string(), json!("1970"))]);
        assert!(paths("Person.birthDate", "Patient", &patient).is_empty());
    }

    #[test]
    fn arrays_are_flattened_at_every_step() {
        let patient = json!({"name": [{"given": ["A", "B"]}, {"given": ["C"]}]});
        let got: Vec<Value> = paths("Patient.name.given", "Patient", &patient)
            .into_iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(got, vec![json!("A"), json!("B"), json!("C")]);
    }

    #[test]
    fn choice_elements_and_casts() {
        let obs = json!({"effectiveDateTime": "2020", "valueQuantity": {"value": 1}});
        assert_eq!(paths("Observation.effective", "Observation", &obs).len(), 1);
        assert_eq!(
            paths("(Observation.effective as dateTime)", "Observation", &obs).len(),
            1
        );
        assert!(paths("(Observation.effective as Period)", "Observation", &obs).is_empty());
        assert!(paths("Observation.effective.ofType(Period)", "Observation", &obs).is_empty());
        // A name that is only the start of a longer lower-case name selects nothing.
        assert!(paths("Observation.val", "Observation", &obs).is_empty());
    }

    #[test]
    fn resolve_is_filters_references_by_target_type() {
        let obs = json!({"subject": {"reference": "Group/1"}});
        assert!(paths(
            "Observation.subject.where(resolve() is Patient)",
            "Observation",
            &obs
        )
        .is_empty());
        let obs = json!({"subject": {"reference": "http://x/fhir/Patient/1/_history/3"}});
        assert_eq!(
            paths(
                "Observation.subject.where(resolve() is Patient)",
                "Observation",
                &obs
            )
            .len(),
            1
        );
        let obs = json!({"subject": {"reference": "urn:uuid:1", "type": "Patient"}});
        assert_eq!(
            paths(
                "Observation.subject.where(resolve() is Patient)",
                "Observation",
                &obs
            )
            .len(),
            1
        );
    }

    #[test]
    fn unsupported_expressions_are_rejected() {
        assert!(Expression::compile("Patient.telecom.where(system='phone')").is_err());
        assert!(Expression::compile("Bundle.entry[0].resource").is_err());
        assert!(Expression::compile("name.given").is_err());
        assert!(
            Expression::compile("(ActivityDefinition.useContext.value as CodeableConcept)").is_ok()
        );
    }
}
