//! Batch and transaction Bundles POSTed to the base: entry ordering, `urn:uuid:` and
//! conditional reference resolution, one atomic store write per transaction, and the
//! per-entry results of a batch.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use fhir_store::{HistoryScope, StoredResource, WriteOp, WriteOutcome};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::fhir_http::{body_format, body_value, etag, instant, negotiate, parse_form, read_body, render_value, respond, return_preference, ReturnPreference};
use crate::search::do_search;
use crate::routes::{
    check_type, condition, do_conditional_delete, do_conditional_update, do_create, do_delete, do_history,
    do_read, do_update, do_vread, find_one, if_none_exist_query, new_id, now_instant, prepare, AppState,
};

pub async fn handle(req: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let neg = negotiate(&req)?;
        let format = body_format(&req)?;
        let body = read_body(&req, payload, state.max_body).await?;
        let bundle = fhir_model::parse_resource(&body, format)?;
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(ApiError::BadRequest("the base accepts only a Bundle of type batch or transaction".into()));
        }
        let ctx = Ctx { state: &state, base: crate::fhir_http::base_url(&req), with_resources: return_preference(&req) != ReturnPreference::Minimal };
        let response = match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => transaction(&ctx, &bundle).await?,
            Some("batch") => batch(&ctx, &bundle).await,
            other => return Err(ApiError::BadRequest(format!("bundle type {other:?} cannot be processed; use batch or transaction"))),
        };
        render_value(StatusCode::OK, &neg, &response)
    }
    .await;
    respond(&req, result)
}

struct Ctx<'a> {
    state: &'a AppState,
    base: String,
    with_resources: bool,
}

/// One entry's request, parsed.
struct EntryRequest {
    method: String,
    resource_type: String,
    /// The id in `Type/id[/_history/vid]`.
    id: Option<String>,
    /// The path after the type, e.g. `123/_history/2`, for GET entries.
    rest: String,
    query: Option<String>,
    if_match: Option<u64>,
    if_none_exist: Option<String>,
}

fn entry_request(ctx: &Ctx<'_>, entry: &Value) -> Result<EntryRequest, ApiError> {
    let request = entry.get("request").ok_or_else(|| ApiError::BadRequest("entry has no request".into()))?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
    let url = request.get("url").and_then(Value::as_str).unwrap_or_default();
    let url = url.strip_prefix(&ctx.base).unwrap_or(url).trim_start_matches('/');
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (url, None),
    };
    let mut segments = path.splitn(2, '/');
    let resource_type = segments.next().unwrap_or_default().to_string();
    let rest = segments.next().unwrap_or_default().to_string();
    let id = rest.split('/').next().filter(|s| !s.is_empty() && !s.starts_with('_')).map(str::to_string);
    let if_match = match request.get("ifMatch").and_then(Value::as_str) {
        Some(v) => Some(
            v.trim_start_matches("W/")
                .trim_matches('"')
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("ifMatch {v:?} is not a version etag")))?,
        ),
        None => None,
    };
    let if_none_exist = request.get("ifNoneExist").and_then(Value::as_str).map(|q| if_none_exist_query(q).to_string());
    if !resource_type.is_empty() {
        check_type(&resource_type)?;
    }
    Ok(EntryRequest { method, resource_type, id, rest, query, if_match, if_none_exist })
}

fn entries(bundle: &Value) -> &[Value] {
    bundle.get("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn status_text(status: StatusCode) -> String {
    format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or(""))
}

fn write_entry(ctx: &Ctx<'_>, status: StatusCode, r: &StoredResource) -> Result<Value, ApiError> {
    let mut entry = json!({
        "fullUrl": format!("{}/{}/{}", ctx.base, r.resource_type, r.id),
        "response": {
            "status": status_text(status),
            "location": format!("{}/{}/_history/{}", r.resource_type, r.id, r.version),
            "etag": etag(r.version),
            "lastModified": instant(r.last_updated),
        }
    });
    if ctx.with_resources && !r.deleted {
        entry["resource"] = body_value(r)?;
    }
    Ok(entry)
}

fn delete_entry(deleted: Option<&StoredResource>) -> Value {
    let mut response = json!({"status": status_text(StatusCode::NO_CONTENT)});
    if let Some(r) = deleted {
        response["etag"] = json!(etag(r.version));
    }
    json!({ "response": response })
}

fn error_entry(error: &ApiError) -> Value {
    json!({"response": {"status": status_text(error.status()), "outcome": error.to_operation_outcome()}})
}

fn bundle_of(kind: &str, entries: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": kind,
        "entry": entries,
    })
}

/// Runs a GET entry: read, vread, instance/type history, or search.
async fn get_entry(ctx: &Ctx<'_>, r: &EntryRequest) -> Result<Value, ApiError> {
    let segments: Vec<&str> = r.rest.split('/').filter(|s| !s.is_empty()).collect();
    let params = r.query.as_deref().map(parse_form).unwrap_or_default();
    let (status, resource) = match segments.as_slice() {
        [] if r.resource_type.is_empty() => {
            let q = fhir_model::parse_search(None, &params, false)?;
            (StatusCode::OK, do_search(ctx.state, &ctx.base, &q).await?)
        }
        [] => {
            let q = fhir_model::parse_search(Some(&r.resource_type), &params, false)?;
            (StatusCode::OK, do_search(ctx.state, &ctx.base, &q).await?)
        }
        ["_history"] => (StatusCode::OK, do_history(ctx.state, &ctx.base, HistoryScope::Type(r.resource_type.clone()), &params).await?),
        [id] => (StatusCode::OK, body_value(&do_read(ctx.state, &r.resource_type, id).await?)?),
        [id, "_history"] => {
            let scope = HistoryScope::Instance { resource_type: r.resource_type.clone(), id: id.to_string() };
            (StatusCode::OK, do_history(ctx.state, &ctx.base, scope, &params).await?)
        }
        [id, "_history", vid] => (StatusCode::OK, body_value(&do_vread(ctx.state, &r.resource_type, id, vid).await?)?),
        _ => return Err(ApiError::BadRequest(format!("unsupported GET entry url {}/{}", r.resource_type, r.rest))),
    };
    Ok(json!({"resource": resource, "response": {"status": status_text(status)}}))
}

/// Executes one batch entry on its own.
async fn batch_entry(ctx: &Ctx<'_>, entry: &Value) -> Result<Value, ApiError> {
    let r = entry_request(ctx, entry)?;
    let resource = entry.get("resource").cloned();
    let need_resource = || resource.clone().ok_or_else(|| ApiError::BadRequest(format!("{} entry has no resource", r.method)));
    match (r.method.as_str(), &r.id, &r.query) {
        ("GET", _, _) => get_entry(ctx, &r).await,
        ("POST", None, _) => {
            let if_none_exist = r.if_none_exist.as_deref().map(|q| condition(&r.resource_type, q)).transpose()?;
            let (status, stored) = do_create(ctx.state, &r.resource_type, need_resource()?, if_none_exist).await?;
            write_entry(ctx, status, &stored)
        }
        ("PUT", Some(id), _) => {
            let (status, stored) = do_update(ctx.state, &r.resource_type, id, need_resource()?, r.if_match).await?;
            write_entry(ctx, status, &stored)
        }
        ("PUT", None, Some(q)) => {
            let (status, stored) = do_conditional_update(ctx.state, &r.resource_type, q, need_resource()?).await?;
            write_entry(ctx, status, &stored)
        }
        ("DELETE", Some(id), _) => Ok(delete_entry(do_delete(ctx.state, &r.resource_type, id, r.if_match).await?.as_ref())),
        ("DELETE", None, Some(q)) => Ok(delete_entry(do_conditional_delete(ctx.state, &r.resource_type, q).await?.as_ref())),
        (method, _, _) => Err(ApiError::BadRequest(format!("unsupported entry request {method} {}", r.resource_type))),
    }
}

async fn batch(ctx: &Ctx<'_>, bundle: &Value) -> Value {
    let mut out = Vec::new();
    for entry in entries(bundle) {
        out.push(batch_entry(ctx, entry).await.unwrap_or_else(|e| error_entry(&e)));
    }
    bundle_of("batch-response", out)
}

/// What a transaction entry will do once ids are resolved.
enum Planned {
    Write { resource_type: String, id: String, resource: Option<Value>, expected: Option<u64>, create: bool },
    /// A conditional create that matched: nothing is written.
    Existing(StoredResource),
    /// A conditional delete that matched nothing.
    NoOp,
    Get(EntryRequest),
    /// An operation invocation (`Type/$name`): it writes nothing, so it runs with the reads
    /// after the writes and reports its own result without undoing them.
    Operation(String),
}

/// The spec's processing order: DELETE, POST, PUT/PATCH, GET/HEAD.
fn order(r: &EntryRequest) -> u8 {
    if r.rest.starts_with('$') {
        return 3;
    }
    match r.method.as_str() {
        "DELETE" => 0,
        "POST" => 1,
        "PUT" | "PATCH" => 2,
        _ => 3,
    }
}

async fn transaction(ctx: &Ctx<'_>, bundle: &Value) -> Result<Value, ApiError> {
    let list = entries(bundle);
    let mut requests = Vec::with_capacity(list.len());
    for (index, entry) in list.iter().enumerate() {
        requests.push(entry_request(ctx, entry).map_err(|e| in_entry(index, e))?);
    }
    let mut indices: Vec<usize> = (0..list.len()).collect();
    indices.sort_by_key(|&i| order(&requests[i]));

    // Resolve every entry's target id first, so references between entries can be rewritten.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut plans: Vec<Option<Planned>> = (0..list.len()).map(|_| None).collect();
    let mut requests: Vec<Option<EntryRequest>> = requests.into_iter().map(Some).collect();
    for &i in &indices {
        let r = requests[i].take().expect("each entry planned once");
        let plan = plan_entry(ctx, &list[i], r).await.map_err(|e| in_entry(i, e))?;
        if let (Some(full_url), Planned::Write { resource_type, id, .. } | Planned::Existing(StoredResource { resource_type, id, .. })) =
            (list[i].get("fullUrl").and_then(Value::as_str), &plan)
        {
            ids.insert(full_url.to_string(), format!("{resource_type}/{id}"));
        }
        plans[i] = Some(plan);
    }

    let mut ops = Vec::new();
    let mut op_of_entry: Vec<Option<usize>> = vec![None; list.len()];
    for &i in &indices {
        if let Some(Planned::Write { resource_type, id, resource, expected, create }) = plans[i].as_mut() {
            let op = match resource.take() {
                Some(mut resource) => {
                    rewrite_references(ctx, &mut resource, &ids).await.map_err(|e| in_entry(i, e))?;
                    resource["id"] = Value::String(id.clone());
                    prepare(resource_type, &mut resource, None).map_err(|e| in_entry(i, e))?;
                    if *create {
                        WriteOp::Create { resource_type: resource_type.clone(), id: id.clone(), body: resource, if_none_exist: None }
                    } else {
                        WriteOp::Update { resource_type: resource_type.clone(), id: id.clone(), body: resource, expected_version: *expected }
                    }
                }
                None => WriteOp::Delete { resource_type: resource_type.clone(), id: id.clone(), expected_version: *expected },
            };
            op_of_entry[i] = Some(ops.len());
            ops.push(op);
        }
    }
    let outcomes = if ops.is_empty() { Vec::new() } else { ctx.state.store.write(ops).await.map_err(ApiError::from_if_match)? };

    let mut out = vec![Value::Null; list.len()];
    for &i in &indices {
        out[i] = match (plans[i].take().expect("planned"), op_of_entry[i]) {
            (Planned::Existing(r), _) => write_entry(ctx, StatusCode::OK, &r)?,
            (Planned::NoOp, _) => delete_entry(None),
            (Planned::Get(r), _) => get_entry(ctx, &r).await.unwrap_or_else(|e| error_entry(&e)),
            (Planned::Operation(name), _) => error_entry(&ApiError::NotImplemented(name)),
            (Planned::Write { .. }, Some(op)) => match &outcomes[op] {
                WriteOutcome::Created(r) => write_entry(ctx, StatusCode::CREATED, r)?,
                WriteOutcome::Updated(r) | WriteOutcome::Existing(r) => write_entry(ctx, StatusCode::OK, r)?,
                WriteOutcome::Deleted(r) => delete_entry(r.as_ref()),
            },
            (Planned::Write { .. }, None) => unreachable!("every write entry has an op"),
        };
    }
    Ok(bundle_of("transaction-response", out))
}

fn in_entry(index: usize, error: ApiError) -> ApiError {
    ApiError::InEntry { index, source: Box::new(error) }
}

async fn plan_entry(ctx: &Ctx<'_>, entry: &Value, r: EntryRequest) -> Result<Planned, ApiError> {
    let resource = entry.get("resource").cloned();
    let resource_type = r.resource_type.clone();
    let write = |id: String, resource: Option<Value>, expected: Option<u64>, create: bool| Planned::Write {
        resource_type: resource_type.clone(),
        id,
        resource,
        expected,
        create,
    };
    let need = |resource: Option<Value>| resource.ok_or_else(|| ApiError::BadRequest(format!("{} entry has no resource", r.method)));
    if r.rest.starts_with('$') {
        return Ok(Planned::Operation(format!("operation {}/{}", r.resource_type, r.rest)));
    }
    match (r.method.as_str(), &r.id, &r.query) {
        ("GET", _, _) | ("HEAD", _, _) => Ok(Planned::Get(r)),
        ("POST", None, _) => {
            if let Some(q) = &r.if_none_exist {
                if let Some(existing) = find_one(ctx.state, &condition(&resource_type, q)?, "ifNoneExist").await? {
                    return Ok(Planned::Existing(existing));
                }
            }
            Ok(write(new_id(), Some(need(resource)?), None, true))
        }
        ("PUT", Some(id), _) => {
            let mut resource = need(resource)?;
            if resource.get("id").and_then(Value::as_str).is_some_and(|b| b != id) {
                return Err(ApiError::BadRequest(format!("id in the resource does not match {resource_type}/{id}")));
            }
            resource["id"] = Value::String(id.clone());
            Ok(write(id.clone(), Some(resource), r.if_match, false))
        }
        ("PUT", None, Some(q)) => match find_one(ctx.state, &condition(&resource_type, q)?, "conditional update").await? {
            None => {
                let id = resource.as_ref().and_then(|v| v.get("id")).and_then(Value::as_str).map(str::to_string).unwrap_or_else(new_id);
                Ok(write(id, Some(need(resource)?), None, false))
            }
            Some(one) => Ok(write(one.id.clone(), Some(need(resource)?), Some(one.version), false)),
        },
        ("DELETE", Some(id), _) => Ok(write(id.clone(), None, r.if_match, false)),
        ("DELETE", None, Some(q)) => match find_one(ctx.state, &condition(&resource_type, q)?, "conditional delete").await? {
            None => Ok(Planned::NoOp),
            Some(one) => Ok(write(one.id.clone(), None, Some(one.version), false)),
        },
        (method, _, _) => Err(ApiError::BadRequest(format!("unsupported transaction entry {method} {resource_type}"))),
    }
}

/// Rewrites `reference` values: fullUrls of other entries (`urn:uuid:…`) become `Type/id`,
/// conditional references (`Patient?identifier=…`) become the one resource they match.
async fn rewrite_references(ctx: &Ctx<'_>, value: &mut Value, ids: &HashMap<String, String>) -> Result<(), ApiError> {
    let mut pending: Vec<&mut Value> = vec![value];
    let mut conditional: Vec<&mut Value> = Vec::new();
    while let Some(v) = pending.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == "reference" {
                        if let Value::String(s) = child {
                            if let Some(target) = ids.get(s.as_str()) {
                                *s = target.clone();
                            } else if s.contains('?') && !s.starts_with("http") {
                                conditional.push(child);
                            }
                            continue;
                        }
                    }
                    pending.push(child);
                }
            }
            Value::Array(items) => pending.extend(items.iter_mut()),
            _ => {}
        }
    }
    for reference in conditional {
        let text = reference.as_str().unwrap_or_default().to_string();
        let (resource_type, q) = text.split_once('?').unwrap_or_default();
        check_type(resource_type)?;
        match find_one(ctx.state, &condition(resource_type, q)?, "conditional reference").await? {
            Some(one) => *reference = Value::String(format!("{resource_type}/{}", one.id)),
            None => return Err(ApiError::NotFound(format!("conditional reference {text} matched nothing"))),
        }
    }
    Ok(())
}
