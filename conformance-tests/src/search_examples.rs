//! Complete FHIR R4 search over the official examples: every case loads the whole example
//! corpus (ids kept), then runs its group of the hand-written search table and reports every
//! row that did not return what the table says.

mod load;
mod row;
mod table;

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;

use crate::ctx::Reply;
use crate::{fhir, CaseFailure, CaseResult, Ctx};
use load::{load_examples, Loaded};
use row::{Row, Total};

/// Most pages one row may follow (a loop guard).
const MAX_PAGES: usize = 500;
/// The R4 tag a server puts on resources it returns only in part (`_elements`, `_summary`).
const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

pub async fn strings(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::STRINGS).await
}

pub async fn tokens(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::TOKENS).await
}

pub async fn dates(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::DATES).await
}

pub async fn numbers_quantities(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::NUMBERS_QUANTITIES).await
}

pub async fn references(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::REFERENCES).await
}

pub async fn uris(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::URIS).await
}

pub async fn composites(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::COMPOSITES).await
}

pub async fn common(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::COMMON).await
}

pub async fn chains(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::CHAINS).await
}

pub async fn has(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::HAS).await
}

pub async fn or_and(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::OR_AND).await
}

pub async fn includes(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::INCLUDES).await
}

pub async fn sort_paging(ctx: &Ctx) -> CaseResult {
    let loaded = prepare(ctx).await?;
    let mut failures = run_rows(ctx, &loaded, table::SORT_PAGING).await;
    if let Err(e) = paging_splits_into_pages(ctx).await {
        failures.push(format!("paging: {e}"));
    }
    report(table::SORT_PAGING.len() + 1, failures)
}

pub async fn result_control(ctx: &Ctx) -> CaseResult {
    let loaded = prepare(ctx).await?;
    let mut failures = run_rows(ctx, &loaded, table::RESULT_CONTROL).await;
    let checks = [
        ("_elements", elements_returns_only_those_elements(ctx).await),
        ("_summary=true", summary_true_keeps_summary_elements(ctx).await),
        ("_summary=text", summary_text_keeps_text_only(ctx).await),
        ("_summary=data", summary_data_drops_text(ctx).await),
        ("_summary=count", summary_count_has_no_entries(ctx).await),
        ("self link", self_link_lists_applied_parameters_only(ctx).await),
    ];
    let count = checks.len();
    failures.extend(checks.into_iter().filter_map(|(what, r)| r.err().map(|e| format!("{what}: {e}"))));
    report(table::RESULT_CONTROL.len() + count, failures)
}

pub async fn post_and_system(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::POST_AND_SYSTEM).await
}

pub async fn errors(ctx: &Ctx) -> CaseResult {
    run_group(ctx, table::ERRORS).await
}

/// Every search parameter the CapabilityStatement advertises for Patient and Observation is
/// accepted by a strict search, and parameters the server cannot support are not advertised.
pub async fn capability(ctx: &Ctx) -> CaseResult {
    let reply = ctx.get("metadata").send().await?;
    let statement = reply.expect(200)?.resource("CapabilityStatement")?;
    let resources = statement["rest"][0]["resource"].as_array().cloned().unwrap_or_default();
    let params_of = |kind: &str| -> Vec<String> {
        resources
            .iter()
            .find(|r| r["type"] == kind)
            .and_then(|r| r["searchParam"].as_array())
            .map(|ps| ps.iter().filter_map(|p| p["name"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut failures = Vec::new();
    for kind in ["Patient", "Observation"] {
        let names = params_of(kind);
        // The R4 base defines 21+ parameters for Patient and 30+ for Observation.
        if names.len() < 20 {
            failures.push(format!("{kind} advertises only {} searchParam(s): {names:?}", names.len()));
        }
        for name in names {
            let url = format!("{kind}?{name}:missing=true&_summary=count");
            let reply = ctx.get(&url).prefer("handling=strict").send().await?;
            if reply.status != 200 {
                failures.push(reply.failure(format!("advertised {kind} parameter {name} not accepted")).to_string());
            }
        }
    }
    for (kind, name) in [("Location", "near"), ("Patient", "_text"), ("Patient", "_content"), ("Patient", "_query")] {
        if params_of(kind).iter().any(|n| n == name) {
            failures.push(format!("{kind} advertises {name}, which this suite expects no server here to support"));
        }
    }
    report(2, failures)
}

/// Loads the examples and the extra fixtures, printing what the server rejected.
async fn prepare(ctx: &Ctx) -> Result<Loaded, CaseFailure> {
    let loaded = load_examples(ctx).await?;
    if !loaded.rejected.is_empty() {
        println!(
            "{} example(s) stored, {} rejected; rows must not rely on:\n{}",
            loaded.stored,
            loaded.rejected.len(),
            loaded.describe_rejected()
        );
    }
    for text in table::FIXTURES {
        let fixture: Value =
            serde_json::from_str(text).map_err(|e| CaseFailure::new(format!("fixture is not JSON ({e}): {text}")))?;
        fhir::update(ctx, &fixture).await.map_err(|e| e.context("storing a fixture"))?;
    }
    Ok(loaded)
}

async fn run_group(ctx: &Ctx, rows: &[Row]) -> CaseResult {
    let loaded = prepare(ctx).await?;
    let failures = run_rows(ctx, &loaded, rows).await;
    report(rows.len(), failures)
}

fn report(checks: usize, failures: Vec<String>) -> CaseResult {
    check!(failures.is_empty(), "{} of {checks} searches failed:\n{}", failures.len(), failures.join("\n"));
    Ok(())
}

/// Runs every row and returns one message per failing row.
async fn run_rows(ctx: &Ctx, loaded: &Loaded, rows: &[Row]) -> Vec<String> {
    let mut failures = Vec::new();
    for row in rows {
        if let Err(e) = run_row(ctx, row).await {
            let needed: Vec<String> = row
                .matches
                .iter()
                .chain(row.included)
                .filter_map(|r| loaded.rejection(r))
                .map(|r| format!("{} (rejected at load: {} {})", r.reference, r.status, r.issue))
                .collect();
            let note = if needed.is_empty() { String::new() } else { format!(" [needs {}]", needed.join(", ")) };
            failures.push(format!("- {}: {} {}{note}", row.what, row.request, e));
        }
    }
    failures
}

/// What a search returned across all its pages.
struct Found {
    matches: Vec<String>,
    included: Vec<String>,
    first: Value,
    /// Number of match entries on each page.
    page_sizes: Vec<usize>,
}

async fn run_row(ctx: &Ctx, row: &Row) -> CaseResult {
    let reply = send(ctx, row.request, row.strict).await?;
    if row.status != 200 {
        let outcome = reply.expect_error(row.status)?;
        if let Some(text) = row.outcome_mentions {
            let all = outcome.to_string().to_lowercase();
            check!(
                all.contains(&text.to_lowercase()),
                "{}",
                reply.failure(format!("OperationOutcome does not mention {text:?}"))
            );
        }
        return Ok(());
    }
    let found = collect(ctx, reply).await?;
    compare(&found.matches, row.matches, "matches")?;
    if row.ordered {
        check!(found.matches == row.matches, "expected the order {:?}, got {:?}", row.matches, found.matches);
    }
    compare(&found.included, row.included, "included")?;
    let total = found.first["total"].as_u64();
    match row.total {
        Total::Consistent => {
            if let Some(n) = total {
                check!(n as usize == found.matches.len(), "total {n} but {} matches", found.matches.len());
            }
        }
        Total::Exactly(n) => check!(total == Some(n), "expected total {n}, got {:?}", found.first["total"]),
        Total::Absent => check!(total.is_none(), "expected no total, got {}", found.first["total"]),
    }
    if let Some(count) = query_value(row.request, "_count").and_then(|c| c.parse::<usize>().ok()) {
        check!(
            found.page_sizes.iter().all(|n| *n <= count),
            "_count={count} but pages held {:?} matches",
            found.page_sizes
        );
    }
    Ok(())
}

/// Sends a table request: `METHOD path?query`, the query of a POST going in a form body.
async fn send(ctx: &Ctx, request: &str, strict: bool) -> Result<Reply, CaseFailure> {
    let (method, target) = request.split_once(' ').unwrap_or(("GET", request));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs: Vec<(&str, &str)> =
        query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    let encoded = fhir::query(&pairs);
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|_| CaseFailure::new(format!("bad method in {request}")))?;
    let url = if path.is_empty() { ctx.base().to_string() } else { ctx.url(path) };
    let mut req = if method == Method::POST {
        ctx.request(method, &url).body("application/x-www-form-urlencoded", encoded.into_bytes())
    } else if encoded.is_empty() {
        ctx.request(method, &url)
    } else {
        ctx.request(method, &format!("{url}?{encoded}"))
    };
    if strict {
        req = req.prefer("handling=strict");
    }
    req.send().await
}

/// The first value of parameter `name` in a table request.
fn query_value<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    let query = request.split_once('?')?.1;
    query.split('&').find_map(|p| p.split_once('=').filter(|(n, _)| *n == name).map(|(_, v)| v))
}

/// Reads a searchset reply and follows its `next` links to the end.
async fn collect(ctx: &Ctx, first: Reply) -> Result<Found, CaseFailure> {
    let mut found = Found { matches: Vec::new(), included: Vec::new(), first: Value::Null, page_sizes: Vec::new() };
    let mut reply = first;
    let mut seen = std::collections::HashSet::new();
    loop {
        let page = reply.expect(200)?.resource("Bundle")?;
        check!(page["type"] == "searchset", "{}", reply.failure(format!("Bundle.type is {}", page["type"])));
        let mut on_page = 0;
        for entry in fhir::entries(&page) {
            let reference = format!(
                "{}/{}",
                entry["resource"]["resourceType"].as_str().unwrap_or("<no type>"),
                entry["resource"]["id"].as_str().unwrap_or("<no id>")
            );
            match entry["search"]["mode"].as_str() {
                Some("match") => {
                    on_page += 1;
                    found.matches.push(reference);
                }
                Some("include") => found.included.push(reference),
                Some("outcome") => {}
                other => return Err(reply.failure(format!("entry {reference} has search.mode {other:?}"))),
            }
        }
        found.page_sizes.push(on_page);
        let next = fhir::link(&page, "next").map(str::to_string);
        if found.first.is_null() {
            found.first = page;
        }
        let Some(next) = next else { return Ok(found) };
        check!(seen.insert(next.clone()), "next link loops back to {next}");
        check!(seen.len() < MAX_PAGES, "more than {MAX_PAGES} pages");
        reply = ctx.get(&next).send().await?;
    }
}

/// Compares found `Type/id`s (any order) with the expected set, naming repeats, misses and
/// extras.
fn compare(found: &[String], expected: &[&str], what: &str) -> CaseResult {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in found {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let repeated: Vec<&str> = counts.iter().filter(|(_, n)| **n > 1).map(|(r, _)| *r).collect();
    let missing: Vec<&str> = expected.iter().copied().filter(|r| !counts.contains_key(r)).collect();
    let extra: Vec<&str> = counts.keys().copied().filter(|r| !expected.contains(r)).collect();
    check!(
        repeated.is_empty() && missing.is_empty() && extra.is_empty(),
        "{what}: expected {} {expected:?}, got {} (missing {missing:?}, unexpected {extra:?}, repeated {repeated:?})",
        expected.len(),
        found.len()
    );
    Ok(())
}

/// `_count=3` over the 7 female Patients: at least three pages, none above 3, every match once.
async fn paging_splits_into_pages(ctx: &Ctx) -> CaseResult {
    let reply = send(ctx, "GET Patient?gender=female&_count=3", false).await?;
    let found = collect(ctx, reply).await?;
    check!(found.page_sizes.len() >= 3, "7 matches at _count=3 came in pages {:?}", found.page_sizes);
    compare(&found.matches, table::FEMALE_PATIENTS, "matches")
}

/// One resource of a search that must find exactly it.
async fn only_resource(ctx: &Ctx, request: &str) -> Result<Value, CaseFailure> {
    let reply = send(ctx, request, false).await?;
    let bundle = reply.expect(200)?.resource("Bundle")?;
    let entries = fhir::entries(&bundle);
    check!(entries.len() == 1, "{}", reply.failure(format!("expected 1 entry, got {}", entries.len())));
    Ok(entries[0]["resource"].clone())
}

fn top_level_keys(resource: &Value) -> Vec<String> {
    resource.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn is_subsetted(resource: &Value) -> bool {
    resource["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == "SUBSETTED"))
}

/// Keys of `resource` outside `allowed` plus the ones every resource keeps.
fn keys_outside(resource: &Value, allowed: &[&str]) -> Vec<String> {
    top_level_keys(resource)
        .into_iter()
        .filter(|k| !allowed.contains(&k.as_str()) && !["resourceType", "id", "meta"].contains(&k.as_str()))
        .collect()
}

async fn elements_returns_only_those_elements(ctx: &Ctx) -> CaseResult {
    let patient = only_resource(ctx, "GET Patient?_id=example&_elements=name,gender").await?;
    let extra = keys_outside(&patient, &["name", "gender"]);
    check!(extra.is_empty(), "Patient/example with _elements=name,gender also has {extra:?}");
    check!(patient["name"].is_array() && patient["gender"] == "male", "name or gender missing: {patient}");
    check!(is_subsetted(&patient), "no SUBSETTED tag in meta: {}", patient["meta"]);
    let observation = only_resource(ctx, "GET Observation?_id=f001&_elements=status,code").await?;
    let extra = keys_outside(&observation, &["status", "code"]);
    check!(extra.is_empty(), "Observation/f001 with _elements=status,code also has {extra:?}");
    check!(observation["code"]["coding"][0]["code"] == "15074-8", "code missing: {observation}");
    check!(is_subsetted(&observation), "no SUBSETTED tag in meta: {}", observation["meta"]);
    Ok(())
}

async fn summary_true_keeps_summary_elements(ctx: &Ctx) -> CaseResult {
    let patient = only_resource(ctx, "GET Patient?_id=example&_summary=true").await?;
    // Patient.contact, .maritalStatus and DomainResource.text are not summary elements.
    for absent in ["contact", "text", "maritalStatus"] {
        check!(patient.get(absent).is_none(), "_summary=true kept {absent}");
    }
    for present in ["name", "gender", "birthDate", "identifier"] {
        check!(patient.get(present).is_some(), "_summary=true dropped {present}");
    }
    check!(is_subsetted(&patient), "no SUBSETTED tag in meta: {}", patient["meta"]);
    Ok(())
}

async fn summary_text_keeps_text_only(ctx: &Ctx) -> CaseResult {
    let patient = only_resource(ctx, "GET Patient?_id=example&_summary=text").await?;
    let extra = keys_outside(&patient, &["text"]);
    check!(extra.is_empty(), "_summary=text kept {extra:?}");
    check!(patient["text"]["div"].is_string(), "_summary=text dropped the narrative");
    check!(is_subsetted(&patient), "no SUBSETTED tag in meta: {}", patient["meta"]);
    Ok(())
}

async fn summary_data_drops_text(ctx: &Ctx) -> CaseResult {
    let patient = only_resource(ctx, "GET Patient?_id=example&_summary=data").await?;
    check!(patient.get("text").is_none(), "_summary=data kept the narrative");
    check!(patient.get("contact").is_some(), "_summary=data dropped contact");
    check!(is_subsetted(&patient), "no SUBSETTED tag in meta: {}", patient["meta"]);
    Ok(())
}

async fn summary_count_has_no_entries(ctx: &Ctx) -> CaseResult {
    let reply = send(ctx, "GET Observation?code=http://loinc.org|85354-9&_summary=count", false).await?;
    let bundle = reply.expect(200)?.resource("Bundle")?;
    check!(bundle["total"] == 3, "{}", reply.failure("expected total 3"));
    check!(fhir::entries(&bundle).is_empty(), "{}", reply.failure("_summary=count returned entries"));
    Ok(())
}

async fn self_link_lists_applied_parameters_only(ctx: &Ctx) -> CaseResult {
    let reply = send(ctx, "GET Patient?family=donald&unknownparam=1", false).await?;
    let bundle = reply.expect(200)?.resource("Bundle")?;
    let ids = fhir::match_ids(fhir::entries(&bundle));
    fhir::compare_ids(&ids, &["pat1", "pat2"]).map_err(|e| e.context(reply.request_line()))?;
    let self_link = fhir::link(&bundle, "self").ok_or_else(|| reply.failure("no self link"))?;
    check!(!self_link.contains("unknownparam"), "self link {self_link} keeps the ignored parameter");
    check!(self_link.contains("family"), "self link {self_link} lost the applied parameter family");
    Ok(())
}
