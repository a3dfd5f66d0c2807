//! The search interaction: `GET /fhir/{type}`, `POST /fhir/{type}/_search`, the system-level
//! forms `GET /fhir` and `POST /fhir/_search`, and the searchset Bundle they answer with
//! (matches, `_include`d resources, `_summary`/`_elements` subsetting, `_total`, links).

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use fhir_model::{parse_search, subset_resource, SearchQuery, Summary};
use fhir_store::StoredResource;
use serde_json::{json, Map, Value};

use crate::error::{information_outcome, ApiError};
use crate::fhir_http::{
    base_url, body_value, encode, negotiate, parse_form, query_params, read_body, render_value, respond, strict_handling,
};
use crate::routes::{check_type, new_id, now_instant, AppState};

type State = web::Data<AppState>;

pub(crate) async fn search_type(req: HttpRequest, path: web::Path<String>, state: State) -> HttpResponse {
    let params = query_params(&req);
    let result = run_search(&req, &state, Some(&path.into_inner()), params).await;
    respond(&req, result)
}

pub(crate) async fn search_system(req: HttpRequest, state: State) -> HttpResponse {
    let params = query_params(&req);
    let result = run_search(&req, &state, None, params).await;
    respond(&req, result)
}

pub(crate) async fn search_type_post(req: HttpRequest, path: web::Path<String>, payload: web::Payload, state: State) -> HttpResponse {
    let resource_type = path.into_inner();
    let result = async {
        let params = form_params(&req, payload, &state).await?;
        run_search(&req, &state, Some(&resource_type), params).await
    }
    .await;
    respond(&req, result)
}

pub(crate) async fn search_system_post(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let result = async {
        let params = form_params(&req, payload, &state).await?;
        run_search(&req, &state, None, params).await
    }
    .await;
    respond(&req, result)
}

/// The parameters of a `_search` POST: those of the URL, then those of the form body (the
/// spec allows both, and they combine as if all were in the URL).
async fn form_params(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<Vec<(String, String)>, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(ApiError::UnsupportedMediaType(content_type.to_string()));
    }
    let body = read_body(req, payload, state.max_body).await?;
    let body = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the _search form body is not UTF-8".into()))?;
    let mut params = query_params(req);
    params.extend(parse_form(body));
    Ok(params)
}

async fn run_search(
    req: &HttpRequest,
    state: &AppState,
    resource_type: Option<&str>,
    params: Vec<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    if let Some(t) = resource_type {
        check_type(t)?;
    }
    let neg = negotiate(req)?;
    let query = parse_search(resource_type, &params, strict_handling(req))?;
    let bundle = do_search(state, &base_url(req), &query).await?;
    render_value(StatusCode::OK, &neg, &bundle)
}

/// A searchset Bundle for `query`: the page of matches, then the resources `_include` and
/// `_revinclude` brought in, then an OperationOutcome naming ignored parameters, with `self`
/// (only the parameters applied) and `next` links.
pub(crate) async fn do_search(state: &AppState, base: &str, query: &SearchQuery) -> Result<Value, ApiError> {
    let count_only = query.summary == Some(Summary::Count);
    let page = if count_only {
        // `_summary=count`: the store counts; no page is read.
        let mut counting = query.clone();
        counting.count = 0;
        counting.includes.clear();
        counting.revincludes.clear();
        counting.total = fhir_model::TotalMode::Accurate;
        state.store.search(&counting).await?
    } else {
        state.store.search(query).await?
    };
    let path = match &query.resource_type {
        Some(t) => format!("{base}/{t}"),
        None => base.to_string(),
    };
    let mut links = vec![json!({"relation": "self", "url": link(&path, query, query.cursor.as_deref())})];
    if let (Some(next), false) = (&page.next_cursor, count_only) {
        links.push(json!({"relation": "next", "url": link(&path, query, Some(next))}));
    }
    let mut entries = Vec::new();
    if !count_only {
        entries.reserve(page.resources.len() + page.included.len() + 1);
        for (resource, mode) in page
            .resources
            .iter()
            .map(|r| (r, "match"))
            .chain(page.included.iter().map(|r| (r, "include")))
        {
            entries.push(entry(base, resource, mode, query)?);
        }
    }
    if !query.ignored.is_empty() {
        let message = format!("ignored unknown or unsupported search parameters: {}", query.ignored.join(", "));
        let mut outcome = information_outcome(&message);
        outcome["issue"][0]["severity"] = json!("warning");
        outcome["issue"][0]["code"] = json!("not-supported");
        entries.push(json!({"resource": outcome, "search": {"mode": "outcome"}}));
    }
    let mut bundle = Map::new();
    bundle.insert("resourceType".into(), json!("Bundle"));
    bundle.insert("id".into(), json!(new_id()));
    bundle.insert("meta".into(), json!({"lastUpdated": now_instant()}));
    bundle.insert("type".into(), json!("searchset"));
    if let Some(total) = page.total {
        bundle.insert("total".into(), json!(total));
    }
    bundle.insert("link".into(), json!(links));
    if !entries.is_empty() {
        bundle.insert("entry".into(), json!(entries));
    }
    Ok(Value::Object(bundle))
}

/// One searchset entry, its resource subsetted as `_summary` / `_elements` ask.
fn entry(base: &str, resource: &StoredResource, mode: &str, query: &SearchQuery) -> Result<Value, ApiError> {
    let mut body = body_value(resource)?;
    subset_resource(&resource.resource_type, &mut body, query.summary, &query.elements);
    Ok(json!({
        "fullUrl": format!("{base}/{}/{}", resource.resource_type, resource.id),
        "resource": body,
        "search": {"mode": mode},
    }))
}

/// A link to this search with the applied parameters (and `_count`, which the server always
/// applies), plus the cursor of the page it points to.
fn link(path: &str, query: &SearchQuery, cursor: Option<&str>) -> String {
    let mut applied = query.applied.clone();
    if !query.types.is_empty() && !applied.iter().any(|(k, _)| k == "_type") {
        applied.push(("_type".into(), query.types.join(",")));
    }
    let mut parts: Vec<String> = applied.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect();
    if !applied.iter().any(|(k, _)| k == "_count") {
        parts.push(format!("_count={}", query.count));
    }
    if let Some(c) = cursor {
        parts.push(format!("_cursor={}", encode(c)));
    }
    format!("{path}?{}", parts.join("&"))
}
