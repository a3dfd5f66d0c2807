//! Content negotiation (R4 http.html §3.1.0.1.9–3.1.0.1.10): JSON and XML in and out,
//! `_format`, `_pretty`, and the errors for bodies and media types the server cannot take.

use serde_json::{json, Value};

use crate::ctx::{FHIR_JSON, FHIR_XML};
use crate::fhir::{self, Scope};
use crate::{CaseResult, Ctx, Reply};

/// A Patient in FHIR XML and the same Patient in FHIR JSON.
fn xml_patient(scope: &Scope) -> (String, Value) {
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Patient xmlns="http://hl7.org/fhir">
  <identifier>
    <system value="{system}"/>
    <value value="xml-1"/>
  </identifier>
  <active value="true"/>
  <name>
    <family value="Xmlson"/>
    <given value="Tessa"/>
    <given value="Jo"/>
  </name>
  <gender value="female"/>
  <birthDate value="1980-06-15"/>
</Patient>
"#,
        system = scope.system
    );
    let json = json!({
        "resourceType": "Patient",
        "identifier": scope.identifier("xml-1"),
        "active": true,
        "name": [{ "family": "Xmlson", "given": ["Tessa", "Jo"] }],
        "gender": "female",
        "birthDate": "1980-06-15"
    });
    (xml, json)
}

/// Fails unless the reply is FHIR XML whose root is `resource_type` with id `id`.
fn expect_xml_resource(reply: &Reply, resource_type: &str, id: &str) -> CaseResult {
    reply.expect(200)?;
    reply.expect_content_type("xml")?;
    let text = reply.text();
    match fhir::xml_root(&text) {
        Some((root, Some(ns))) if root == resource_type && ns == "http://hl7.org/fhir" => {}
        other => {
            return Err(reply
                .failure(format!("expected a <{resource_type} xmlns=\"http://hl7.org/fhir\"> root, got {other:?}")))
        }
    }
    match fhir::xml_id(&text) {
        Some(found) if found == id => Ok(()),
        other => Err(reply.failure(format!("expected <id value=\"{id}\"/>, got {other:?}"))),
    }
}

async fn create_patient(ctx: &Ctx) -> Result<String, crate::CaseFailure> {
    let created = fhir::create(ctx, &Scope::new("formats").patient("1")).await?;
    Ok(fhir::id_of(&created)?.to_string())
}

pub async fn xml_create_reads_back_as_json(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("formats");
    let (xml, expected) = xml_patient(&scope);
    let reply = ctx.post("Patient").body(FHIR_XML, xml).send().await?;
    let created = reply.expect(201)?.resource("Patient")?;
    let id = fhir::id_of(&created)?;
    let read = fhir::read(ctx, "Patient", id).await?;
    match fhir::first_difference(&expected, &fhir::without(&read, &["id", "meta"])) {
        Some(d) => fail!("Patient/{id} created from XML reads back as different JSON at {d}"),
        None => Ok(()),
    }
}

pub async fn accept_xml_returns_xml(ctx: &Ctx) -> CaseResult {
    let id = create_patient(ctx).await?;
    let reply = ctx.get(&format!("Patient/{id}")).accept(FHIR_XML).send().await?;
    expect_xml_resource(&reply, "Patient", &id)
}

pub async fn format_param_xml_returns_xml(ctx: &Ctx) -> CaseResult {
    let id = create_patient(ctx).await?;
    let reply = ctx.get(&format!("Patient/{id}?_format=xml")).send().await?;
    expect_xml_resource(&reply, "Patient", &id)
}

pub async fn format_param_json_overrides_accept(ctx: &Ctx) -> CaseResult {
    let id = create_patient(ctx).await?;
    let reply = ctx.get(&format!("Patient/{id}?_format=json")).accept(FHIR_XML).send().await?;
    let read = reply.expect(200)?.resource("Patient")?;
    check!(read["id"] == id.as_str(), "{}", reply.failure(format!("expected Patient/{id}")));
    reply.expect_content_type("json")
}

pub async fn plain_json_and_xml_media_types_are_accepted(ctx: &Ctx) -> CaseResult {
    let scope = Scope::new("formats");
    let reply = ctx.post("Patient").body("application/json", scope.patient("1").to_string()).send().await?;
    let created = reply.expect(201)?.resource("Patient")?;
    let id = fhir::id_of(&created)?;
    let reply = ctx.get(&format!("Patient/{id}")).accept("application/json").send().await?;
    reply.expect(200)?.resource("Patient")?;
    reply.expect_content_type("json")?;

    let (xml, _) = xml_patient(&scope);
    let reply = ctx.post("Patient").body("application/xml", xml).send().await?;
    let created = reply.expect(201)?.resource("Patient")?;
    let id = fhir::id_of(&created)?;
    let reply = ctx.get(&format!("Patient/{id}")).accept("application/xml").send().await?;
    expect_xml_resource(&reply, "Patient", id)
}

pub async fn pretty_json_is_indented(ctx: &Ctx) -> CaseResult {
    let id = create_patient(ctx).await?;
    let reply = ctx.get(&format!("Patient/{id}?_pretty=true")).send().await?;
    reply.expect(200)?.resource("Patient")?;
    let text = reply.text();
    check!(
        text.lines().count() > 3 && text.lines().any(|l| l.starts_with("  \"")),
        "{}",
        reply.failure("expected indented JSON, one member per line")
    );
    Ok(())
}

pub async fn unsupported_content_type_is_415(ctx: &Ctx) -> CaseResult {
    let body = Scope::new("formats").patient("1").to_string();
    ctx.post("Patient").body("text/plain", body).send().await?.expect_error(415)?;
    Ok(())
}

pub async fn malformed_json_is_400(ctx: &Ctx) -> CaseResult {
    ctx.post("Patient")
        .body(FHIR_JSON, r#"{"resourceType": "Patient", "active": tru"#)
        .send()
        .await?
        .expect_error(400)?;
    Ok(())
}

pub async fn malformed_xml_is_400(ctx: &Ctx) -> CaseResult {
    let body = r#"<Patient xmlns="http://hl7.org/fhir"><active value="true"/><name><family value="X"/></Patient>"#;
    ctx.post("Patient").body(FHIR_XML, body).send().await?.expect_error(400)?;
    Ok(())
}

pub async fn unproducible_accept_is_406(ctx: &Ctx) -> CaseResult {
    let id = create_patient(ctx).await?;
    let reply = ctx.get(&format!("Patient/{id}")).accept("text/csv").send().await?;
    reply.expect(406)?;
    Ok(())
}
