//! Maps ADT messages: A01, A04, A08, A28 and A31 to a Patient (and, for the visit events A01,
//! A04 and A08, an Encounter from PV1); A40 (merge patient) to the surviving Patient and the
//! deactivated prior one, linked both ways.
//!
//! Encounter.status, decided from the event after the IG: a PV1-45 discharge time means
//! `finished`; otherwise A01 (admit) is `in-progress`, A04 (register, the patient has arrived
//! but the visit has not necessarily begun) is `arrived`, and A08 (update) is `in-progress`
//! when PV1-44 gives an admit time and `unknown` when it does not.

use serde_json::{json, Map, Value};

use super::datatypes::{self, Clock};
use super::patient::{ident_key, map_pid};
use super::{placeholder, tables, MappedResource, Mapping, ResourceKey, WritePolicy};
use crate::{Hl7Error, Location, Message, Segment};

/// The ADT events that map to a Patient (and Encounter); `None` for the others.
pub(crate) fn map_adt(message: &Message, clock: &Clock) -> Result<Option<Mapping>, Hl7Error> {
    let event = message.trigger_event();
    match event {
        "A01" | "A04" | "A08" | "A28" | "A31" => {}
        "A40" => return map_merge(message, clock).map(Some),
        _ => return Ok(None),
    }
    let pid = required_segment(message, "PID")?;
    let patient = map_pid(pid, clock)?;
    let patient_key = patient.key.clone();
    let mut resources = vec![MappedResource {
        resource_type: "Patient",
        key: patient.resource_key(),
        policy: WritePolicy::Replace,
        body: Value::Object(patient.body),
    }];
    if matches!(event, "A01" | "A04" | "A08") {
        let pv1 = required_segment(message, "PV1")?;
        let (key, body) = map_pv1(pv1, event, clock, message, &patient_key)?;
        resources.push(MappedResource {
            resource_type: "Encounter",
            key,
            policy: WritePolicy::Replace,
            body,
        });
    }
    Ok(Some(Mapping { resources }))
}

/// A segment the message structure requires (100 when absent).
pub(crate) fn required_segment<'a>(
    message: &'a Message,
    name: &str,
) -> Result<&'a Segment, Hl7Error> {
    message.segment(name).ok_or_else(|| {
        Hl7Error::new(
            crate::ErrorCode::SegmentSequence,
            Some(Location {
                segment: name.into(),
                sequence: 1,
                ..Location::default()
            }),
            format!(
                "{} {} requires a {name} segment",
                message.message_code(),
                message.trigger_event()
            ),
        )
    })
}

/// PV1 to Encounter: class (PV1-2, table 0004), status (see the module documentation),
/// identifier and key (PV1-19), location (PV1-3), attending doctor (PV1-7), period
/// (PV1-44/45), subject (the Patient at index 0).
fn map_pv1(
    pv1: &Segment,
    event: &str,
    clock: &Clock,
    message: &Message,
    patient: &datatypes::Ident,
) -> Result<(ResourceKey, Value), Hl7Error> {
    let class_code = datatypes::text(pv1.value(2))
        .ok_or_else(|| Hl7Error::missing(pv1.location(2), "PV1-2 patient class"))?;
    let (system, code, display) = tables::patient_class(class_code)
        .ok_or_else(|| Hl7Error::table_value(pv1.location(2), "0004", class_code))?;
    let start = clock.datetime(pv1, 44, "PV1-44 admit date/time")?;
    let end = clock.datetime(pv1, 45, "PV1-45 discharge date/time")?;
    let status = match (&end, event, &start) {
        (Some(_), ..) => "finished",
        (None, "A01", _) => "in-progress",
        (None, "A04", _) => "arrived",
        (None, _, Some(_)) => "in-progress",
        (None, ..) => "unknown",
    };

    let mut body = Map::new();
    body.insert("resourceType".into(), json!("Encounter"));
    let visit = pv1.first(19).and_then(datatypes::cx).map(|mut ident| {
        ident.type_code.get_or_insert_with(|| "VN".to_string());
        ident
    });
    if let Some(visit) = &visit {
        body.insert("identifier".into(), json!([visit.to_fhir(None)]));
    }
    body.insert("status".into(), json!(status));
    body.insert(
        "class".into(),
        json!({ "system": system, "code": code, "display": display }),
    );
    body.insert("subject".into(), json!({ "reference": placeholder(0) }));
    let participants: Vec<Value> = pv1
        .repetitions(7)
        .iter()
        .filter_map(datatypes::xcn_display)
        .map(|name| {
            json!({
                "type": [{ "coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "ATND",
                    "display": "attender"
                }] }],
                "individual": { "display": name }
            })
        })
        .collect();
    if !participants.is_empty() {
        body.insert("participant".into(), Value::Array(participants));
    }
    if start.is_some() || end.is_some() {
        let mut period = Map::new();
        if let Some(start) = start.clone() {
            period.insert("start".into(), json!(start));
        }
        if let Some(end) = end {
            period.insert("end".into(), json!(end));
        }
        body.insert("period".into(), Value::Object(period));
    }
    if let Some(location) = pv1.first(3).and_then(datatypes::pl_display) {
        body.insert(
            "location".into(),
            json!([{ "location": { "display": location } }]),
        );
    }

    let key = match visit {
        Some(visit) => ident_key(&visit),
        // Without a visit number the encounter is known by its patient and admit time (or,
        // lacking that, by this message alone).
        None => ResourceKey::Natural {
            key: super::natural_key(&[
                "encounter",
                patient.system.as_deref().unwrap_or(""),
                &patient.value,
                start.as_deref().unwrap_or(message.control_id()),
            ]),
        },
    };
    Ok((key, Value::Object(body)))
}

/// ADT^A40: for each PID and its MRG, the survivor (Replace, gaining the prior identifiers as
/// `old` and a `replaces` link) and the prior Patient (PatchExisting: inactive, `replaced-by`).
fn map_merge(message: &Message, clock: &Clock) -> Result<Mapping, Hl7Error> {
    let mut resources = Vec::new();
    let segments = message.segments();
    let mut pids = segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.name() == "PID")
        .peekable();
    if pids.peek().is_none() {
        required_segment(message, "PID")?;
    }
    let mut group = 0;
    while let Some((at, pid)) = pids.next() {
        group += 1;
        let next_pid = pids.peek().map_or(segments.len(), |(i, _)| *i);
        let mrg = segments[at + 1..next_pid]
            .iter()
            .find(|s| s.name() == "MRG");
        let mrg_location = mrg.map_or(Location::field("MRG", group, 1), |m| m.location(1));
        let prior_ids: Vec<datatypes::Ident> = mrg
            .map(|m| m.repetitions(1).iter().filter_map(datatypes::cx).collect())
            .unwrap_or_default();
        if prior_ids.is_empty() {
            return Err(Hl7Error::missing(
                mrg_location,
                "MRG-1 prior patient identifier",
            ));
        }
        let prior_key = prior_ids
            .iter()
            .find(|i| i.type_code.as_deref() == Some("MR"))
            .unwrap_or(&prior_ids[0]);

        let survivor_index = resources.len();
        let prior_index = survivor_index + 1;
        let mut survivor = map_pid(pid, clock)?;
        if let Some(Value::Array(identifiers)) = survivor.body.get_mut("identifier") {
            identifiers.extend(prior_ids.iter().map(|i| i.to_fhir(Some("old"))));
        }
        survivor.body.insert(
            "link".into(),
            json!([{ "other": { "reference": placeholder(prior_index) }, "type": "replaces" }]),
        );
        resources.push(MappedResource {
            resource_type: "Patient",
            key: survivor.resource_key(),
            policy: WritePolicy::Replace,
            body: Value::Object(survivor.body),
        });
        resources.push(MappedResource {
            resource_type: "Patient",
            key: ident_key(prior_key),
            policy: WritePolicy::PatchExisting,
            body: json!({
                "resourceType": "Patient",
                "active": false,
                "link": [{ "other": { "reference": placeholder(survivor_index) }, "type": "replaced-by" }]
            }),
        });
    }
    Ok(Mapping { resources })
}
