//! `GET /fhir/metadata`: a CapabilityStatement built from what the server really implements
//! (the resource types of the schema, the registered interactions, the search registry).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::sync::OnceLock;

use fhir_model::{parameters_of, resource_types, search_parameters, unsupported_reason, ParamType, SearchParamDef};
use serde_json::{json, Value};

use crate::fhir_http::{negotiate, render_value, respond};

pub async fn handle(req: HttpRequest) -> HttpResponse {
    let result = negotiate(&req).and_then(|neg| render_value(StatusCode::OK, &neg, &capability_statement(&crate::fhir_http::base_url(&req))));
    respond(&req, result)
}

/// What the CapabilityStatement says about searching one resource type: the parameters that
/// work (exactly those: `unsupported_reason` is None), and the `_include` / `_revinclude`
/// values it accepts.
struct SearchCapability {
    params: Vec<Value>,
    includes: Vec<String>,
    revincludes: Vec<String>,
}

fn param_json(p: &SearchParamDef) -> Value {
    let mut param = json!({"name": p.name, "type": p.kind.code(), "documentation": p.documentation});
    if !p.url.is_empty() {
        param["definition"] = json!(p.url);
    }
    param
}

fn working(p: &&'static SearchParamDef) -> bool {
    unsupported_reason(p).is_none()
}

/// Per resource type, computed once: the registry is static.
fn search_capability(resource_type: &str) -> &'static SearchCapability {
    static ALL: OnceLock<HashMap<String, SearchCapability>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let mut all: HashMap<String, SearchCapability> = resource_types()
            .iter()
            .map(|t| {
                let own: Vec<&'static SearchParamDef> = parameters_of(t).filter(working).collect();
                let mut includes = vec!["*".to_string()];
                includes.extend(own.iter().filter(|p| p.kind == ParamType::Reference).map(|p| format!("{t}:{}", p.name)));
                let capability = SearchCapability { params: own.iter().map(|p| param_json(p)).collect(), includes, revincludes: Vec::new() };
                (t.to_string(), capability)
            })
            .collect();
        // A reference parameter of `source` that may point at `target` is a `_revinclude` of
        // `target`.
        for source in resource_types() {
            for p in parameters_of(source).filter(working).filter(|p| p.kind == ParamType::Reference) {
                for target in p.targets {
                    if let Some(c) = all.get_mut(*target) {
                        c.revincludes.push(format!("{source}:{}", p.name));
                    }
                }
            }
        }
        all
    });
    all.get(resource_type).expect("every R4 resource type has an entry")
}

/// The common parameters a system-level search accepts.
fn system_params() -> Vec<Value> {
    search_parameters().iter().filter(|p| p.resource_type == "Resource").filter(working).map(param_json).collect()
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
                "searchInclude": search_capability(t).includes,
                "searchRevInclude": search_capability(t).revincludes,
                "searchParam": search_capability(t).params,
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
            "searchParam": system_params(),
        }]
    })
}
