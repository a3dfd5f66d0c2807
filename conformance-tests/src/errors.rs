//! HTTP-level errors: methods the server does not allow, oversized bodies, version conflicts,
//! and the rule that every error body is an OperationOutcome.

use serde_json::json;

use crate::ctx::FHIR_JSON;
use crate::fhir::{self, new_id, Scope};
use crate::{CaseResult, Ctx};

/// Larger than the default 16 MiB request limit.
const OVERSIZED_BODY_BYTES: usize = 17 * 1024 * 1024;

pub async fn unsupported_method_is_405(ctx: &Ctx) -> CaseResult {
    ctx.delete("metadata").send().await?.expect_error(405)?;
    Ok(())
}

pub async fn body_over_limit_is_413(ctx: &Ctx) -> CaseResult {
    let mut patient = Scope::new("errors").patient("1");
    patient["name"][0]["family"] = "A".repeat(OVERSIZED_BODY_BYTES).into();
    ctx.post("Patient").json(&patient).send().await?.expect_error(413)?;
    Ok(())
}

pub async fn version_conflict_is_409_or_412(ctx: &Ctx) -> CaseResult {
    let patient = fhir::create(ctx, &Scope::new("errors").patient("1")).await?;
    let id = fhir::id_of(&patient)?;
    fhir::update(ctx, &patient).await?;
    let reply = ctx.put(&format!("Patient/{id}")).if_match("W/\"1\"").json(&patient).send().await?;
    reply.expect_any(&[409, 412])?.outcome()?;
    Ok(())
}

pub async fn error_bodies_are_operation_outcomes(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("errors");
    let patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?.to_string();
    let deleted = fhir::create(ctx, &scope.patient("2")).await?;
    let deleted_id = fhir::id_of(&deleted)?;
    ctx.delete(&format!("Patient/{deleted_id}")).send().await?.expect_any(&[200, 204])?;
    let implausible = fhir::heart_rate(&format!("Patient/{id}"), 350);

    let attempts = [
        (404, ctx.get(&format!("Patient/{}", new_id())).send().await?),
        (404, ctx.get("Foo/1").send().await?),
        (410, ctx.get(&format!("Patient/{deleted_id}")).send().await?),
        (400, ctx.post("Patient").body(FHIR_JSON, "{").send().await?),
        (400, ctx.post("Patient").json(&json!({"resourceType": "Patient", "foo": 1})).send().await?),
        (400, ctx.get("Patient?birthdate=notadate").send().await?),
        (405, ctx.delete("metadata").send().await?),
        (412, ctx.put(&format!("Patient/{id}")).if_match("W/\"9\"").json(&patient).send().await?),
        (415, ctx.post("Patient").body("text/plain", "hello").send().await?),
        (422, ctx.post("Observation").json(&implausible).send().await?),
    ];
    let mut problems = Vec::new();
    for (status, reply) in &attempts {
        if let Err(e) = reply.expect_error(*status) {
            problems.push(e.to_string());
        }
    }
    check!(
        problems.is_empty(),
        "{} of {} error replies were wrong:\n{}",
        problems.len(),
        attempts.len(),
        problems.join("\n")
    );
    Ok(())
}
