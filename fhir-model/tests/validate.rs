//! Tests of `validate`: the official R4 examples pass, structure problems are located, and
//! each vital-sign rule holds at its boundaries.

mod common;
use common::corpus;

use std::time::Instant;

use fhir_model::{resource_types, validate, Issue, ModelError};
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

/// A fixed server clock, so that the future-time rule is tested deterministically.
const NOW: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);


fn structure_issues(resource: &Value) -> Vec<Issue> {
    match validate(resource, NOW) {
        Err(ModelError::Structure(issues)) => issues,
        other => panic!("expected a structure error, got {other:?}"),
    }
}

fn rule_issues(resource: &Value) -> Vec<Issue> {
    match validate(resource, NOW) {
        Ok(()) => Vec::new(),
        Err(ModelError::Rule(issues)) => issues,
        Err(other) => panic!("expected at most rule violations, got {other:?}"),
    }
}

/// Asserts exactly one rule violation, at `expression`, under `rule`.
fn assert_violation(resource: &Value, expression: &str, rule: &str) -> Issue {
    let issues = rule_issues(resource);
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].expression, expression, "{issues:?}");
    assert_eq!(issues[0].rule, rule, "{issues:?}");
    issues[0].clone()
}

fn assert_valid(resource: &Value) {
    if let Err(e) = validate(resource, NOW) {
        panic!("expected valid, got {e:?} for {resource}");
    }
}

#[test]
fn every_corpus_example_is_valid() {
    let examples = corpus();
    assert_eq!(examples.len(), 87, "86 Patient and Observation examples and one transaction bundle");
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|(name, value)| validate(value, OffsetDateTime::now_utc()).err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Ignored by default: every per-type validator compiles nearly the whole schema (contained
/// resources reach every type), about 0.5 s and 25 MB each in a debug build, so all 146 take
/// minutes and gigabytes. Run it after re-vendoring the schema:
/// `cargo test -p fhir-model --test validate -- --ignored the_schema_compiles`.
#[test]
fn the_schema_compiles_for_every_resource_type() {
    // A bare resource is invalid for types with required elements, but no type may panic.
    assert_eq!(resource_types().len(), 146);
    for resource_type in resource_types() {
        let _ = validate(&json!({ "resourceType": resource_type }), NOW);
    }
}

// ---- structure ----

#[test]
fn unknown_element_is_a_structure_error_naming_it() {
    let issues = structure_issues(&json!({"resourceType": "Patient", "active": true, "favouriteColour": "red"}));
    assert!(issues.iter().any(|i| i.expression == "Patient.favouriteColour" && i.message.contains("favouriteColour")), "{issues:?}");

    let issues = structure_issues(&json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueQuantity": {"value": 1, "precision": 2}
    }));
    assert!(issues.iter().any(|i| i.expression == "Observation.valueQuantity.precision"), "{issues:?}");
}

#[test]
fn wrong_type_is_a_structure_error_naming_the_element() {
    let issues = structure_issues(&json!({"resourceType": "Patient", "active": "yes"}));
    assert!(issues.iter().any(|i| i.expression == "Patient.active" && i.rule == "json-schema"), "{issues:?}");
}

#[test]
fn all_schema_errors_are_reported_each_at_its_element() {
    let issues = structure_issues(&json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "component": [
            {"code": {"text": "a"}, "valueQuantity": {"value": 1}},
            {"code": {"text": "b"}, "valueQuantity": {"value": "high"}},
            {"valueString": "no code"}
        ],
        "issued": "yesterday"
    }));
    let expressions: Vec<&str> = issues.iter().map(|i| i.expression.as_str()).collect();
    for expected in ["Observation.component[1].valueQuantity.value", "Observation.component[2]", "Observation.issued"] {
        assert!(expressions.contains(&expected), "missing {expected} in {issues:#?}");
    }
    assert!(issues.iter().all(|i| i.message.chars().count() <= 301), "{issues:#?}");
}

#[test]
fn pattern_errors_name_the_primitive_type_not_the_regex() {
    let issues = structure_issues(&json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "effectiveDateTime": "2024-13-01", "issued": "2024-05-01"
    }));
    let message = |expression: &str| issues.iter().find(|i| i.expression == expression).map(|i| i.message.clone());
    assert_eq!(message("Observation.effectiveDateTime").as_deref(), Some("\"2024-13-01\" is not a valid dateTime"), "{issues:?}");
    assert_eq!(message("Observation.issued").as_deref(), Some("\"2024-05-01\" is not a valid instant"), "{issues:?}");
}

#[test]
fn empty_array_is_a_structure_error_not_a_crash() {
    // fhirbolt 0.4 panics on an empty array; validation must turn it away instead.
    let issues = structure_issues(&json!({"resourceType": "Patient", "name": [{"given": []}]}));
    assert_eq!(issues[0].expression, "Patient.name[0].given", "{issues:?}");
}

#[test]
fn choice_element_in_two_types_is_caught_by_fhirbolt() {
    // The schema lets both through; fhirbolt's typed model holds only one.
    let issues = structure_issues(&json!({"resourceType": "Patient", "deceasedBoolean": true, "deceasedDateTime": "2020"}));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].rule, "structure", "{issues:?}");
    assert!(issues[0].expression.starts_with("Patient.deceased"), "{issues:?}");
}

#[test]
fn missing_required_element_is_reported() {
    let issues = structure_issues(&json!({"resourceType": "Observation", "status": "final"}));
    assert!(issues.iter().any(|i| i.message.contains("code")), "{issues:?}");
}

#[test]
fn invalid_resource_inside_a_bundle_is_located_in_the_entry() {
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient", "active": true}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "birthDate": "1st of May"}, "request": {"method": "POST", "url": "Patient"}}
        ]
    });
    let issues = structure_issues(&bundle);
    assert!(issues.iter().any(|i| i.expression == "Bundle.entry[1].resource.birthDate"), "{issues:#?}");

    let mut unknown = bundle.clone();
    unknown["entry"][0]["resource"] = json!({"resourceType": "Spaceship"});
    let issues = structure_issues(&unknown);
    assert!(
        issues.iter().any(|i| i.expression == "Bundle.entry[0].resource.resourceType" && i.message.contains("Spaceship")),
        "{issues:#?}"
    );
    assert!(issues.iter().all(|i| i.message.chars().count() <= 301), "{issues:#?}");
}

#[test]
fn unknown_or_missing_resource_type_is_rejected() {
    assert!(matches!(
        validate(&json!({"resourceType": "Spaceship"}), NOW),
        Err(ModelError::UnknownResourceType(t)) if t == "Spaceship"
    ));
    assert!(matches!(validate(&json!({"active": true}), NOW), Err(ModelError::Structure(_))));
    assert!(matches!(validate(&json!([1]), NOW), Err(ModelError::Structure(_))));
}

#[test]
fn structure_is_checked_before_rules() {
    let mut hr = heart_rate(json!(999));
    hr["favouriteColour"] = json!("red");
    let issues = structure_issues(&hr);
    assert!(issues.iter().all(|i| i.rule != "vital-sign-range"), "{issues:?}");
}

// ---- vital signs ----

fn vital(loinc: &str, value: Value, unit: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2024-05-01T11:00:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    })
}

fn heart_rate(value: Value) -> Value {
    vital("8867-4", value, "/min")
}

/// Parses a JSON number from its text so that decimals such as 300.1 keep their exact digits.
fn num(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn heart_rate_range_is_inclusive_at_both_ends() {
    for ok in ["20", "20.0", "44", "300"] {
        assert_valid(&heart_rate(num(ok)));
    }
    for bad in ["19.9", "300.1", "0"] {
        let issue = assert_violation(&heart_rate(num(bad)), "Observation.valueQuantity.value", "vital-sign-range");
        assert!(issue.message.contains(bad) && issue.message.contains("20 to 300"), "{issue:?}");
    }
}

#[test]
fn oxygen_saturation_range_and_both_codes() {
    for code in ["2708-6", "59408-5"] {
        assert_valid(&vital(code, num("0"), "%"));
        assert_valid(&vital(code, num("100"), "%"));
        assert_violation(&vital(code, num("100.1"), "%"), "Observation.valueQuantity.value", "vital-sign-range");
        assert_violation(&vital(code, num("-0.5"), "%"), "Observation.valueQuantity.value", "vital-sign-range");
    }
}

#[test]
fn body_temperature_range_in_celsius_and_fahrenheit() {
    assert_valid(&vital("8310-5", num("30"), "Cel"));
    assert_valid(&vital("8310-5", num("45"), "Cel"));
    assert_violation(&vital("8310-5", num("29.9"), "Cel"), "Observation.valueQuantity.value", "vital-sign-range");
    assert_violation(&vital("8310-5", num("45.1"), "Cel"), "Observation.valueQuantity.value", "vital-sign-range");
    // 86 °F is 30 °C and 113 °F is 45 °C.
    assert_valid(&vital("8310-5", num("86"), "[degF]"));
    assert_valid(&vital("8310-5", num("113"), "[degF]"));
    assert_violation(&vital("8310-5", num("85.9"), "[degF]"), "Observation.valueQuantity.value", "vital-sign-range");
    let issue = assert_violation(&vital("8310-5", num("113.2"), "[degF]"), "Observation.valueQuantity.value", "vital-sign-range");
    assert!(issue.message.contains("113.2 [degF]"), "{issue:?}");
    // 98.6 would be a normal temperature in °F but is read as °C when labelled so.
    assert_violation(&vital("8310-5", num("98.6"), "Cel"), "Observation.valueQuantity.value", "vital-sign-range");
}

#[test]
fn wrong_ucum_code_is_a_violation() {
    let issue = assert_violation(&vital("8867-4", num("60"), "/s"), "Observation.valueQuantity.code", "vital-sign-unit");
    assert!(issue.message.contains("/min") && issue.message.contains("/s"), "{issue:?}");
    assert_violation(&vital("2708-6", num("95"), "1"), "Observation.valueQuantity.code", "vital-sign-unit");
    assert_violation(&vital("8310-5", num("37"), "K"), "Observation.valueQuantity.code", "vital-sign-unit");
}

#[test]
fn quantity_without_ucum_code_is_range_checked_in_the_canonical_unit() {
    let mut hr = heart_rate(num("60"));
    hr["valueQuantity"] = json!({"value": 60, "unit": "beats/minute"});
    assert_valid(&hr);
    hr["valueQuantity"]["value"] = num("400");
    assert_violation(&hr, "Observation.valueQuantity.value", "vital-sign-range");
}

#[test]
fn missing_value_is_not_range_checked() {
    let mut hr = heart_rate(num("0"));
    hr["status"] = json!("cancelled");
    hr.as_object_mut().unwrap().remove("valueQuantity");
    hr["dataAbsentReason"] = json!({"text": "patient refused"});
    assert_valid(&hr);
}

#[test]
fn rules_apply_only_to_loinc_vital_sign_codes() {
    let mut other_system = heart_rate(num("999"));
    other_system["code"]["coding"][0]["system"] = json!("http://example.org/codes");
    assert_valid(&other_system);
    let mut other_code = heart_rate(num("999"));
    other_code["code"]["coding"][0]["code"] = json!("29463-7");
    assert_valid(&other_code);
    // The vital-sign code may be any of several codings.
    let mut second = heart_rate(num("999"));
    second["code"]["coding"] = json!([{"system": "http://snomed.info/sct", "code": "364075005"}, {"system": "http://loinc.org", "code": "8867-4"}]);
    assert_violation(&second, "Observation.valueQuantity.value", "vital-sign-range");
}

fn blood_pressure(systolic: Option<Value>, diastolic: Option<Value>) -> Value {
    let component = |code: &str, value: Option<Value>| {
        let mut c = json!({"code": {"coding": [{"system": "http://loinc.org", "code": code}]}});
        if let Some(v) = value {
            c["valueQuantity"] = json!({"value": v, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"});
        }
        c
    };
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": "2024-05-01",
        "component": [component("8480-6", systolic), component("8462-4", diastolic)]
    })
}

#[test]
fn blood_pressure_components_are_range_checked() {
    assert_valid(&blood_pressure(Some(num("50")), Some(num("30"))));
    assert_valid(&blood_pressure(Some(num("250")), Some(num("150"))));
    assert_violation(&blood_pressure(Some(num("49.9")), Some(num("30"))), "Observation.component[0].valueQuantity.value", "vital-sign-range");
    assert_violation(&blood_pressure(Some(num("251")), Some(num("80"))), "Observation.component[0].valueQuantity.value", "vital-sign-range");
    assert_violation(&blood_pressure(Some(num("120")), Some(num("29"))), "Observation.component[1].valueQuantity.value", "vital-sign-range");
    let issues = rule_issues(&blood_pressure(Some(num("251")), Some(num("151"))));
    assert_eq!(issues.len(), 2, "{issues:?}");
}

#[test]
fn systolic_must_be_above_diastolic() {
    assert_valid(&blood_pressure(Some(num("80.1")), Some(num("80"))));
    let issue = assert_violation(
        &blood_pressure(Some(num("80")), Some(num("80"))),
        "Observation.component[0].valueQuantity.value",
        "bp-systolic-above-diastolic",
    );
    assert!(issue.message.contains("80"), "{issue:?}");
    assert_violation(&blood_pressure(Some(num("70")), Some(num("90"))), "Observation.component[0].valueQuantity.value", "bp-systolic-above-diastolic");
}

#[test]
fn blood_pressure_with_missing_components_is_not_compared() {
    assert_valid(&blood_pressure(Some(num("107")), None));
    assert_valid(&blood_pressure(None, None));
}

#[test]
fn blood_pressure_unit_is_checked_per_component() {
    let mut bp = blood_pressure(Some(num("120")), Some(num("80")));
    bp["component"][1]["valueQuantity"]["code"] = json!("kPa");
    assert_violation(&bp, "Observation.component[1].valueQuantity.code", "vital-sign-unit");
}

#[test]
fn effective_time_may_not_be_in_the_future_beyond_clock_skew() {
    let at = |t: &str| {
        let mut hr = heart_rate(num("60"));
        hr["effectiveDateTime"] = json!(t);
        hr
    };
    // NOW is 2024-05-01T12:00:00Z; 60 s of skew are tolerated.
    assert_valid(&at("2024-05-01T12:01:00Z"));
    assert_valid(&at("2024-05-01T14:01:00+02:00"));
    let issue = assert_violation(&at("2024-05-01T12:01:01Z"), "Observation.effectiveDateTime", "effective-not-future");
    assert!(issue.message.contains("2024-05-01T12:01:01Z"), "{issue:?}");
    assert_violation(&at("2024-05-01T12:01:00.5Z"), "Observation.effectiveDateTime", "effective-not-future");
    // A date is in the future only once it has not begun anywhere yet (UTC+14 is first).
    assert_valid(&at("2024-05-02"));
    assert_violation(&at("2024-05-03"), "Observation.effectiveDateTime", "effective-not-future");
    assert_valid(&at("2024-05"));
    assert_violation(&at("2024-06"), "Observation.effectiveDateTime", "effective-not-future");
    assert_valid(&at("2024"));
    assert_violation(&at("2025"), "Observation.effectiveDateTime", "effective-not-future");
}

#[test]
fn effective_instant_and_period_start_are_checked_too() {
    let mut hr = heart_rate(num("60"));
    hr.as_object_mut().unwrap().remove("effectiveDateTime");
    hr["effectiveInstant"] = json!("2024-05-01T13:00:00Z");
    assert_violation(&hr, "Observation.effectiveInstant", "effective-not-future");

    hr.as_object_mut().unwrap().remove("effectiveInstant");
    hr["effectivePeriod"] = json!({"start": "2024-05-01T13:00:00Z"});
    assert_violation(&hr, "Observation.effectivePeriod.start", "effective-not-future");
    hr["effectivePeriod"] = json!({"start": "2024-05-01T11:00:00Z", "end": "2024-05-01T11:30:00Z"});
    assert_valid(&hr);
}

#[test]
fn future_time_is_not_a_rule_for_other_observations() {
    let mut weight = vital("29463-7", num("70"), "kg");
    weight["effectiveDateTime"] = json!("2030-01-01");
    assert_valid(&weight);
}

#[test]
fn range_and_time_violations_are_reported_together() {
    let mut hr = heart_rate(num("10"));
    hr["effectiveDateTime"] = json!("2030-01-01T00:00:00Z");
    let issues = rule_issues(&hr);
    let rules: Vec<&str> = issues.iter().map(|i| i.rule.as_str()).collect();
    assert_eq!(rules, ["vital-sign-range", "effective-not-future"]);
}

/// Rough cost of validating one Observation; run with
/// `cargo test -p fhir-model --test validate -- --ignored --nocapture`.
#[test]
#[ignore]
fn validation_cost() {
    let examples: Vec<Value> = corpus().into_iter().filter(|(n, _)| n.starts_with("Observation-")).map(|(_, v)| v).collect();
    let now = OffsetDateTime::now_utc();
    for v in &examples {
        validate(v, now).unwrap();
    }
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        for v in &examples {
            validate(v, now).unwrap();
        }
    }
    let per = start.elapsed() / (rounds * examples.len() as u32);
    let hr = heart_rate(num("60"));
    let start = Instant::now();
    for _ in 0..1000 {
        validate(&hr, NOW).unwrap();
    }
    let per_small = start.elapsed() / 1000;
    println!("corpus observations: {per:?} each; small heart-rate observation: {per_small:?} each");
}



