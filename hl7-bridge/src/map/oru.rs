//! Maps ORU^R01 (unsolicited observation results): the Patient of each PID (referenced, created
//! only when absent), one DiagnosticReport per OBR, one Observation per OBX (value by OBX-2,
//! code, reference range, interpretation, status, effective time), and a Device per OBX-18.
//!
//! Blood pressure: a systolic and a diastolic OBX of one OBR (by LOINC 8480-6/8462-4, or the
//! MDC codes that map to them) become one Observation, the 85354-9 blood pressure panel with
//! two components, as the FHIR vital-signs profile models it; the two OBX are not written as
//! Observations of their own. Pairs are made in message order (the first systolic with the
//! first diastolic, and so on); an unpaired one stays a single Observation. The panel takes
//! its status, effective time and device from the systolic OBX.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::datatypes::{self, Clock, Ident};
use super::patient::{ident_key, map_pid};
use super::vitals::{self, VitalSign};
use super::{natural_key, placeholder, tables, MappedResource, Mapping, ResourceKey, WritePolicy};
use crate::datetime::{parse_dtm, parse_tm, Precision};
use crate::{ErrorCode, Hl7Error, Location, Message, Repetition, Segment};

const VITAL_SIGNS_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// ORU^R01; other ORU events give `None`.
pub(crate) fn map_oru(message: &Message, clock: &Clock) -> Result<Option<Mapping>, Hl7Error> {
    if message.trigger_event() != "R01" {
        return Ok(None);
    }
    let msh = message.msh();
    let sender = datatypes::text(msh.component(4, 1))
        .or(datatypes::text(msh.component(4, 2)))
        .unwrap_or("");
    let mut builder = Builder {
        message,
        clock,
        sender: sender.to_string(),
        resources: Vec::new(),
        devices: HashMap::new(),
    };
    let mut patient: Option<usize> = None;
    let mut order: Option<Order> = None;
    for segment in message.segments() {
        match segment.name() {
            "PID" => {
                if let Some(done) = order.take() {
                    builder.finish_order(done)?;
                }
                let mapped = map_pid(segment, clock)?;
                patient = Some(builder.push(MappedResource {
                    resource_type: "Patient",
                    key: mapped.resource_key(),
                    policy: WritePolicy::KeepExisting,
                    body: Value::Object(mapped.body),
                }));
            }
            "OBR" => {
                if let Some(done) = order.take() {
                    builder.finish_order(done)?;
                }
                order = Some(Order::new(segment, patient, message));
            }
            "OBX" => {
                let Some(current) = order.as_mut() else {
                    return Err(Hl7Error::new(
                        ErrorCode::SegmentSequence,
                        Some(Location {
                            segment: "OBX".into(),
                            sequence: segment.sequence(),
                            ..Location::default()
                        }),
                        "an OBX of an ORU^R01 must follow its OBR",
                    ));
                };
                let mapped = builder.map_obx(segment, current)?;
                current.observations.push(mapped);
            }
            _ => {}
        }
    }
    if let Some(done) = order.take() {
        builder.finish_order(done)?;
    }
    Ok(Some(Mapping {
        resources: builder.resources,
    }))
}

struct Builder<'a> {
    message: &'a Message,
    clock: &'a Clock,
    /// MSH-4, the sending facility, which scopes every natural key.
    sender: String,
    resources: Vec<MappedResource>,
    /// Devices already in `resources`, by (system, value).
    devices: HashMap<(Option<String>, String), usize>,
}

/// One OBR and the OBX under it.
struct Order<'a> {
    obr: &'a Segment,
    patient: Option<usize>,
    /// OBR-3 filler order number, when given.
    filler: Option<Ident>,
    /// The order's part of natural keys: filler, else placer, else the message and OBR.
    id: String,
    observations: Vec<MappedObx>,
    /// OBX seen so far per (coding system, code, sub-id), so repeats get their own keys.
    seen: HashMap<(String, String, String), usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pressure {
    Systolic,
    Diastolic,
}

struct MappedObx {
    key: String,
    body: Map<String, Value>,
    pressure: Option<Pressure>,
    /// OBX-4, for the panel's key.
    sub_id: String,
}

impl<'a> Order<'a> {
    fn new(obr: &'a Segment, patient: Option<usize>, message: &Message) -> Order<'a> {
        let filler = obr.first(3).and_then(datatypes::ei);
        let placer = obr.first(2).and_then(datatypes::ei);
        let id = match (&filler, &placer) {
            (Some(f), _) => format!("filler={}^{}", f.value, obr.component(3, 2)),
            (None, Some(p)) => format!("placer={}^{}", p.value, obr.component(2, 2)),
            (None, None) => format!("message={}#{}", message.control_id(), obr.sequence()),
        };
        Order {
            obr,
            patient,
            filler,
            id,
            observations: Vec::new(),
            seen: HashMap::new(),
        }
    }
}

impl Builder<'_> {
    fn push(&mut self, resource: MappedResource) -> usize {
        self.resources.push(resource);
        self.resources.len() - 1
    }

    /// The Device of OBX-18 (first repetition), added once per message.
    fn device(&mut self, obx: &Segment) -> Option<usize> {
        let ident = obx.first(18).and_then(datatypes::ei)?;
        let lookup = (ident.system.clone(), ident.value.clone());
        if let Some(index) = self.devices.get(&lookup) {
            return Some(*index);
        }
        let index = self.push(MappedResource {
            resource_type: "Device",
            key: ident_key(&ident),
            policy: WritePolicy::KeepExisting,
            body: json!({ "resourceType": "Device", "identifier": [ident.to_fhir(None)] }),
        });
        self.devices.insert(lookup, index);
        Some(index)
    }

    fn map_obx(&mut self, obx: &Segment, order: &mut Order) -> Result<MappedObx, Hl7Error> {
        let code_rep = obx
            .first(3)
            .ok_or_else(|| Hl7Error::missing(obx.location(3), "OBX-3 observation identifier"))?;
        let mut code = datatypes::codeable_concept(code_rep)
            .ok_or_else(|| Hl7Error::missing(obx.location(3), "OBX-3 observation identifier"))?;
        let status_code = datatypes::text(obx.value(11))
            .ok_or_else(|| Hl7Error::missing(obx.location(11), "OBX-11 result status"))?;
        let status = tables::observation_status(status_code)
            .ok_or_else(|| Hl7Error::table_value(obx.location(11), "0085", status_code))?;

        // The vital sign the primary or alternate code names.
        let sign = [(1, 3), (4, 6)].into_iter().find_map(|(c, s)| {
            let system = tables::coding_system(code_rep.component(s).trim());
            vitals::from_code(system.as_deref(), code_rep.component(c).trim())
        });
        let value_type = obx.value(2).trim();
        let (value, vital) = self.value(obx, value_type, sign)?;

        if let Some(sign) = vital {
            add_loinc(&mut code, sign);
        }
        let pressure = vital.and_then(|s| match s.loinc {
            "8480-6" => Some(Pressure::Systolic),
            "8462-4" => Some(Pressure::Diastolic),
            _ => None,
        });
        // A LOINC-coded vital sign that is not numeric keeps its category too.
        let is_vital = vital.is_some() || sign.is_some_and(|(_, mdc)| !mdc);

        let mut body = Map::new();
        body.insert("resourceType".into(), json!("Observation"));
        body.insert("status".into(), json!(status));
        if is_vital {
            body.insert(
                "category".into(),
                json!([{ "coding": [{ "system": VITAL_SIGNS_CATEGORY, "code": "vital-signs", "display": "Vital Signs" }] }]),
            );
        }
        body.insert("code".into(), code);
        if let Some(patient) = order.patient {
            body.insert(
                "subject".into(),
                json!({ "reference": placeholder(patient) }),
            );
        }
        let effective = match self
            .clock
            .datetime(obx, 14, "OBX-14 date/time of the observation")?
        {
            Some(when) => Some(when),
            None => self
                .clock
                .datetime(order.obr, 7, "OBR-7 observation date/time")?,
        };
        if let Some(when) = effective {
            body.insert("effectiveDateTime".into(), json!(when));
        }
        match value {
            Some((element, value)) => {
                body.insert(element.into(), value);
            }
            None => {
                if let Some(reason) = tables::absent_reason(status_code) {
                    body.insert(
                        "dataAbsentReason".into(),
                        json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": reason }] }),
                    );
                }
            }
        }
        let mut interpretations = Vec::new();
        for (i, rep) in obx.repetitions(8).iter().enumerate() {
            let Some(flag) = datatypes::text(rep.component(1)) else {
                continue;
            };
            let (system, code, display) = tables::interpretation(flag).ok_or_else(|| {
                Hl7Error::table_value(obx.location(8).with_repetition(i + 1), "0078", flag)
            })?;
            interpretations.push(
                json!({ "coding": [{ "system": system, "code": code, "display": display }] }),
            );
        }
        if !interpretations.is_empty() {
            body.insert("interpretation".into(), Value::Array(interpretations));
        }
        if let Some(range) = datatypes::text(obx.value(7)) {
            body.insert(
                "referenceRange".into(),
                json!([reference_range(range, &unit(obx, vital))]),
            );
        }
        if let Some(device) = self.device(obx) {
            body.insert("device".into(), json!({ "reference": placeholder(device) }));
        }

        let system = code_rep.component(3).trim().to_string();
        let code_value = code_rep.component(1).trim().to_string();
        let sub_id = obx.value(4).trim().to_string();
        let count = order
            .seen
            .entry((system.clone(), code_value.clone(), sub_id.clone()))
            .or_insert(0);
        *count += 1;
        let key = natural_key(&[
            "obx",
            &self.sender,
            &order.id,
            &system,
            &code_value,
            &sub_id,
            &count.to_string(),
        ]);
        Ok(MappedObx {
            key,
            body,
            pressure,
            sub_id,
        })
    }

    /// OBX-5 by OBX-2: the value element and its JSON, and the vital sign it was mapped as.
    #[allow(clippy::type_complexity)]
    fn value(
        &self,
        obx: &Segment,
        value_type: &str,
        sign: Option<(&'static VitalSign, bool)>,
    ) -> Result<(Option<(&'static str, Value)>, Option<&'static VitalSign>), Hl7Error> {
        let supported = [
            "NM", "ST", "TX", "FT", "CE", "CWE", "CNE", "SN", "DT", "DTM", "TS", "TM",
        ]
        .contains(&value_type);
        let present = obx.field(5).is_some_and(|f| !f.is_empty());
        if value_type.is_empty() {
            if present {
                return Err(Hl7Error::missing(obx.location(2), "OBX-2 value type"));
            }
            return Ok((None, None));
        }
        if !supported {
            return Err(Hl7Error::data_type(
                obx.location(2),
                format!("OBX-2 value type {value_type:?} is not mapped (NM, ST, TX, FT, CE, CWE, CNE, SN, DT, DTM, TS and TM are)"),
            ));
        }
        let Some(first) = obx.first(5).filter(|_| present) else {
            return Ok((None, None));
        };
        let location = obx.location(5);
        let first_value = first.component(1).trim();
        let bad = |what: &str| {
            Hl7Error::data_type(
                location.clone(),
                format!("OBX-5 is not a valid {value_type}: {what}"),
            )
        };
        let value = match value_type {
            "NM" => {
                let number = datatypes::decimal(first_value)
                    .ok_or_else(|| bad(&format!("{first_value:?} is not a number")))?;
                // A vital sign needs a unit it is measured in (see vitals.rs).
                let vital = match sign {
                    Some((sign, mdc)) => match vital_unit(obx, sign) {
                        Some(_) => Some(sign),
                        None if mdc => None,
                        None => {
                            return Err(Hl7Error::data_type(
                                obx.location(6),
                                format!(
                                    "{:?} is not a unit of {} (LOINC {}, measured in {})",
                                    obx.value(6),
                                    sign.display.to_lowercase(),
                                    sign.loinc,
                                    sign.unit
                                ),
                            ))
                        }
                    },
                    None => None,
                };
                let mut quantity = Map::new();
                quantity.insert("value".into(), number);
                quantity.extend(unit(obx, vital));
                return Ok((Some(("valueQuantity", Value::Object(quantity))), vital));
            }
            "ST" | "TX" | "FT" => {
                let delimiters = self.message.delimiters();
                let lines: Vec<String> = obx
                    .repetitions(5)
                    .iter()
                    .map(|r| raw_text(r, delimiters.component, delimiters.subcomponent))
                    .collect();
                let joined = lines.join("\n");
                if joined.trim().is_empty() {
                    return Ok((None, None));
                }
                ("valueString", json!(joined))
            }
            "CE" | "CWE" | "CNE" => match datatypes::codeable_concept(first) {
                Some(concept) => ("valueCodeableConcept", concept),
                None => return Ok((None, None)),
            },
            "SN" => structured_numeric(first, &unit(obx, None)).map_err(|e| bad(&e))?,
            "DT" => {
                let date = parse_dtm(first_value).map_err(|e| bad(&e.to_string()))?;
                if date.precision() > Precision::Day {
                    return Err(bad("a DT has no time"));
                }
                ("valueDateTime", json!(date.to_fhir_date()))
            }
            "DTM" | "TS" => {
                let when = self.clock.dtm(first_value, location.clone(), "OBX-5")?;
                match when {
                    Some(when) => ("valueDateTime", json!(when.to_fhir_datetime())),
                    None => return Ok((None, None)),
                }
            }
            "TM" => (
                "valueTime",
                json!(parse_tm(first_value)
                    .map_err(|e| bad(&e.to_string()))?
                    .to_fhir_time()),
            ),
            _ => return Ok((None, None)),
        };
        Ok((Some(value), None))
    }

    /// Writes the order's Observations (pairing blood pressures) and its DiagnosticReport.
    fn finish_order(&mut self, order: Order) -> Result<(), Hl7Error> {
        let obr = order.obr;
        let count = order.observations.len();
        let mut partner: Vec<Option<usize>> = vec![None; count];
        for sys in 0..count {
            if order.observations[sys].pressure != Some(Pressure::Systolic) {
                continue;
            }
            let dia = (0..count).find(|&d| {
                order.observations[d].pressure == Some(Pressure::Diastolic) && partner[d].is_none()
            });
            if let Some(dia) = dia {
                partner[sys] = Some(dia);
                partner[dia] = Some(sys);
            }
        }
        let mut results = Vec::new();
        let mut panels = 0;
        for (i, observation) in order.observations.iter().enumerate() {
            let resource = match (observation.pressure, partner[i]) {
                (Some(Pressure::Diastolic), Some(_)) => continue,
                (Some(Pressure::Systolic), Some(dia)) => {
                    panels += 1;
                    let key = natural_key(&[
                        "panel",
                        &self.sender,
                        &order.id,
                        "LN",
                        vitals::BP_PANEL_CODE,
                        &observation.sub_id,
                        &panels.to_string(),
                    ]);
                    MappedResource {
                        resource_type: "Observation",
                        key: ResourceKey::Natural { key },
                        policy: WritePolicy::Replace,
                        body: blood_pressure_panel(
                            &observation.body,
                            &order.observations[dia].body,
                        ),
                    }
                }
                _ => MappedResource {
                    resource_type: "Observation",
                    key: ResourceKey::Natural {
                        key: observation.key.clone(),
                    },
                    policy: WritePolicy::Replace,
                    body: Value::Object(observation.body.clone()),
                },
            };
            let index = self.push(resource);
            results.push(json!({ "reference": placeholder(index) }));
        }

        let mut body = Map::new();
        body.insert("resourceType".into(), json!("DiagnosticReport"));
        let mut identifiers = Vec::new();
        if let Some(filler) = &order.filler {
            identifiers.push(
                Ident {
                    type_code: Some("FILL".into()),
                    ..filler.clone()
                }
                .to_fhir(None),
            );
        }
        if let Some(placer) = obr.first(2).and_then(datatypes::ei) {
            identifiers.push(
                Ident {
                    type_code: Some("PLAC".into()),
                    ..placer
                }
                .to_fhir(None),
            );
        }
        if !identifiers.is_empty() {
            body.insert("identifier".into(), Value::Array(identifiers));
        }
        let status = match datatypes::text(obr.value(25)) {
            Some(code) => tables::report_status(code)
                .ok_or_else(|| Hl7Error::table_value(obr.location(25), "0123", code))?,
            None => "unknown",
        };
        body.insert("status".into(), json!(status));
        let code = obr
            .first(4)
            .and_then(datatypes::codeable_concept)
            .ok_or_else(|| {
                Hl7Error::missing(obr.location(4), "OBR-4 universal service identifier")
            })?;
        body.insert("code".into(), code);
        if let Some(patient) = order.patient {
            body.insert(
                "subject".into(),
                json!({ "reference": placeholder(patient) }),
            );
        }
        if let Some(when) = self.clock.datetime(obr, 7, "OBR-7 observation date/time")? {
            body.insert("effectiveDateTime".into(), json!(when));
        }
        // An instant needs seconds and a zone; a less precise OBR-22 is left out.
        if let Some(issued) =
            self.clock
                .dtm(obr.value(22), obr.location(22), "OBR-22 results reported")?
        {
            if let Some(instant) = issued.to_fhir_instant() {
                body.insert("issued".into(), json!(instant));
            }
        }
        if !results.is_empty() {
            body.insert("result".into(), Value::Array(results));
        }
        let key = match &order.filler {
            Some(filler) => ident_key(filler),
            None => ResourceKey::Natural {
                key: natural_key(&["report", &self.sender, &order.id]),
            },
        };
        self.push(MappedResource {
            resource_type: "DiagnosticReport",
            key,
            policy: WritePolicy::Replace,
            body: Value::Object(body),
        });
        Ok(())
    }
}

/// The UCUM unit of a vital sign's OBX-6, when it is one the sign is measured in.
fn vital_unit(obx: &Segment, sign: &VitalSign) -> Option<&'static str> {
    vitals::ucum_unit(obx.component(6, 1), obx.component(6, 2))
        .filter(|u| vitals::unit_fits(sign, u))
}

/// The unit part of a Quantity from OBX-6: a vital sign's UCUM unit; else OBX-6.1 as a UCUM
/// code when OBX-6 names UCUM or no system, else the unit's text alone.
fn unit(obx: &Segment, vital: Option<&VitalSign>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(ucum) = vital.and_then(|sign| vital_unit(obx, sign)) {
        out.insert("unit".into(), json!(ucum));
        out.insert("system".into(), json!(tables::UCUM));
        out.insert("code".into(), json!(ucum));
        return out;
    }
    let code = datatypes::text(obx.component(6, 1));
    let text = datatypes::text(obx.component(6, 2));
    let system = obx.component(6, 3).trim();
    if let Some(display) = text.or(code) {
        out.insert("unit".into(), json!(display));
    }
    if let (Some(code), "UCUM" | "") = (code, system) {
        out.insert("system".into(), json!(tables::UCUM));
        out.insert("code".into(), json!(code));
    }
    out
}

/// A component's text as sent: its components and subcomponents joined by their delimiters
/// (a text value with an unescaped `^` is still one text).
fn raw_text(rep: &Repetition, component: char, subcomponent: char) -> String {
    let parts: Vec<String> = rep
        .components()
        .iter()
        .map(|c| c.subcomponents().join(&subcomponent.to_string()))
        .collect();
    let joined = parts.join(&component.to_string());
    joined.trim_end_matches(component).to_string()
}

/// Puts the LOINC coding of `sign` first in `code` (and 2708-6 before pulse oximetry's
/// 59408-5, which the vital-signs profile asks for) unless it was sent; the sent codings stay.
fn add_loinc(code: &mut Value, sign: &VitalSign) {
    let Some(concept) = code.as_object_mut() else {
        return;
    };
    let codings = concept.entry("coding").or_insert_with(|| json!([]));
    let Some(codings) = codings.as_array_mut() else {
        return;
    };
    let mut wanted = vec![sign];
    if sign.loinc == vitals::PULSE_OXIMETRY.loinc {
        wanted.insert(0, &vitals::OXYGEN_SATURATION);
    }
    let present = |codings: &[Value], loinc: &str| {
        codings.iter().any(|c| {
            c.get("system").and_then(Value::as_str) == Some(tables::LOINC)
                && c.get("code").and_then(Value::as_str) == Some(loinc)
        })
    };
    let missing: Vec<&VitalSign> = wanted
        .into_iter()
        .filter(|w| !present(codings, w.loinc))
        .collect();
    for (i, w) in missing.into_iter().enumerate() {
        codings.insert(
            i,
            json!({ "system": tables::LOINC, "code": w.loinc, "display": w.display }),
        );
    }
}

/// SN: comparator (1), first number (2), separator or suffix (3), second number (4).
fn structured_numeric(
    rep: &Repetition,
    unit: &Map<String, Value>,
) -> Result<(&'static str, Value), String> {
    let comparator = rep.component(1).trim();
    let num1 = rep.component(2).trim();
    let separator = rep.component(3).trim();
    let num2 = rep.component(4).trim();
    let number =
        |text: &str| datatypes::decimal(text).ok_or_else(|| format!("{text:?} is not a number"));
    let quantity = |value: Value, comparator: Option<&str>| {
        let mut q = Map::new();
        q.insert("value".into(), value);
        if let Some(c) = comparator {
            q.insert("comparator".into(), json!(c));
        }
        q.extend(unit.clone());
        Value::Object(q)
    };
    match (separator, num2.is_empty()) {
        ("", true) => {
            let value = number(num1)?;
            match comparator {
                "" | "=" => Ok(("valueQuantity", quantity(value, None))),
                "<" | ">" | "<=" | ">=" => Ok(("valueQuantity", quantity(value, Some(comparator)))),
                // FHIR has no "not equal" comparator; the value is kept as written.
                "<>" => Ok(("valueString", json!(format!("<>{num1}")))),
                other => Err(format!("{other:?} is not an SN comparator")),
            }
        }
        ("-", false) if comparator.is_empty() => Ok((
            "valueRange",
            json!({ "low": quantity(number(num1)?, None), "high": quantity(number(num2)?, None) }),
        )),
        (":" | "/", false) if comparator.is_empty() => Ok((
            "valueRatio",
            json!({ "numerator": { "value": number(num1)? }, "denominator": { "value": number(num2)? } }),
        )),
        // "2+" style results (e.g. a dipstick): categorical, so kept as text.
        ("+", true) if comparator.is_empty() => {
            number(num1)?;
            Ok(("valueString", json!(format!("{num1}+"))))
        }
        _ => Err(format!(
            "{comparator:?} {num1:?} {separator:?} {num2:?} is not a structured numeric"
        )),
    }
}

/// OBX-7 to a referenceRange: `low-high`, `<x`/`<=x` (high only), `>x`/`>=x` (low only), in
/// the unit of the value; anything else is kept as text.
fn reference_range(range: &str, unit: &Map<String, Value>) -> Value {
    let quantity = |text: &str| {
        datatypes::decimal(text).map(|value| {
            let mut q = Map::new();
            q.insert("value".into(), value);
            q.extend(unit.clone());
            Value::Object(q)
        })
    };
    let bound = |rest: &str| rest.strip_prefix('=').unwrap_or(rest).trim().to_string();
    if let Some(rest) = range.strip_prefix('<') {
        if let Some(high) = quantity(&bound(rest)) {
            return json!({ "high": high });
        }
    } else if let Some(rest) = range.strip_prefix('>') {
        if let Some(low) = quantity(&bound(rest)) {
            return json!({ "low": low });
        }
    } else {
        // Split at a '-' that is not a sign: both sides must be numbers.
        for (at, _) in range.match_indices('-').filter(|(at, _)| *at > 0) {
            if let (Some(low), Some(high)) = (quantity(&range[..at]), quantity(&range[at + 1..])) {
                return json!({ "low": low, "high": high });
            }
        }
    }
    json!({ "text": range })
}

/// The 85354-9 panel from a systolic and a diastolic Observation body.
fn blood_pressure_panel(systolic: &Map<String, Value>, diastolic: &Map<String, Value>) -> Value {
    let mut panel = Map::new();
    panel.insert("resourceType".into(), json!("Observation"));
    for element in ["status", "category"] {
        if let Some(value) = systolic.get(element) {
            panel.insert(element.into(), value.clone());
        }
    }
    panel.insert(
        "code".into(),
        json!({ "coding": [{ "system": tables::LOINC, "code": vitals::BP_PANEL_CODE, "display": vitals::BP_PANEL_DISPLAY }], "text": "Blood pressure" }),
    );
    for element in ["subject", "effectiveDateTime"] {
        if let Some(value) = systolic.get(element) {
            panel.insert(element.into(), value.clone());
        }
    }
    let component = |body: &Map<String, Value>| {
        let mut out = Map::new();
        for element in [
            "code",
            "valueQuantity",
            "dataAbsentReason",
            "interpretation",
            "referenceRange",
        ] {
            if let Some(value) = body.get(element) {
                out.insert(element.into(), value.clone());
            }
        }
        Value::Object(out)
    };
    panel.insert(
        "component".into(),
        json!([component(systolic), component(diastolic)]),
    );
    if let Some(device) = systolic.get("device") {
        panel.insert("device".into(), device.clone());
    }
    Value::Object(panel)
}
