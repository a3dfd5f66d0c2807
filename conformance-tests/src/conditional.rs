//! Conditional create (`If-None-Exist`), conditional update and conditional delete
//! (R4 http.html §3.1.0.8, §3.1.0.4.3, §3.1.0.7.1), matched by identifier.

use crate::fhir::{self, Scope};
use crate::{CaseResult, Ctx};

pub async fn create_with_no_match_is_201(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("conditional");
    let condition = format!("identifier={}", scope.token("1"));
    let reply = ctx.post("Patient").header("If-None-Exist", &condition).json(&scope.patient("1")).send().await?;
    let created = reply.expect(201)?.resource("Patient")?;
    fhir::expect_search(ctx, "Patient", &[("identifier", &scope.token("1"))], &[fhir::id_of(&created)?]).await
}

pub async fn create_with_one_match_returns_existing(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("conditional");
    let existing = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&existing)?;
    let condition = format!("identifier={}", scope.token("1"));
    let reply = ctx.post("Patient").header("If-None-Exist", &condition).json(&scope.patient("1")).send().await?;
    let returned = reply.expect(200)?.resource("Patient")?;
    check!(returned["id"] == id, "{}", reply.failure(format!("expected the existing Patient/{id}")));
    fhir::expect_search(ctx, "Patient", &[("identifier", &scope.token("1"))], &[id]).await
}

pub async fn create_with_two_matches_is_412(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("conditional");
    let a = fhir::create(ctx, &scope.patient("1")).await?;
    let b = fhir::create(ctx, &scope.patient("1")).await?;
    let condition = format!("identifier={}", scope.token("1"));
    let reply = ctx.post("Patient").header("If-None-Exist", &condition).json(&scope.patient("1")).send().await?;
    reply.expect_error(412)?;
    let ids = [fhir::id_of(&a)?, fhir::id_of(&b)?];
    fhir::expect_search(ctx, "Patient", &[("identifier", &scope.token("1"))], &ids).await
}

pub async fn update_with_no_match_creates(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("conditional");
    let url = format!("Patient?{}", fhir::query(&[("identifier", &scope.token("1"))]));
    let reply = ctx.put(&url).json(&scope.patient("1")).send().await?;
    let created = reply.expect(201)?.resource("Patient")?;
    check!(fhir::version_of(&created) == Some("1"), "{}", reply.failure("expected meta.versionId 1"));
    fhir::expect_search(ctx, "Patient", &[("identifier", &scope.token("1"))], &[fhir::id_of(&created)?]).await
}

pub async fn update_with_one_match_updates(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("conditional");
    let existing = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&existing)?;
    let mut replacement = scope.patient("1");
    replacement["gender"] = "female".into();
    let url = format!("Patient?{}", fhir::query(&[("identifier", &scope.token("1"))]));
    let reply = ctx.put(&url).json(&replacement).send().await?;
    let updated = reply.expect(200)?.resource("Patient")?;
    check!(updated["id"] == id, "{}", reply.failure(format!("expected Patient/{id} to be updated")));
    check!(fhir::version_of(&updated) == Some("2"), "{}", reply.failure("expected meta.versionId 2"));
    let read = fhir::read(ctx, "Patient", id).await?;
    check!(read["gender"] == "female", "conditional update did not change the stored Patient/{id}");
    fhir::expect_search(ctx, "Patient", &[("identifier", &scope.token("1"))], &[id]).await
}

pub async fn update_with_two_matches_is_412(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("conditional");
    let a = fhir::create(ctx, &scope.patient("1")).await?;
    let b = fhir::create(ctx, &scope.patient("1")).await?;
    let url = format!("Patient?{}", fhir::query(&[("identifier", &scope.token("1"))]));
    ctx.put(&url).json(&scope.patient("1")).send().await?.expect_error(412)?;
    for patient in [&a, &b] {
        let read = fhir::read(ctx, "Patient", fhir::id_of(patient)?).await?;
        check!(
            fhir::version_of(&read) == Some("1"),
            "a rejected conditional update changed {}",
            fhir::reference_to(patient)?
        );
    }
    Ok(())
}

pub async fn delete_removes_the_match(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("conditional");
    let doomed = fhir::create(ctx, &scope.patient("1")).await?;
    let kept = fhir::create(ctx, &scope.patient("2")).await?;
    let url = format!("Patient?{}", fhir::query(&[("identifier", &scope.token("1"))]));
    ctx.delete(&url).send().await?.expect_any(&[200, 204])?;
    ctx.get(&format!("Patient/{}", fhir::id_of(&doomed)?)).send().await?.expect_error(410)?;
    fhir::read(ctx, "Patient", fhir::id_of(&kept)?).await?;
    fhir::expect_search(ctx, "Patient", &[("identifier", &scope.any())], &[fhir::id_of(&kept)?]).await
}
