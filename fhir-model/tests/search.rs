//! Tests of search through the public API: the registry, extraction from realistic Patient and
//! Observation JSON, and parsing of search requests into queries.

use fhir_model::{
    extract_index, parse_search, search_parameters, Prefix, Filter, IndexEntry, IndexValue,
    ModelError, ParamType, Predicate, SearchQuery, TokenSystem, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE,
};
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

const DAY: i64 = 86_400_000;
const GENDER: &str = "http://hl7.org/fhir/administrative-gender";

fn ms(dt: OffsetDateTime) -> i64 {
    (dt.unix_timestamp_nanos() / 1_000_000) as i64
}

fn values<'a>(entries: &'a [IndexEntry], param: &str) -> Vec<&'a IndexValue> {
    entries
        .iter()
        .filter(|e| e.param == param)
        .map(|e| &e.value)
        .collect()
}

fn text(normalized: &str) -> IndexValue {
    IndexValue::TokenText {
        normalized: normalized.to_string(),
    }
}

fn string(normalized: &str, exact: &str) -> IndexValue {
    IndexValue::String {
        normalized: normalized.to_string(),
        exact: exact.to_string(),
    }
}

fn token(system: Option<&str>, code: &str) -> IndexValue {
    IndexValue::Token {
        system: system.map(str::to_string),
        code: code.to_string(),
    }
}

fn reference(target_type: Option<&str>, target_id: &str, url: &str) -> IndexValue {
    IndexValue::Reference {
        target_type: target_type.map(str::to_string),
        target_id: target_id.to_string(),
        url: url.to_string(),
    }
}

fn date(lo: OffsetDateTime, hi: OffsetDateTime) -> IndexValue {
    IndexValue::Date {
        lo: ms(lo),
        hi: ms(hi),
    }
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn parse(resource_type: &str, pairs: &[(&str, &str)]) -> SearchQuery {
    parse_search(Some(resource_type), &params(pairs), true).unwrap()
}

fn parse_err(
    resource_type: Option<&str>,
    pairs: &[(&str, &str)],
    strict: bool,
) -> Vec<fhir_model::Issue> {
    match parse_search(resource_type, &params(pairs), strict) {
        Err(ModelError::Search(issues)) => issues,
        other => panic!("expected a search error for {pairs:?}, got {other:?}"),
    }
}

/// The single predicate of a query with a single filter on `param`.
fn only_predicate(query: &SearchQuery, param: &str) -> Predicate {
    assert_eq!(query.filters.len(), 1, "{query:?}");
    let any_of = any_of(&query.filters[0], param);
    assert_eq!(any_of.len(), 1, "{query:?}");
    any_of[0].clone()
}

/// The alternatives of a plain (not negated) match filter on `param`.
fn any_of<'a>(filter: &'a Filter, param: &str) -> &'a [Predicate] {
    match filter {
        Filter::Match {
            param: p,
            any_of,
            negate: false,
        } if p == param => any_of,
        other => panic!("expected a match on {param}, got {other:?}"),
    }
}

fn filter_param(filter: &Filter) -> &str {
    match filter {
        Filter::Match { param, .. }
        | Filter::Missing { param, .. }
        | Filter::Chain { param, .. } => param,
        Filter::Has { .. } => "_has",
    }
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "pat-1",
        "meta": {"versionId": "3", "lastUpdated": "2024-03-05T10:20:30.123+01:00"},
        "identifier": [
            {"use": "usual", "system": "http://hospital.example/mrn", "value": "MRN-0042"},
            {"value": "no-system-7"},
            {"system": "http://hospital.example/mrn"}
        ],
        "active": true,
        "name": [
            {
                "use": "official",
                "text": "Dr. Zoë Anne Brontë",
                "family": "Brontë",
                "given": ["Zoë", "Anne"],
                "prefix": ["Dr."],
                "period": {"start": "2001"}
            },
            {"use": "maiden", "family": "Brontë", "suffix": ["III"]}
        ],
        "telecom": [{"system": "phone", "value": "555-0100"}],
        "gender": "female",
        "birthDate": "1974-02"
    })
}

fn observation() -> Value {
    json!({
        "resourceType": "Observation",
        "id": "obs-1",
        "meta": {"lastUpdated": "2024-03-05T09:20:30Z"},
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]},
            {"text": "uncoded category"}
        ],
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"},
                {"system": "http://snomed.info/sct", "code": "75367002"},
                {"code": "bp-local"}
            ],
            "text": "Blood pressure"
        },
        "subject": {"reference": "Patient/pat-1", "display": "Zoë"},
        "effectiveDateTime": "2013-04-02T09:30:10+01:00",
        "valueString": "ok"
    })
}

// ---------------------------------------------------------------------------------------------
// Registry

#[test]
fn registry_has_the_first_cut_of_parameters_with_their_types() {
    let expected = [
        ("Resource", "_id", ParamType::Token),
        ("Resource", "_lastUpdated", ParamType::Date),
        ("Patient", "identifier", ParamType::Token),
        ("Patient", "name", ParamType::String),
        ("Patient", "family", ParamType::String),
        ("Patient", "given", ParamType::String),
        ("Patient", "birthdate", ParamType::Date),
        ("Patient", "gender", ParamType::Token),
        ("Observation", "subject", ParamType::Reference),
        ("Observation", "patient", ParamType::Reference),
        ("Observation", "code", ParamType::Token),
        ("Observation", "category", ParamType::Token),
        ("Observation", "date", ParamType::Date),
        ("Observation", "status", ParamType::Token),
    ];
    for (resource_type, name, kind) in expected {
        let def = search_parameters()
            .iter()
            .find(|p| p.resource_type == resource_type && p.name == name)
            .unwrap_or_else(|| panic!("{resource_type}.{name} missing"));
        assert_eq!(def.kind, kind, "{resource_type}.{name}");
        assert!(!def.documentation.is_empty() && !def.expression.is_empty());
    }
    let patient = search_parameters()
        .iter()
        .find(|p| p.resource_type == "Observation" && p.name == "patient");
    assert!(patient
        .unwrap()
        .expression
        .contains("Observation.subject.where(resolve() is Patient)"));
}

// ---------------------------------------------------------------------------------------------
// Extraction

#[test]
fn patient_common_parameters() {
    let entries = extract_index("Patient", &patient());
    assert_eq!(values(&entries, "_id"), vec![&token(None, "pat-1")]);
    let t = ms(datetime!(2024-03-05 09:20:30.123 UTC));
    assert_eq!(
        values(&entries, "_lastUpdated"),
        vec![&IndexValue::Date { lo: t, hi: t + 1 }]
    );
}

#[test]
fn patient_tokens() {
    let entries = extract_index("Patient", &patient());
    assert_eq!(
        values(&entries, "identifier"),
        vec![
            &token(Some("http://hospital.example/mrn"), "MRN-0042"),
            &token(None, "no-system-7")
        ]
    );
    assert_eq!(
        values(&entries, "gender"),
        vec![&token(Some(GENDER), "female")]
    );
}

#[test]
fn patient_strings_are_normalised_and_deduplicated() {
    let entries = extract_index("Patient", &patient());
    assert_eq!(
        values(&entries, "family"),
        vec![&string("bronte", "Brontë")]
    );
    assert_eq!(
        values(&entries, "given"),
        vec![&string("zoe", "Zoë"), &string("anne", "Anne")]
    );
    assert_eq!(
        values(&entries, "name"),
        vec![
            &string("dr. zoe anne bronte", "Dr. Zoë Anne Brontë"),
            &string("bronte", "Brontë"),
            &string("zoe", "Zoë"),
            &string("anne", "Anne"),
            &string("dr.", "Dr."),
            &string("iii", "III"),
        ]
    );
    // Nothing else is indexed twice either.
    for (i, e) in entries.iter().enumerate() {
        assert!(!entries[i + 1..].contains(e), "duplicate {e:?}");
    }
}

#[test]
fn accented_name_matches_plain_prefix() {
    let entries = extract_index("Patient", &patient());
    let query = parse("Patient", &[("given", "zoe")]);
    let Predicate::StringStartsWith(prefix) = only_predicate(&query, "given") else {
        panic!()
    };
    assert!(values(&entries, "given").iter().any(
        |v| matches!(v, IndexValue::String { normalized, .. } if normalized.starts_with(&prefix))
    ));
    // The query side folds the same way.
    let query = parse("Patient", &[("given", "ZOË")]);
    assert_eq!(
        only_predicate(&query, "given"),
        Predicate::StringStartsWith("zoe".into())
    );
}

#[test]
fn partial_birth_dates_cover_their_precision() {
    let with = |birth: &str| {
        let mut p = patient();
        p["birthDate"] = json!(birth);
        extract_index("Patient", &p)
            .into_iter()
            .filter(|e| e.param == "birthdate")
            .map(|e| e.value)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        with("1974-02"),
        vec![date(
            datetime!(1974-02-01 0:00 UTC),
            datetime!(1974-03-01 0:00 UTC)
        )]
    );
    assert_eq!(
        with("1976-02"),
        vec![date(
            datetime!(1976-02-01 0:00 UTC),
            datetime!(1976-03-01 0:00 UTC)
        )]
    );
    assert_eq!(
        with("2000-02"),
        vec![IndexValue::Date {
            lo: ms(datetime!(2000-02-01 0:00 UTC)),
            hi: ms(datetime!(2000-02-01 0:00 UTC)) + 29 * DAY
        }]
    );
    assert_eq!(
        with("1900-02"),
        vec![IndexValue::Date {
            lo: ms(datetime!(1900-02-01 0:00 UTC)),
            hi: ms(datetime!(1900-02-01 0:00 UTC)) + 28 * DAY
        }]
    );
    assert_eq!(
        with("1974"),
        vec![date(
            datetime!(1974-01-01 0:00 UTC),
            datetime!(1975-01-01 0:00 UTC)
        )]
    );
    assert_eq!(
        with("1974-02-10"),
        vec![date(
            datetime!(1974-02-10 0:00 UTC),
            datetime!(1974-02-11 0:00 UTC)
        )]
    );
    assert_eq!(with("1974-02-30"), vec![]);
    assert_eq!(with("Feb 1974"), vec![]);
}

#[test]
fn observation_tokens() {
    let entries = extract_index("Observation", &observation());
    assert_eq!(
        values(&entries, "code"),
        vec![
            &token(Some("http://loinc.org"), "85354-9"),
            &text("blood pressure panel"),
            &token(Some("http://snomed.info/sct"), "75367002"),
            &token(None, "bp-local"),
            &text("blood pressure"),
        ]
    );
    // A concept with only text is searchable by `:text` alone.
    assert_eq!(
        values(&entries, "category"),
        vec![
            &token(
                Some("http://terminology.hl7.org/CodeSystem/observation-category"),
                "vital-signs"
            ),
            &text("uncoded category")
        ]
    );
    assert_eq!(
        values(&entries, "status"),
        vec![&token(
            Some("http://hl7.org/fhir/observation-status"),
            "final"
        )]
    );
    assert_eq!(values(&entries, "_id"), vec![&token(None, "obs-1")]);
    // Patient parameters are not extracted from an Observation.
    assert!(values(&entries, "gender").is_empty() && values(&entries, "birthdate").is_empty());
}

#[test]
fn observation_effective_in_every_form() {
    let with = |element: &str, value: Value| {
        let mut o = observation();
        o.as_object_mut().unwrap().remove("effectiveDateTime");
        o[element] = value;
        extract_index("Observation", &o)
            .into_iter()
            .filter(|e| e.param == "date")
            .map(|e| e.value)
            .collect::<Vec<_>>()
    };
    let t = ms(datetime!(2013-04-02 08:30:10 UTC));
    assert_eq!(
        with("effectiveDateTime", json!("2013-04-02T09:30:10+01:00")),
        vec![IndexValue::Date {
            lo: t,
            hi: t + 1000
        }]
    );
    assert_eq!(
        with("effectiveDateTime", json!("2013-04")),
        vec![date(
            datetime!(2013-04-01 0:00 UTC),
            datetime!(2013-05-01 0:00 UTC)
        )]
    );
    assert_eq!(
        with("effectiveInstant", json!("2013-04-02T08:30:10.250Z")),
        vec![IndexValue::Date {
            lo: t + 250,
            hi: t + 251
        }]
    );
    assert_eq!(
        with(
            "effectivePeriod",
            json!({"start": "2013-04-02", "end": "2013-04-05T12:00:00Z"})
        ),
        vec![IndexValue::Date {
            lo: ms(datetime!(2013-04-02 0:00 UTC)),
            hi: ms(datetime!(2013-04-05 12:00:01 UTC))
        }]
    );
    assert_eq!(
        with("effectivePeriod", json!({"start": "2013-04-02"})),
        vec![IndexValue::Date {
            lo: ms(datetime!(2013-04-02 0:00 UTC)),
            hi: i64::MAX
        }]
    );
    assert_eq!(
        with("effectivePeriod", json!({"end": "2013"})),
        vec![IndexValue::Date {
            lo: i64::MIN,
            hi: ms(datetime!(2014-01-01 0:00 UTC))
        }]
    );
    assert_eq!(
        with("effectivePeriod", json!({"start": "2014", "end": "2013"})),
        vec![]
    );
    assert_eq!(with("effectivePeriod", json!({"start": "garbage"})), vec![]);
    assert_eq!(
        with(
            "effectiveTiming",
            json!({"event": ["2013-04-02", "2013-04-03", "bad"], "repeat": {"frequency": 1}})
        ),
        vec![
            date(
                datetime!(2013-04-02 0:00 UTC),
                datetime!(2013-04-03 0:00 UTC)
            ),
            date(
                datetime!(2013-04-03 0:00 UTC),
                datetime!(2013-04-04 0:00 UTC)
            ),
        ]
    );
}

#[test]
fn references_in_every_form() {
    let with = |subject: Value| {
        let mut o = observation();
        o["subject"] = subject;
        let entries = extract_index("Observation", &o);
        (
            values(&entries, "subject")
                .into_iter()
                .cloned()
                .collect::<Vec<_>>(),
            values(&entries, "patient")
                .into_iter()
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let relative = reference(Some("Patient"), "pat-1", "Patient/pat-1");
    assert_eq!(
        with(json!({"reference": "Patient/pat-1"})),
        (vec![relative.clone()], vec![relative])
    );

    let url = "http://fhir.example.org/r4/Patient/pat-1/_history/2";
    let absolute = reference(Some("Patient"), "pat-1", url);
    assert_eq!(
        with(json!({"reference": url})),
        (vec![absolute.clone()], vec![absolute])
    );

    // Only references to a Patient count for `patient`.
    let group = reference(Some("Group"), "g1", "Group/g1");
    assert_eq!(
        with(json!({"reference": "Group/g1"})),
        (vec![group], vec![])
    );

    let urn = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
    assert_eq!(
        with(json!({"reference": urn})),
        (vec![reference(None, urn, urn)], vec![])
    );

    // Contained and malformed references index nothing; an identifier is for `:identifier`.
    assert_eq!(with(json!({"reference": "#p1"})), (vec![], vec![]));
    assert_eq!(
        with(json!({"identifier": {"value": "x"}})),
        (
            vec![IndexValue::ReferenceIdentifier {
                system: None,
                value: "x".into()
            }],
            vec![]
        )
    );
    assert_eq!(with(json!({"reference": 42})), (vec![], vec![]));
}

#[test]
fn invalid_values_are_skipped_without_panicking() {
    let broken = json!({
        "resourceType": "Patient",
        "id": 17,
        "meta": {"lastUpdated": "yesterday"},
        "identifier": {"system": "not-an-array", "value": "kept"},
        "name": [null, "plain", {"given": [null, 3, "", "Ann"]}, {"family": {"nested": true}}],
        "gender": ["female", 1],
        "birthDate": "1974-13-01"
    });
    let entries = extract_index("Patient", &broken);
    assert_eq!(values(&entries, "given"), vec![&string("ann", "Ann")]);
    assert_eq!(
        values(&entries, "gender"),
        vec![&token(Some(GENDER), "female")]
    );
    assert_eq!(
        values(&entries, "identifier"),
        vec![&token(Some("not-an-array"), "kept")]
    );
    for param in ["_id", "_lastUpdated", "birthdate", "family"] {
        assert!(values(&entries, param).is_empty(), "{param}");
    }
    // Only expressions that compute a value (`deceased` is `deceased.exists() and ...`) yield
    // anything for something that is not a resource at all.
    for not_a_resource in [json!(null), json!([1, 2])] {
        let entries = extract_index("Patient", &not_a_resource);
        assert!(entries.iter().all(|e| e.param == "deceased"), "{entries:?}");
    }
}

#[test]
fn own_parameters_then_common_ones() {
    let entries = extract_index(
        "Device",
        &json!({"id": "d1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}, "status": "active"}),
    );
    let params: Vec<&str> = entries.iter().map(|e| e.param.as_str()).collect();
    assert_eq!(params, vec!["status", "_id", "_lastUpdated"]);
    let t = ms(datetime!(2024-01-01 0:00 UTC));
    assert_eq!(
        entries[2].value,
        IndexValue::Date {
            lo: t,
            hi: t + 1000
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Parsing: structure

#[test]
fn no_parameters_is_the_all_query() {
    assert_eq!(parse("Patient", &[]), SearchQuery::all(Some("Patient")));
    assert_eq!(
        parse_search(None, &[], false).unwrap(),
        SearchQuery::all(None)
    );
}

#[test]
fn comma_is_or_and_repetition_is_and() {
    let q = parse(
        "Patient",
        &[("given", "ann,zoë"), ("given", "b"), ("_id", "x")],
    );
    assert_eq!(
        q.filters,
        vec![
            Filter::Match {
                param: "given".into(),
                any_of: vec![
                    Predicate::StringStartsWith("ann".into()),
                    Predicate::StringStartsWith("zoe".into())
                ],
                negate: false,
            },
            Filter::Match {
                param: "given".into(),
                any_of: vec![Predicate::StringStartsWith("b".into())],
                negate: false,
            },
            Filter::Match {
                param: "_id".into(),
                any_of: vec![Predicate::Token {
                    system: TokenSystem::Any,
                    code: Some("x".into())
                }],
                negate: false,
            },
        ]
    );
    assert_eq!(
        q.applied,
        params(&[("given", "ann,zoë"), ("given", "b"), ("_id", "x")])
    );
    assert!(q.ignored.is_empty());
}

#[test]
fn escaped_commas_and_bars_are_literal() {
    let q = parse("Patient", &[("family", r"smith\,jones,doe")]);
    assert_eq!(
        any_of(&q.filters[0], "family"),
        vec![
            Predicate::StringStartsWith("smith,jones".into()),
            Predicate::StringStartsWith("doe".into())
        ]
    );
    let q = parse("Patient", &[("identifier", r"urn:sys\|a|v\,1\\")]);
    assert_eq!(
        only_predicate(&q, "identifier"),
        Predicate::Token {
            system: TokenSystem::Is("urn:sys|a".into()),
            code: Some(r"v,1\".into())
        }
    );
}

#[test]
fn string_modifiers() {
    let q = parse("Patient", &[("name:exact", "Zoë")]);
    assert_eq!(
        only_predicate(&q, "name"),
        Predicate::StringExact("Zoë".into())
    );
    assert_eq!(q.applied, params(&[("name:exact", "Zoë")]));
    let q = parse("Patient", &[("family", "Brontë")]);
    assert_eq!(
        only_predicate(&q, "family"),
        Predicate::StringStartsWith("bronte".into())
    );
}

#[test]
fn token_forms() {
    let tok =
        |value: &str| only_predicate(&parse("Patient", &[("identifier", value)]), "identifier");
    assert_eq!(
        tok("MRN-1"),
        Predicate::Token {
            system: TokenSystem::Any,
            code: Some("MRN-1".into())
        }
    );
    assert_eq!(
        tok("|MRN-1"),
        Predicate::Token {
            system: TokenSystem::None,
            code: Some("MRN-1".into())
        }
    );
    assert_eq!(
        tok("http://h/mrn|MRN-1"),
        Predicate::Token {
            system: TokenSystem::Is("http://h/mrn".into()),
            code: Some("MRN-1".into())
        }
    );
    assert_eq!(
        tok("http://h/mrn|"),
        Predicate::Token {
            system: TokenSystem::Is("http://h/mrn".into()),
            code: None
        }
    );
    let q = parse(
        "Observation",
        &[
            (
                "code",
                "http://loinc.org|85354-9,http://snomed.info/sct|75367002",
            ),
            ("status", "final"),
        ],
    );
    assert_eq!(q.filters.len(), 2);
    assert_eq!(any_of(&q.filters[0], "code").len(), 2);
}

#[test]
fn count_cursor_and_output_options() {
    let q = parse(
        "Patient",
        &[
            ("_format", "json"),
            ("_count", "50"),
            ("_pretty", "true"),
            ("_cursor", "opaque=="),
            ("family", "x"),
        ],
    );
    assert_eq!(q.count, 50);
    assert_eq!(q.cursor.as_deref(), Some("opaque=="));
    assert_eq!(q.applied, params(&[("_count", "50"), ("family", "x")]));
    assert!(q.ignored.is_empty());

    assert_eq!(parse("Patient", &[("_count", "0")]).count, 0);
    assert_eq!(
        parse("Patient", &[("_count", "100000")]).count,
        MAX_PAGE_SIZE
    );
    assert_eq!(parse("Patient", &[]).count, DEFAULT_PAGE_SIZE);
    for bad in ["-1", "ten", "", "2.5"] {
        let issues = parse_err(Some("Patient"), &[("_count", bad)], false);
        assert_eq!(issues[0].expression, "_count");
        assert!(
            issues[0].message.contains(&format!("{bad:?}")),
            "{:?}",
            issues[0].message
        );
    }
}

#[test]
fn strict_and_lenient_unknown_parameters() {
    let pairs = [
        ("family", "x"),
        ("foo", "1"),
        ("name:text", "y"),
        ("birthdate:above", "2000"),
        ("_sort", "nonsense"),
        ("gender:in", "http://x/vs"),
        ("_contained", "true"),
    ];
    let unsupported = [
        "foo",
        "name:text",
        "birthdate:above",
        "_sort",
        "gender:in",
        "_contained",
    ];
    let q = parse_search(Some("Patient"), &params(&pairs), false).unwrap();
    assert_eq!(q.ignored, unsupported);
    assert_eq!(q.applied, params(&[("family", "x")]));
    assert_eq!(q.filters.len(), 1);
    assert!(q.sort.is_empty());

    let issues = parse_err(Some("Patient"), &pairs, true);
    let named: Vec<&str> = issues.iter().map(|i| i.expression.as_str()).collect();
    assert_eq!(named, unsupported);
    assert!(issues[0].message.contains("foo"));
    assert!(issues[1].message.contains("text"));
    assert!(issues[3].message.contains("nonsense"));
    assert!(
        issues
            .iter()
            .all(|i| i.rule == "search-parameter"
                && !i.message.starts_with(|c: char| c.is_uppercase()))
    );
}

#[test]
fn parameters_of_another_type_are_unknown() {
    let q = parse_search(
        Some("Patient"),
        &params(&[("code", "x"), ("gender", "male")]),
        false,
    )
    .unwrap();
    assert_eq!(q.ignored, vec!["code"]);
    let issues = parse_err(Some("Observation"), &[("gender", "male")], true);
    assert_eq!(issues[0].expression, "gender");
}

#[test]
fn system_level_search_takes_common_parameters_only() {
    let q = parse_search(
        None,
        &params(&[("_id", "a,b"), ("_lastUpdated", "ge2024"), ("family", "x")]),
        false,
    )
    .unwrap();
    assert_eq!(q.resource_type, None);
    assert_eq!(
        q.filters
            .iter()
            .map(filter_param)
            .collect::<Vec<_>>(),
        vec!["_id", "_lastUpdated"]
    );
    assert_eq!(q.ignored, vec!["family"]);
    let issues = parse_err(None, &[("family", "x")], true);
    assert_eq!(issues[0].expression, "family");
}

#[test]
fn system_level_type_restriction() {
    let q = parse_search(
        None,
        &params(&[("_type", "Patient,Observation,Patient")]),
        true,
    )
    .unwrap();
    assert_eq!(q.types, vec!["Patient", "Observation"]);
    assert_eq!(
        q.applied,
        params(&[("_type", "Patient,Observation,Patient")])
    );
    let issues = parse_err(None, &[("_type", "Patient,Nonsense")], false);
    assert_eq!(issues[0].expression, "_type");
    assert!(issues[0].message.contains("Nonsense"));
    let issues = parse_err(None, &[("_type", "Patient,")], false);
    assert_eq!(issues[0].expression, "_type");
    // At type level `_type` is not a parameter.
    assert_eq!(
        parse_search(Some("Patient"), &params(&[("_type", "Patient")]), false)
            .unwrap()
            .ignored,
        vec!["_type"]
    );
}

// ---------------------------------------------------------------------------------------------
// Parsing: dates

#[test]
fn every_date_prefix() {
    let (lo, hi) = (
        ms(datetime!(2013-01-14 0:00 UTC)),
        ms(datetime!(2013-01-15 0:00 UTC)),
    );
    for (text, prefix) in [
        ("", Prefix::Eq),
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
    ] {
        let q = parse("Patient", &[("birthdate", &format!("{text}2013-01-14"))]);
        assert_eq!(
            only_predicate(&q, "birthdate"),
            Predicate::Date { prefix, lo, hi },
            "{text}"
        );
    }
    // `ap` is widened by at least a day on each side, relative to now.
    let q = parse("Patient", &[("birthdate", "ap2013-01-14")]);
    let Predicate::Date {
        prefix,
        lo: alo,
        hi: ahi,
    } = only_predicate(&q, "birthdate")
    else {
        panic!()
    };
    assert_eq!(prefix, Prefix::Ap);
    let now = ms(OffsetDateTime::now_utc());
    let expected = (now - hi) / 10;
    assert!(
        (lo - alo - expected).abs() < 60_000 && (ahi - hi - expected).abs() < 60_000,
        "{alo} {ahi}"
    );
    assert!(lo - alo >= DAY && ahi - hi >= DAY);
}

#[test]
fn every_date_precision() {
    let pred = |value: &str| match only_predicate(&parse("Observation", &[("date", value)]), "date")
    {
        Predicate::Date {
            prefix: Prefix::Ge,
            lo,
            hi,
        } => (lo, hi),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        pred("ge2013"),
        (
            ms(datetime!(2013-01-01 0:00 UTC)),
            ms(datetime!(2014-01-01 0:00 UTC))
        )
    );
    assert_eq!(
        pred("ge2013-02"),
        (
            ms(datetime!(2013-02-01 0:00 UTC)),
            ms(datetime!(2013-03-01 0:00 UTC))
        )
    );
    assert_eq!(
        pred("ge2024-02"),
        (
            ms(datetime!(2024-02-01 0:00 UTC)),
            ms(datetime!(2024-03-01 0:00 UTC))
        )
    );
    assert_eq!(pred("ge2024-02").1 - pred("ge2024-02").0, 29 * DAY);
    assert_eq!(
        pred("ge2013-02-28"),
        (
            ms(datetime!(2013-02-28 0:00 UTC)),
            ms(datetime!(2013-03-01 0:00 UTC))
        )
    );
    let t = ms(datetime!(2013-02-28 10:00 UTC));
    assert_eq!(pred("ge2013-02-28T10:00:00Z"), (t, t + 1000));
    assert_eq!(pred("ge2013-02-28T10:00:00"), (t, t + 1000));
    assert_eq!(pred("ge2013-02-28T12:00:00+02:00"), (t, t + 1000));
    assert_eq!(pred("ge2013-02-28T07:30:00-02:30"), (t, t + 1000));
    assert_eq!(pred("ge2013-02-28T10:00:00.1Z"), (t + 100, t + 200));
    assert_eq!(pred("ge2013-02-28T10:00:00.123Z"), (t + 123, t + 124));
    assert_eq!(pred("ge2013-02-28T10:00Z"), (t, t + 60_000));
}

#[test]
fn malformed_values_are_always_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("birthdate", "2013-13", "2013-13"),
        ("birthdate", "ge2013-02-30", "2013-02-30"),
        ("birthdate", "xx2013", "xx"),
        ("birthdate", "ge", "ge"),
        ("birthdate", "2013-1-1", "2013-1-1"),
        (
            "_lastUpdated",
            "gt2024-01-01T10:00:00+25:00",
            "2024-01-01T10:00:00+25:00",
        ),
        ("family", "", "family"),
        ("family", "a,,b", "a,,b"),
        ("identifier", "|", "|"),
        ("identifier", "a|b|c", "a|b|c"),
        ("gender", "male,", "male,"),
    ];
    for &(name, value, named) in cases {
        for strict in [false, true] {
            let issues = parse_err(Some("Patient"), &[(name, value)], strict);
            assert_eq!(issues.len(), 1, "{name}={value}: {issues:?}");
            assert_eq!(issues[0].expression, name);
            assert!(
                issues[0].message.contains(named),
                "{name}={value}: {}",
                issues[0].message
            );
        }
    }
    let issues = parse_err(
        Some("Observation"),
        &[
            ("subject", "Patient/"),
            ("date", "lt2013-01-01"),
            ("code", ""),
        ],
        false,
    );
    assert_eq!(
        issues
            .iter()
            .map(|i| i.expression.as_str())
            .collect::<Vec<_>>(),
        vec!["subject", "code"]
    );
    assert!(issues[0].message.contains("Patient/"));
}

#[test]
fn errors_render_the_parameter_and_value() {
    let Err(err) = parse_search(
        Some("Patient"),
        &params(&[("birthdate", "lt1974-02-31")]),
        false,
    ) else {
        panic!()
    };
    let text = err.to_string();
    assert!(
        text.contains("birthdate") && text.contains("1974-02-31"),
        "{text}"
    );
    assert_eq!(err.issues().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Parsing: references

#[test]
fn reference_forms() {
    let refer = |name: &str, value: &str| {
        let q = parse("Observation", &[(name, value)]);
        let base = name.split(':').next().unwrap();
        only_predicate(&q, base)
    };
    let typed = |ty: &str, id: &str| Predicate::Reference {
        target_type: Some(ty.into()),
        target_id: id.into(),
    };
    assert_eq!(
        refer("subject", "123"),
        Predicate::Reference {
            target_type: None,
            target_id: "123".into()
        }
    );
    assert_eq!(refer("subject", "Patient/123"), typed("Patient", "123"));
    assert_eq!(
        refer("subject", "http://fhir.example.org/r4/Patient/123"),
        typed("Patient", "123")
    );
    assert_eq!(
        refer(
            "subject",
            "http://fhir.example.org/r4/Patient/123/_history/4"
        ),
        typed("Patient", "123")
    );
    assert_eq!(refer("patient", "Patient/123"), typed("Patient", "123"));
    let urn = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
    // A URL or URN that does not split into type and id is compared whole.
    assert_eq!(refer("subject", urn), Predicate::ReferenceUrl(urn.into()));
    assert_eq!(
        refer("subject", "http://example.org/fhir/nonsense"),
        Predicate::ReferenceUrl("http://example.org/fhir/nonsense".into())
    );
}

#[test]
fn reference_type_modifier() {
    let typed = |ty: &str, id: &str| Predicate::Reference {
        target_type: Some(ty.into()),
        target_id: id.into(),
    };
    let q = parse("Observation", &[("subject:Patient", "123")]);
    assert_eq!(only_predicate(&q, "subject"), typed("Patient", "123"));
    assert_eq!(q.applied, params(&[("subject:Patient", "123")]));
    let q = parse("Observation", &[("subject:Patient", "Patient/123")]);
    assert_eq!(only_predicate(&q, "subject"), typed("Patient", "123"));

    let issues = parse_err(
        Some("Observation"),
        &[("subject:Patient", "Group/1")],
        false,
    );
    assert!(issues[0].message.contains("Group/1"));
    // Not a resource type, or not a target of the parameter: an unsupported modifier.
    let q = parse_search(
        Some("Observation"),
        &params(&[("subject:below", "x"), ("subject:Medication", "1")]),
        false,
    )
    .unwrap();
    assert_eq!(q.ignored, vec!["subject:below", "subject:Medication"]);
    let issues = parse_err(Some("Observation"), &[("subject:Medication", "1")], true);
    assert!(issues[0].message.contains("Medication"), "{issues:?}");
}


// ---------------------------------------------------------------------------------------------
// Extraction from the official R4 examples (vendored in tests/data, CC0)

const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";

fn example(name: &str) -> Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(format!("{name}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    fhir_model::parse_resource(&bytes, fhir_model::Format::Json).unwrap()
}

fn extract_example(name: &str) -> Vec<IndexEntry> {
    let resource = example(name);
    let resource_type = resource["resourceType"].as_str().unwrap().to_string();
    extract_index(&resource_type, &resource)
}

/// A quantity as written in the resource.
fn quantity(system: Option<&str>, code: &str, unit: Option<&str>, lo: f64, hi: f64) -> IndexValue {
    IndexValue::Quantity {
        system: system.map(str::to_string),
        code: Some(code.to_string()),
        unit: unit.map(str::to_string),
        lo,
        hi,
        canonical: false,
    }
}

/// The entry converted to the canonical UCUM unit `code`.
fn converted(code: &str, lo: f64, hi: f64) -> IndexValue {
    IndexValue::Quantity {
        system: Some(UCUM.to_string()),
        code: Some(code.to_string()),
        unit: Some(code.to_string()),
        lo,
        hi,
        canonical: true,
    }
}

fn loinc(code: &str) -> IndexValue {
    token(Some(LOINC), code)
}

#[test]
fn blood_pressure_components_are_indexed_as_code_value_tuples() {
    let entries = extract_example("Observation-blood-pressure");
    let mm = |lo, hi| quantity(Some(UCUM), "mm[Hg]", Some("mmHg"), lo, hi);
    let pa = |lo, hi| converted("Pa", lo, hi);
    let tuple = |code: IndexValue, q: IndexValue| IndexValue::Composite(vec![code, q]);
    let systolic_codes = [
        loinc("8480-6"),
        token(Some("http://snomed.info/sct"), "271649006"),
        token(Some("http://acme.org/devices/clinical-codes"), "bp-s"),
    ];
    let mut expected = Vec::new();
    for code in &systolic_codes {
        expected.push(tuple(code.clone(), mm(106.5, 107.5)));
        expected.push(tuple(code.clone(), pa(14198.793, 14332.115)));
    }
    expected.push(tuple(loinc("8462-4"), mm(59.5, 60.5)));
    expected.push(tuple(loinc("8462-4"), pa(7932.659, 8065.981)));
    let expected: Vec<&IndexValue> = expected.iter().collect();
    assert_eq!(values(&entries, "component-code-value-quantity"), expected);
    // The panel code and the component codes are both "combo" codes, but only components carry
    // values here, so the combo tuples are the component tuples.
    assert_eq!(values(&entries, "combo-code-value-quantity"), expected);
    // The code of one component never pairs with the value of the other.
    assert!(!values(&entries, "component-code-value-quantity")
        .contains(&&tuple(loinc("8480-6"), mm(59.5, 60.5))));
    // No Observation.value: no code-value tuple.
    assert!(values(&entries, "code-value-quantity").is_empty());
    assert_eq!(
        values(&entries, "component-value-quantity"),
        vec![
            &mm(106.5, 107.5),
            &pa(14198.793, 14332.115),
            &mm(59.5, 60.5),
            &pa(7932.659, 8065.981)
        ]
    );
    // basedOn carries only an identifier.
    assert_eq!(
        values(&entries, "based-on"),
        vec![&IndexValue::ReferenceIdentifier {
            system: Some("https://acme.org/identifiers".into()),
            value: "1234".into()
        }]
    );
}

#[test]
fn bmi_is_indexed_as_written_and_in_canonical_units() {
    let entries = extract_example("Observation-bmi");
    let written = quantity(Some(UCUM), "kg/m2", Some("kg/m2"), 16.15, 16.25);
    let canonical = converted("g/m2", 16150.0, 16250.0);
    assert_eq!(
        values(&entries, "value-quantity"),
        vec![&written, &canonical]
    );
    assert_eq!(
        values(&entries, "code-value-quantity"),
        vec![
            &IndexValue::Composite(vec![loinc("39156-5"), written]),
            &IndexValue::Composite(vec![loinc("39156-5"), canonical]),
        ]
    );
    assert_eq!(
        values(&entries, "code"),
        vec![
            &loinc("39156-5"),
            &text("body mass index (bmi) [ratio]"),
            &text("bmi")
        ]
    );
}

#[test]
fn weights_in_pounds_and_kilograms_meet_in_grams() {
    let pounds = extract_example("Observation-example");
    let lb = 453.592_37;
    assert_eq!(
        values(&pounds, "value-quantity"),
        vec![
            &quantity(Some(UCUM), "[lb_av]", Some("lbs"), 184.5, 185.5),
            &converted("g", 83687.792265, 84141.384635),
        ]
    );
    assert_eq!(184.5 * lb, 83687.792265);

    let mut kilograms = example("Observation-example");
    kilograms["valueQuantity"] =
        serde_json::from_str(r#"{"value": 83.9, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}"#)
            .unwrap();
    let entries = extract_index("Observation", &kilograms);
    assert_eq!(
        values(&entries, "value-quantity"),
        vec![
            &quantity(Some(UCUM), "kg", Some("kg"), 83.85, 83.95),
            &converted("g", 83850.0, 83950.0),
        ]
    );
    // Searches in either unit are brought to grams as well.
    let q = parse(
        "Observation",
        &[("value-quantity", "83.9|http://unitsofmeasure.org|kg")],
    );
    assert_eq!(
        only_predicate(&q, "value-quantity"),
        Predicate::Quantity {
            prefix: Prefix::Eq,
            lo: 83850.0,
            hi: 83950.0,
            system: Some(UCUM.into()),
            code: Some("g".into())
        }
    );
    let q = parse("Observation", &[("value-quantity", "gt185||[lb_av]")]);
    assert_eq!(
        only_predicate(&q, "value-quantity"),
        Predicate::Quantity {
            prefix: Prefix::Gt,
            lo: 83687.792265,
            hi: 84141.384635,
            system: Some(UCUM.into()),
            code: Some("g".into())
        }
    );
}

#[test]
fn decimals_are_indexed_at_their_written_precision() {
    let entries = extract_example("RiskAssessment-genetic");
    let probabilities = values(&entries, "probability");
    assert_eq!(probabilities.len(), 8);
    assert_eq!(
        probabilities[0],
        &IndexValue::Number {
            lo: 0.0001675,
            hi: 0.0001685
        }
    );
    let with = |probability: &str| {
        let mut r = example("RiskAssessment-genetic");
        r["prediction"] = serde_json::from_str(&format!(
            r#"[{{"probabilityDecimal": {probability}}}]"#
        ))
        .unwrap();
        extract_index("RiskAssessment", &r)
            .into_iter()
            .filter(|e| e.param == "probability")
            .map(|e| e.value)
            .collect::<Vec<_>>()
    };
    let number = |lo, hi| vec![IndexValue::Number { lo, hi }];
    assert_eq!(with("100"), number(99.5, 100.5));
    assert_eq!(with("0.50"), number(0.495, 0.505));
    assert_eq!(with("1.0e-2"), number(0.0095, 0.0105));
    assert_eq!(with("-3"), number(-3.5, -2.5));
    // A Range of probabilities spans from the bottom of low to the top of high.
    let mut r = example("RiskAssessment-genetic");
    r["prediction"] = json!([{"probabilityRange": {"low": {"value": 1}, "high": {"value": 2}}}]);
    assert_eq!(
        values(&extract_index("RiskAssessment", &r), "probability"),
        vec![&IndexValue::Number { lo: 0.5, hi: 2.5 }]
    );
}

#[test]
fn money_is_a_quantity_in_its_currency() {
    let entries = extract_example("Invoice-example");
    assert_eq!(
        values(&entries, "totalgross"),
        vec![&quantity(Some("urn:iso:std:iso:4217"), "EUR", None, 47.5, 48.5)]
    );
    let q = parse("Invoice", &[("totalgross", "ge40|urn:iso:std:iso:4217|EUR")]);
    assert_eq!(
        only_predicate(&q, "totalgross"),
        Predicate::Quantity {
            prefix: Prefix::Ge,
            lo: 39.5,
            hi: 40.5,
            system: Some("urn:iso:std:iso:4217".into()),
            code: Some("EUR".into())
        }
    );
    assert_eq!(
        values(&entries, "issuer"),
        vec![&IndexValue::ReferenceIdentifier {
            system: Some("http://myhospital/NamingSystem/departments".into()),
            value: "CARD_INTERMEDIATE_CARE".into()
        }]
    );
}

#[test]
fn identifiers_carry_their_type_and_contact_points_their_value() {
    let entries = extract_example("Patient-example");
    assert_eq!(
        values(&entries, "identifier"),
        vec![
            &token(Some("urn:oid:1.2.36.146.595.217.0.1"), "12345"),
            &IndexValue::IdentifierOfType {
                type_system: Some("http://terminology.hl7.org/CodeSystem/v2-0203".into()),
                type_code: "MR".into(),
                value: "12345".into()
            }
        ]
    );
    // ContactPoint.system is a code (phone, email...), not the token's system.
    assert_eq!(
        values(&entries, "phone"),
        vec![
            &token(None, "(03) 5555 6473"),
            &token(None, "(03) 3410 5613"),
            &token(None, "(03) 5555 8834")
        ]
    );
    assert_eq!(
        values(&entries, "organization"),
        vec![&reference(Some("Organization"), "1", "Organization/1")]
    );
    // Identifier.type.text is searchable with `:text`.
    let mut p = example("Patient-example");
    p["identifier"][0]["type"]["text"] = json!("Medical Record Number");
    let entries = extract_index("Patient", &p);
    assert!(values(&entries, "identifier").contains(&&text("medical record number")));

    let practitioner = extract_example("Practitioner-example");
    assert_eq!(
        values(&practitioner, "identifier"),
        vec![&token(Some("http://www.acme.org/practitioners"), "23")]
    );
    assert_eq!(
        values(&practitioner, "family"),
        vec![&string("careful", "Careful")]
    );
}

#[test]
fn uris_and_canonical_references() {
    let entries = extract_example("Questionnaire-3141");
    assert_eq!(
        values(&entries, "url"),
        vec![&IndexValue::Uri("http://hl7.org/fhir/Questionnaire/3141".into())]
    );
    let response = json!({
        "resourceType": "QuestionnaireResponse",
        "id": "r1",
        "questionnaire": "http://hl7.org/fhir/Questionnaire/3141|2012",
        "status": "completed"
    });
    assert_eq!(
        values(&extract_index("QuestionnaireResponse", &response), "questionnaire"),
        vec![&reference(
            Some("Questionnaire"),
            "3141",
            "http://hl7.org/fhir/Questionnaire/3141|2012"
        )]
    );
    let q = parse(
        "Questionnaire",
        &[("url:below", "http://hl7.org/fhir/"), ("url", "http://x/q")],
    );
    assert_eq!(
        any_of(&q.filters[0], "url"),
        [Predicate::Uri {
            value: "http://hl7.org/fhir/".into(),
            mode: fhir_model::UriMatch::Below
        }]
    );
    assert_eq!(
        any_of(&q.filters[1], "url"),
        [Predicate::Uri {
            value: "http://x/q".into(),
            mode: fhir_model::UriMatch::Exact
        }]
    );
    let q = parse("Questionnaire", &[("url:above", "http://x/q/1")]);
    assert_eq!(
        only_predicate(&q, "url"),
        Predicate::Uri {
            value: "http://x/q/1".into(),
            mode: fhir_model::UriMatch::Above
        }
    );
}

#[test]
fn meta_parameters() {
    let mut p = patient();
    p["meta"] = json!({
        "lastUpdated": "2024-03-05T10:20:30Z",
        "profile": ["http://example.org/StructureDefinition/p"],
        "tag": [{"system": "http://example.org/tags", "code": "t1", "display": "Tag one"}],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "source": "http://example.org/feed#42"
    });
    let entries = extract_index("Patient", &p);
    assert_eq!(
        values(&entries, "_tag"),
        vec![&token(Some("http://example.org/tags"), "t1"), &text("tag one")]
    );
    assert_eq!(
        values(&entries, "_security"),
        vec![&token(
            Some("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"),
            "R"
        )]
    );
    assert_eq!(
        values(&entries, "_source"),
        vec![&IndexValue::Uri("http://example.org/feed#42".into())]
    );
    assert_eq!(values(&entries, "_profile").len(), 1);
}

#[test]
fn examples_index_nothing_twice() {
    for name in [
        "Observation-blood-pressure",
        "Observation-bmi",
        "Observation-example",
        "Observation-example-genetics-1",
        "Patient-example",
        "Condition-example",
        "Practitioner-example",
        "Questionnaire-3141",
        "Composition-example",
        "RiskAssessment-genetic",
        "RiskAssessment-prognosis",
        "Invoice-example",
    ] {
        let entries = extract_example(name);
        assert!(entries.iter().any(|e| e.param == "_id"), "{name}");
        for (i, e) in entries.iter().enumerate() {
            assert!(!entries[i + 1..].contains(e), "{name}: duplicate {e:?}");
        }
    }
    let genetics = extract_example("Observation-example-genetics-1");
    assert!(values(&genetics, "value-concept")
        .contains(&&token(Some("http://snomed.info/sct"), "10828004")));
    let condition = extract_example("Condition-example");
    assert!(values(&condition, "code").contains(&&text("burnt ear")));
    let composition = extract_example("Composition-example");
    assert_eq!(
        values(&composition, "entry").len(),
        3,
        "{:?}",
        values(&composition, "entry")
    );
}

// ---------------------------------------------------------------------------------------------
// Parsing: numbers and quantities

#[test]
fn number_prefixes_and_precision() {
    let num = |value: &str| {
        only_predicate(&parse("RiskAssessment", &[("probability", value)]), "probability")
    };
    let n = |prefix, lo, hi| Predicate::Number { prefix, lo, hi };
    assert_eq!(num("100"), n(Prefix::Eq, 99.5, 100.5));
    assert_eq!(num("100.00"), n(Prefix::Eq, 99.995, 100.005));
    assert_eq!(num("1.0e2"), n(Prefix::Eq, 95.0, 105.0));
    assert_eq!(num("1e2"), n(Prefix::Eq, 50.0, 150.0));
    assert_eq!(num("0.8"), n(Prefix::Eq, 0.75, 0.85));
    for (text, prefix) in [
        ("eq", Prefix::Eq),
        ("ne", Prefix::Ne),
        ("gt", Prefix::Gt),
        ("lt", Prefix::Lt),
        ("ge", Prefix::Ge),
        ("le", Prefix::Le),
        ("sa", Prefix::Sa),
        ("eb", Prefix::Eb),
    ] {
        assert_eq!(num(&format!("{text}0.8")), n(prefix, 0.75, 0.85), "{text}");
    }
    // `ap` widens by a tenth of the value on each side.
    assert_eq!(num("ap100"), n(Prefix::Ap, 89.5, 110.5));
    for bad in ["abc", "1,", "xx1", "1.", "+1", "1e", "gt", "1 0"] {
        let issues = parse_err(Some("RiskAssessment"), &[("probability", bad)], false);
        assert_eq!(issues[0].expression, "probability", "{bad}");
    }
}

#[test]
fn quantity_forms() {
    let qty = |value: &str| {
        only_predicate(&parse("Observation", &[("value-quantity", value)]), "value-quantity")
    };
    let q = |prefix, lo, hi, system: Option<&str>, code: Option<&str>| Predicate::Quantity {
        prefix,
        lo,
        hi,
        system: system.map(str::to_string),
        code: code.map(str::to_string),
    };
    // A UCUM unit, with or without the system, is canonicalised.
    assert_eq!(
        qty("5.4|http://unitsofmeasure.org|mg"),
        q(Prefix::Eq, 0.00535, 0.00545, Some(UCUM), Some("g"))
    );
    assert_eq!(
        qty("5.4||mg"),
        q(Prefix::Eq, 0.00535, 0.00545, Some(UCUM), Some("g"))
    );
    assert_eq!(
        qty("le120||mm[Hg]"),
        q(Prefix::Le, 15931.979, 16065.301, Some(UCUM), Some("Pa"))
    );
    assert_eq!(
        qty("37|http://unitsofmeasure.org|Cel"),
        q(Prefix::Eq, 309.65, 310.65, Some(UCUM), Some("K"))
    );
    assert_eq!(qty("ap100||/min"), q(Prefix::Ap, 1.49166666667, 1.84166666667, Some(UCUM), Some("/s")));
    // Without a unit, any unit; units that do not convert are kept as written.
    assert_eq!(qty("5.4"), q(Prefix::Eq, 5.35, 5.45, None, None));
    assert_eq!(
        qty("gt5|http://unitsofmeasure.org|[iU]"),
        q(Prefix::Gt, 4.5, 5.5, Some(UCUM), Some("[iU]"))
    );
    assert_eq!(
        qty("5||tablets"),
        q(Prefix::Eq, 4.5, 5.5, None, Some("tablets"))
    );
    assert_eq!(
        qty("5|http://snomed.info/sct|258684004"),
        q(
            Prefix::Eq,
            4.5,
            5.5,
            Some("http://snomed.info/sct"),
            Some("258684004")
        )
    );
    for bad in [
        "5.4|mg",
        "x|http://unitsofmeasure.org|mg",
        "5.4|http://unitsofmeasure.org|",
        "zz5",
        "5|a|b|c",
        "|http://unitsofmeasure.org|mg",
    ] {
        for strict in [false, true] {
            let issues = parse_err(Some("Observation"), &[("value-quantity", bad)], strict);
            assert_eq!(issues.len(), 1, "{bad}");
            assert_eq!(issues[0].expression, "value-quantity");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: modifiers

#[test]
fn string_contains_and_missing() {
    let q = parse("Patient", &[("name:contains", "ËTE")]);
    assert_eq!(
        only_predicate(&q, "name"),
        Predicate::StringContains("ete".into())
    );
    let q = parse(
        "Patient",
        &[("birthdate:missing", "true"), ("family:missing", "false")],
    );
    assert_eq!(
        q.filters,
        vec![
            Filter::Missing {
                param: "birthdate".into(),
                missing: true
            },
            Filter::Missing {
                param: "family".into(),
                missing: false
            }
        ]
    );
    let issues = parse_err(Some("Patient"), &[("birthdate:missing", "yes")], false);
    assert!(issues[0].message.contains("yes"));
}

#[test]
fn token_modifiers() {
    let q = parse("Observation", &[("code:text", "Blood Prëssure")]);
    assert_eq!(
        only_predicate(&q, "code"),
        Predicate::TokenText("blood pressure".into())
    );
    let q = parse("Observation", &[("status:not", "final,amended")]);
    assert_eq!(
        q.filters,
        vec![Filter::Match {
            param: "status".into(),
            any_of: vec![
                Predicate::Token {
                    system: TokenSystem::Any,
                    code: Some("final".into())
                },
                Predicate::Token {
                    system: TokenSystem::Any,
                    code: Some("amended".into())
                }
            ],
            negate: true
        }]
    );
    let q = parse(
        "Patient",
        &[(
            "identifier:of-type",
            "http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
        )],
    );
    assert_eq!(
        only_predicate(&q, "identifier"),
        Predicate::IdentifierOfType {
            type_system: "http://terminology.hl7.org/CodeSystem/v2-0203".into(),
            type_code: "MR".into(),
            value: "12345".into()
        }
    );
    for bad in ["MR|12345", "|MR|12345", "http://x||1", "a|b|"] {
        let issues = parse_err(Some("Patient"), &[("identifier:of-type", bad)], false);
        assert!(issues[0].message.contains("of-type"), "{bad}");
    }
    // `:of-type` is for identifiers; terminology modifiers are not supported.
    for name in ["gender:of-type", "code:in", "code:not-in", "code:above", "code:below"] {
        let issues = parse_err(Some("Observation"), &[(name, "x")], true);
        assert_eq!(issues[0].expression, name);
    }
}

#[test]
fn reference_identifier_modifier() {
    let q = parse(
        "Observation",
        &[("based-on:identifier", "https://acme.org/identifiers|1234")],
    );
    assert_eq!(
        only_predicate(&q, "based-on"),
        Predicate::ReferenceIdentifier {
            system: TokenSystem::Is("https://acme.org/identifiers".into()),
            value: "1234".into()
        }
    );
    let q = parse("Observation", &[("subject:identifier", "1234")]);
    assert_eq!(
        only_predicate(&q, "subject"),
        Predicate::ReferenceIdentifier {
            system: TokenSystem::Any,
            value: "1234".into()
        }
    );
    let issues = parse_err(Some("Observation"), &[("subject:identifier", "http://x|")], false);
    assert!(issues[0].message.contains("http://x|"));
}

#[test]
fn composite_values_pair_their_components() {
    let q = parse(
        "Observation",
        &[(
            "component-code-value-quantity",
            "http://loinc.org|8480-6$lt60|http://unitsofmeasure.org|mm[Hg],8462-4$gt90",
        )],
    );
    assert_eq!(
        any_of(&q.filters[0], "component-code-value-quantity"),
        [
            Predicate::Composite(vec![
                Predicate::Token {
                    system: TokenSystem::Is(LOINC.into()),
                    code: Some("8480-6".into())
                },
                Predicate::Quantity {
                    prefix: Prefix::Lt,
                    lo: 7932.659,
                    hi: 8065.981,
                    system: Some(UCUM.into()),
                    code: Some("Pa".into())
                }
            ]),
            Predicate::Composite(vec![
                Predicate::Token {
                    system: TokenSystem::Any,
                    code: Some("8462-4".into())
                },
                Predicate::Quantity {
                    prefix: Prefix::Gt,
                    lo: 89.5,
                    hi: 90.5,
                    system: None,
                    code: None
                }
            ])
        ]
    );
    let q = parse(
        "Observation",
        &[("code-value-date", "http://loinc.org|1234-5$ge2020-01")],
    );
    let [Predicate::Composite(parts)] = any_of(&q.filters[0], "code-value-date") else {
        panic!("{q:?}")
    };
    assert!(matches!(
        parts[1],
        Predicate::Date {
            prefix: Prefix::Ge,
            ..
        }
    ));
    for bad in ["8480-6", "8480-6$lt60$1", "$lt60", "8480-6$", "8480-6$xx60"] {
        let issues = parse_err(
            Some("Observation"),
            &[("component-code-value-quantity", bad)],
            false,
        );
        assert_eq!(issues.len(), 1, "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: chains and reverse chains

fn match_filter(param: &str, predicate: Predicate) -> Filter {
    Filter::Match {
        param: param.into(),
        any_of: vec![predicate],
        negate: false,
    }
}

#[test]
fn chains_of_any_depth() {
    let q = parse("Observation", &[("subject:Patient.name", "peter")]);
    assert_eq!(
        q.filters,
        vec![Filter::Chain {
            param: "subject".into(),
            target_types: vec!["Patient".into()],
            inner: Box::new(match_filter(
                "name",
                Predicate::StringStartsWith("peter".into())
            )),
        }]
    );
    assert_eq!(q.applied, params(&[("subject:Patient.name", "peter")]));

    // Without a type, the targets that have the chained parameter.
    let q = parse("Observation", &[("subject.name", "x")]);
    let Filter::Chain { target_types, .. } = &q.filters[0] else {
        panic!()
    };
    assert_eq!(target_types, &["Location", "Patient"]);
    let q = parse("Observation", &[("subject.identifier", "http://h/mrn|7")]);
    let Filter::Chain { target_types, .. } = &q.filters[0] else {
        panic!()
    };
    assert_eq!(target_types, &["Device", "Group", "Location", "Patient"]);

    let q = parse("Observation", &[("patient.organization.name:exact", "Acme")]);
    assert_eq!(
        q.filters,
        vec![Filter::Chain {
            param: "patient".into(),
            target_types: vec!["Patient".into()],
            inner: Box::new(Filter::Chain {
                param: "organization".into(),
                target_types: vec!["Organization".into()],
                inner: Box::new(match_filter("name", Predicate::StringExact("Acme".into()))),
            }),
        }]
    );
    let q = parse("Observation", &[("subject:Patient.birthdate:missing", "true")]);
    let Filter::Chain { inner, .. } = &q.filters[0] else {
        panic!()
    };
    assert_eq!(
        **inner,
        Filter::Missing {
            param: "birthdate".into(),
            missing: true
        }
    );
}

#[test]
fn chain_errors() {
    let cases: &[(&str, &str)] = &[
        // Not a reference parameter.
        ("code.name", "code"),
        // No target has the parameter.
        ("subject.nonsense", "nonsense"),
        // The targets disagree on its type.
        ("focus.contact", "type modifier"),
        // Not a target of the parameter.
        ("subject:Medication.code", "Medication"),
    ];
    for &(name, mentioned) in cases {
        let issues = parse_err(Some("Observation"), &[(name, "x")], true);
        assert_eq!(issues[0].expression, name);
        assert!(
            issues[0].message.contains(mentioned),
            "{name}: {}",
            issues[0].message
        );
        let q = parse_search(Some("Observation"), &params(&[(name, "x")]), false).unwrap();
        assert_eq!(q.ignored, vec![name]);
    }
    // With a type the disagreement is settled.
    let q = parse("Observation", &[("focus:NamingSystem.contact", "x")]);
    assert_eq!(q.filters.len(), 1);
    // A malformed value at the end of a chain is still malformed.
    let issues = parse_err(Some("Observation"), &[("subject:Patient.birthdate", "2020-13")], false);
    assert!(issues[0].message.contains("2020-13"));
}

#[test]
fn reverse_chains() {
    let q = parse("Patient", &[("_has:Observation:patient:code", "1234")]);
    assert_eq!(
        q.filters,
        vec![Filter::Has {
            source_type: "Observation".into(),
            reference_param: "patient".into(),
            inner: Box::new(match_filter(
                "code",
                Predicate::Token {
                    system: TokenSystem::Any,
                    code: Some("1234".into())
                }
            )),
        }]
    );
    let q = parse(
        "Patient",
        &[("_has:Observation:patient:_has:AuditEvent:entity:type", "x")],
    );
    let Filter::Has { inner, .. } = &q.filters[0] else {
        panic!()
    };
    assert!(matches!(
        &**inner,
        Filter::Has { source_type, reference_param, .. }
            if source_type == "AuditEvent" && reference_param == "entity"
    ));
    let q = parse("Patient", &[("_has:Observation:subject:code:text", "bp")]);
    let Filter::Has { inner, .. } = &q.filters[0] else {
        panic!()
    };
    assert_eq!(**inner, match_filter("code", Predicate::TokenText("bp".into())));

    let issues = parse_err(Some("Patient"), &[("_has:Observation:patient", "x")], false);
    assert!(issues[0].message.contains("_has:Type:reference:parameter"));
    for name in [
        "_has:Nope:patient:code",
        "_has:Observation:code:code",
        "_has:Observation:nonsense:code",
        "_has:Observation:patient:nonsense",
    ] {
        let issues = parse_err(Some("Patient"), &[(name, "x")], true);
        assert_eq!(issues[0].expression, name);
    }
    // Observation.patient points to Patients only.
    let issues = parse_err(Some("Practitioner"), &[("_has:Observation:patient:code", "x")], true);
    assert!(issues[0].message.contains("Practitioner"));
}

// ---------------------------------------------------------------------------------------------
// Parsing: result parameters

#[test]
fn sort_keys() {
    let q = parse("Patient", &[("_sort", "-birthdate,name,_id"), ("_sort", "-_lastUpdated")]);
    let key = |param: &str, descending| fhir_model::SortKey {
        param: param.into(),
        descending,
    };
    assert_eq!(
        q.sort,
        vec![
            key("birthdate", true),
            key("name", false),
            key("_id", false),
            key("_lastUpdated", true)
        ]
    );
    assert_eq!(
        q.applied,
        params(&[("_sort", "-birthdate,name,_id"), ("_sort", "-_lastUpdated")])
    );
    let issues = parse_err(
        Some("Observation"),
        &[("_sort", "component-code-value-quantity")],
        true,
    );
    assert!(issues[0].message.contains("composite"));
    for bad in ["-", "name,", ""] {
        let issues = parse_err(Some("Patient"), &[("_sort", bad)], false);
        assert_eq!(issues[0].expression, "_sort", "{bad}");
    }
    // At system level only the common parameters sort.
    assert_eq!(
        parse_search(None, &params(&[("_sort", "_lastUpdated")]), true)
            .unwrap()
            .sort,
        vec![key("_lastUpdated", false)]
    );
    parse_err(None, &[("_sort", "name")], true);
}

#[test]
fn includes_and_revincludes() {
    let q = parse(
        "Observation",
        &[
            ("_include", "Observation:subject"),
            ("_include:iterate", "Patient:general-practitioner:Practitioner"),
            ("_include:recurse", "Observation:*"),
            ("_revinclude", "Provenance:target"),
            ("_revinclude:iterate", "Observation:has-member"),
            ("_include", "*"),
        ],
    );
    let inc = |source: &str, param: &str, target: Option<&str>, iterate| fhir_model::Include {
        source_type: source.into(),
        param: param.into(),
        target_type: target.map(str::to_string),
        iterate,
    };
    assert_eq!(
        q.includes,
        vec![
            inc("Observation", "subject", None, false),
            inc("Patient", "general-practitioner", Some("Practitioner"), true),
            inc("Observation", "*", None, true),
            inc("*", "*", None, false),
        ]
    );
    assert_eq!(
        q.revincludes,
        vec![
            inc("Provenance", "target", None, false),
            inc("Observation", "has-member", None, true),
        ]
    );
    assert_eq!(q.applied.len(), 6);
    assert_eq!(q.applied[1].0, "_include:iterate");

    let malformed = [
        "Observation",
        "Observation:subject:Patient:extra",
        "Nope:subject",
        "Observation:subject:Nope",
        "Observation:subject:Medication",
    ];
    for bad in malformed {
        for strict in [false, true] {
            let issues = parse_err(Some("Observation"), &[("_include", bad)], strict);
            assert_eq!(issues[0].expression, "_include", "{bad}");
        }
    }
    // Not a reference parameter, or an unknown modifier: not supported.
    for (name, value) in [
        ("_include", "Observation:code"),
        ("_revinclude", "Observation:nonsense"),
        ("_include:deep", "Observation:subject"),
    ] {
        let q = parse_search(Some("Observation"), &params(&[(name, value)]), false).unwrap();
        assert_eq!(q.ignored, vec![name]);
        assert!(q.includes.is_empty() && q.revincludes.is_empty());
        parse_err(Some("Observation"), &[(name, value)], true);
    }
}

#[test]
fn total_summary_and_elements() {
    let q = parse(
        "Patient",
        &[
            ("_total", "estimate"),
            ("_summary", "count"),
            ("_elements", "identifier, name,name"),
        ],
    );
    assert_eq!(q.total, fhir_model::TotalMode::Estimate);
    assert_eq!(q.summary, Some(fhir_model::Summary::Count));
    assert_eq!(q.elements, vec!["identifier", "name"]);
    assert_eq!(
        q.applied,
        params(&[
            ("_total", "estimate"),
            ("_summary", "count"),
            ("_elements", "identifier, name,name")
        ])
    );
    for (value, summary) in [
        ("true", fhir_model::Summary::True),
        ("false", fhir_model::Summary::False),
        ("text", fhir_model::Summary::Text),
        ("data", fhir_model::Summary::Data),
    ] {
        assert_eq!(parse("Patient", &[("_summary", value)]).summary, Some(summary));
    }
    assert_eq!(
        parse("Patient", &[("_total", "none")]).total,
        fhir_model::TotalMode::None
    );
    assert_eq!(parse("Patient", &[]).total, fhir_model::TotalMode::Accurate);
    for (name, bad) in [
        ("_total", "all"),
        ("_summary", "yes"),
        ("_elements", "Patient.name"),
        ("_elements", "name,"),
    ] {
        let issues = parse_err(Some("Patient"), &[(name, bad)], false);
        assert_eq!(issues[0].expression, name);
        assert!(issues[0].message.contains(bad.trim_end_matches(',')), "{name}={bad}");
    }
}

#[test]
fn special_parameters_are_not_supported() {
    let q = parse_search(Some("Location"), &params(&[("near", "42|-71|10|km")]), false).unwrap();
    assert_eq!(q.ignored, vec!["near"]);
    let issues = parse_err(Some("Location"), &[("near", "42|-71|10|km")], true);
    assert!(issues[0].message.contains("near"));
}
