//! Validation on write: structurally invalid resources are 400, valid resources that break a
//! vital-sign rule are 422 with an OperationOutcome that names the offending element.

use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::fhir::{self, Scope};
use crate::{CaseFailure, CaseResult, Ctx};

/// A Patient to be the subject, so that no server rejects the Observations for a dangling
/// reference.
async fn subject(ctx: &Ctx) -> Result<String, CaseFailure> {
    let patient = fhir::create(ctx, &Scope::new("validation").patient("1")).await?;
    fhir::reference_to(&patient)
}

fn blood_pressure(subject: &str, systolic: u32, diastolic: u32) -> Value {
    let component = |code: &str, display: &str, value: u32| {
        json!({
            "code": { "coding": [{ "system": "http://loinc.org", "code": code, "display": display }] },
            "valueQuantity": { "value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]" }
        })
    };
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{ "coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"
        }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel" }] },
        "subject": { "reference": subject },
        "effectiveDateTime": "2021-03-04T10:00:00Z",
        "component": [
            component("8480-6", "Systolic blood pressure", systolic),
            component("8462-4", "Diastolic blood pressure", diastolic)
        ]
    })
}

/// Every `expression` of every issue, for messages and checks.
fn expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .flat_map(|issue| issue["expression"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect()
}

pub async fn heart_rate_out_of_range_is_422(ctx: &Ctx) -> CaseResult {
    let subject = subject(ctx).await?;
    let reply = ctx.post("Observation").json(&fhir::heart_rate(&subject, 350)).send().await?;
    let outcome = reply.expect_error(422)?;
    let found = expressions(&outcome);
    check!(
        found.iter().any(|e| e.contains("valueQuantity")),
        "{}",
        reply.failure(format!("expected an issue expression naming valueQuantity, got {found:?}"))
    );
    Ok(())
}

pub async fn blood_pressure_systolic_not_above_diastolic_is_422(ctx: &Ctx) -> CaseResult {
    let subject = subject(ctx).await?;
    let reply = ctx.post("Observation").json(&blood_pressure(&subject, 80, 90)).send().await?;
    reply.expect_error(422)?;
    let reply = ctx.post("Observation").json(&blood_pressure(&subject, 85, 85)).send().await?;
    reply.expect_error(422)?;
    let reply = ctx.post("Observation").json(&blood_pressure(&subject, 120, 80)).send().await?;
    reply.expect(201)?;
    Ok(())
}

pub async fn future_effective_time_is_422(ctx: &Ctx) -> CaseResult {
    let subject = subject(ctx).await?;
    let mut observation = fhir::heart_rate(&subject, 72);
    let next_month = OffsetDateTime::now_utc() + Duration::days(30);
    observation["effectiveDateTime"] =
        fhir::format_instant(next_month.replace_nanosecond(0).unwrap_or(next_month)).into();
    ctx.post("Observation").json(&observation).send().await?.expect_error(422)?;
    Ok(())
}

pub async fn unknown_element_is_400(ctx: &Ctx) -> CaseResult {
    let subject = subject(ctx).await?;
    let mut observation = fhir::heart_rate(&subject, 72);
    observation["foo"] = 1.into();
    ctx.post("Observation").json(&observation).send().await?.expect_error(400)?;
    Ok(())
}

pub async fn valid_observation_is_201(ctx: &Ctx) -> CaseResult {
    let subject = subject(ctx).await?;
    let created = fhir::create(ctx, &fhir::heart_rate(&subject, 72)).await?;
    let read = fhir::read(ctx, "Observation", fhir::id_of(&created)?).await?;
    check!(read["valueQuantity"]["value"] == 72, "stored heart rate is {}", read["valueQuantity"]);
    Ok(())
}
