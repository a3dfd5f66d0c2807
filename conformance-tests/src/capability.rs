//! What the server says about itself: the CapabilityStatement at `metadata` and the health
//! endpoints beside the FHIR base.

use serde_json::Value;

use crate::{CaseResult, Ctx};

/// Search parameters and interactions each resource type must declare.
const REQUIRED: &[(&str, &[&str])] = &[("Patient", &["name", "birthdate"]), ("Observation", &["code", "date"])];
const INTERACTIONS: &[&str] =
    &["read", "vread", "update", "delete", "create", "search-type", "history-instance", "history-type"];

pub async fn metadata_is_a_capability_statement(ctx: &Ctx) -> CaseResult {
    let reply = ctx.get("metadata").send().await?;
    let statement = reply.expect(200)?.resource("CapabilityStatement")?;
    let complain = |what: String| reply.failure(what);
    check!(statement["fhirVersion"] == "4.0.1", "{}", complain(format!("fhirVersion is {}", statement["fhirVersion"])));
    let formats: Vec<&str> = statement["format"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for wanted in ["json", "xml"] {
        check!(
            formats.iter().any(|f| f.contains(wanted)),
            "{}",
            complain(format!("format {formats:?} lacks {wanted}"))
        );
    }
    let resources = statement["rest"][0]["resource"].as_array().cloned().unwrap_or_default();
    for (resource_type, params) in REQUIRED {
        let Some(resource) = resources.iter().find(|r| r["type"] == *resource_type) else {
            fail!("{}", complain(format!("rest[0].resource does not list {resource_type}")));
        };
        let declared: Vec<&str> =
            resource["searchParam"].as_array().into_iter().flatten().filter_map(|p| p["name"].as_str()).collect();
        for param in *params {
            check!(
                declared.contains(param),
                "{}",
                complain(format!("{resource_type} search params {declared:?} lack {param}"))
            );
        }
        let interactions: Vec<&str> =
            resource["interaction"].as_array().into_iter().flatten().filter_map(|i| i["code"].as_str()).collect();
        for interaction in INTERACTIONS {
            check!(
                interactions.contains(interaction),
                "{}",
                complain(format!("{resource_type} interactions {interactions:?} lack {interaction}"))
            );
        }
    }
    Ok(())
}

pub async fn healthz_is_200(ctx: &Ctx) -> CaseResult {
    ctx.get(&format!("{}/healthz", ctx.root())).send().await?.expect(200)?;
    Ok(())
}

pub async fn readyz_is_200(ctx: &Ctx) -> CaseResult {
    ctx.get(&format!("{}/readyz", ctx.root())).send().await?.expect(200)?;
    Ok(())
}
