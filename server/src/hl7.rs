//! The HL7 v2 message log over HTTP: list received messages (filter by status, control id,
//! receipt time), fetch one with its raw text and ACK, download the raw bytes, and replay a
//! message through the receive pipeline.

use actix_web::{web, HttpRequest, HttpResponse};
use hl7_bridge::{log_search_params, ReceivedMessage, Status};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::fhir_http::{encode, query_params, respond};
use crate::routes::AppState;

type State = web::Data<AppState>;

/// Media type of HL7 v2 messages in ER7 (pipe-delimited) encoding.
const ER7: &str = "x-application/hl7-v2+er7";

/// `GET /hl7/messages?status=accepted|error|rejected&control_id=…&since=…&_count=…`
pub async fn list(req: HttpRequest, state: State) -> HttpResponse {
    let result = async {
        let (mut status, mut control_id, mut since, mut count, mut cursor) = (None, None, None, "50".to_string(), None);
        for (name, value) in query_params(&req) {
            match name.as_str() {
                "status" => {
                    status = Some(Status::parse(&value).ok_or_else(|| {
                        ApiError::BadRequest(format!("status {value:?} is not one of accepted, error, rejected"))
                    })?)
                }
                "control_id" => control_id = Some(value),
                "since" => since = Some(value),
                "_count" => count = value,
                "_cursor" => cursor = Some(value),
                other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?} (known: status, control_id, since, _count)"))),
            }
        }
        let mut params = log_search_params(status, control_id.as_deref(), since.as_deref());
        params.push(("_count".into(), count.clone()));
        if let Some(cursor) = cursor {
            params.push(("_cursor".into(), cursor));
        }
        let query = fhir_model::parse_search(Some("AuditEvent"), &params, true)?;
        let page = state.store.search(&query).await?;
        let messages: Vec<Value> = page
            .resources
            .iter()
            .filter_map(|stored| record(stored))
            .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
            .collect();
        let mut body = json!({ "messages": messages });
        if let Some(next) = page.next_cursor {
            let mut link: Vec<String> = query_params(&req).into_iter().filter(|(k, _)| k != "_cursor").map(|(k, v)| format!("{k}={}", encode(&v))).collect();
            link.push(format!("_cursor={}", encode(&next)));
            body["next"] = json!(format!("/hl7/messages?{}", link.join("&")));
        }
        Ok(HttpResponse::Ok().json(body))
    }
    .await;
    respond(&req, result)
}

/// `GET /hl7/messages/{id}`: the record with the message and ACK as text.
pub async fn show(req: HttpRequest, path: web::Path<String>, state: State) -> HttpResponse {
    let result = async {
        let message = find(&state, &path).await?;
        let mut body = serde_json::to_value(&message).unwrap_or(Value::Null);
        body["message"] = json!(String::from_utf8_lossy(&message.raw));
        body["ack"] = json!(String::from_utf8_lossy(&message.ack));
        Ok(HttpResponse::Ok().json(body))
    }
    .await;
    respond(&req, result)
}

/// `GET /hl7/messages/{id}/raw`: the bytes exactly as received.
pub async fn raw(req: HttpRequest, path: web::Path<String>, state: State) -> HttpResponse {
    let result = async {
        let message = find(&state, &path).await?;
        Ok(HttpResponse::Ok().content_type(ER7).body(message.raw))
    }
    .await;
    respond(&req, result)
}

/// `POST /hl7/messages/{id}/replay`: runs the stored bytes through the receive pipeline again
/// (a message already committed answers with its stored ACK, as a retry would).
pub async fn replay(req: HttpRequest, path: web::Path<String>, state: State) -> HttpResponse {
    let result = async {
        let message = find(&state, &path).await?;
        let receipt = state.receiver.receive(&message.raw, &format!("replay of {}", message.id)).await;
        Ok(HttpResponse::Ok().json(json!({
            "status": receipt.status,
            "recordId": receipt.record_id,
            "duplicate": receipt.duplicate,
            "ack": receipt.reply.as_deref().map(String::from_utf8_lossy),
        })))
    }
    .await;
    respond(&req, result)
}

async fn find(state: &AppState, id: &str) -> Result<ReceivedMessage, ApiError> {
    let not_found = || ApiError::NotFound(format!("no received HL7 message {id}"));
    let stored = state.store.read("AuditEvent", id).await?.filter(|s| !s.deleted).ok_or_else(not_found)?;
    record(&stored).ok_or_else(not_found)
}

fn record(stored: &fhir_store::StoredResource) -> Option<ReceivedMessage> {
    let body: Value = serde_json::from_slice(stored.body.as_deref()?).ok()?;
    ReceivedMessage::from_audit_event(&stored.id, &body)
}
