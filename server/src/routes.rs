//! The FHIR REST routes: one table of (path, method, handler) that both configures actix and
//! feeds the OpenAPI check, and the interactions behind them (shared with bundles).

use std::sync::Arc;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, Route};
use fhir_model::{is_resource_type, parse_search, validate, SearchQuery};
use fhir_store::{
    ChangeKind, HistoryPage, HistoryRequest, HistoryScope, ResourceStore, StoredResource, WriteOp, WriteOutcome,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::error::{information_outcome, ApiError};
use crate::fhir_http::{
    base_url, body_format, body_value, encode, if_match, instant, negotiate, query_params, read_body, render_resource, render_value,
    respond, return_preference, ReturnPreference,
};

/// Shared state of every worker.
pub struct AppState {
    pub store: Arc<dyn ResourceStore>,
    /// The HL7 v2 receive pipeline (MLLP, and replays from the message log).
    pub receiver: Arc<hl7_bridge::Receiver>,
    pub max_body: usize,
    /// The PostgreSQL and time-series projections, when configured.
    pub projections: crate::projections::Projections,
    /// The DICOM archive behind `/dicomweb`.
    pub dicomweb: crate::dicomweb::DicomWeb,
}

impl AppState {
    pub fn new(
        store: Arc<dyn ResourceStore>,
        receiver: Arc<hl7_bridge::Receiver>,
        max_body: usize,
        projections: crate::projections::Projections,
        dicomweb: crate::dicomweb::DicomWeb,
    ) -> Self {
        AppState { store, receiver, max_body, projections, dicomweb }
    }
}

type State = web::Data<AppState>;

/// Every route the server registers, in matching order (literal segments before `{type}`).
pub(crate) fn route_table() -> Vec<(&'static str, Method, Route)> {
    vec![
        ("/healthz", Method::GET, web::get().to(healthz)),
        ("/readyz", Method::GET, web::get().to(readyz)),
        ("/openapi.json", Method::GET, web::get().to(crate::openapi::serve)),
        ("/hl7/messages", Method::GET, web::get().to(crate::hl7::list)),
        ("/hl7/messages/{id}", Method::GET, web::get().to(crate::hl7::show)),
        ("/hl7/messages/{id}/raw", Method::GET, web::get().to(crate::hl7::raw)),
        ("/hl7/messages/{id}/replay", Method::POST, web::post().to(crate::hl7::replay)),
        ("/admin/projections", Method::GET, web::get().to(crate::projections::list)),
        ("/admin/projections/{name}/check", Method::GET, web::get().to(crate::projections::check)),
        ("/admin/projections/{name}/rebuild", Method::POST, web::post().to(crate::projections::rebuild)),
        ("/admin/alerts", Method::GET, web::get().to(crate::projections::alerts)),
        ("/admin/alerts/{id}/acknowledge", Method::POST, web::post().to(crate::projections::acknowledge)),
        ("/dicomweb/studies", Method::GET, web::get().to(crate::dicomweb::search_studies)),
        ("/dicomweb/studies", Method::POST, web::post().to(crate::dicomweb::stow)),
        ("/dicomweb/series", Method::GET, web::get().to(crate::dicomweb::search_series)),
        ("/dicomweb/instances", Method::GET, web::get().to(crate::dicomweb::search_instances)),
        ("/dicomweb/studies/{study}", Method::GET, web::get().to(crate::dicomweb::retrieve_study)),
        ("/dicomweb/studies/{study}", Method::POST, web::post().to(crate::dicomweb::stow_study)),
        ("/dicomweb/studies/{study}/metadata", Method::GET, web::get().to(crate::dicomweb::metadata)),
        ("/dicomweb/studies/{study}/series", Method::GET, web::get().to(crate::dicomweb::search_study_series)),
        ("/dicomweb/studies/{study}/instances", Method::GET, web::get().to(crate::dicomweb::search_study_instances)),
        ("/dicomweb/studies/{study}/series/{series}", Method::GET, web::get().to(crate::dicomweb::retrieve_series)),
        ("/dicomweb/studies/{study}/series/{series}/metadata", Method::GET, web::get().to(crate::dicomweb::metadata)),
        ("/dicomweb/studies/{study}/series/{series}/instances", Method::GET, web::get().to(crate::dicomweb::search_series_instances)),
        ("/dicomweb/studies/{study}/series/{series}/instances/{instance}", Method::GET, web::get().to(crate::dicomweb::retrieve_instance)),
        ("/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata", Method::GET, web::get().to(crate::dicomweb::metadata)),
        (
            "/dicomweb/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tagpath}",
            Method::GET,
            web::get().to(crate::dicomweb::bulkdata),
        ),
        ("/dicomweb/studies/{study}/series/{series}/instances/{instance}/presigned", Method::GET, web::get().to(crate::dicomweb::presigned)),
        ("/dicomweb/studies/{study}/series/{series}/instances/{instance}/restore", Method::POST, web::post().to(crate::dicomweb::restore)),
        ("/fhir", Method::POST, web::post().to(crate::bundle::handle)),
        ("/fhir", Method::GET, web::get().to(crate::search::search_system)),
        ("/fhir/_search", Method::POST, web::post().to(crate::search::search_system_post)),
        ("/fhir/metadata", Method::GET, web::get().to(crate::capability::handle)),
        ("/fhir/_history", Method::GET, web::get().to(history_system)),
        ("/fhir/{type}/_history", Method::GET, web::get().to(history_type)),
        ("/fhir/Observation/$stats", Method::GET, web::get().to(crate::stats::get)),
        ("/fhir/Observation/$stats", Method::POST, web::post().to(crate::stats::post)),
        ("/fhir/{type}/_search", Method::POST, web::post().to(crate::search::search_type_post)),
        ("/fhir/{type}/{id}/_history", Method::GET, web::get().to(history_instance)),
        ("/fhir/{type}/{id}/_history/{vid}", Method::GET, web::get().to(vread)),
        ("/fhir/{type}/{id}", Method::GET, web::get().to(read)),
        ("/fhir/{type}/{id}", Method::PUT, web::put().to(update)),
        ("/fhir/{type}/{id}", Method::DELETE, web::delete().to(delete)),
        ("/fhir/{type}", Method::GET, web::get().to(crate::search::search_type)),
        ("/fhir/{type}", Method::POST, web::post().to(create)),
        ("/fhir/{type}", Method::PUT, web::put().to(conditional_update)),
        ("/fhir/{type}", Method::DELETE, web::delete().to(conditional_delete)),
    ]
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut paths: Vec<(&'static str, Vec<Route>)> = Vec::new();
    for (path, _, route) in route_table() {
        match paths.iter_mut().find(|(p, _)| *p == path) {
            Some((_, routes)) => routes.push(route),
            None => paths.push((path, vec![route])),
        }
    }
    for (path, routes) in paths {
        let mut resource = web::resource(path).default_service(web::to(method_not_allowed));
        for route in routes {
            resource = resource.route(route);
        }
        cfg.service(resource);
    }
    cfg.default_service(web::to(not_found));
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let e = ApiError::MethodNotAllowed { method: req.method().to_string(), path: req.path().to_string() };
    respond(&req, Err(e))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    respond(&req, Err(ApiError::NotFound(format!("no route for {} {}", req.method(), req.path()))))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "up"}))
}

async fn readyz(state: State) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(e) => HttpResponse::ServiceUnavailable().json(json!({"status": "unavailable", "error": e.to_string()})),
    }
}

/// Rejects path segments that name no R4 resource type.
pub(crate) fn check_type(resource_type: &str) -> Result<(), ApiError> {
    if is_resource_type(resource_type) {
        Ok(())
    } else {
        Err(ApiError::Model(fhir_model::ModelError::UnknownResourceType(resource_type.to_string())))
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if fhir_model::is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!("{id:?} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})")))
    }
}

/// Checks that `resource` is of `resource_type` and valid; `url_id` enforces the update rule
/// that the body's id equals the URL's.
pub(crate) fn prepare(resource_type: &str, resource: &mut Value, url_id: Option<&str>) -> Result<(), ApiError> {
    let body_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if body_type != resource_type {
        return Err(ApiError::BadRequest(format!("resourceType {body_type:?} does not match the url type {resource_type}")));
    }
    if let Some(url_id) = url_id {
        match resource.get("id").and_then(Value::as_str) {
            Some(id) if id == url_id => {}
            Some(id) => return Err(ApiError::BadRequest(format!("id {id:?} in the body does not match id {url_id:?} in the url"))),
            None => return Err(ApiError::BadRequest("the resource has no id; an update needs the id of the url in the body".into())),
        }
    }
    validate(resource, OffsetDateTime::now_utc())?;
    Ok(())
}

async fn parse_body(req: &HttpRequest, payload: web::Payload, state: &AppState) -> Result<Value, ApiError> {
    let format = body_format(req)?;
    let body = read_body(req, payload, state.max_body).await?;
    Ok(fhir_model::parse_resource(&body, format)?)
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Parses a conditional URL's query (`identifier=a|b`) strictly: a condition that silently
/// dropped an unknown parameter would match too much.
/// The query part of an If-None-Exist value, which clients send as `identifier=…` or as a
/// whole `Patient?identifier=…` URL.
pub(crate) fn if_none_exist_query(value: &str) -> &str {
    value.rsplit('?').next().unwrap_or(value)
}

pub(crate) fn condition(resource_type: &str, query: &str) -> Result<SearchQuery, ApiError> {
    let params = crate::fhir_http::parse_form(query);
    if params.is_empty() {
        return Err(ApiError::BadRequest("a conditional operation needs search parameters".into()));
    }
    let mut q = parse_search(Some(resource_type), &params, true)?;
    q.count = 2;
    Ok(q)
}

/// The one resource a conditional operation's query matches: None for no match, an error
/// naming `operation` for several (the spec's 412). Two results are enough to tell.
pub(crate) async fn find_one(state: &AppState, query: &SearchQuery, operation: &str) -> Result<Option<StoredResource>, ApiError> {
    let mut found = state.store.search(query).await?.resources;
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(ApiError::PreconditionFailed(format!("{operation} matched more than one {}", query.resource_type.as_deref().unwrap_or("resource")))),
    }
}

pub(crate) async fn do_create(
    state: &AppState,
    resource_type: &str,
    mut resource: Value,
    if_none_exist: Option<SearchQuery>,
) -> Result<(StatusCode, StoredResource), ApiError> {
    prepare(resource_type, &mut resource, None)?;
    let op = WriteOp::Create { resource_type: resource_type.into(), id: new_id(), body: resource, if_none_exist };
    match state.store.write(vec![op]).await?.pop() {
        Some(WriteOutcome::Created(r)) => Ok((StatusCode::CREATED, r)),
        Some(WriteOutcome::Existing(r)) => Ok((StatusCode::OK, r)),
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn do_update(
    state: &AppState,
    resource_type: &str,
    id: &str,
    mut resource: Value,
    expected_version: Option<u64>,
) -> Result<(StatusCode, StoredResource), ApiError> {
    check_id(id)?;
    prepare(resource_type, &mut resource, Some(id))?;
    let op = WriteOp::Update { resource_type: resource_type.into(), id: id.into(), body: resource, expected_version };
    match state.store.write(vec![op]).await.map_err(ApiError::from_if_match)?.pop() {
        Some(WriteOutcome::Created(r)) => Ok((StatusCode::CREATED, r)),
        Some(WriteOutcome::Updated(r)) => Ok((StatusCode::OK, r)),
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn do_conditional_update(
    state: &AppState,
    resource_type: &str,
    query: &str,
    mut resource: Value,
) -> Result<(StatusCode, StoredResource), ApiError> {
    let q = condition(resource_type, query)?;
    match find_one(state, &q, "conditional update").await? {
        None => {
            let id = resource.get("id").and_then(Value::as_str).map(str::to_string).unwrap_or_else(new_id);
            resource["id"] = Value::String(id.clone());
            do_update(state, resource_type, &id, resource, None).await
        }
        Some(one) => {
            if resource.get("id").is_none() {
                resource["id"] = Value::String(one.id.clone());
            }
            // The version seen by the search guards against a concurrent change in between.
            do_update(state, resource_type, &one.id, resource, Some(one.version)).await.map_err(|e| match e {
                ApiError::PreconditionFailed(m) => ApiError::Conflict(m),
                other => other,
            })
        }
    }
}

pub(crate) async fn do_delete(
    state: &AppState,
    resource_type: &str,
    id: &str,
    expected_version: Option<u64>,
) -> Result<Option<StoredResource>, ApiError> {
    check_id(id)?;
    state.store.delete(resource_type, id, expected_version).await.map_err(ApiError::from_if_match)
}

pub(crate) async fn do_conditional_delete(state: &AppState, resource_type: &str, query: &str) -> Result<Option<StoredResource>, ApiError> {
    let q = condition(resource_type, query)?;
    match find_one(state, &q, "conditional delete").await? {
        None => Ok(None),
        Some(one) => do_delete(state, resource_type, &one.id, Some(one.version)).await,
    }
}

pub(crate) async fn do_read(state: &AppState, resource_type: &str, id: &str) -> Result<StoredResource, ApiError> {
    match state.store.read(resource_type, id).await? {
        None => Err(ApiError::NotFound(format!("{resource_type}/{id} is not known"))),
        Some(r) if r.deleted => Err(ApiError::Gone { resource_type: resource_type.into(), id: id.into(), version: r.version }),
        Some(r) => Ok(r),
    }
}

pub(crate) async fn do_vread(state: &AppState, resource_type: &str, id: &str, vid: &str) -> Result<StoredResource, ApiError> {
    let not_found = || ApiError::NotFound(format!("{resource_type}/{id} has no version {vid}"));
    let version: u64 = vid.parse().map_err(|_| not_found())?;
    match state.store.vread(resource_type, id, version).await? {
        None => Err(not_found()),
        Some(r) if r.deleted => Err(ApiError::Gone { resource_type: resource_type.into(), id: id.into(), version }),
        Some(r) => Ok(r),
    }
}

fn unexpected(outcome: Option<WriteOutcome>) -> ApiError {
    ApiError::Store(fhir_store::StoreError::Backend { message: format!("unexpected write outcome {outcome:?}"), source: None })
}


pub(crate) fn now_instant() -> String {
    instant(OffsetDateTime::now_utc())
}

fn history_bundle(base: &str, path: &str, count: usize, page: &HistoryPage, since: Option<&str>) -> Result<Value, ApiError> {
    let link = |cursor: Option<u64>| {
        let mut url = format!("{path}?_count={count}");
        if let Some(s) = since {
            url.push_str(&format!("&_since={}", encode(s)));
        }
        if let Some(c) = cursor {
            url.push_str(&format!("&_cursor={c}"));
        }
        url
    };
    let mut links = vec![json!({"relation": "self", "url": link(None)})];
    if let Some(next) = page.next_cursor {
        links.push(json!({"relation": "next", "url": link(Some(next))}));
    }
    let mut entries = Vec::with_capacity(page.entries.len());
    for e in &page.entries {
        let r = &e.resource;
        let (method, url, status) = match e.kind {
            ChangeKind::Create => ("POST", r.resource_type.clone(), "201 Created"),
            ChangeKind::Update => ("PUT", format!("{}/{}", r.resource_type, r.id), "200 OK"),
            ChangeKind::Delete => ("DELETE", format!("{}/{}", r.resource_type, r.id), "204 No Content"),
        };
        let mut entry = json!({
            "fullUrl": format!("{base}/{}/{}", r.resource_type, r.id),
            "request": {"method": method, "url": url},
            "response": {
                "status": status,
                "etag": crate::fhir_http::etag(r.version),
                "lastModified": instant(r.last_updated),
            },
        });
        if !r.deleted {
            entry["resource"] = body_value(r)?;
        }
        entries.push(entry);
    }
    Ok(json!({
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": "history",
        "total": page.total,
        "link": links,
        "entry": entries,
    }))
}


pub(crate) async fn do_history(
    state: &AppState,
    base: &str,
    scope: HistoryScope,
    params: &[(String, String)],
) -> Result<Value, ApiError> {
    let mut count = fhir_model::DEFAULT_PAGE_SIZE;
    let mut since = None;
    let mut since_text = None;
    let mut before_seq = None;
    for (k, v) in params {
        match k.as_str() {
            "_count" => {
                count = v.parse::<usize>().map_err(|_| ApiError::BadRequest(format!("_count {v:?} is not a number")))?;
                count = count.clamp(1, fhir_model::MAX_PAGE_SIZE);
            }
            "_since" => {
                let t = OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| ApiError::BadRequest(format!("_since {v:?} is not an instant")))?;
                since = Some(t);
                since_text = Some(v.clone());
            }
            "_cursor" => {
                before_seq = Some(v.parse::<u64>().map_err(|_| ApiError::BadRequest(format!("invalid history cursor {v:?}")))?);
            }
            _ => {}
        }
    }
    let path = match &scope {
        HistoryScope::Instance { resource_type, id } => format!("{base}/{resource_type}/{id}/_history"),
        HistoryScope::Type(t) => format!("{base}/{t}/_history"),
        HistoryScope::System => format!("{base}/_history"),
    };
    let page = state.store.history(&HistoryRequest { scope, since, count, before_seq }).await?;
    history_bundle(base, &path, count, &page, since_text.as_deref())
}

// ---- HTTP handlers: each parses the request, runs one interaction and renders it. ----

async fn create(req: HttpRequest, path: web::Path<String>, payload: web::Payload, state: State) -> HttpResponse {
    let resource_type = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        let neg = negotiate(&req)?;
        let resource = parse_body(&req, payload, &state).await?;
        let if_none_exist = match req.headers().get("if-none-exist").and_then(|v| v.to_str().ok()) {
            Some(q) => Some(condition(&resource_type, if_none_exist_query(q))?),
            None => None,
        };
        let (status, stored) = do_create(&state, &resource_type, resource, if_none_exist).await?;
        write_response(&req, status, &neg, &stored)
    }
    .await;
    respond(&req, result)
}

/// The response to a create or update, honouring `Prefer: return=`.
fn write_response(req: &HttpRequest, status: StatusCode, neg: &crate::fhir_http::Negotiated, stored: &StoredResource) -> Result<HttpResponse, ApiError> {
    match return_preference(req) {
        ReturnPreference::Representation => render_resource(req, status, neg, stored, true),
        ReturnPreference::Minimal => Ok(crate::fhir_http::versioned(req, status, stored, true).finish()),
        ReturnPreference::OperationOutcome => {
            let verb = if status == StatusCode::CREATED { "created" } else { "stored" };
            let outcome = information_outcome(&format!("{verb} {}/{} as version {}", stored.resource_type, stored.id, stored.version));
            crate::fhir_http::render_outcome_for(req, status, neg, stored, &outcome)
        }
    }
}

async fn read(req: HttpRequest, path: web::Path<(String, String)>, state: State) -> HttpResponse {
    let (resource_type, id) = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        let neg = negotiate(&req)?;
        let stored = do_read(&state, &resource_type, &id).await?;
        let unchanged = req.headers().get(header::IF_NONE_MATCH).and_then(crate::fhir_http::parse_etag) == Some(stored.version);
        if unchanged {
            return Ok(HttpResponse::NotModified().insert_header((header::ETAG, crate::fhir_http::etag(stored.version))).finish());
        }
        render_resource(&req, StatusCode::OK, &neg, &stored, false)
    }
    .await;
    respond(&req, result)
}

async fn vread(req: HttpRequest, path: web::Path<(String, String, String)>, state: State) -> HttpResponse {
    let (resource_type, id, vid) = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        let neg = negotiate(&req)?;
        let stored = do_vread(&state, &resource_type, &id, &vid).await?;
        render_resource(&req, StatusCode::OK, &neg, &stored, false)
    }
    .await;
    respond(&req, result)
}

async fn update(req: HttpRequest, path: web::Path<(String, String)>, payload: web::Payload, state: State) -> HttpResponse {
    let (resource_type, id) = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        let neg = negotiate(&req)?;
        let expected = if_match(&req)?;
        let resource = parse_body(&req, payload, &state).await?;
        let (status, stored) = do_update(&state, &resource_type, &id, resource, expected).await?;
        write_response(&req, status, &neg, &stored)
    }
    .await;
    respond(&req, result)
}

async fn conditional_update(req: HttpRequest, path: web::Path<String>, payload: web::Payload, state: State) -> HttpResponse {
    let resource_type = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        let neg = negotiate(&req)?;
        let resource = parse_body(&req, payload, &state).await?;
        let (status, stored) = do_conditional_update(&state, &resource_type, strip_format(req.query_string()).as_str(), resource).await?;
        write_response(&req, status, &neg, &stored)
    }
    .await;
    respond(&req, result)
}

/// A conditional URL without the format parameters, which are not search conditions.
fn strip_format(query: &str) -> String {
    query.split('&').filter(|p| !p.starts_with("_format=") && !p.starts_with("_pretty=")).collect::<Vec<_>>().join("&")
}

fn delete_response(neg: &crate::fhir_http::Negotiated, deleted: Option<StoredResource>) -> Result<HttpResponse, ApiError> {
    let message = match &deleted {
        Some(r) => format!("deleted {}/{} as version {}", r.resource_type, r.id, r.version),
        None => "nothing to delete".to_string(),
    };
    let mut response = render_value(StatusCode::OK, neg, &information_outcome(&message))?;
    if let Some(r) = deleted {
        response.headers_mut().insert(header::ETAG, header::HeaderValue::from_str(&crate::fhir_http::etag(r.version)).expect("etag is ascii"));
    }
    Ok(response)
}

async fn delete(req: HttpRequest, path: web::Path<(String, String)>, state: State) -> HttpResponse {
    let (resource_type, id) = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        // Negotiate before deleting: a 406 must not leave the resource deleted.
        let neg = negotiate(&req)?;
        let expected = if_match(&req)?;
        let deleted = do_delete(&state, &resource_type, &id, expected).await?;
        delete_response(&neg, deleted)
    }
    .await;
    respond(&req, result)
}

async fn conditional_delete(req: HttpRequest, path: web::Path<String>, state: State) -> HttpResponse {
    let resource_type = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        let neg = negotiate(&req)?;
        let deleted = do_conditional_delete(&state, &resource_type, &strip_format(req.query_string())).await?;
        delete_response(&neg, deleted)
    }
    .await;
    respond(&req, result)
}

async fn history(req: &HttpRequest, state: &AppState, scope: HistoryScope) -> Result<HttpResponse, ApiError> {
    let neg = negotiate(req)?;
    let bundle = do_history(state, &base_url(req), scope, &query_params(req)).await?;
    render_value(StatusCode::OK, &neg, &bundle)
}

async fn history_system(req: HttpRequest, state: State) -> HttpResponse {
    let result = history(&req, &state, HistoryScope::System).await;
    respond(&req, result)
}

async fn history_type(req: HttpRequest, path: web::Path<String>, state: State) -> HttpResponse {
    let resource_type = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        history(&req, &state, HistoryScope::Type(resource_type)).await
    }
    .await;
    respond(&req, result)
}

async fn history_instance(req: HttpRequest, path: web::Path<(String, String)>, state: State) -> HttpResponse {
    let (resource_type, id) = path.into_inner();
    let result = async {
        check_type(&resource_type)?;
        if state.store.read(&resource_type, &id).await?.is_none() {
            return Err(ApiError::NotFound(format!("{resource_type}/{id} is not known")));
        }
        history(&req, &state, HistoryScope::Instance { resource_type, id }).await
    }
    .await;
    respond(&req, result)
}
