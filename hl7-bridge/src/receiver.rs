//! The receive pipeline: parse, check the header, de-duplicate by (sending facility, MSH-10),
//! map, resolve keys to ids, validate, then commit the raw message and every resource in one
//! atomic store write — and only then build the acknowledgement the sender gets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fhir_store::{ResourceStore, StoreError, StoreErrorKind, StoredResource, WriteOp};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ack::{build_ack, AckMode, Verdict};
use crate::error::{ErrorCode, Hl7Error};
use crate::map::{map_message, placeholder, Mapping, ResourceKey, WritePolicy};
use crate::message::{Location, Message};
use crate::parse::{parse, sniff_header, RawHeader};
use crate::record::{dedup_value, ReceivedMessage, Status};
use fhir_model::format_instant;

/// What to answer for a message type the bridge does not map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmappedMessages {
    /// Store it raw and acknowledge AA, so a feed is never blocked by an unknown type.
    #[default]
    Accept,
    /// Store it raw and answer AR (error 200).
    Reject,
}

#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    pub unmapped: UnmappedMessages,
    /// Attempts at one message when concurrent writers touch the same resources.
    pub max_attempts: usize,
    /// The senders' UTC offset in minutes for messages whose MSH-7 carries none. v2 reads a
    /// time without offset in the sender's zone, and MSH-7's offset is how the mapping learns
    /// it; with None, such times are kept at date precision only.
    pub local_offset: Option<i16>,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions { unmapped: UnmappedMessages::Accept, max_attempts: 8, local_offset: Some(0) }
    }
}

/// The outcome of one received message.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// The ACK to send (None when the sender's enhanced mode asked for none).
    pub reply: Option<Vec<u8>>,
    pub status: Status,
    /// The message log record (None if even the record could not be stored).
    pub record_id: Option<String>,
    /// True when this was a retry of an already committed message.
    pub duplicate: bool,
}

/// Receives messages into a store. Cheap to share; every method may run concurrently.
pub struct Receiver {
    store: Arc<dyn ResourceStore>,
    options: ReceiverOptions,
    ack_counter: AtomicU64,
}

/// Why a message was not accepted.
struct Refusal {
    verdict: Verdict,
    errors: Vec<Hl7Error>,
}

impl From<Hl7Error> for Refusal {
    fn from(error: Hl7Error) -> Self {
        let verdict = if error.code.rejects() { Verdict::Rejected } else { Verdict::Error };
        Refusal { verdict, errors: vec![error] }
    }
}

fn internal(error: &StoreError) -> Refusal {
    tracing::error!(%error, "hl7 message could not be stored");
    Refusal {
        verdict: Verdict::Error,
        errors: vec![Hl7Error::new(ErrorCode::ApplicationInternalError, None, format!("the message could not be stored ({}); send it again", cause(error)))],
    }
}

/// What the sender is told of a store failure (the details stay in the log).
fn cause(error: &StoreError) -> &'static str {
    match error.kind() {
        StoreErrorKind::Backend | StoreErrorKind::Unavailable => "storage unavailable",
        StoreErrorKind::VersionConflict | StoreErrorKind::AlreadyExists => "concurrent update",
        StoreErrorKind::MultipleMatches => "ambiguous match",
        StoreErrorKind::InvalidQuery => "invalid query",
    }
}

impl Receiver {
    pub fn new(store: Arc<dyn ResourceStore>, options: ReceiverOptions) -> Receiver {
        Receiver { store, options, ack_counter: AtomicU64::new(0) }
    }

    /// Processes one message from `peer` and returns the ACK to send. Whatever the input, the
    /// message is logged and an answer is produced; AA/CA only after the commit.
    pub async fn receive(&self, raw: &[u8], peer: &str) -> Receipt {
        let now = OffsetDateTime::now_utc();
        let header = sniff_header(raw);
        let mode = header.as_ref().map(AckMode::of).unwrap_or(AckMode::Original);
        match self.accept(raw, header.as_ref(), mode, peer, now).await {
            Ok(receipt) => receipt,
            Err(refusal) => self.refuse(raw, header.as_ref(), mode, peer, now, refusal).await,
        }
    }

    /// Answers a frame the transport refused unread (too large): AR, logged with its head.
    pub async fn refuse_frame(&self, head: &[u8], reason: &str, peer: &str) -> Receipt {
        let now = OffsetDateTime::now_utc();
        let header = sniff_header(head);
        let mode = header.as_ref().map(AckMode::of).unwrap_or(AckMode::Original);
        let refusal = Refusal { verdict: Verdict::Rejected, errors: vec![Hl7Error::new(ErrorCode::ValueTooLong, None, reason)] };
        self.refuse(head, header.as_ref(), mode, peer, now, refusal).await
    }

    async fn accept(&self, raw: &[u8], header: Option<&RawHeader>, mode: AckMode, peer: &str, now: OffsetDateTime) -> Result<Receipt, Refusal> {
        let message = parse(raw).map_err(|e| {
            let mut refusal = Refusal::from(e);
            if header.is_none() {
                refusal.verdict = Verdict::Rejected;
            }
            refusal
        })?;
        check_header(&message)?;
        let header = header.expect("a parsed message has a readable MSH");
        let record_id = derived_id("AuditEvent", &dedup_value(&header.sending_facility, &header.control_id));

        for _ in 0..self.options.max_attempts.max(1) {
            if let Some(previous) = self.committed(&record_id).await.map_err(|e| internal(&e))? {
                tracing::info!(control_id = %previous.control_id, record = %record_id, "duplicate hl7 message answered with the stored ACK");
                let reply = if previous.ack.is_empty() { None } else { Some(previous.ack) };
                return Ok(Receipt { reply, status: Status::Accepted, record_id: Some(record_id), duplicate: true });
            }
            let mapping = match map_message(&message, self.options.local_offset)? {
                Some(mapping) => mapping,
                None if self.options.unmapped == UnmappedMessages::Reject => {
                    return Err(Hl7Error::new(
                        ErrorCode::UnsupportedMessageType,
                        Some(Location::field("MSH", 1, 9)),
                        format!("{}^{} messages are not taken by this receiver", message.message_code(), message.trigger_event()),
                    )
                    .into());
                }
                None => Mapping { resources: Vec::new() },
            };
            let plan = match self.plan(&mapping, now).await {
                Ok(plan) => plan,
                Err(PlanError::Message(e)) => return Err(e.into()),
                Err(PlanError::Store(e)) => return Err(internal(&e)),
            };
            let code = mode.reply(Verdict::Accepted);
            let ack = code.map(|code| build_ack(Some(header), code, &[], &hl7_now(now), &self.ack_control_id(now)));
            let record = ReceivedMessage {
                id: record_id.clone(),
                received_at: format_instant(now),
                peer: peer.to_string(),
                sending_application: header.sending_application.clone(),
                sending_facility: header.sending_facility.clone(),
                message_type: message_type(header),
                control_id: header.control_id.clone(),
                status: Status::Accepted,
                ack_code: code.map(|c| c.as_str().to_string()).unwrap_or_default(),
                error: None,
                resources: plan.references,
                raw: raw.to_vec(),
                ack: ack.clone().unwrap_or_default(),
            };
            let mut ops = plan.ops;
            ops.push(WriteOp::Create { resource_type: "AuditEvent".into(), id: record_id.clone(), body: record.to_audit_event(), if_none_exist: None });
            match self.store.write(ops).await {
                Ok(_) => return Ok(Receipt { reply: ack, status: Status::Accepted, record_id: Some(record_id), duplicate: false }),
                // Another writer got there first (the same message retried concurrently, or
                // the same patient updated): look again.
                Err(e) if matches!(e.kind(), StoreErrorKind::VersionConflict | StoreErrorKind::AlreadyExists) => continue,
                Err(e) => return Err(internal(&e)),
            }
        }
        Err(Hl7Error::new(ErrorCode::ApplicationRecordLocked, None, "the records this message updates kept changing concurrently; send it again").into())
    }

    /// The committed record of an earlier delivery of the same message, if any.
    async fn committed(&self, record_id: &str) -> Result<Option<ReceivedMessage>, StoreError> {
        let Some(stored) = self.store.read("AuditEvent", record_id).await? else { return Ok(None) };
        Ok(body_of(&stored).and_then(|body| ReceivedMessage::from_audit_event(record_id, &body)))
    }

    async fn refuse(&self, raw: &[u8], header: Option<&RawHeader>, mode: AckMode, peer: &str, now: OffsetDateTime, refusal: Refusal) -> Receipt {
        let code = mode.reply(refusal.verdict);
        let ack = code.map(|code| build_ack(header, code, &refusal.errors, &hl7_now(now), &self.ack_control_id(now)));
        let status = match refusal.verdict {
            Verdict::Rejected => Status::Rejected,
            _ => Status::Error,
        };
        let error = refusal.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        tracing::warn!(peer, %error, "hl7 message not accepted");
        let record = ReceivedMessage {
            id: uuid::Uuid::new_v4().to_string(),
            received_at: format_instant(now),
            peer: peer.to_string(),
            sending_application: header.map(|h| h.sending_application.clone()).unwrap_or_default(),
            sending_facility: header.map(|h| h.sending_facility.clone()).unwrap_or_default(),
            message_type: header.map(message_type).unwrap_or_default(),
            control_id: header.map(|h| h.control_id.clone()).unwrap_or_default(),
            status,
            ack_code: code.map(|c| c.as_str().to_string()).unwrap_or_default(),
            error: Some(error),
            resources: Vec::new(),
            raw: raw.to_vec(),
            ack: ack.clone().unwrap_or_default(),
        };
        let record_id = match self.store.create("AuditEvent", &record.id, record.to_audit_event()).await {
            Ok(stored) => Some(stored.id),
            Err(error) => {
                tracing::error!(%error, "the refused hl7 message could not be logged");
                None
            }
        };
        Receipt { reply: ack, status, record_id, duplicate: false }
    }

    /// A fresh MSH-10 for an ACK: milliseconds and a counter, in hex (at most 20 characters,
    /// the v2.5 length of MSH-10).
    fn ack_control_id(&self, now: OffsetDateTime) -> String {
        let n = self.ack_counter.fetch_add(1, Ordering::Relaxed);
        let ms = now.unix_timestamp_nanos() / 1_000_000;
        format!("{ms:X}{:04X}", n & 0xFFFF)
    }

    /// Resolves every mapped resource to an id (existing or derived), merges with what is
    /// stored according to its policy, rewrites placeholders and validates the results.
    async fn plan(&self, mapping: &Mapping, now: OffsetDateTime) -> Result<Plan, PlanError> {
        let mut targets: Vec<Target> = Vec::with_capacity(mapping.resources.len());
        for mapped in &mapping.resources {
            let (id, existing) = self.resolve(mapped.resource_type, &mapped.key).await?;
            targets.push(Target { id, existing });
        }
        let references: Vec<String> =
            mapping.resources.iter().zip(&targets).map(|(m, t)| format!("{}/{}", m.resource_type, t.id)).collect();

        // One op per resource: a resource named twice (the same device on every OBX) is
        // written once, with the last Replace body.
        let mut ops: Vec<WriteOp> = Vec::new();
        let mut op_of: HashMap<String, usize> = HashMap::new();
        for (index, (mapped, target)) in mapping.resources.iter().zip(&targets).enumerate() {
            let existing = target.existing.as_ref().and_then(|s| body_of(s).map(|b| (b, s.version)));
            let body = match (mapped.policy, existing) {
                (WritePolicy::KeepExisting, Some(_)) => continue,
                (WritePolicy::PatchExisting, None) => {
                    return Err(PlanError::Message(Hl7Error::new(
                        ErrorCode::UnknownKeyIdentifier,
                        None,
                        format!("no {} with {} exists to update", mapped.resource_type, describe(&mapped.key)),
                    )));
                }
                (WritePolicy::PatchExisting, Some((old, version))) => Some((patch(old, &mapped.body), version)),
                (WritePolicy::Replace, Some((old, version))) => Some((replace(&old, &mapped.body), version)),
                (_, None) => None,
            };
            let expected = body.as_ref().map(|(_, v)| *v);
            let mut body = body.map(|(b, _)| b).unwrap_or_else(|| mapped.body.clone());
            rewrite_placeholders(&mut body, &references);
            body["id"] = Value::String(target.id.clone());
            if let Some(meta) = body.get_mut("meta").and_then(Value::as_object_mut) {
                meta.remove("versionId");
                meta.remove("lastUpdated");
            }
            fhir_model::validate(&body, now).map_err(|e| {
                PlanError::Message(Hl7Error::new(
                    ErrorCode::DataType,
                    None,
                    format!("the {} mapped from resource {} of this message is not valid: {e}", mapped.resource_type, index + 1),
                ))
            })?;
            let resource_type = mapped.resource_type.to_string();
            let op = match expected {
                Some(version) => WriteOp::Update { resource_type, id: target.id.clone(), body, expected_version: Some(version) },
                None => WriteOp::Create { resource_type, id: target.id.clone(), body, if_none_exist: None },
            };
            let key = format!("{}/{}", mapped.resource_type, target.id);
            match op_of.get(&key) {
                Some(&at) if mapped.policy == WritePolicy::Replace => ops[at] = op,
                Some(_) => {}
                None => {
                    op_of.insert(key, ops.len());
                    ops.push(op);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        let references = references.into_iter().filter(|r| seen.insert(r.clone())).collect();
        Ok(Plan { ops, references })
    }

    /// The id a key names and the current version there, if any.
    async fn resolve(&self, resource_type: &str, key: &ResourceKey) -> Result<(String, Option<StoredResource>), PlanError> {
        if let ResourceKey::Identifier { system, value } = key {
            let token = format!("{}|{}", system.as_deref().unwrap_or(""), value);
            let params = vec![("identifier".to_string(), token), ("_count".to_string(), "2".to_string())];
            let query = fhir_model::parse_search(Some(resource_type), &params, true).map_err(|e| {
                PlanError::Message(Hl7Error::new(ErrorCode::DataType, None, format!("identifier {value:?} cannot be searched: {e}")))
            })?;
            let page = self.store.search(&query).await.map_err(PlanError::Store)?;
            match page.resources.len() {
                0 => {}
                1 => {
                    let found = page.resources.into_iter().next().expect("one match");
                    return Ok((found.id.clone(), Some(found)));
                }
                _ => {
                    return Err(PlanError::Message(Hl7Error::new(
                        ErrorCode::DuplicateKeyIdentifier,
                        None,
                        format!("several {resource_type} resources have {}", describe(key)),
                    )));
                }
            }
        }
        let id = derived_id(resource_type, &key_text(key));
        let existing = self.store.read(resource_type, &id).await.map_err(PlanError::Store)?.filter(|r| !r.deleted);
        Ok((id, existing))
    }
}

struct Target {
    id: String,
    existing: Option<StoredResource>,
}

struct Plan {
    ops: Vec<WriteOp>,
    /// `Type/id` of every resource of the mapping, each once.
    references: Vec<String>,
}

enum PlanError {
    Message(Hl7Error),
    Store(StoreError),
}

/// Header checks beyond structure: what the receiver needs to process and answer. A header
/// that leaves nothing to process (no control id, no type, a version or processing id not
/// taken here) rejects the message (AR); a bad MSH-7 is a content error (AE).
fn check_header(message: &Message) -> Result<(), Refusal> {
    let msh = message.msh();
    let reject = |error: Hl7Error| Refusal { verdict: Verdict::Rejected, errors: vec![error] };
    if message.control_id().is_empty() {
        return Err(reject(Hl7Error::missing(msh.location(10), "MSH-10 (message control id)")));
    }
    if message.message_code().is_empty() {
        return Err(reject(Hl7Error::missing(msh.location(9), "MSH-9 (message type)")));
    }
    let version = message.version();
    let major_minor: Vec<&str> = version.split('.').collect();
    let supported = major_minor.first() == Some(&"2") && major_minor.get(1).and_then(|m| m.parse::<u32>().ok()).is_some_and(|m| (1..=9).contains(&m));
    if !supported {
        return Err(reject(Hl7Error::new(
            ErrorCode::UnsupportedVersionId,
            Some(msh.location(12)),
            format!("version {version:?} is not supported (HL7 v2.1 to v2.9)"),
        )));
    }
    let processing = msh.component(11, 1);
    if !matches!(processing, "P" | "D" | "T") {
        return Err(reject(Hl7Error::new(
            ErrorCode::UnsupportedProcessingId,
            Some(msh.location(11)),
            format!("processing id {processing:?} is not one of P, D, T"),
        )));
    }
    let timestamp = msh.component(7, 1);
    if !timestamp.is_empty() {
        crate::datetime::parse_dtm(timestamp).map_err(|e| {
            Refusal::from(Hl7Error::data_type(msh.location(7), format!("MSH-7 {timestamp:?} is not a valid date/time: {e}")))
        })?;
    }
    Ok(())
}

fn message_type(header: &RawHeader) -> String {
    match (header.message_code.as_str(), header.trigger_event.as_str()) {
        ("", _) => String::new(),
        (code, "") => code.to_string(),
        (code, event) => format!("{code}^{event}"),
    }
}

/// A FHIR id derived from a key: `v2-` and 40 hex digits of SHA-256 over type and key.
pub(crate) fn derived_id(resource_type: &str, key: &str) -> String {
    let digest = Sha256::digest(format!("{resource_type}|{key}").as_bytes());
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("v2-{hex}")
}

fn key_text(key: &ResourceKey) -> String {
    match key {
        ResourceKey::Identifier { system, value } => format!("identifier|{}|{value}", system.as_deref().unwrap_or("")),
        ResourceKey::Natural { key } => format!("natural|{key}"),
    }
}

fn describe(key: &ResourceKey) -> String {
    match key {
        ResourceKey::Identifier { system: Some(system), value } => format!("identifier {system}|{value}"),
        ResourceKey::Identifier { system: None, value } => format!("identifier {value}"),
        ResourceKey::Natural { key } => format!("key {key}"),
    }
}

fn body_of(stored: &StoredResource) -> Option<Value> {
    stored.body.as_deref().and_then(|b| serde_json::from_slice(b).ok())
}

/// `new` over `old`, keeping the identifiers and links of `old` that `new` lacks.
fn replace(old: &Value, new: &Value) -> Value {
    let mut body = new.clone();
    for element in ["identifier", "link"] {
        union_into(&mut body, element, old.get(element));
    }
    if let Some(meta) = old.get("meta") {
        body["meta"] = meta.clone();
    }
    body
}

/// `old` with the top-level elements of `patch` set (arrays are merged without duplicates).
fn patch(mut old: Value, patch: &Value) -> Value {
    if let Some(fields) = patch.as_object() {
        for (name, value) in fields {
            if value.is_array() {
                let existing = old.get(name).cloned();
                old[name] = value.clone();
                union_into(&mut old, name, existing.as_ref());
            } else {
                old[name] = value.clone();
            }
        }
    }
    old
}

/// Appends to `body[element]` the items of `extra` it does not contain yet.
fn union_into(body: &mut Value, element: &str, extra: Option<&Value>) {
    let Some(extra) = extra.and_then(Value::as_array) else { return };
    let list = body.as_object_mut().map(|o| o.entry(element.to_string()).or_insert_with(|| Value::Array(Vec::new())));
    if let Some(Value::Array(items)) = list {
        for item in extra {
            let same = |a: &Value| match element {
                "identifier" => a.get("system") == item.get("system") && a.get("value") == item.get("value"),
                "link" => a.pointer("/other/reference") == item.pointer("/other/reference"),
                _ => a == item,
            };
            if !items.iter().any(same) {
                items.push(item.clone());
            }
        }
    }
}

/// Replaces every string that is a placeholder of this mapping with `Type/id`.
fn rewrite_placeholders(value: &mut Value, references: &[String]) {
    match value {
        Value::String(s) => {
            if let Some(index) = s.strip_prefix("urn:tessera:v2:").and_then(|i| i.parse::<usize>().ok()) {
                if placeholder(index) == *s {
                    if let Some(reference) = references.get(index) {
                        *s = reference.clone();
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_placeholders(v, references)),
        Value::Object(fields) => fields.values_mut().for_each(|v| rewrite_placeholders(v, references)),
        _ => {}
    }
}

/// HL7 DTM of `now` with milliseconds and zone, for MSH-7 of an ACK.
fn hl7_now(now: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}.{:03}+0000",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

#[async_trait::async_trait]
impl crate::mllp::MessageHandler for Receiver {
    async fn handle(&self, message: Vec<u8>, peer: std::net::SocketAddr) -> Option<Vec<u8>> {
        self.receive(&message, &peer.to_string()).await.reply
    }

    async fn reject(&self, head: Vec<u8>, reason: crate::mllp::FrameRejection, peer: std::net::SocketAddr) -> Option<Vec<u8>> {
        let crate::mllp::FrameRejection::TooLarge { limit } = reason;
        let text = format!("the message is larger than the limit of {limit} bytes and was not read; only its first bytes are logged");
        self.refuse_frame(&head, &text, &peer.to_string()).await.reply
    }
}
