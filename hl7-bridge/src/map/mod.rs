//! The HL7 v2-to-FHIR R4 mapping (after the hl7.fhir.uv.v2mappings IG): ADT to Patient and
//! Encounter, ORU^R01 to Observation, DiagnosticReport, Patient and Device. Pure: no store,
//! no clock; the receive pipeline resolves keys to ids and writes the result.
//!
//! - `adt.rs`: ADT events to Patient and Encounter, A40 merges;
//! - `oru.rs`: ORU^R01 to Patient, DiagnosticReport, Observation and Device;
//! - `patient.rs`: PID to Patient; `datatypes.rs`: v2 data types to FHIR data types;
//! - `tables.rs`: the v2 code tables (0001, 0004, 0078, 0085, 0123, ...) to FHIR codes;
//! - `vitals.rs`: IEEE 11073 MDC codes and units to the LOINC/UCUM of the vital-signs profile.
//!
//! Date/time values without a zone take the sender's zone from MSH-7 (see
//! [`crate::datetime`] for what happens when MSH-7 has none either).

mod adt;
mod datatypes;
mod oru;
mod patient;
mod tables;
mod vitals;

use serde_json::Value;

use crate::{Hl7Error, Message};

/// The resources one message maps to, in write order.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mapping {
    pub resources: Vec<MappedResource>,
}

/// One resource to write. References between resources of the same mapping are written as
/// [`placeholder`]`(index)` in `body`; the pipeline rewrites them to `Type/id`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MappedResource {
    pub resource_type: &'static str,
    pub key: ResourceKey,
    pub policy: WritePolicy,
    /// The FHIR JSON, without `id` and `meta`.
    pub body: Value,
}

/// How the pipeline finds the existing resource this one updates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ResourceKey {
    /// Search `Type?identifier=system|value` (no system: `|value`); when nothing matches, the
    /// resource is created with an id derived from the key.
    Identifier {
        system: Option<String>,
        value: String,
    },
    /// No search: the id is derived from this text alone (e.g. an OBX within its order).
    Natural { key: String },
}

/// What to do when the resource already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum WritePolicy {
    /// Write `body` over it (identifiers of the existing version are kept as well).
    Replace,
    /// Leave it as it is and only reference it; create `body` when absent.
    KeepExisting,
    /// It must exist (else error 204 at `missing`): merge `body`'s top-level elements into it.
    PatchExisting,
}

/// The placeholder reference to the `index`-th resource of the same mapping.
pub fn placeholder(index: usize) -> String {
    format!("urn:tessera:v2:{index}")
}

/// Maps `message`. `Ok(None)`: a message type the bridge does not map (it is still stored raw
/// and acknowledged). `Err`: the message cannot be mapped, with the bad field's location.
/// `local_offset` (minutes east of UTC) is the sender's zone when MSH-7 names none; with
/// None, times without an offset in such a message are kept at date precision.
pub fn map_message(message: &Message, local_offset: Option<i16>) -> Result<Option<Mapping>, Hl7Error> {
    let mapper = match message.message_code() {
        "ADT" => adt::map_adt,
        "ORU" => oru::map_oru,
        _ => return Ok(None),
    };
    let msh = message.msh();
    let clock = datatypes::Clock {
        sender_offset: local_offset,
    };
    let sent = clock.dtm(msh.value(7), msh.location(7), "MSH-7 date/time of message")?;
    let clock = datatypes::Clock {
        sender_offset: sent.and_then(|s| s.offset()).or(local_offset),
    };
    mapper(message, &clock)
}

/// A natural key from its parts, `|`-separated (a `|` or `%` inside a part is %-escaped, so
/// different parts never give the same key).
pub(crate) fn natural_key(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.replace('%', "%25").replace('|', "%7C"))
        .collect::<Vec<_>>()
        .join("|")
}
