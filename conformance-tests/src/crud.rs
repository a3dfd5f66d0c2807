//! Create, read, vread, update and delete of single resources (R4 http.html §3.1.0.2–3.1.0.7).

use crate::fhir::{self, new_id, Scope};
use crate::{CaseResult, Ctx};

pub async fn create_returns_201_with_location_and_etag(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let reply = ctx.post("Patient").json(&scope.patient("1")).send().await?;
    let created = reply.expect(201)?.resource("Patient")?;
    let id = fhir::id_of(&created).map_err(|e| e.context(reply.request_line()))?;
    let expected_location = format!("{}/Patient/{id}/_history/1", ctx.base());
    check!(
        reply.header("location") == Some(expected_location.as_str()),
        "{}: expected Location {expected_location}, got {:?}",
        reply.request_line(),
        reply.header("location")
    );
    check!(reply.header("etag") == Some("W/\"1\""), "expected ETag W/\"1\", got {:?}", reply.header("etag"));
    check!(reply.header("last-modified").is_some_and(|v| !v.is_empty()), "no Last-Modified header");
    check!(fhir::version_of(&created) == Some("1"), "expected meta.versionId \"1\", got {}", created["meta"]);
    check!(created["meta"]["lastUpdated"].is_string(), "no meta.lastUpdated in {}", fhir::excerpt(&created));
    reply.expect_content_type("fhir+json")
}

pub async fn create_prefer_return_minimal_has_empty_body(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let reply = ctx.post("Patient").prefer("return=minimal").json(&scope.patient("1")).send().await?;
    reply.expect(201)?;
    check!(reply.body.iter().all(u8::is_ascii_whitespace), "{}", reply.failure("expected an empty body"));
    check!(reply.header("location").is_some(), "{}", reply.failure("no Location header"));
    Ok(())
}

pub async fn create_prefer_return_operation_outcome(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let reply = ctx.post("Patient").prefer("return=OperationOutcome").json(&scope.patient("1")).send().await?;
    reply.expect(201)?.resource("OperationOutcome")?;
    Ok(())
}

pub async fn read_returns_current_version_with_etag(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let created = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&created)?;
    let reply = ctx.get(&format!("Patient/{id}")).send().await?;
    let read = reply.expect(200)?.resource("Patient")?;
    check!(read["id"] == id, "{}", reply.failure(format!("expected id {id}")));
    check!(reply.etag_version()? == "1", "{}", reply.failure("expected ETag W/\"1\""));
    let expected = fhir::without(&created, &["meta"]);
    if let Some(d) = fhir::first_difference(&expected, &fhir::without(&read, &["meta"])) {
        fail!("read differs from the create response at {d}");
    }
    reply.expect_content_type("fhir+json")
}

pub async fn vread_returns_the_version_asked_for(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let mut patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?.to_string();
    patient["active"] = false.into();
    fhir::update(ctx, &patient).await?;
    for (version, active) in [("1", true), ("2", false)] {
        let reply = ctx.get(&format!("Patient/{id}/_history/{version}")).send().await?;
        let read = reply.expect(200)?.resource("Patient")?;
        check!(
            fhir::version_of(&read) == Some(version),
            "{}",
            reply.failure(format!("expected meta.versionId {version}"))
        );
        check!(read["active"] == active, "{}", reply.failure(format!("expected active {active} in version {version}")));
        check!(reply.etag_version()? == version, "{}", reply.failure(format!("expected ETag W/\"{version}\"")));
    }
    Ok(())
}

pub async fn read_unknown_id_is_404(ctx: &Ctx) -> CaseResult {
    ctx.get(&format!("Patient/{}", new_id())).send().await?.expect_error(404)?;
    Ok(())
}

pub async fn read_unknown_type_is_404(ctx: &Ctx) -> CaseResult {
    ctx.get("Foo/1").send().await?.expect_error(404)?;
    Ok(())
}

pub async fn update_increments_version(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let mut patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?.to_string();
    patient["gender"] = "female".into();
    let reply = ctx.put(&format!("Patient/{id}")).json(&patient).send().await?;
    let updated = reply.expect(200)?.resource("Patient")?;
    check!(fhir::version_of(&updated) == Some("2"), "{}", reply.failure("expected meta.versionId 2"));
    check!(reply.etag_version()? == "2", "{}", reply.failure("expected ETag W/\"2\""));
    let read = fhir::read(ctx, "Patient", &id).await?;
    check!(read["gender"] == "female", "read after update still has gender {}", read["gender"]);
    Ok(())
}

pub async fn update_as_create_is_201(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let id = new_id();
    let mut patient = scope.patient("1");
    patient["id"] = id.clone().into();
    let reply = ctx.put(&format!("Patient/{id}")).json(&patient).send().await?;
    let created = reply.expect(201)?.resource("Patient")?;
    check!(created["id"] == id.as_str(), "{}", reply.failure(format!("expected id {id}")));
    check!(fhir::version_of(&created) == Some("1"), "{}", reply.failure("expected meta.versionId 1"));
    fhir::read(ctx, "Patient", &id).await?;
    Ok(())
}

pub async fn update_with_mismatched_id_is_400(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let created = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&created)?;
    let mut patient = created.clone();
    patient["id"] = new_id().into();
    ctx.put(&format!("Patient/{id}")).json(&patient).send().await?.expect_error(400)?;
    Ok(())
}

pub async fn update_with_stale_if_match_is_412(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?;
    fhir::update(ctx, &patient).await?;
    let reply = ctx.put(&format!("Patient/{id}")).if_match("W/\"1\"").json(&patient).send().await?;
    reply.expect_error(412)?;
    let read = fhir::read(ctx, "Patient", id).await?;
    check!(fhir::version_of(&read) == Some("2"), "a rejected update changed the version to {}", read["meta"]);
    Ok(())
}

pub async fn update_with_current_if_match_is_200(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?;
    fhir::update(ctx, &patient).await?;
    let reply = ctx.put(&format!("Patient/{id}")).if_match("W/\"2\"").json(&patient).send().await?;
    let updated = reply.expect(200)?.resource("Patient")?;
    check!(fhir::version_of(&updated) == Some("3"), "{}", reply.failure("expected meta.versionId 3"));
    Ok(())
}

pub async fn delete_then_read_is_410(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?;
    ctx.delete(&format!("Patient/{id}")).send().await?.expect_any(&[200, 204])?;
    ctx.get(&format!("Patient/{id}")).send().await?.expect_error(410)?;
    Ok(())
}

/// A DELETE whose response cannot be produced (406) must be refused before anything changes.
pub async fn delete_with_unacceptable_format_deletes_nothing(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?;
    ctx.delete(&format!("Patient/{id}")).accept("text/csv").send().await?.expect_error(406)?;
    ctx.get(&format!("Patient/{id}")).send().await?.expect(200)?;
    Ok(())
}

pub async fn delete_keeps_history(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("crud");
    let patient = fhir::create(ctx, &scope.patient("1")).await?;
    let id = fhir::id_of(&patient)?;
    ctx.delete(&format!("Patient/{id}")).send().await?.expect_any(&[200, 204])?;
    let reply = ctx.get(&format!("Patient/{id}/_history/1")).send().await?;
    reply.expect(200)?.resource("Patient")?;
    let reply = ctx.get(&format!("Patient/{id}/_history")).send().await?;
    let history = reply.expect(200)?.resource("Bundle")?;
    let entries = fhir::entries(&history);
    check!(entries.len() == 2, "{}", reply.failure(format!("expected 2 history entries, got {}", entries.len())));
    let newest = &entries[0];
    check!(
        newest["request"]["method"] == "DELETE",
        "{}",
        reply.failure(format!("expected the newest entry to be the DELETE, got request {}", newest["request"]))
    );
    check!(newest["resource"].is_null(), "{}", reply.failure("the DELETE history entry carries a resource"));
    Ok(())
}
