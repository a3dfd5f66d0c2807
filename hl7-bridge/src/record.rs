//! The raw-message log (the "bronze" layer): every received message is kept as written, with
//! its receipt time, peer, control id, ACK and error, as a FHIR `AuditEvent` in the same store
//! and the same atomic write as the resources it produced. Listing and reading the log goes
//! through ordinary AuditEvent searches.

use base64::Engine;
use serde_json::{json, Value};

/// `AuditEvent.type` of every record: DICOM "Import" (data received from outside).
const EVENT_SYSTEM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const EVENT_CODE: &str = "110107";
/// `AuditEvent.subtype` system for the message type (`ORU^R01`).
const MESSAGE_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-0076";
/// Identifier system of the (sending facility, MSH-10) pair that de-duplicates messages.
pub const CONTROL_ID_SYSTEM: &str = "urn:tessera:hl7v2:control-id";

/// What happened to a received message, as the log reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Committed and acknowledged AA/CA.
    Accepted,
    /// Answered AE/CE (content error, or the store failed).
    Error,
    /// Answered AR/CR (the header names something not taken here, or nothing was readable).
    Rejected,
}

impl Status {
    /// The `AuditEvent.outcome` code (table audit-event-outcome).
    pub fn outcome(self) -> &'static str {
        match self {
            Status::Accepted => "0",
            Status::Error => "4",
            Status::Rejected => "8",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        match text {
            "accepted" => Some(Status::Accepted),
            "error" => Some(Status::Error),
            "rejected" => Some(Status::Rejected),
            _ => None,
        }
    }

    fn from_outcome(code: &str) -> Status {
        match code {
            "0" => Status::Accepted,
            "4" => Status::Error,
            _ => Status::Rejected,
        }
    }
}

/// One entry of the message log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedMessage {
    /// The AuditEvent id.
    pub id: String,
    pub received_at: String,
    pub peer: String,
    pub sending_application: String,
    pub sending_facility: String,
    /// MSH-9 as `ORU^R01` (empty when unreadable).
    pub message_type: String,
    pub control_id: String,
    pub status: Status,
    pub ack_code: String,
    pub error: Option<String>,
    /// `Type/id` of every resource the message wrote.
    pub resources: Vec<String>,
    #[serde(skip)]
    pub raw: Vec<u8>,
    #[serde(skip)]
    pub ack: Vec<u8>,
}

impl ReceivedMessage {
    /// The AuditEvent that records this message.
    pub fn to_audit_event(&self) -> Value {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut details = vec![
            json!({"type": "message", "valueBase64Binary": b64(&self.raw)}),
            json!({"type": "ack-code", "valueString": self.ack_code}),
            json!({"type": "peer", "valueString": self.peer}),
        ];
        if !self.ack.is_empty() {
            details.push(json!({"type": "ack", "valueBase64Binary": b64(&self.ack)}));
        }
        let mut message_entity = json!({
            "what": {"identifier": {"system": CONTROL_ID_SYSTEM, "value": dedup_value(&self.sending_facility, &self.control_id)}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "detail": details,
        });
        if !self.control_id.is_empty() {
            message_entity["name"] = json!(self.control_id);
        }
        if !self.message_type.is_empty() {
            message_entity["description"] = json!(self.message_type);
        }
        let mut entities = vec![message_entity];
        entities.extend(self.resources.iter().map(|r| json!({"what": {"reference": r}})));
        let mut sender = json!({
            "type": {"coding": [{"system": EVENT_SYSTEM, "code": "110153", "display": "Source Role ID"}]},
            "requestor": true,
            "network": {"address": self.peer, "type": "2"},
        });
        let who: Vec<&str> = [self.sending_application.as_str(), self.sending_facility.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
        if !who.is_empty() {
            sender["name"] = json!(who.join(" / "));
        }
        let mut event = json!({
            "resourceType": "AuditEvent",
            "type": {"system": EVENT_SYSTEM, "code": EVENT_CODE, "display": "Import"},
            "action": "C",
            "recorded": self.received_at,
            "outcome": self.status.outcome(),
            "agent": [sender, {
                "type": {"coding": [{"system": EVENT_SYSTEM, "code": "110152", "display": "Destination Role ID"}]},
                "who": {"display": "Tessera HL7 v2 bridge"},
                "requestor": false
            }],
            "source": {
                "observer": {"display": "Tessera HL7 v2 bridge"},
                "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]
            },
            "entity": entities,
        });
        if !self.message_type.is_empty() {
            event["subtype"] = json!([{"system": MESSAGE_TYPE_SYSTEM, "code": self.message_type}]);
        }
        if let Some(error) = &self.error {
            event["outcomeDesc"] = json!(error);
        }
        event
    }

    /// Reads a record back; None when `event` is not one of ours.
    pub fn from_audit_event(id: &str, event: &Value) -> Option<ReceivedMessage> {
        if event.pointer("/type/code").and_then(Value::as_str) != Some(EVENT_CODE) {
            return None;
        }
        let entities = event.get("entity")?.as_array()?;
        let message = entities.first()?;
        let detail = |name: &str| {
            message.get("detail")?.as_array()?.iter().find(|d| d.get("type").and_then(Value::as_str) == Some(name)).cloned()
        };
        let bytes = |name: &str| {
            detail(name)
                .and_then(|d| d.get("valueBase64Binary").and_then(Value::as_str).map(str::to_owned))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .unwrap_or_default()
        };
        let text = |name: &str| detail(name).and_then(|d| d.get("valueString").and_then(Value::as_str).map(str::to_owned)).unwrap_or_default();
        let key = message.pointer("/what/identifier/value").and_then(Value::as_str).unwrap_or("");
        let (facility, _) = key.split_once('|').unwrap_or(("", ""));
        let sender = event.pointer("/agent/0/name").and_then(Value::as_str).unwrap_or("");
        let application = sender.strip_suffix(facility).map(|s| s.trim_end_matches(" / ")).unwrap_or(sender);
        Some(ReceivedMessage {
            id: id.to_string(),
            received_at: event.get("recorded").and_then(Value::as_str).unwrap_or("").to_string(),
            peer: text("peer"),
            sending_application: application.to_string(),
            sending_facility: facility.to_string(),
            message_type: message.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
            control_id: message.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
            status: Status::from_outcome(event.get("outcome").and_then(Value::as_str).unwrap_or("")),
            ack_code: text("ack-code"),
            error: event.get("outcomeDesc").and_then(Value::as_str).map(str::to_owned),
            resources: entities[1..].iter().filter_map(|e| e.pointer("/what/reference").and_then(Value::as_str).map(str::to_owned)).collect(),
            raw: bytes("message"),
            ack: bytes("ack"),
        })
    }
}

/// The de-duplication key of a message: (sending facility, MSH-10).
pub fn dedup_value(facility: &str, control_id: &str) -> String {
    format!("{facility}|{control_id}")
}

/// The log's search: records of the bridge, newest first is not needed (creation order),
/// optionally only those with `status`, a control id, or received since an instant.
pub fn log_search_params(status: Option<Status>, control_id: Option<&str>, since: Option<&str>) -> Vec<(String, String)> {
    let mut params = vec![("type".to_string(), format!("{EVENT_SYSTEM}|{EVENT_CODE}"))];
    if let Some(status) = status {
        params.push(("outcome".into(), status.outcome().into()));
    }
    if let Some(control_id) = control_id {
        params.push(("entity-name:exact".into(), control_id.into()));
    }
    if let Some(since) = since {
        params.push(("date".into(), format!("ge{since}")));
    }
    params
}
