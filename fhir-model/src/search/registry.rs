//! The R4 search parameters, the code systems implied by required bindings, and the summary
//! element lists, looked up from the tables generated into `registry_r4.rs`.
//!
//! Each row is an R4 SearchParameter as published, one per base type: its type, code and
//! FHIRPath expression, verbatim. Extraction interprets that expression, so nothing else in the
//! crate names a parameter. The tables come from `scripts/generate-search-registry.py` (run it
//! to regenerate; it documents its input); the tests below check what the generator promises:
//! sorted rows, one per (type, name), and expressions this crate's FHIRPath subset compiles.
//!
//! Lookups are binary searches: rows are sorted by (resource type, name), so a type's own rows
//! are one contiguous range and the write path allocates nothing to find them.

use std::sync::OnceLock;

use super::fhirpath::Expression;
use super::{ParamType, SearchParamDef};

#[path = "registry_r4.rs"]
mod registry_r4;

pub(super) use registry_r4::SEARCH_PARAMETERS;
use registry_r4::{CODE_SYSTEMS, MANDATORY_ELEMENTS, SUMMARY_ELEMENTS};

/// The resource types that are not DomainResources, so have no `_text`.
const NOT_DOMAIN_RESOURCES: &[&str] = &["Binary", "Bundle", "Parameters"];

/// The indexes of the rows whose resource type is `resource_type`.
fn rows_of(resource_type: &str) -> std::ops::Range<usize> {
    let start = SEARCH_PARAMETERS.partition_point(|p| p.resource_type < resource_type);
    let len = SEARCH_PARAMETERS[start..].partition_point(|p| p.resource_type == resource_type);
    start..start + len
}

/// The row for exactly (`resource_type`, `name`).
fn row(resource_type: &str, name: &str) -> Option<(usize, &'static SearchParamDef)> {
    let index = SEARCH_PARAMETERS
        .binary_search_by(|p| (p.resource_type, p.name).cmp(&(resource_type, name)))
        .ok()?;
    Some((index, &SEARCH_PARAMETERS[index]))
}

/// The common types whose rows apply to `resource_type` as well as its own.
fn common_types(resource_type: &str) -> &'static [&'static str] {
    if resource_type == "Resource" || NOT_DOMAIN_RESOURCES.contains(&resource_type) {
        &["Resource"]
    } else {
        &["Resource", "DomainResource"]
    }
}

/// The parameter `name` for `resource_type`: its own, else a common one (`_id`, `_text`).
/// None for the type means system level, where only the `Resource` parameters apply.
pub(super) fn find_param(
    resource_type: Option<&str>,
    name: &str,
) -> Option<(usize, &'static SearchParamDef)> {
    match resource_type {
        None => row("Resource", name),
        Some(rt) => {
            row(rt, name).or_else(|| common_types(rt).iter().find_map(|common| row(common, name)))
        }
    }
}

/// The parameters that apply to a resource of `resource_type`, with their table index: its
/// own rows, then the `Resource` rows, then (for DomainResources) the `DomainResource` rows.
pub(super) fn params_for(
    resource_type: &str,
) -> impl Iterator<Item = (usize, &'static SearchParamDef)> {
    let own = if common_types(resource_type).contains(&resource_type) {
        0..0
    } else {
        rows_of(resource_type)
    };
    let common = common_types(resource_type).iter().flat_map(|t| rows_of(t));
    own.chain(common).map(|i| (i, &SEARCH_PARAMETERS[i]))
}

/// The compiled expression of row `index`, compiled once per process. None for a row whose
/// expression is empty or outside the FHIRPath subset (see `unsupported_reason`).
pub(super) fn expression(index: usize) -> Option<&'static Expression> {
    static COMPILED: OnceLock<Vec<Option<Expression>>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            SEARCH_PARAMETERS
                .iter()
                .map(|p| Expression::compile(p.expression).ok())
                .collect()
        })
        .get(index)?
        .as_ref()
}

/// The compiled relative expression of component `component` of composite row `index`,
/// compiled once per process, evaluated from each item the row's own expression selects.
pub(super) fn component_expression(index: usize, component: usize) -> Option<&'static Expression> {
    static COMPILED: OnceLock<Vec<Vec<Option<Expression>>>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            SEARCH_PARAMETERS
                .iter()
                .map(|p| {
                    p.components
                        .iter()
                        .map(|c| Expression::compile_relative(c.expression).ok())
                        .collect()
                })
                .collect()
        })
        .get(index)?
        .get(component)?
        .as_ref()
}

/// Why row `def` does not work, or None when it does. Rows of the table are judged once per
/// process (this is asked for every parameter of every search request).
pub(super) fn unsupported_reason(def: &SearchParamDef) -> Option<String> {
    static JUDGED: OnceLock<Vec<Option<String>>> = OnceLock::new();
    let rows = SEARCH_PARAMETERS.as_ptr_range();
    let at = def as *const SearchParamDef;
    if !rows.contains(&at) {
        return judge(def);
    }
    let index = (at as usize - rows.start as usize) / std::mem::size_of::<SearchParamDef>();
    JUDGED
        .get_or_init(|| SEARCH_PARAMETERS.iter().map(judge).collect())
        .get(index)?
        .clone()
}

fn judge(def: &SearchParamDef) -> Option<String> {
    if def.kind == ParamType::Special {
        return Some("special parameters are not supported".to_string());
    }
    if def.expression.trim().is_empty() {
        return Some("the definition has no expression".to_string());
    }
    match Expression::compile(def.expression) {
        Err(e) => return Some(e),
        Ok(expr) if !expr.applies_to(def.resource_type) => {
            return Some(format!(
                "the expression never reads a {} resource",
                def.resource_type
            ))
        }
        Ok(_) => {}
    }
    if def.kind == ParamType::Composite && def.components.is_empty() {
        return Some("composite parameter without components".to_string());
    }
    def.components.iter().find_map(|c| {
        Expression::compile_relative(c.expression)
            .err()
            .map(|e| format!("component {}: {e}", c.name))
    })
}

/// The code system implied for a plain code at `element_path` (`Patient.gender`), if any. Keyed
/// by element, not by parameter, because the binding belongs to the element and every
/// parameter reaching it should agree.
pub(super) fn implicit_code_system(element_path: &str) -> Option<&'static str> {
    let at = CODE_SYSTEMS
        .binary_search_by(|(path, _)| (*path).cmp(element_path))
        .ok()?;
    Some(CODE_SYSTEMS[at].1)
}

/// The top-level elements of `resource_type` marked isSummary (`_summary=true`), choice
/// elements without `[x]` (`deceased`). None for an unknown type.
pub(crate) fn summary_elements(resource_type: &str) -> Option<&'static [&'static str]> {
    lookup(SUMMARY_ELEMENTS, resource_type)
}

/// The top-level elements of `resource_type` with a minimum cardinality of one, which
/// `_summary=data` and `_summary=text` keep. None for an unknown type.
pub(crate) fn mandatory_elements(resource_type: &str) -> Option<&'static [&'static str]> {
    lookup(MANDATORY_ELEMENTS, resource_type)
}

fn lookup(
    table: &'static [(&'static str, &'static [&'static str])],
    resource_type: &str,
) -> Option<&'static [&'static str]> {
    let at = table
        .binary_search_by(|(rt, _)| (*rt).cmp(resource_type))
        .ok()?;
    Some(table[at].1)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    /// What `scripts/generate-search-registry.py` reports for hl7.fhir.r4.examples 4.0.1:
    /// 1,400 definitions, 10 without a base, 2 duplicate (base, code) pairs.
    const ROWS: usize = 1719;

    /// The rows that cannot work: the definitions without an expression (servers implement
    /// `_text`, `_content`, `_query` in code; `age` and `birthOrderBoolean` are examples of
    /// extension parameters whose expression is missing), the special parameters, and
    /// `Patient.part-agree`, an example whose expression reads DocumentReference only.
    const UNSUPPORTED: &[(&str, &str)] = &[
        ("DomainResource", "_text"),
        ("Location", "near"),
        ("Patient", "age"),
        ("Patient", "birthOrderBoolean"),
        ("Patient", "part-agree"),
        ("Resource", "_content"),
        ("Resource", "_filter"),
        ("Resource", "_query"),
    ];

    #[test]
    fn the_table_has_every_definition_sorted_and_unique() {
        assert_eq!(SEARCH_PARAMETERS.len(), ROWS);
        for pair in SEARCH_PARAMETERS.windows(2) {
            assert!(
                (pair[0].resource_type, pair[0].name) < (pair[1].resource_type, pair[1].name),
                "{}.{} is out of order or repeated",
                pair[1].resource_type,
                pair[1].name
            );
        }
        assert!(CODE_SYSTEMS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(SUMMARY_ELEMENTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(MANDATORY_ELEMENTS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn exactly_the_documented_rows_are_unsupported() {
        let unsupported: BTreeSet<(&str, &str)> = SEARCH_PARAMETERS
            .iter()
            .filter(|p| unsupported_reason(p).is_some())
            .map(|p| (p.resource_type, p.name))
            .collect();
        assert_eq!(unsupported, UNSUPPORTED.iter().copied().collect());
        for (i, p) in SEARCH_PARAMETERS.iter().enumerate() {
            let compiled = expression(i).is_some();
            let empty = p.expression.is_empty();
            assert_eq!(compiled, !empty, "{}.{}", p.resource_type, p.name);
        }
    }

    #[test]
    fn only_the_part_agree_example_misses_its_resource_type() {
        let misses: Vec<_> = SEARCH_PARAMETERS
            .iter()
            .enumerate()
            .filter(|(i, p)| expression(*i).is_some_and(|e| !e.applies_to(p.resource_type)))
            .map(|(_, p)| (p.resource_type, p.name))
            .collect();
        assert_eq!(misses, vec![("Patient", "part-agree")]);
    }

    #[test]
    fn every_composite_has_compiled_components() {
        let mut composites = 0;
        for (i, p) in SEARCH_PARAMETERS.iter().enumerate() {
            if p.kind != ParamType::Composite {
                assert!(p.components.is_empty());
                continue;
            }
            composites += 1;
            assert!(p.components.len() >= 2, "{}.{}", p.resource_type, p.name);
            for c in 0..p.components.len() {
                assert!(
                    component_expression(i, c).is_some(),
                    "{}.{}",
                    p.resource_type,
                    p.name
                );
            }
            assert!(component_expression(i, p.components.len()).is_none());
        }
        assert!(composites > 40);
        let (i, bp) = find_param(Some("Observation"), "component-code-value-quantity").unwrap();
        assert_eq!(bp.components[0].name, "component-code");
        assert_eq!(bp.components[0].kind, ParamType::Token);
        assert_eq!(bp.components[1].kind, ParamType::Quantity);
        assert_eq!(bp.components[1].expression, "value.as(Quantity)");
        assert!(component_expression(i, 1).is_some());
    }

    #[test]
    fn rows_carry_targets_urls_and_one_line_documentation() {
        let (_, subject) = find_param(Some("Observation"), "subject").unwrap();
        assert_eq!(subject.kind, ParamType::Reference);
        assert!(subject.targets.contains(&"Patient") && subject.targets.contains(&"Group"));
        assert_eq!(
            subject.url,
            "http://hl7.org/fhir/SearchParameter/Observation-subject"
        );
        let (_, code) = find_param(Some("Observation"), "code").unwrap();
        assert_eq!(
            code.url,
            "http://hl7.org/fhir/SearchParameter/clinical-code"
        );
        // A shared definition documents each base with that base's own line.
        assert_eq!(code.documentation, "The code of the observation type");
        for p in SEARCH_PARAMETERS {
            assert!(
                !p.documentation.contains('\n'),
                "{}.{}",
                p.resource_type,
                p.name
            );
            assert!(
                p.documentation.len() <= 200,
                "{}.{}",
                p.resource_type,
                p.name
            );
        }
    }

    #[test]
    fn find_param_falls_back_to_the_common_parameters() {
        assert_eq!(
            find_param(Some("Patient"), "gender")
                .unwrap()
                .1
                .resource_type,
            "Patient"
        );
        assert_eq!(
            find_param(Some("Patient"), "_id").unwrap().1.resource_type,
            "Resource"
        );
        assert_eq!(
            find_param(None, "_lastUpdated").unwrap().1.resource_type,
            "Resource"
        );
        assert!(find_param(None, "gender").is_none());
        assert_eq!(
            find_param(Some("Patient"), "_text")
                .unwrap()
                .1
                .resource_type,
            "DomainResource"
        );
        assert!(find_param(Some("Bundle"), "_text").is_none());
        assert!(find_param(None, "_text").is_none());
        assert!(find_param(Some("Patient"), "no-such-param").is_none());
        let (i, def) = find_param(Some("Observation"), "value-quantity").unwrap();
        assert!(std::ptr::eq(def, &SEARCH_PARAMETERS[i]));
    }

    #[test]
    fn params_for_lists_own_then_common_rows() {
        let observation: Vec<_> = params_for("Observation").collect();
        let names: BTreeSet<&str> = observation.iter().map(|(_, p)| p.name).collect();
        assert_eq!(names.len(), observation.len());
        for name in [
            "code",
            "value-quantity",
            "component-code-value-quantity",
            "_id",
            "_text",
        ] {
            assert!(names.contains(name), "{name}");
        }
        assert!(observation
            .iter()
            .all(|(i, p)| std::ptr::eq(*p, &SEARCH_PARAMETERS[*i])
                && ["Observation", "Resource", "DomainResource"].contains(&p.resource_type)));
        let bundle: Vec<_> = params_for("Bundle").map(|(_, p)| p.name).collect();
        assert!(bundle.contains(&"composition") && bundle.contains(&"_id"));
        assert!(!bundle.contains(&"_text"));
        let resource: Vec<_> = params_for("Resource").collect();
        assert!(resource.iter().all(|(_, p)| p.resource_type == "Resource"));
    }

    #[test]
    fn implicit_code_systems_follow_required_bindings() {
        let cases = [
            (
                "Patient.gender",
                Some("http://hl7.org/fhir/administrative-gender"),
            ),
            (
                "Observation.status",
                Some("http://hl7.org/fhir/observation-status"),
            ),
            // Through the data type of the element: Address.use.
            (
                "Patient.address.use",
                Some("http://hl7.org/fhir/address-use"),
            ),
            (
                "Patient.telecom.system",
                Some("http://hl7.org/fhir/contact-point-system"),
            ),
            // `language` is bound `preferred`, so implies nothing.
            ("Patient.language", None),
            ("Patient.name", None),
        ];
        for (path, want) in cases {
            assert_eq!(implicit_code_system(path), want, "{path}");
        }
    }

    #[test]
    fn summary_and_mandatory_elements() {
        let patient = summary_elements("Patient").unwrap();
        for name in [
            "id",
            "meta",
            "identifier",
            "name",
            "gender",
            "birthDate",
            "deceased",
        ] {
            assert!(patient.contains(&name), "{name}");
        }
        assert!(!patient.contains(&"photo") && !patient.contains(&"contact"));
        let observation = mandatory_elements("Observation").unwrap();
        assert_eq!(observation, &["status", "code"]);
        assert!(summary_elements("NoSuchType").is_none());
        assert_eq!(SUMMARY_ELEMENTS.len(), 146);
    }

    /// Every supported parameter evaluates on the vendored R4 examples of its type without
    /// panicking, and most of the parameters these examples exercise select something.
    #[test]
    fn every_parameter_evaluates_on_the_example_corpus() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance-tests/corpus/r4-examples");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!("example corpus missing at {}", dir.display());
        };
        let mut selected = BTreeSet::new();
        let mut examples = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let resource: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
                continue;
            };
            examples += 1;
            for (i, p) in params_for(rt) {
                let Some(expr) = expression(i) else { continue };
                let items = expr.evaluate(rt, &resource);
                for item in &items {
                    for c in 0..p.components.len() {
                        component_expression(i, c).unwrap().evaluate_from(item);
                    }
                }
                if !items.is_empty() {
                    selected.insert((p.resource_type, p.name));
                }
            }
        }
        assert!(examples > 50, "only {examples} examples");
        for expected in [
            ("Patient", "gender"),
            ("Patient", "phone"),
            ("Patient", "deceased"),
            ("Observation", "value-quantity"),
            ("Observation", "component-code-value-quantity"),
            ("Resource", "_id"),
        ] {
            assert!(
                selected.contains(&expected),
                "{expected:?} selected nothing"
            );
        }
    }
}
