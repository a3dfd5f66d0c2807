//! `GET /fhir/metadata`: a CapabilityStatement built from what the server really implements
//! (the resource types of the schema, the registered interactions, the search registry).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use fhir_model::{resource_types, search_parameters};
use serde_json::{json, Value};

use crate::fhir_http::{negotiate, render_value, respond};

pub async fn handle(req: HttpRequest) -> HttpResponse {
    let result = negotiate(&req).and_then(|neg| render_value(StatusCode::OK, &neg, &capability_statement(&crate::fhir_http::base_url(&req))));
    respond(&req, result)
}

fn params_for(resource_type: &str) -> Vec<Value> {
    search_parameters()
        .iter()
        .filter(|p| p.resource_type == resource_type || p.resource_type == "Resource")
        .map(|p| json!({"name": p.name, "type": p.kind.code(), "documentation": p.documentation}))
        .collect()
}

pub fn capability_statement(base: &str) -> Value {
    let interactions: Vec<Value> = ["read", "vread", "update", "delete", "history-instance", "history-type", "create", "search-type"]
        .iter()
        .map(|code| json!({"code": code}))
        .collect();
    let resources: Vec<Value> = resource_types()
        .iter()
        .map(|t| {
            json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchParam": params_for(t),
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": crate::routes::now_instant(),
        "publisher": "Tessera",
        "kind": "instance",
        "software": {"name": "Tessera", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Tessera FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml", "json", "xml"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "search-system"}, {"code": "history-system"}],
            "searchParam": params_for("Resource"),
        }]
    })
}
