//! FHIR HTTP conventions: format negotiation, `Prefer`, body limits, query parsing and the
//! rendering of resources, bundles and errors into responses.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use fhir_model::Format;
use fhir_store::StoredResource;
use futures::StreamExt;
use serde_json::Value;
use time::format_description::well_known::Rfc2822;

use crate::error::ApiError;

/// How the client wants a response: format, media type to echo, and pretty printing.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub format: Format,
    pub content_type: &'static str,
    pub pretty: bool,
}

/// Decoded query parameters in request order.
pub fn query_params(req: &HttpRequest) -> Vec<(String, String)> {
    parse_form(req.query_string())
}

/// Decodes `application/x-www-form-urlencoded` text (also a URL query).
pub fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

pub fn encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'|')
        .remove(b',')
        .remove(b':')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

fn format_of(media: &str) -> Option<(Format, &'static str)> {
    let m = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match m.as_str() {
        "json" | "application/fhir+json" | "application/json+fhir" => Some((Format::Json, "application/fhir+json")),
        "application/json" => Some((Format::Json, "application/json")),
        "xml" | "application/fhir+xml" | "application/xml+fhir" => Some((Format::Xml, "application/fhir+xml")),
        "application/xml" | "text/xml" => Some((Format::Xml, "application/xml")),
        _ => None,
    }
}

/// The response format: `_format` wins over `Accept`; no preference means JSON.
pub fn negotiate(req: &HttpRequest) -> Result<Negotiated, ApiError> {
    let params = query_params(req);
    let pretty = params.iter().any(|(k, v)| k == "_pretty" && v == "true");
    if let Some((_, f)) = params.iter().find(|(k, _)| k == "_format") {
        let (format, content_type) = format_of(f).ok_or_else(|| ApiError::NotAcceptable(f.clone()))?;
        return Ok(Negotiated { format, content_type, pretty });
    }
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut ranges: Vec<(f32, &str)> = accept
        .split(',')
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        .map(|r| {
            let q = r.split(';').skip(1).find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
            (q, r)
        })
        .filter(|(q, _)| *q > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    if ranges.is_empty() {
        return Ok(Negotiated { format: Format::Json, content_type: "application/fhir+json", pretty });
    }
    for (_, range) in &ranges {
        if let Some((format, content_type)) = format_of(range) {
            return Ok(Negotiated { format, content_type, pretty });
        }
        let base = range.split(';').next().unwrap_or("").trim();
        if base == "*/*" || base == "application/*" {
            return Ok(Negotiated { format: Format::Json, content_type: "application/fhir+json", pretty });
        }
    }
    Err(ApiError::NotAcceptable(accept.to_string()))
}

/// The format of a request body, from `Content-Type` (JSON when absent).
pub fn body_format(req: &HttpRequest) -> Result<Format, ApiError> {
    match req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        None => Ok(Format::Json),
        Some(ct) => format_of(ct).map(|(f, _)| f).ok_or_else(|| ApiError::UnsupportedMediaType(ct.to_string())),
    }
}

/// Reads the whole body, refusing more than `limit` bytes without buffering them.
pub async fn read_body(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// What `Prefer: return=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPreference {
    Minimal,
    Representation,
    OperationOutcome,
}

fn prefer_values(req: &HttpRequest) -> impl Iterator<Item = String> + '_ {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .map(|p| p.trim().replace(' ', "").to_ascii_lowercase())
}

pub fn return_preference(req: &HttpRequest) -> ReturnPreference {
    for p in prefer_values(req) {
        match p.as_str() {
            "return=minimal" => return ReturnPreference::Minimal,
            "return=operationoutcome" => return ReturnPreference::OperationOutcome,
            "return=representation" => return ReturnPreference::Representation,
            _ => {}
        }
    }
    ReturnPreference::Representation
}

/// `Prefer: handling=strict`.
pub fn strict_handling(req: &HttpRequest) -> bool {
    prefer_values(req).any(|p| p == "handling=strict")
}

/// Parses `If-Match: W/"3"` (or `"3"`).
pub fn if_match(req: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(v) = req.headers().get(header::IF_MATCH) else { return Ok(None) };
    parse_etag(v).map(Some).ok_or_else(|| ApiError::BadRequest("If-Match must be a version ETag like W/\"1\"".into()))
}

pub fn parse_etag(v: &HeaderValue) -> Option<u64> {
    let s = v.to_str().ok()?.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"').parse().ok()
}

/// The server's FHIR base URL as the client addressed it.
pub fn base_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}/fhir", info.scheme(), info.host())
}

pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

pub fn http_date(r: &StoredResource) -> String {
    let utc = r.last_updated.to_offset(time::UtcOffset::UTC);
    utc.format(&Rfc2822).map(|s| s.replace("+0000", "GMT")).unwrap_or_default()
}

/// Serialises a JSON value in the negotiated format.
pub fn render_value(status: StatusCode, neg: &Negotiated, value: &Value) -> Result<HttpResponse, ApiError> {
    let bytes = fhir_model::serialize_resource(value, neg.format, neg.pretty)?;
    Ok(HttpResponseBuilder::new(status).insert_header((header::CONTENT_TYPE, content_type(neg))).body(bytes))
}

fn content_type(neg: &Negotiated) -> String {
    format!("{}; charset=utf-8", neg.content_type)
}

/// An instant as FHIR writes `meta.lastUpdated` (one formatter for the server and the bridge).
pub use fhir_model::format_instant as instant;

/// A stored version's body as JSON. A body that does not parse is the store's fault (500).
pub fn body_value(r: &StoredResource) -> Result<Value, ApiError> {
    serde_json::from_slice(r.body.as_deref().unwrap_or(b"null"))
        .map_err(|e| ApiError::Store(fhir_store::StoreError::Backend { message: format!("stored body is not json: {e}"), source: None }))
}

/// A response builder carrying a version's ETag, Last-Modified and, for writes, Location.
pub fn versioned(req: &HttpRequest, status: StatusCode, resource: &StoredResource, with_location: bool) -> HttpResponseBuilder {
    let mut builder = HttpResponseBuilder::new(status);
    builder.insert_header((header::ETAG, etag(resource.version)));
    builder.insert_header((header::LAST_MODIFIED, http_date(resource)));
    if with_location {
        let location = format!("{}/{}/{}/_history/{}", base_url(req), resource.resource_type, resource.id, resource.version);
        builder.insert_header((header::LOCATION, location.clone()));
        builder.insert_header((header::CONTENT_LOCATION, location));
    }
    builder
}

/// A stored resource with its version headers; JSON without `_pretty` is served as stored.
pub fn render_resource(
    req: &HttpRequest,
    status: StatusCode,
    neg: &Negotiated,
    resource: &StoredResource,
    with_location: bool,
) -> Result<HttpResponse, ApiError> {
    let mut builder = versioned(req, status, resource, with_location);
    builder.insert_header((header::CONTENT_TYPE, content_type(neg)));
    let body = resource.body.as_deref().unwrap_or(b"{}");
    if neg.format == Format::Json && !neg.pretty {
        return Ok(builder.body(body.to_vec()));
    }
    Ok(builder.body(fhir_model::serialize_resource(&body_value(resource)?, neg.format, neg.pretty)?))
}

/// Renders `value` (an OperationOutcome) with the version headers of `resource`.
pub fn render_outcome_for(
    req: &HttpRequest,
    status: StatusCode,
    neg: &Negotiated,
    resource: &StoredResource,
    outcome: &Value,
) -> Result<HttpResponse, ApiError> {
    let mut builder = versioned(req, status, resource, true);
    builder.insert_header((header::CONTENT_TYPE, content_type(neg)));
    Ok(builder.body(fhir_model::serialize_resource(outcome, neg.format, neg.pretty)?))
}

/// The error as an OperationOutcome in the client's format (JSON if that cannot be negotiated).
pub fn render_error(req: &HttpRequest, error: &ApiError) -> HttpResponse {
    let neg = negotiate(req).unwrap_or(Negotiated { format: Format::Json, content_type: "application/fhir+json", pretty: false });
    let outcome = error.to_operation_outcome();
    let mut response = render_value(error.status(), &neg, &outcome).unwrap_or_else(|_| {
        HttpResponseBuilder::new(error.status())
            .insert_header((header::CONTENT_TYPE, "application/fhir+json; charset=utf-8"))
            .body(outcome.to_string())
    });
    if let ApiError::Gone { version, .. } = error {
        if let Ok(v) = HeaderValue::from_str(&etag(*version)) {
            response.headers_mut().insert(header::ETAG, v);
        }
    }
    response
}

/// Turns a handler's result into a response, rendering errors as OperationOutcomes.
pub fn respond(req: &HttpRequest, result: Result<HttpResponse, ApiError>) -> HttpResponse {
    result.unwrap_or_else(|e| render_error(req, &e))
}
