//! Search (R4 search.html) on Patient and Observation: each parameter type with its modifiers
//! and prefixes, AND/OR combinations, paging and the searchset Bundle. Every search is
//! restricted to the case's own identifier system or patients, so other data cannot match.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fhir::{self, expect_search, Scope};
use crate::{CaseFailure, CaseResult, Ctx};

/// A Patient in `scope` with the given demographics.
fn person(scope: &Scope, value: &str, family: &str, given: &str, gender: &str, birth_date: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": scope.identifier(value),
        "name": [{ "family": family, "given": [given] }],
        "gender": gender,
        "birthDate": birth_date
    })
}

/// Creates each resource and returns the assigned ids, in order.
async fn create_all(ctx: &Ctx, resources: &[Value]) -> Result<Vec<String>, CaseFailure> {
    let mut ids = Vec::new();
    for resource in resources {
        ids.push(fhir::id_of(&fhir::create(ctx, resource).await?)?.to_string());
    }
    Ok(ids)
}

/// Three Patients in one scope: A female born 1974-12-25, B male born 1980-06-15, C female
/// born 1990-01-01; identifier values are `a`, `b`, `c`.
async fn three_patients(ctx: &Ctx) -> Result<(Scope, Vec<String>), CaseFailure> {
    let scope = Scope::new("search");
    let ids = create_all(
        ctx,
        &[
            person(&scope, "a", "Alpha", "Ann", "female", "1974-12-25"),
            person(&scope, "b", "Beta", "Bob", "male", "1980-06-15"),
            person(&scope, "c", "Gamma", "Cat", "female", "1990-01-01"),
        ],
    )
    .await?;
    Ok((scope, ids))
}

/// The observations the Observation cases search, all of their own patient P except O4.
struct Observations {
    patient: String,
    other_patient: String,
    /// O1: LOINC heart rate, vital-signs, final, 2021-03-04T10:00:00Z.
    /// O2: LOINC body temperature, vital-signs, preliminary, 2022-06-15T12:00:00+02:00.
    /// O3: 8867-4 in another system, laboratory, amended, 2023-09-01.
    /// O4: like O1, of the other patient.
    ids: Vec<String>,
}

impl Observations {
    fn id(&self, n: usize) -> &str {
        &self.ids[n - 1]
    }
}

async fn observations(ctx: &Ctx) -> Result<Observations, CaseFailure> {
    let scope = Scope::new("search");
    let patient = fhir::reference_to(&fhir::create(ctx, &scope.patient("p")).await?)?;
    let other = fhir::reference_to(&fhir::create(ctx, &scope.patient("q")).await?)?;
    let vital_signs = json!([{ "coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"
    }] }]);
    let o1 = fhir::heart_rate(&patient, 72);
    let o2 = json!({
        "resourceType": "Observation",
        "status": "preliminary",
        "category": vital_signs,
        "code": { "coding": [{ "system": "http://loinc.org", "code": "8310-5", "display": "Body temperature" }] },
        "subject": { "reference": patient },
        "effectiveDateTime": "2022-06-15T12:00:00+02:00",
        "valueQuantity": { "value": 37.2, "unit": "C", "system": "http://unitsofmeasure.org", "code": "Cel" }
    });
    let o3 = json!({
        "resourceType": "Observation",
        "status": "amended",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"
        }] }],
        "code": { "coding": [{ "system": "https://tessera.test/conformance/codes", "code": "8867-4" }] },
        "subject": { "reference": patient },
        "effectiveDateTime": "2023-09-01",
        "valueString": "not a LOINC heart rate"
    });
    let o4 = fhir::heart_rate(&other, 72);
    let ids = create_all(ctx, &[o1, o2, o3, o4]).await?;
    let id = |reference: &str| reference.trim_start_matches("Patient/").to_string();
    Ok(Observations { patient: id(&patient), other_patient: id(&other), ids })
}

pub async fn searchset_has_self_link_and_match_mode(ctx: &Ctx) -> CaseResult {
    let (scope, ids) = three_patients(ctx).await?;
    let url = format!("Patient?{}", fhir::query(&[("identifier", &scope.any())]));
    let reply = ctx.get(&url).send().await?;
    let bundle = reply.expect(200)?.resource("Bundle")?;
    check!(
        bundle["type"] == "searchset",
        "{}",
        reply.failure(format!("expected Bundle.type searchset, got {}", bundle["type"]))
    );
    check!(fhir::link(&bundle, "self").is_some(), "{}", reply.failure("no self link"));
    let entries = fhir::entries(&bundle);
    check!(
        entries.len() == ids.len(),
        "{}",
        reply.failure(format!("expected {} entries, got {}", ids.len(), entries.len()))
    );
    for entry in entries {
        check!(
            entry["search"]["mode"] == "match",
            "{}",
            reply.failure(format!("entry without search.mode match: {}", fhir::excerpt(entry)))
        );
        let id = entry["resource"]["id"].as_str().unwrap_or_default();
        let full_url = entry["fullUrl"].as_str().unwrap_or_default();
        check!(
            !id.is_empty() && full_url.ends_with(&format!("Patient/{id}")),
            "{}",
            reply.failure(format!("entry fullUrl {full_url:?} does not end with Patient/{id}"))
        );
    }
    Ok(())
}

pub async fn patient_by_id(ctx: &Ctx) -> CaseResult {
    let (_, ids) = three_patients(ctx).await?;
    expect_search(ctx, "Patient", &[("_id", &ids[0])], &[&ids[0]]).await?;
    expect_search(ctx, "Patient", &[("_id", &format!("{},{}", ids[1], ids[2]))], &[&ids[1], &ids[2]]).await?;
    expect_search(ctx, "Patient", &[("_id", &fhir::new_id())], &[]).await
}

pub async fn patient_by_identifier(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("search");
    let a_value = format!("{}-a", scope.tag);
    let ids = create_all(ctx, &[scope.patient(&a_value), scope.patient("b")]).await?;
    expect_search(ctx, "Patient", &[("identifier", &scope.token(&a_value))], &[&ids[0]]).await?;
    expect_search(ctx, "Patient", &[("identifier", &scope.any())], &[&ids[0], &ids[1]]).await?;
    expect_search(ctx, "Patient", &[("identifier", &a_value)], &[&ids[0]]).await?;
    expect_search(ctx, "Patient", &[("identifier", &format!("https://tessera.test/other|{a_value}"))], &[]).await
}

pub async fn patient_by_name_prefix_ignoring_case_and_accents(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("search");
    let tag = &scope.tag;
    let ids = create_all(
        ctx,
        &[
            person(&scope, "a", &format!("Dürer{tag}"), "Zoë", "female", "1971-05-21"),
            person(&scope, "b", &format!("Durand{tag}"), "Bert", "male", "1972-01-01"),
        ],
    )
    .await?;
    let (durer, durand) = (ids[0].as_str(), ids[1].as_str());
    expect_search(ctx, "Patient", &[("name", &format!("durer{tag}"))], &[durer]).await?;
    expect_search(ctx, "Patient", &[("name", &format!("DÜRER{}", &tag[..8]))], &[durer]).await?;
    expect_search(ctx, "Patient", &[("name", &format!("urer{tag}"))], &[]).await?;
    expect_search(ctx, "Patient", &[("name", "dur"), ("identifier", &scope.any())], &[durer, durand]).await?;
    expect_search(ctx, "Patient", &[("name", "zoe"), ("identifier", &scope.any())], &[durer]).await
}

pub async fn patient_by_family_and_given(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("search");
    let tag = &scope.tag;
    let (family, given) = (format!("Family{tag}"), format!("Given{tag}"));
    let ids = create_all(
        ctx,
        &[
            person(&scope, "a", &family, &given, "female", "1971-05-21"),
            person(&scope, "b", &format!("Other{tag}"), &format!("{given}x"), "male", "1972-01-01"),
        ],
    )
    .await?;
    expect_search(ctx, "Patient", &[("family", &family.to_lowercase())], &[&ids[0]]).await?;
    expect_search(ctx, "Patient", &[("given", &given)], &[&ids[0], &ids[1]]).await?;
    expect_search(ctx, "Patient", &[("given", &format!("{given}X"))], &[&ids[1]]).await?;
    expect_search(ctx, "Patient", &[("family", &given)], &[]).await
}

pub async fn patient_by_birthdate_prefixes(ctx: &Ctx) -> CaseResult {
    let (scope, ids) = three_patients(ctx).await?;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let scoped = scope.any();
    for (value, expected) in [
        ("1980-06-15", vec![b]),
        ("eq1980-06-15", vec![b]),
        ("gt1980-06-15", vec![c]),
        ("lt1980-06-15", vec![a]),
        ("ge1980-06-15", vec![b, c]),
        ("le1980-06-15", vec![a, b]),
    ] {
        expect_search(ctx, "Patient", &[("identifier", &scoped), ("birthdate", value)], &expected).await?;
    }
    Ok(())
}

pub async fn patient_by_partial_birthdate(ctx: &Ctx) -> CaseResult {
    let (scope, ids) = three_patients(ctx).await?;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let scoped = scope.any();
    for (value, expected) in [
        ("1974", vec![a]),
        ("1974-12", vec![a]),
        ("1980", vec![b]),
        ("ge1975", vec![b, c]),
        ("lt1980-06", vec![a]),
        ("le1990", vec![a, b, c]),
    ] {
        expect_search(ctx, "Patient", &[("identifier", &scoped), ("birthdate", value)], &expected).await?;
    }
    Ok(())
}

pub async fn patient_by_gender(ctx: &Ctx) -> CaseResult {
    let (scope, ids) = three_patients(ctx).await?;
    let scoped = scope.any();
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("gender", "female")], &[&ids[0], &ids[2]]).await?;
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("gender", "male")], &[&ids[1]]).await?;
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("gender", "other")], &[]).await
}

pub async fn observation_by_subject(ctx: &Ctx) -> CaseResult {
    let obs = observations(ctx).await?;
    let mine = [obs.id(1), obs.id(2), obs.id(3)];
    expect_search(ctx, "Observation", &[("subject", &format!("Patient/{}", obs.patient))], &mine).await?;
    expect_search(ctx, "Observation", &[("subject", &obs.patient)], &mine).await?;
    expect_search(ctx, "Observation", &[("subject", &format!("Patient/{}", obs.other_patient))], &[obs.id(4)]).await
}

pub async fn observation_by_patient(ctx: &Ctx) -> CaseResult {
    let obs = observations(ctx).await?;
    let mine = [obs.id(1), obs.id(2), obs.id(3)];
    expect_search(ctx, "Observation", &[("patient", &format!("Patient/{}", obs.patient))], &mine).await?;
    expect_search(ctx, "Observation", &[("patient", &obs.patient)], &mine).await
}

pub async fn observation_by_code(ctx: &Ctx) -> CaseResult {
    let obs = observations(ctx).await?;
    let subject = format!("Patient/{}", obs.patient);
    for (code, expected) in [
        ("http://loinc.org|8867-4", vec![obs.id(1)]),
        ("8867-4", vec![obs.id(1), obs.id(3)]),
        ("8310-5", vec![obs.id(2)]),
        ("http://loinc.org|8867-4,http://loinc.org|8310-5", vec![obs.id(1), obs.id(2)]),
        ("http://snomed.info/sct|8867-4", vec![]),
    ] {
        expect_search(ctx, "Observation", &[("subject", &subject), ("code", code)], &expected).await?;
    }
    Ok(())
}

pub async fn observation_by_category(ctx: &Ctx) -> CaseResult {
    let obs = observations(ctx).await?;
    let subject = format!("Patient/{}", obs.patient);
    for (category, expected) in [
        ("vital-signs", vec![obs.id(1), obs.id(2)]),
        ("http://terminology.hl7.org/CodeSystem/observation-category|laboratory", vec![obs.id(3)]),
        ("imaging", vec![]),
    ] {
        expect_search(ctx, "Observation", &[("subject", &subject), ("category", category)], &expected).await?;
    }
    Ok(())
}

pub async fn observation_by_date_prefixes(ctx: &Ctx) -> CaseResult {
    let obs = observations(ctx).await?;
    let subject = format!("Patient/{}", obs.patient);
    for (date, expected) in [
        ("2021-03-04", vec![obs.id(1)]),
        ("2021-03", vec![obs.id(1)]),
        ("2022", vec![obs.id(2)]),
        ("ge2022-01-01", vec![obs.id(2), obs.id(3)]),
        ("lt2022", vec![obs.id(1)]),
        ("le2022-06-15", vec![obs.id(1), obs.id(2)]),
        ("gt2022-06-15", vec![obs.id(3)]),
        ("ge2021-03-04T09:00:00Z", vec![obs.id(1), obs.id(2), obs.id(3)]),
        ("lt2021-03-04T11:00:00+02:00", vec![]),
    ] {
        expect_search(ctx, "Observation", &[("subject", &subject), ("date", date)], &expected).await?;
    }
    Ok(())
}

pub async fn observation_by_status(ctx: &Ctx) -> CaseResult {
    let obs = observations(ctx).await?;
    let subject = format!("Patient/{}", obs.patient);
    expect_search(ctx, "Observation", &[("subject", &subject), ("status", "final")], &[obs.id(1)]).await?;
    expect_search(ctx, "Observation", &[("subject", &subject), ("status", "final,amended")], &[obs.id(1), obs.id(3)])
        .await?;
    expect_search(ctx, "Observation", &[("subject", &subject), ("status", "cancelled")], &[]).await
}

pub async fn by_last_updated(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("search");
    let first = fhir::create(ctx, &scope.patient("1")).await?;
    // Far enough apart that no server's timestamp precision can give both the same instant.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = fhir::create(ctx, &scope.patient("2")).await?;
    let (a, b) = (fhir::id_of(&first)?, fhir::id_of(&second)?);
    let stamp = second["meta"]["lastUpdated"]
        .as_str()
        .ok_or_else(|| CaseFailure::new(format!("created Patient/{b} has no meta.lastUpdated")))?;
    let scoped = scope.any();
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("_lastUpdated", &format!("ge{stamp}"))], &[b]).await?;
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("_lastUpdated", &format!("lt{stamp}"))], &[a]).await?;
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("_lastUpdated", "gt2000-01-01")], &[a, b]).await
}

pub async fn and_or_combinations(ctx: &Ctx) -> CaseResult {
    let (scope, ids) = three_patients(ctx).await?;
    let (a, b, c) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    let scoped = scope.any();
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("gender", "female"), ("birthdate", "ge1980")], &[c])
        .await?;
    expect_search(
        ctx,
        "Patient",
        &[("identifier", &scoped), ("gender", "female,male"), ("birthdate", "lt1985")],
        &[a, b],
    )
    .await?;
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("birthdate", "ge1975"), ("birthdate", "le1985")], &[b])
        .await?;
    let either = format!("{},{}", scope.token("a"), scope.token("c"));
    expect_search(ctx, "Patient", &[("identifier", &either)], &[a, c]).await?;
    expect_search(ctx, "Patient", &[("identifier", &scoped), ("name", "alpha,gamma"), ("gender", "female")], &[a, c])
        .await
}

pub async fn paging_returns_every_match_once(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("search");
    let patients: Vec<Value> = (0..7).map(|n| scope.patient(&n.to_string())).collect();
    let ids = create_all(ctx, &patients).await?;
    let pages = fhir::search(ctx, "Patient", &[("identifier", &scope.any()), ("_count", "3")]).await?;
    check!(pages.pages >= 3, "7 matches with _count=3 came in {} page(s)", pages.pages);
    let expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    fhir::compare_ids(&fhir::match_ids(&pages.entries), &expected).map_err(|e| e.context("paged search with _count=3"))
}

pub async fn malformed_date_is_400(ctx: &Ctx) -> CaseResult {
    ctx.get("Patient?birthdate=notadate").send().await?.expect_error(400)?;
    Ok(())
}

pub async fn unknown_parameter_strict_is_400(ctx: &Ctx) -> CaseResult {
    let reply = ctx.get("Patient?unknownparam=1").prefer("handling=strict").send().await?;
    reply.expect_error(400)?;
    Ok(())
}

pub async fn unknown_parameter_lenient_is_ignored(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("search");
    let created = fhir::create(ctx, &scope.patient("1")).await?;
    let url = format!("Patient?{}&unknownparam=1", fhir::query(&[("identifier", &scope.any())]));
    let reply = ctx.get(&url).send().await?;
    let bundle = reply.expect(200)?.resource("Bundle")?;
    let ids = fhir::match_ids(fhir::entries(&bundle));
    fhir::compare_ids(&ids, &[fhir::id_of(&created)?]).map_err(|e| e.context(reply.request_line()))?;
    let self_link = fhir::link(&bundle, "self").ok_or_else(|| reply.failure("no self link"))?;
    check!(
        !self_link.contains("unknownparam"),
        "{}",
        reply.failure(format!("self link {self_link} keeps the ignored parameter"))
    );
    Ok(())
}
