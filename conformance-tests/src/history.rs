//! Instance, type and system history (R4 http.html §3.1.0.10): Bundle shape, newest-first
//! order and `_count` paging that neither repeats nor drops a version.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::fhir::{self, Scope};
use crate::{CaseFailure, CaseResult, Ctx};

pub async fn instance_history_is_newest_first(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("history");
    let mut patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?.to_string();
    for active in [false, true] {
        patient["active"] = active.into();
        fhir::update(ctx, &patient).await?;
    }
    let reply = ctx.get(&format!("Patient/{id}/_history")).send().await?;
    let bundle = reply.expect(200)?.resource("Bundle")?;
    check!(
        bundle["type"] == "history",
        "{}",
        reply.failure(format!("expected Bundle.type history, got {}", bundle["type"]))
    );
    let entries = fhir::entries(&bundle);
    let versions: Vec<&str> = entries.iter().map(|e| fhir::version_of(&e["resource"]).unwrap_or("?")).collect();
    check!(versions == ["3", "2", "1"], "{}", reply.failure(format!("expected versions [3, 2, 1], got {versions:?}")));
    for (entry, (method, status)) in entries.iter().zip([("PUT", "200"), ("PUT", "200"), ("POST", "201")]) {
        check_entry(entry).map_err(|e| e.context(reply.request_line()))?;
        check!(
            entry["request"]["method"] == method
                && entry["response"]["status"].as_str().is_some_and(|s| s.starts_with(status)),
            "{}: expected request.method {method} and response.status {status} in entry {}",
            reply.request_line(),
            fhir::excerpt(entry)
        );
    }
    Ok(())
}

pub async fn instance_history_pages_without_gaps(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("history");
    let mut patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?.to_string();
    for n in 0..6 {
        patient["active"] = (n % 2 == 0).into();
        fhir::update(ctx, &patient).await?;
    }
    let pages = fhir::collect_pages(ctx, &format!("Patient/{id}/_history?_count=3"), "history").await?;
    check!(pages.pages >= 3, "7 versions with _count=3 came in {} page(s)", pages.pages);
    let versions: Vec<&str> = pages.entries.iter().map(|e| fhir::version_of(&e["resource"]).unwrap_or("?")).collect();
    check!(
        versions == ["7", "6", "5", "4", "3", "2", "1"],
        "paged instance history: expected versions 7 down to 1 once each, got {versions:?}"
    );
    pages.entries.iter().try_for_each(check_entry)
}

pub async fn type_history_pages_without_gaps(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("history");
    let mut written = Vec::new();
    let mut since = None;
    for n in 0..3 {
        let created = fhir::create(ctx, &scope.patient(&n.to_string())).await?;
        since.get_or_insert(lower_bound(&created)?);
        written.push(created);
    }
    for patient in written.clone() {
        written.push(fhir::update(ctx, &patient).await?);
    }
    let since = since.unwrap_or_default();
    let url = format!("Patient/_history?{}", fhir::query(&[("_count", "2"), ("_since", &since)]));
    let pages = fhir::collect_pages(ctx, &url, "history").await?;
    check_paged_history(&pages.entries, &written, Some("Patient")).map_err(|e| e.context(format!("GET {url}")))
}

pub async fn system_history_pages_without_gaps(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("history");
    let patient = fhir::create(ctx, &scope.patient("1")).await?;
    let since = lower_bound(&patient)?;
    let observation = fhir::create(ctx, &fhir::heart_rate(&fhir::reference_to(&patient)?, 72)).await?;
    let updated = fhir::update(ctx, &patient).await?;
    let written = [patient, observation, updated];
    let url = format!("_history?{}", fhir::query(&[("_count", "2"), ("_since", &since)]));
    let pages = fhir::collect_pages(ctx, &url, "history").await?;
    check_paged_history(&pages.entries, &written, None).map_err(|e| e.context(format!("GET {url}")))
}

/// A `_since` one second before `resource` was written, so clock rounding cannot exclude it.
fn lower_bound(resource: &Value) -> Result<String, CaseFailure> {
    let last_updated = resource["meta"]["lastUpdated"].as_str().unwrap_or_default();
    let instant = fhir::parse_instant(last_updated)
        .ok_or_else(|| CaseFailure::new(format!("meta.lastUpdated {last_updated:?} is not an instant")))?;
    Ok(fhir::format_instant(instant - Duration::from_secs(1)))
}

/// A history entry carries `request.method`, `request.url`, `response.status` and an ETag or
/// a lastModified.
fn check_entry(entry: &Value) -> CaseResult {
    let request = &entry["request"];
    let response = &entry["response"];
    check!(
        request["method"].is_string() && request["url"].is_string(),
        "history entry without request.method and request.url: {}",
        fhir::excerpt(entry)
    );
    check!(response["status"].is_string(), "history entry without response.status: {}", fhir::excerpt(entry));
    check!(
        response["etag"].is_string() || response["lastModified"].is_string(),
        "history entry without response.etag or response.lastModified: {}",
        fhir::excerpt(entry)
    );
    Ok(())
}

/// The paged entries hold every version in `written` exactly once, no version of anything
/// twice, only `only_type` resources if given, and run newest first.
fn check_paged_history(entries: &[Value], written: &[Value], only_type: Option<&str>) -> CaseResult {
    let mut seen = HashSet::new();
    let mut previous: Option<time::OffsetDateTime> = None;
    for entry in entries {
        check_entry(entry)?;
        let resource = &entry["resource"];
        if let (Some(rt), Some(wanted)) = (resource["resourceType"].as_str(), only_type) {
            check!(rt == wanted, "type history of {wanted} holds a {rt}");
        }
        let key = match (resource["resourceType"].as_str(), resource["id"].as_str(), fhir::version_of(resource)) {
            (Some(t), Some(id), Some(v)) => format!("{t}/{id}/_history/{v}"),
            // A delete carries no resource: its request URL and ETag identify the version.
            _ => format!(
                "{} {}",
                entry["request"]["url"].as_str().unwrap_or_default(),
                entry["response"]["etag"].as_str().unwrap_or_default()
            ),
        };
        check!(seen.insert(key.clone()), "{key} appears twice in the history");
        let stamp = resource["meta"]["lastUpdated"].as_str().or(entry["response"]["lastModified"].as_str());
        if let Some(instant) = stamp.and_then(fhir::parse_instant) {
            if let Some(before) = previous {
                check!(
                    instant <= before,
                    "history is not newest first: {key} ({instant}) follows an entry from {before}"
                );
            }
            previous = Some(instant);
        }
    }
    for resource in written {
        let key = format!(
            "{}/{}/_history/{}",
            fhir::resource_type(resource)?,
            fhir::id_of(resource)?,
            fhir::version_of(resource).unwrap_or("?")
        );
        check!(seen.contains(&key), "{key} is missing from the history ({} entries seen)", entries.len());
    }
    Ok(())
}
