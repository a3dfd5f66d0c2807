//! Snapshot tests of the MongoDB search translation: every search form, parsed by the real
//! query parser, translated to stages and kept as relaxed extended JSON in
//! `tests/snapshots/mongodb/<case>.json` (`UPDATE_SNAPSHOTS=1` rewrites them), plus checks on
//! all of them (no `$regex`/`$where`/`$expr` in a `$match`, every `$elemMatch` on an index) and
//! the conditions evaluated on documents laid out by `layout::index_fields`, against the
//! meaning `Predicate` documents, since no MongoDB server runs these tests.

use std::fs;
use std::path::PathBuf;

use fhir_model::{Filter, IndexValue, Predicate, Prefix, SearchQuery, SortKey, UriMatch};
use mongodb::bson::{doc, Bson, Document};

use super::super::layout::{index_specs, CONTAINS_WINDOW, RESOURCES};
use super::*;

const DAY_MS: i64 = 86_400_000;

/// One translated search: a name (the snapshot file), the request it stands for, the parsed
/// query and the keyset bound.
struct Case {
    name: &'static str,
    request: String,
    query: SearchQuery,
    after: Option<&'static str>,
}

fn parse(resource_type: Option<&str>, params: &[(&str, &str)]) -> SearchQuery {
    let pairs: Vec<(String, String)> = params.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let query = fhir_model::parse_search(resource_type, &pairs, true)
        .unwrap_or_else(|e| panic!("{resource_type:?} {params:?} does not parse: {e:?}"));
    assert!(query.ignored.is_empty(), "{params:?} ignored {:?}", query.ignored);
    query
}

fn request(resource_type: Option<&str>, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params.iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("{}?{}", resource_type.unwrap_or(""), query.join("&"))
}

fn case(name: &'static str, resource_type: Option<&str>, params: &[(&str, &str)]) -> Case {
    Case { name, request: request(resource_type, params), query: parse(resource_type, params), after: None }
}

/// A needle of `len` characters without repeats of a window, so that every window is distinct.
fn long_text(len: usize) -> String {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett", "kilo"];
    let mut text = String::new();
    let mut i = 0;
    while text.chars().count() < len {
        text.push_str(words[i % words.len()]);
        text.push_str(if i % 2 == 0 { " " } else { "-" });
        i += 1;
    }
    text.chars().take(len).collect()
}

fn cases() -> Vec<Case> {
    let long = long_text(150);
    let exactly_window = long_text(CONTAINS_WINDOW);
    let mut cases = vec![
        // Strings.
        case("string_default", Some("Patient"), &[("family", "Müller")]),
        case("string_exact", Some("Patient"), &[("family:exact", "Müller")]),
        case("string_contains", Some("Patient"), &[("address:contains", "Straße")]),
        case("string_contains_window", Some("Patient"), &[("address:contains", &exactly_window)]),
        case("string_contains_long", Some("Patient"), &[("address:contains", &long)]),
        // Tokens.
        case("token_code", Some("Observation"), &[("code", "8867-4")]),
        case("token_system_code", Some("Observation"), &[("code", "http://loinc.org|8867-4")]),
        case("token_no_system", Some("Observation"), &[("code", "|8867-4")]),
        case("token_system_only", Some("Observation"), &[("code", "http://loinc.org|")]),
        case("token_text", Some("Observation"), &[("code:text", "Heart Rate")]),
        case("token_not", Some("Observation"), &[("status:not", "final")]),
        case("token_not_several", Some("Observation"), &[("code:not", "http://loinc.org|8867-4,|x")]),
        case(
            "token_of_type",
            Some("Patient"),
            &[("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345")],
        ),
        case("token_missing_true", Some("Patient"), &[("gender:missing", "true")]),
        case("token_missing_false", Some("Patient"), &[("gender:missing", "false")]),
        case("identifier", Some("Patient"), &[("identifier", "http://hospital.example/mrn|12345")]),
        // Dates: every prefix on a day, and the precisions.
        case("date_eq", Some("Observation"), &[("date", "eq2013-01-14")]),
        case("date_ne", Some("Observation"), &[("date", "ne2013-01-14")]),
        case("date_gt", Some("Observation"), &[("date", "gt2013-01-14")]),
        case("date_lt", Some("Observation"), &[("date", "lt2013-01-14")]),
        case("date_ge", Some("Observation"), &[("date", "ge2013-01-14")]),
        case("date_le", Some("Observation"), &[("date", "le2013-01-14")]),
        case("date_sa", Some("Observation"), &[("date", "sa2013-01-14")]),
        case("date_eb", Some("Observation"), &[("date", "eb2013-01-14")]),
        case("date_year", Some("Observation"), &[("date", "2013")]),
        case("date_month", Some("Observation"), &[("date", "2013-01")]),
        case("date_minute_offset", Some("Observation"), &[("date", "2013-01-14T10:00+01:00")]),
        case("date_second_utc", Some("Observation"), &[("date", "2013-01-14T10:00:00Z")]),
        case("date_millisecond", Some("Observation"), &[("date", "ge2013-01-14T10:00:00.250Z")]),
        // Numbers: every prefix.
        case("number_eq", Some("RiskAssessment"), &[("probability", "0.8")]),
        case("number_ne", Some("RiskAssessment"), &[("probability", "ne0.8")]),
        case("number_gt", Some("RiskAssessment"), &[("probability", "gt0.8")]),
        case("number_lt", Some("RiskAssessment"), &[("probability", "lt0.8")]),
        case("number_ge", Some("RiskAssessment"), &[("probability", "ge0.8")]),
        case("number_le", Some("RiskAssessment"), &[("probability", "le0.8")]),
        case("number_sa", Some("RiskAssessment"), &[("probability", "sa0.8")]),
        case("number_eb", Some("RiskAssessment"), &[("probability", "eb0.8")]),
        case("number_ap", Some("RiskAssessment"), &[("probability", "ap100")]),
        // Quantities: the unit forms, and prefixes that need several alternatives.
        case("quantity_system_code", Some("Observation"), &[("value-quantity", "5.4|http://snomed.info/sct|258683005")]),
        case("quantity_code_or_unit", Some("Observation"), &[("value-quantity", "72||beats")]),
        case("quantity_code_or_unit_ge", Some("Observation"), &[("value-quantity", "ge72||beats")]),
        case("quantity_canonical", Some("Observation"), &[("value-quantity", "gt5.4|http://unitsofmeasure.org|mg")]),
        case("quantity_canonical_code_only", Some("Observation"), &[("value-quantity", "le70||kg")]),
        case("quantity_no_unit", Some("Observation"), &[("value-quantity", "ne100")]),
        case("quantity_ap", Some("Observation"), &[("value-quantity", "ap100||mm[Hg]")]),
        // References.
        case("reference_id", Some("Observation"), &[("subject", "123")]),
        case("reference_type_id", Some("Observation"), &[("subject", "Patient/123")]),
        case("reference_type_modifier", Some("Observation"), &[("subject:Patient", "123")]),
        case("reference_absolute_url", Some("Observation"), &[("subject", "http://other.example/fhir/Patient/123")]),
        case("reference_urn", Some("Observation"), &[("subject", "urn:uuid:0b1a4e2c-9b7f-4d6e-8a31-2f5c7d9e1a3b")]),
        case("reference_identifier", Some("Observation"), &[("subject:identifier", "http://hospital.example/mrn|12345")]),
        case("reference_identifier_no_system", Some("Observation"), &[("subject:identifier", "|12345")]),
        // Uris.
        case("uri_exact", Some("ValueSet"), &[("url", "http://x.org/ValueSet/a")]),
        case("uri_below", Some("ValueSet"), &[("url:below", "http://x.org/ValueSet/")]),
        case("uri_above", Some("ValueSet"), &[("url:above", "http://x.org/VS/a|1")]),
        // Composites.
        case(
            "composite_code_value_quantity",
            Some("Observation"),
            &[("code-value-quantity", "http://loinc.org|8480-6$gt100|http://unitsofmeasure.org|mm[Hg]")],
        ),
        case("composite_ge_code_or_unit", Some("Observation"), &[("component-code-value-quantity", "8480-6$ge100||beats,8462-4$lt60")]),
        case("composite_no_unit", Some("Observation"), &[("code-value-quantity", "8480-6$le100")]),
        case("composite_code_value_date", Some("Observation"), &[("code-value-date", "http://loinc.org|8480-6$ne2013-01-14")]),
        // OR and AND.
        case("comma_or", Some("Observation"), &[("code", "8867-4,http://loinc.org|8480-6")]),
        case("repeated_and", Some("Observation"), &[("date", "ge2013-01-01"), ("date", "lt2014-01-01")]),
        case(
            "shared_keys_and",
            Some("Observation"),
            &[("code", "a,b"), ("category", "c,d"), ("status:not", "final"), ("status:not", "amended"), ("date", "ne2013")],
        ),
        // Chains and _has.
        case("chain", Some("Observation"), &[("subject:Patient.name", "peter")]),
        case("chain_untyped", Some("Observation"), &[("subject.name", "peter")]),
        case("chain_multi_level", Some("Observation"), &[("subject:Patient.organization.name", "acme")]),
        case("chain_missing", Some("Observation"), &[("subject:Patient.gender:missing", "true")]),
        case("chain_with_plain_filter", Some("Observation"), &[("code", "8867-4"), ("subject:Patient.birthdate", "lt1950")]),
        case("chain_then_has", Some("Observation"), &[("subject:Patient._has:Encounter:subject:status", "finished")]),
        case("has", Some("Patient"), &[("_has:Observation:patient:code", "1234-5")]),
        case("has_nested", Some("Patient"), &[("_has:Observation:patient:_has:Provenance:target:agent", "Practitioner/1")]),
        case("has_then_chain", Some("Patient"), &[("_has:Observation:patient:performer:Practitioner.name", "smith")]),
        case("has_and_chain", Some("Observation"), &[("_has:Provenance:target:agent", "Practitioner/1"), ("subject:Patient.name", "peter")]),
        // Common parameters and scopes.
        case("id", Some("Patient"), &[("_id", "123,456")]),
        case("last_updated", Some("Patient"), &[("_lastUpdated", "gt2020-01-01T00:00:00Z")]),
        case("type_only", Some("Patient"), &[]),
        case("system_no_filters", None, &[]),
        case("system_filter", None, &[("_id", "123")]),
        case("system_type_only", None, &[("_type", "Patient,Observation")]),
        case("system_type_filter", None, &[("_type", "Patient,Observation"), ("_lastUpdated", "ge2020")]),
        // Sorting.
        case("sort_date", Some("Observation"), &[("_sort", "date")]),
        case("sort_date_descending", Some("Observation"), &[("_sort", "-date")]),
        case("sort_multi", Some("Observation"), &[("code", "8867-4"), ("_sort", "code,-date,subject")]),
        case("sort_string_quantity_uri", Some("Observation"), &[("_sort", "-value-quantity")]),
        case("sort_patient", Some("Patient"), &[("_sort", "family,-birthdate")]),
        case("sort_uri", Some("ValueSet"), &[("_sort", "-url")]),
        case("sort_number", Some("RiskAssessment"), &[("_sort", "probability")]),
        case("sort_id", Some("Patient"), &[("_sort", "_id")]),
        case("sort_last_updated", Some("Patient"), &[("_sort", "-_lastUpdated")]),
        case("sort_system", None, &[("_type", "Patient,Practitioner"), ("_sort", "-_lastUpdated,_id")]),
    ];
    // `ap` on a date widens by the distance from now; a fixed range keeps the snapshot stable.
    let mut ap = case("date_ap", Some("Observation"), &[("date", "eq2013-01-14")]);
    match ap.query.filters.as_mut_slice() {
        [Filter::Match { any_of, .. }] => match any_of.as_mut_slice() {
            [Predicate::Date { prefix, lo, hi }] => {
                *prefix = Prefix::Ap;
                *lo -= DAY_MS;
                *hi += DAY_MS;
            }
            other => panic!("unexpected predicates {other:?}"),
        },
        other => panic!("unexpected filters {other:?}"),
    }
    ap.request = "Observation?date=ap2013-01-14 (search range widened by one day on each side)".into();
    cases.push(ap);
    let mut after = case("keyset_after", Some("Patient"), &[("name", "smi")]);
    after.after = Some("Patient/p-42");
    cases.push(after);
    let mut after_all = case("keyset_after_no_filters", Some("Patient"), &[]);
    after_all.after = Some("Patient/p-42");
    cases.push(after_all);
    cases
}

fn pipeline(case: &Case) -> Vec<Document> {
    let types = scope_of(&case.query);
    let mut stages = match_stages(&case.query.filters, &types, case.after);
    stages.extend(sort_stages(&case.query.sort, &types));
    stages
}

fn snapshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("snapshots").join("mongodb")
}

fn render(case: &Case) -> String {
    let stages: Vec<Bson> = pipeline(case).into_iter().map(Bson::Document).collect();
    let value = serde_json::json!({
        "request": case.request,
        "after": case.after,
        "stages": Bson::Array(stages).into_relaxed_extjson(),
    });
    serde_json::to_string_pretty(&value).expect("serialise snapshot") + "\n"
}

#[test]
fn mongodb_search_snapshots() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    let dir = snapshot_dir();
    if update {
        fs::create_dir_all(&dir).expect("create snapshot dir");
    }
    let cases = cases();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(cases.iter().filter(|c| c.name == case.name).count() == 1, "duplicate case {}", case.name);
        let actual = render(case);
        let file = dir.join(format!("{}.json", case.name));
        if update {
            fs::write(&file, &actual).expect("write snapshot");
            continue;
        }
        match fs::read_to_string(&file) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!("{}: differs\n--- expected\n{expected}\n--- actual\n{actual}", case.name)),
            Err(e) => failures.push(format!("{}: cannot read {}: {e} (UPDATE_SNAPSHOTS=1 writes it)", case.name, file.display())),
        }
    }
    // A snapshot without a case is a case that was lost.
    let entries = fs::read_dir(&dir).expect("tests/snapshots/mongodb");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if !cases.iter().any(|c| c.name == stem) {
            failures.push(format!("{}: snapshot without a case", path.display()));
        }
    }
    assert!(failures.is_empty(), "{} snapshot failures:\n{}", failures.len(), failures.join("\n"));
}

// ----- structural checks over every case ---------------------------------------------------------

/// Calls `visit` with every document nested anywhere in `value`, and its field names.
fn walk<'a>(value: &'a Bson, visit: &mut dyn FnMut(&'a Document)) {
    match value {
        Bson::Document(doc) => {
            visit(doc);
            for (_, field) in doc {
                walk(field, visit);
            }
        }
        Bson::Array(items) => items.iter().for_each(|item| walk(item, visit)),
        _ => {}
    }
}

/// Every `$match` condition in `stages`, nested pipelines included.
fn match_conditions(stages: &[Document]) -> Vec<Document> {
    let mut out = Vec::new();
    for stage in stages {
        walk(&Bson::Document(stage.clone()), &mut |doc| {
            if let Ok(condition) = doc.get_document("$match") {
                out.push(condition.clone());
            }
        });
    }
    out
}

#[test]
fn mongodb_match_conditions_use_no_regex_where_or_expr() {
    for case in cases() {
        let stages = pipeline(&case);
        let conditions = match_conditions(&stages);
        assert!(!conditions.is_empty(), "{}: no $match", case.name);
        for condition in conditions {
            walk(&Bson::Document(condition.clone()), &mut |doc| {
                for key in doc.keys() {
                    assert!(
                        !["$regex", "$where", "$expr", "$function"].contains(&key.as_str()),
                        "{}: {key} in {condition}",
                        case.name
                    );
                }
            });
        }
    }
}

#[test]
fn mongodb_every_elem_match_is_served_by_an_index() {
    let specs = index_specs();
    let mut seen = 0;
    for case in cases() {
        for condition in match_conditions(&pipeline(&case)) {
            walk(&Bson::Document(condition), &mut |doc| {
                for (array, value) in doc {
                    let Some(element) = value.as_document().and_then(|v| v.get_document("$elemMatch").ok()) else {
                        continue;
                    };
                    seen += 1;
                    assert!(!array.contains('.') && !array.starts_with('$'), "{}: $elemMatch on {array}", case.name);
                    assert!(
                        matches!(element.get("p"), Some(Bson::String(_))),
                        "{}: $elemMatch on {array} binds no parameter: {element}",
                        case.name
                    );
                    let path = format!("{array}.p");
                    let served = specs.iter().any(|spec| {
                        let keys: Vec<&String> = spec.keys.keys().collect();
                        spec.collection == RESOURCES && keys.len() >= 2 && keys[0] == "type" && *keys[1] == path
                    });
                    assert!(served, "{}: no index leads with type, {path}", case.name);
                    // Every other field the element binds is one of that array's fields.
                    for field in element.keys().filter(|k| *k != "p" && !k.starts_with('$')) {
                        let known = match array.as_str() {
                            "str" => ["n", "e"].contains(&field.as_str()),
                            "sfx" => field == "s",
                            "tok" => ["s", "c"].contains(&field.as_str()),
                            "ttx" => field == "n",
                            "oft" => ["ts", "tc", "v"].contains(&field.as_str()),
                            "date" | "num" => ["lo", "hi"].contains(&field.as_str()),
                            "qty" => ["s", "c", "u", "lo", "hi", "cn"].contains(&field.as_str()),
                            "ref" => ["t", "i", "u"].contains(&field.as_str()),
                            "rid" => ["s", "v"].contains(&field.as_str()),
                            "uri" => field == "v",
                            "cmp" => field
                                .split_once('.')
                                .is_some_and(|(c, slot)| ["c1", "c2", "c3"].contains(&c) && ["a", "b", "c", "lo", "hi"].contains(&slot)),
                            _ => false,
                        };
                        assert!(known, "{}: {array} has no field {field}", case.name);
                    }
                }
            });
        }
    }
    assert!(seen > 100, "only {seen} $elemMatch conditions checked");
}

#[test]
fn mongodb_first_stage_is_one_match_with_the_scope() {
    for case in cases() {
        let types = scope_of(&case.query);
        let stages = match_stages(&case.query.filters, &types, case.after);
        let first = stages[0].get_document("$match").unwrap_or_else(|_| panic!("{}: first stage {}", case.name, stages[0]));
        assert_eq!(first.get("deleted"), Some(&Bson::Boolean(false)), "{}", case.name);
        match (&types, case.query.filters.is_empty()) {
            (Some(types), _) if types.len() == 1 => assert_eq!(first.get_str("type"), Ok(types[0].as_str()), "{}", case.name),
            (Some(_), _) | (None, false) => assert!(first.get_document("type").is_ok_and(|t| t.contains_key("$in")), "{}", case.name),
            (None, true) => assert!(!first.contains_key("type"), "{}", case.name),
        }
        let joins = case.query.filters.iter().filter(|f| matches!(f, Filter::Chain { .. } | Filter::Has { .. })).count();
        assert_eq!(stages.len(), 1 + 2 * joins, "{}: {stages:?}", case.name);
    }
}

// ----- details ---------------------------------------------------------------------------------


#[test]
fn mongodb_contains_windows_cover_the_needle() {
    let chars = |s: &str| s.chars().collect::<Vec<char>>();
    assert_eq!(windows(&chars("abc")), vec!["abc".to_string()]);
    let exact = "é".repeat(CONTAINS_WINDOW);
    assert_eq!(windows(&chars(&exact)), vec![exact.clone()]);
    let text = long_text(150);
    let all = chars(&text);
    let got = windows(&all);
    let starts = [0, 32, 64, 150 - CONTAINS_WINDOW];
    let expected: Vec<String> = starts.iter().map(|s| all[*s..s + CONTAINS_WINDOW].iter().collect()).collect();
    assert_eq!(got, expected);
    // A needle one longer than the window: the first and the last window.
    let one_more: Vec<char> = all[..CONTAINS_WINDOW + 1].to_vec();
    assert_eq!(windows(&one_more).len(), 2);
    // Repeated windows are asked for once.
    assert_eq!(windows(&chars(&"a".repeat(200))), vec!["a".repeat(CONTAINS_WINDOW)]);
    // An empty needle is any value of the parameter.
    assert_eq!(conditions("address", &Predicate::StringContains(String::new())), vec![doc! { "str": { "$elemMatch": { "p": "address" } } }]);
}

#[test]
fn mongodb_impossible_inputs_match_nothing_without_panicking() {
    let types = Some(vec!["Observation".to_string()]);
    // An empty OR matches nothing; an empty :not excludes nothing.
    let empty = Filter::Match { param: "code".into(), any_of: Vec::new(), negate: false };
    let stages = match_stages(&[empty], &types, None);
    assert_eq!(stages, vec![doc! { "$match": { "type": "Observation", "deleted": false, "_id": { "$in": [] } } }]);
    let empty_not = Filter::Match { param: "code".into(), any_of: Vec::new(), negate: true };
    assert_eq!(match_stages(&[empty_not], &types, None), vec![doc! { "$match": { "type": "Observation", "deleted": false } }]);
    // A join on a name that is not a field name matches nothing and looks nothing up.
    let inner = Box::new(Filter::Missing { param: "name".into(), missing: false });
    for param in ["a.b", "$where", ""] {
        let chain = Filter::Chain { param: param.into(), target_types: vec!["Patient".into()], inner: inner.clone() };
        let has = Filter::Has { source_type: "Encounter".into(), reference_param: param.into(), inner: inner.clone() };
        for filter in [chain, has] {
            let stages = match_stages(&[filter], &types, Some("Observation/1"));
            assert_eq!(stages.len(), 1);
            let first = stages[0].get_document("$match").expect("$match");
            assert_eq!(first.get_document("$and").ok(), None);
            assert!(first.get_document("_id").is_ok(), "{first}");
            assert_eq!(first.get_array("$and").map(Vec::len).ok(), Some(1), "{first}");
        }
    }
    // Composite components the parser never produces: a contains text, a nested composite.
    let odd = Predicate::Composite(vec![
        Predicate::StringContains("x".into()),
        Predicate::Composite(Vec::new()),
    ]);
    let got = conditions("code-value-string", &odd);
    assert_eq!(
        got,
        vec![doc! { "cmp": { "$elemMatch": { "p": "code-value-string", "c1.a": { "$in": [] }, "c2.a": { "$in": [] } } } }]
    );
    // A composite without components asks only for a tuple of the parameter.
    assert_eq!(conditions("x", &Predicate::Composite(Vec::new())), vec![doc! { "cmp": { "$elemMatch": { "p": "x" } } }]);
    // Sort keys without an order leave the default order.
    let composite = SortKey { param: "code-value-quantity".into(), descending: false };
    let unknown = SortKey { param: "no-such-param".into(), descending: true };
    assert_eq!(sort_stages(&[composite, unknown], &types), vec![doc! { "$sort": { "_id": 1 } }]);
    assert_eq!(sort_stages(&[], &None), vec![doc! { "$sort": { "_id": 1 } }]);
}

// ----- semantics: the conditions evaluated on laid-out documents ---------------------------------

/// Evaluates the subset of the query language the translation emits (`$and`, `$or`, `$nor`,
/// `$elemMatch`, comparisons, `$in`, `$ne`, equality, dotted paths) on `doc`, as MongoDB does:
/// a condition on an array field holds when it holds for some element, and values of different
/// BSON types (other than numbers) never compare.
fn holds(condition: &Document, doc: &Document) -> bool {
    condition.iter().all(|(key, value)| match key.as_str() {
        "$and" => conditions_of(value).iter().all(|c| holds(c, doc)),
        "$or" => conditions_of(value).iter().any(|c| holds(c, doc)),
        "$nor" => !conditions_of(value).iter().any(|c| holds(c, doc)),
        other if other.starts_with('$') => panic!("operator {other} not evaluated here"),
        path => field_holds(lookup(doc, path), value),
    })
}

fn conditions_of(value: &Bson) -> Vec<Document> {
    match value {
        Bson::Array(items) => items.iter().map(|i| i.as_document().expect("condition document").clone()).collect(),
        other => panic!("{other} is not a list of conditions"),
    }
}

fn lookup<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut current = doc.get(parts.next()?)?;
    for part in parts {
        current = current.as_document()?.get(part)?;
    }
    Some(current)
}

fn field_holds(field: Option<&Bson>, condition: &Bson) -> bool {
    let operators = condition.as_document().filter(|d| d.keys().next().is_some_and(|k| k.starts_with('$')));
    let Some(operators) = operators else {
        return candidates(field).iter().any(|v| compare(v, condition) == Some(std::cmp::Ordering::Equal));
    };
    operators.iter().all(|(op, operand)| match op.as_str() {
        "$elemMatch" => match field {
            Some(Bson::Array(items)) => {
                let body = operand.as_document().expect("$elemMatch body");
                items.iter().any(|item| item.as_document().is_some_and(|item| holds(body, item)))
            }
            _ => false,
        },
        "$ne" => !candidates(field).iter().any(|v| compare(v, operand) == Some(std::cmp::Ordering::Equal)),
        "$in" => {
            let Bson::Array(options) = operand else { panic!("$in of {operand}") };
            candidates(field).iter().any(|v| options.iter().any(|o| compare(v, o) == Some(std::cmp::Ordering::Equal)))
        }
        "$gt" | "$gte" | "$lt" | "$lte" => candidates(field).iter().any(|v| {
            compare(v, operand).is_some_and(|ordering| match op.as_str() {
                "$gt" => ordering.is_gt(),
                "$gte" => ordering.is_ge(),
                "$lt" => ordering.is_lt(),
                _ => ordering.is_le(),
            })
        }),
        other => panic!("operator {other} not evaluated here"),
    })
}

/// The values a condition on a field is tried on: the value, or each element of an array.
fn candidates(field: Option<&Bson>) -> Vec<&Bson> {
    match field {
        None => Vec::new(),
        Some(Bson::Array(items)) => items.iter().collect(),
        Some(value) => vec![value],
    }
}

fn compare(a: &Bson, b: &Bson) -> Option<std::cmp::Ordering> {
    let number = |v: &Bson| match v {
        Bson::Int64(n) => Some(*n as f64),
        Bson::Int32(n) => Some(f64::from(*n)),
        Bson::Double(n) => Some(*n),
        _ => None,
    };
    match (a, b) {
        (Bson::String(a), Bson::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Bson::Boolean(a), Bson::Boolean(b)) => Some(a.cmp(b)),
        _ => number(a)?.partial_cmp(&number(b)?),
    }
}

/// `Predicate`'s documented meaning on one indexed value, written from its doc comments
/// independently of the translation.
fn means(predicate: &Predicate, value: &IndexValue) -> bool {
    use fhir_model::TokenSystem as S;
    let interval = |prefix: Prefix, rlo: f64, rhi: f64, lo: f64, hi: f64| {
        let eq = rlo >= lo && rhi <= hi;
        match prefix {
            Prefix::Eq => eq,
            Prefix::Ne => !eq,
            Prefix::Gt => rhi > hi,
            Prefix::Lt => rlo < lo,
            Prefix::Ge => rhi > hi || eq,
            Prefix::Le => rlo < lo || eq,
            Prefix::Sa => rlo >= hi,
            Prefix::Eb => rhi <= lo,
            Prefix::Ap => rlo < hi && rhi > lo,
        }
    };
    let system_is = |wanted: &S, system: &Option<String>| match wanted {
        S::Any => true,
        S::None => system.as_deref().unwrap_or("").is_empty(),
        S::Is(s) => system.as_deref() == Some(s.as_str()),
    };
    match (predicate, value) {
        (Predicate::StringStartsWith(p), IndexValue::String { normalized, .. }) => normalized.starts_with(p.as_str()),
        (Predicate::StringExact(v), IndexValue::String { exact, .. }) => exact == v,
        (Predicate::StringContains(v), IndexValue::String { normalized, .. }) => normalized.contains(v.as_str()),
        (Predicate::Token { system, code }, IndexValue::Token { system: s, code: c }) => {
            code.as_ref().is_none_or(|code| code == c) && system_is(system, s)
        }
        (Predicate::TokenText(p), IndexValue::TokenText { normalized }) => normalized.starts_with(p.as_str()),
        (
            Predicate::IdentifierOfType { type_system, type_code, value },
            IndexValue::IdentifierOfType { type_system: ts, type_code: tc, value: v },
        ) => ts.as_deref() == Some(type_system.as_str()) && tc == type_code && v == value,
        (Predicate::Date { prefix, lo, hi }, IndexValue::Date { lo: rlo, hi: rhi }) => {
            interval(*prefix, *rlo as f64, *rhi as f64, *lo as f64, *hi as f64)
        }
        (Predicate::Number { prefix, lo, hi }, IndexValue::Number { lo: rlo, hi: rhi }) => interval(*prefix, *rlo, *rhi, *lo, *hi),
        (
            Predicate::Quantity { prefix, lo, hi, system, code },
            IndexValue::Quantity { system: s, code: c, unit: u, lo: rlo, hi: rhi, canonical },
        ) => {
            let unit = match (system, code) {
                (Some(system), Some(code)) => s.as_ref() == Some(system) && c.as_ref() == Some(code),
                (None, Some(code)) => c.as_ref() == Some(code) || u.as_ref() == Some(code),
                (Some(system), None) => s.as_ref() == Some(system),
                (None, None) => !canonical,
            };
            unit && interval(*prefix, *rlo, *rhi, *lo, *hi)
        }
        (Predicate::Reference { target_type, target_id }, IndexValue::Reference { target_type: t, target_id: i, .. }) => {
            i == target_id && target_type.as_ref().is_none_or(|wanted| t.as_ref() == Some(wanted))
        }
        (Predicate::ReferenceUrl(url), IndexValue::Reference { url: u, .. }) => u == url,
        (Predicate::ReferenceIdentifier { system, value }, IndexValue::ReferenceIdentifier { system: s, value: v }) => {
            v == value && system_is(system, s)
        }
        (Predicate::Uri { value, mode }, IndexValue::Uri(v)) => match mode {
            UriMatch::Exact => v == value,
            UriMatch::Below => v.starts_with(value.as_str()),
            UriMatch::Above => !v.is_empty() && value.starts_with(v.as_str()),
        },
        (Predicate::Composite(predicates), IndexValue::Composite(values)) => predicates.iter().enumerate().all(|(i, p)| {
            // A component's quantity keeps no `canonical` flag: a unitless search takes any.
            let value = match (p, values.get(i)) {
                (Predicate::Quantity { .. }, Some(IndexValue::Quantity { system, code, unit, lo, hi, .. })) => {
                    IndexValue::Quantity { system: system.clone(), code: code.clone(), unit: unit.clone(), lo: *lo, hi: *hi, canonical: false }
                }
                (_, Some(value)) => value.clone(),
                (_, None) => return false,
            };
            means(p, &value)
        }),
        _ => false,
    }
}

fn entry(param: &str, value: IndexValue) -> fhir_model::IndexEntry {
    fhir_model::IndexEntry { param: param.into(), value }
}

/// Index values around the search values used below: inside, overlapping each edge, around,
/// before, after, touching, in other units, canonical or not.
fn sample_values() -> Vec<IndexValue> {
    let text = |n: &str, e: &str| IndexValue::String { normalized: n.into(), exact: e.into() };
    let qty = |s: Option<&str>, c: Option<&str>, u: Option<&str>, lo: f64, hi: f64, canonical: bool| IndexValue::Quantity {
        system: s.map(str::to_string),
        code: c.map(str::to_string),
        unit: u.map(str::to_string),
        lo,
        hi,
        canonical,
    };
    let ucum = Some("http://unitsofmeasure.org");
    let mut values = vec![
        text("muller", "Müller"),
        text("mullerson", "Mullerson"),
        text("mu", "Mu"),
        text("", ""),
        text(&long_text(150), "long"),
        text(&format!("xx{}", long_text(140)), "long shifted"),
        text(&long_text(100), "long prefix"),
        IndexValue::Token { system: Some("http://loinc.org".into()), code: "8867-4".into() },
        IndexValue::Token { system: None, code: "8867-4".into() },
        IndexValue::Token { system: Some("http://snomed.info/sct".into()), code: "x".into() },
        IndexValue::TokenText { normalized: "heart rate".into() },
        IndexValue::IdentifierOfType { type_system: Some("s".into()), type_code: "MR".into(), value: "1".into() },
        IndexValue::IdentifierOfType { type_system: None, type_code: "MR".into(), value: "1".into() },
        IndexValue::Reference { target_type: Some("Patient".into()), target_id: "1".into(), url: "Patient/1".into() },
        IndexValue::Reference { target_type: Some("Group".into()), target_id: "1".into(), url: "Group/1".into() },
        IndexValue::Reference { target_type: None, target_id: "urn:x".into(), url: "urn:x".into() },
        IndexValue::ReferenceIdentifier { system: Some("s".into()), value: "1".into() },
        IndexValue::ReferenceIdentifier { system: None, value: "1".into() },
        IndexValue::Uri("http://x/vs".into()),
        IndexValue::Uri("http://x/vs/a".into()),
        IndexValue::Uri("http://y".into()),
        qty(ucum, Some("g"), Some("g"), 99.5, 100.5, false),
        qty(ucum, Some("g"), Some("kg"), 99_500.0, 100_500.0, true),
        qty(None, Some("beats"), Some("beats"), 71.5, 72.5, false),
        qty(None, None, Some("beats"), 72.5, 73.5, false),
        qty(Some("http://snomed.info/sct"), Some("258683005"), None, 5.35, 5.45, false),
    ];
    // Ranges around the search range [10, 20): every relative position.
    for (lo, hi) in [(12, 18), (10, 20), (5, 15), (15, 25), (0, 30), (0, 10), (20, 30), (0, 5), (25, 30), (10, 15), (15, 20)] {
        values.push(IndexValue::Date { lo, hi });
        values.push(IndexValue::Number { lo: lo as f64, hi: hi as f64 });
        values.push(qty(None, Some("beats"), None, lo as f64, hi as f64, false));
        values.push(qty(None, None, None, lo as f64, hi as f64, true));
        values.push(IndexValue::Composite(vec![
            IndexValue::Token { system: Some("http://loinc.org".into()), code: "8480-6".into() },
            qty(ucum, Some("beats"), Some("beats"), lo as f64, hi as f64, false),
        ]));
        values.push(IndexValue::Composite(vec![
            IndexValue::Token { system: None, code: "8462-4".into() },
            IndexValue::Date { lo, hi },
        ]));
    }
    values
}

fn sample_predicates() -> Vec<Predicate> {
    use fhir_model::TokenSystem as S;
    let prefixes = [Prefix::Eq, Prefix::Ne, Prefix::Gt, Prefix::Lt, Prefix::Ge, Prefix::Le, Prefix::Sa, Prefix::Eb, Prefix::Ap];
    let mut predicates = vec![
        Predicate::StringStartsWith("mul".into()),
        Predicate::StringStartsWith(String::new()),
        Predicate::StringExact("Müller".into()),
        Predicate::StringExact("müller".into()),
        Predicate::StringContains("ller".into()),
        Predicate::StringContains(String::new()),
        Predicate::StringContains(long_text(150)),
        Predicate::StringContains(long_text(100)),
        Predicate::StringContains(long_text(70)),
        Predicate::Token { system: S::Any, code: Some("8867-4".into()) },
        Predicate::Token { system: S::None, code: Some("8867-4".into()) },
        Predicate::Token { system: S::Is("http://loinc.org".into()), code: Some("8867-4".into()) },
        Predicate::Token { system: S::Is("http://loinc.org".into()), code: None },
        Predicate::TokenText("heart".into()),
        Predicate::TokenText("rate".into()),
        Predicate::IdentifierOfType { type_system: "s".into(), type_code: "MR".into(), value: "1".into() },
        Predicate::Reference { target_type: None, target_id: "1".into() },
        Predicate::Reference { target_type: Some("Patient".into()), target_id: "1".into() },
        Predicate::ReferenceUrl("urn:x".into()),
        Predicate::ReferenceIdentifier { system: S::Is("s".into()), value: "1".into() },
        Predicate::ReferenceIdentifier { system: S::None, value: "1".into() },
        Predicate::ReferenceIdentifier { system: S::Any, value: "1".into() },
        Predicate::Uri { value: "http://x/vs".into(), mode: UriMatch::Exact },
        Predicate::Uri { value: "http://x/".into(), mode: UriMatch::Below },
        Predicate::Uri { value: "http://x/vs/a|2".into(), mode: UriMatch::Above },
    ];
    let ucum = || Some("http://unitsofmeasure.org".to_string());
    for prefix in prefixes {
        predicates.push(Predicate::Date { prefix, lo: 10, hi: 20 });
        predicates.push(Predicate::Number { prefix, lo: 10.0, hi: 20.0 });
        for (system, code) in [(None, Some("beats")), (None, None), (ucum(), Some("g")), (ucum(), None)] {
            let code = code.map(str::to_string);
            predicates.push(Predicate::Quantity { prefix, lo: 10.0, hi: 20.0, system: system.clone(), code });
        }
        predicates.push(Predicate::Quantity { prefix, lo: 99_000.0, hi: 101_000.0, system: ucum(), code: Some("g".into()) });
        predicates.push(Predicate::Composite(vec![
            Predicate::Token { system: S::Is("http://loinc.org".into()), code: Some("8480-6".into()) },
            Predicate::Quantity { prefix, lo: 10.0, hi: 20.0, system: None, code: Some("beats".into()) },
        ]));
        predicates.push(Predicate::Composite(vec![
            Predicate::Token { system: S::Any, code: Some("8462-4".into()) },
            Predicate::Date { prefix, lo: 10, hi: 20 },
        ]));
        predicates.push(Predicate::Composite(vec![
            Predicate::Token { system: S::Any, code: Some("8480-6".into()) },
            Predicate::Quantity { prefix, lo: 10.0, hi: 20.0, system: None, code: None },
        ]));
        predicates.push(Predicate::Composite(vec![
            Predicate::Token { system: S::None, code: Some("8462-4".into()) },
            Predicate::Date { prefix, lo: 10, hi: 20 },
        ]));
    }
    predicates
}

#[test]
fn mongodb_conditions_mean_what_the_predicates_say() {
    let layout = |entries: &[fhir_model::IndexEntry]| super::super::layout::index_fields(entries);
    let values: Vec<(IndexValue, Document, Document)> = sample_values()
        .into_iter()
        .map(|value| {
            let doc = layout(&[entry("p", value.clone()), entry("other", value.clone())]);
            let elsewhere = layout(&[entry("other", value.clone())]);
            (value, doc, elsewhere)
        })
        .collect();
    let mut checked = 0;
    let mut matched = 0;
    for predicate in sample_predicates() {
        for (negate, any_of) in [(false, vec![predicate.clone()]), (true, vec![predicate.clone()])] {
            let condition = match_condition("p", &any_of, negate);
            for (value, doc, elsewhere) in &values {
                let got = condition.as_ref().is_none_or(|c| holds(c, doc));
                let expected = means(&predicate, value) != negate;
                checked += 1;
                matched += usize::from(expected);
                assert_eq!(got, expected, "{predicate:?} (negate {negate}) on {value:?}\ncondition {condition:?}\ndoc {doc}");
                // The parameter is bound: the same value under another name never matches.
                let got = condition.as_ref().is_none_or(|c| holds(c, elsewhere));
                assert_eq!(got, negate, "{predicate:?} (negate {negate}) matched another parameter's {value:?}");
            }
        }
    }
    assert!(checked > 10_000 && matched > checked / 10, "{matched} of {checked}");
}

#[test]
fn mongodb_missing_and_comma_alternatives_mean_what_the_filters_say() {
    let with = super::super::layout::index_fields(&[entry("gender", IndexValue::Token { system: None, code: "male".into() })]);
    let without = super::super::layout::index_fields(&[entry("name", IndexValue::TokenText { normalized: "x".into() })]);
    let types = Some(vec!["Patient".to_string()]);
    let first = |filter: Filter| {
        let stages = match_stages(&[filter], &types, None);
        let mut condition = stages[0].get_document("$match").expect("$match").clone();
        condition.remove("type");
        condition.remove("deleted");
        condition
    };
    let missing = |missing| first(Filter::Missing { param: "gender".into(), missing });
    assert!(holds(&missing(true), &without) && !holds(&missing(true), &with));
    assert!(holds(&missing(false), &with) && !holds(&missing(false), &without));
    let code = |c: &str| Predicate::Token { system: fhir_model::TokenSystem::Any, code: Some(c.into()) };
    let either = first(Filter::Match { param: "gender".into(), any_of: vec![code("female"), code("male")], negate: false });
    assert!(holds(&either, &with) && !holds(&either, &without));
    let neither = first(Filter::Match { param: "gender".into(), any_of: vec![code("female"), code("male")], negate: true });
    assert!(!holds(&neither, &with) && holds(&neither, &without));
}
