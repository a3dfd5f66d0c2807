//! What one change of the feed becomes in the projections, decided purely from the stored
//! resource: a patient row, a device row, the measurements of an Observation, a removal, or
//! nothing. Both the relational and the time-series projection read this one mapping.

use fhir_store::{Change, ChangeKind};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use crate::vitals::{VitalSign, BP_PANEL_CODES, LOINC};

/// What a change means for the projections.
#[derive(Debug, Clone, PartialEq)]
pub enum Projected {
    Patient(PatientRow),
    Device(DeviceRow),
    /// The measurements of one version of an Observation; they replace every earlier one of
    /// the same Observation. Empty when it is not (or no longer) a usable vital sign.
    Observation { id: String, version: u64, measurements: Vec<Measurement> },
    /// The resource was deleted: whatever it projected to goes.
    Deleted { resource_type: String, id: String },
    /// A resource type no projection keeps.
    Ignored,
}

/// A Patient as the `patients` table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct PatientRow {
    pub fhir_id: String,
    pub fhir_version: u64,
    /// The value of the first identifier typed MR (v2 table 0203).
    pub mrn: Option<String>,
    pub family_name: Option<String>,
    /// Given names, space separated.
    pub given_names: Option<String>,
    pub birth_date: Option<Date>,
    /// male, female, other or unknown.
    pub gender: Option<&'static str>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub active: bool,
    pub last_updated: OffsetDateTime,
}

/// The status column of `devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    Active,
    Inactive,
    Maintenance,
    Retired,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Inactive => "inactive",
            DeviceStatus::Maintenance => "maintenance",
            DeviceStatus::Retired => "retired",
        }
    }
}

/// A Device as the `devices` table holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRow {
    pub fhir_id: String,
    pub fhir_version: u64,
    pub serial_number: Option<String>,
    /// `type.text`, else the first coding's display, else its code.
    pub device_type: Option<String>,
    pub manufacturer: Option<String>,
    /// `modelNumber`, else the model-name `deviceName`.
    pub model: Option<String>,
    /// The `version` whose type says firmware, else the only version.
    pub firmware_version: Option<String>,
    pub status: DeviceStatus,
    pub last_updated: OffsetDateTime,
}

/// One vital-sign value: a row of `measurements` and a field of a time-series point.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub observation_id: String,
    pub observation_version: u64,
    pub kind: VitalSign,
    /// In `kind.unit()`.
    pub value: f64,
    pub measured_at: OffsetDateTime,
    /// The logical id of the Patient the Observation's subject references.
    pub patient_id: Option<String>,
    /// The logical id of the Device the Observation's device references.
    pub device_id: Option<String>,
}

/// Maps one change of the feed.
pub fn project(change: &Change) -> Projected {
    let resource = &change.resource;
    if change.kind == ChangeKind::Delete || resource.deleted {
        return match resource.resource_type.as_str() {
            "Patient" | "Device" | "Observation" => {
                Projected::Deleted { resource_type: resource.resource_type.clone(), id: resource.id.clone() }
            }
            _ => Projected::Ignored,
        };
    }
    let Some(body) = resource.body.as_deref().and_then(|b| serde_json::from_slice::<Value>(b).ok()) else {
        return Projected::Ignored;
    };
    let (id, version, last_updated) = (resource.id.clone(), resource.version, resource.last_updated);
    match resource.resource_type.as_str() {
        "Patient" => Projected::Patient(patient_row(&body, id, version, last_updated)),
        "Device" => Projected::Device(device_row(&body, id, version, last_updated)),
        "Observation" => Projected::Observation { measurements: measurements(&body, &id, version), id, version },
        _ => Projected::Ignored,
    }
}

fn patient_row(body: &Value, fhir_id: String, fhir_version: u64, last_updated: OffsetDateTime) -> PatientRow {
    let mrn = array(body, "identifier")
        .find(|identifier| codings(&identifier["type"]).any(|coding| coding["code"] == "MR"))
        .and_then(|identifier| text(&identifier["value"]));
    let names: Vec<&Value> = array(body, "name").collect();
    let name = names.iter().find(|n| n["use"] == "official").or(names.first()).copied();
    let given: Vec<&str> = name.map(|n| array(n, "given").filter_map(Value::as_str).collect()).unwrap_or_default();
    let telecom = |system: &str| {
        array(body, "telecom")
            .filter(|t| t["system"] == system)
            .min_by_key(|t| t["rank"].as_u64().unwrap_or(u64::MAX))
            .and_then(|t| text(&t["value"]))
    };
    PatientRow {
        fhir_id,
        fhir_version,
        mrn,
        family_name: name.and_then(|n| text(&n["family"])),
        given_names: (!given.is_empty()).then(|| given.join(" ")),
        birth_date: body["birthDate"].as_str().and_then(parse_date),
        gender: match body["gender"].as_str() {
            Some("male") => Some("male"),
            Some("female") => Some("female"),
            Some("other") => Some("other"),
            Some("unknown") => Some("unknown"),
            _ => None,
        },
        phone: telecom("phone"),
        email: telecom("email"),
        active: body["active"].as_bool().unwrap_or(true),
        last_updated,
    }
}

fn device_row(body: &Value, fhir_id: String, fhir_version: u64, last_updated: OffsetDateTime) -> DeviceRow {
    let device_type = text(&body["type"]["text"])
        .or_else(|| codings(&body["type"]).find_map(|c| text(&c["display"]).or_else(|| text(&c["code"]))));
    let model = text(&body["modelNumber"]).or_else(|| {
        array(body, "deviceName").find(|n| n["type"] == "model-name").and_then(|n| text(&n["name"]))
    });
    let versions: Vec<&Value> = array(body, "version").collect();
    let firmware = versions
        .iter()
        .find(|v| {
            let kind = &v["type"];
            let says_firmware = |t: Option<&str>| t.is_some_and(|t| t.to_ascii_lowercase().contains("firmware"));
            says_firmware(kind["text"].as_str()) || codings(kind).any(|c| says_firmware(c["code"].as_str()) || says_firmware(c["display"].as_str()))
        })
        .or(if versions.len() == 1 { versions.first() } else { None })
        .and_then(|v| text(&v["value"]));
    let paused = codings_of_all(body, "statusReason")
        .any(|c| matches!(c["code"].as_str(), Some("standby" | "paused" | "not-ready")));
    let status = match body["status"].as_str() {
        Some("entered-in-error") => DeviceStatus::Retired,
        _ if paused => DeviceStatus::Maintenance,
        Some("inactive" | "unknown") => DeviceStatus::Inactive,
        _ => DeviceStatus::Active,
    };
    DeviceRow {
        fhir_id,
        fhir_version,
        serial_number: text(&body["serialNumber"]),
        device_type,
        manufacturer: text(&body["manufacturer"]),
        model,
        firmware_version: firmware,
        status,
        last_updated,
    }
}

/// The vital-sign values of an Observation: its own value, or, for a blood-pressure panel,
/// each component's. Observations entered in error or cancelled, without a full effective
/// time, or with a value in a unit the sign cannot be converted from, give none.
fn measurements(body: &Value, id: &str, version: u64) -> Vec<Measurement> {
    if matches!(body["status"].as_str(), Some("entered-in-error" | "cancelled")) {
        return Vec::new();
    }
    let Some(measured_at) = effective_time(body) else { return Vec::new() };
    let patient_id = reference_id(&body["subject"], "Patient");
    let device_id = reference_id(&body["device"], "Device");
    let measurement = |kind: VitalSign, quantity: &Value| {
        let value = quantity["value"].as_f64()?;
        let unit = quantity["code"].as_str().or(quantity["unit"].as_str())?;
        Some(Measurement {
            observation_id: id.to_string(),
            observation_version: version,
            kind,
            value: kind.to_canonical(value, unit)?,
            measured_at,
            patient_id: patient_id.clone(),
            device_id: device_id.clone(),
        })
    };
    let codes: Vec<&str> = loinc_codes(&body["code"]).collect();
    if codes.iter().any(|c| BP_PANEL_CODES.contains(c)) {
        return array(body, "component")
            .filter_map(|component| {
                let kind = loinc_codes(&component["code"]).find_map(VitalSign::from_loinc)?;
                measurement(kind, &component["valueQuantity"])
            })
            .collect();
    }
    codes
        .iter()
        .find_map(|c| VitalSign::from_loinc(c))
        .and_then(|kind| measurement(kind, &body["valueQuantity"]))
        .into_iter()
        .collect()
}

/// effectiveDateTime, effectiveInstant or the start of effectivePeriod, when it has a time
/// and a zone (a date alone does not place a measurement in a series).
fn effective_time(body: &Value) -> Option<OffsetDateTime> {
    let text = body["effectiveDateTime"]
        .as_str()
        .or(body["effectiveInstant"].as_str())
        .or(body["effectivePeriod"]["start"].as_str())?;
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

fn parse_date(text: &str) -> Option<Date> {
    Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

/// The logical id in a relative (`Patient/1`) or absolute (`…/Patient/1`) reference of the
/// given type.
fn reference_id(reference: &Value, resource_type: &str) -> Option<String> {
    let text = reference["reference"].as_str()?;
    let text = text.split("/_history/").next()?;
    let mut parts = text.rsplit('/');
    let id = parts.next()?;
    (parts.next()? == resource_type && !id.is_empty()).then(|| id.to_string())
}

fn loinc_codes(concept: &Value) -> impl Iterator<Item = &str> {
    codings(concept).filter(|c| c["system"] == LOINC).filter_map(|c| c["code"].as_str())
}

fn codings(concept: &Value) -> impl Iterator<Item = &Value> {
    concept["coding"].as_array().into_iter().flatten()
}

fn codings_of_all<'a>(body: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    array(body, key).flat_map(codings)
}

fn array<'a>(body: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    body[key].as_array().into_iter().flatten()
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use fhir_store::StoredResource;
    use serde_json::json;

    use super::*;

    fn change(resource_type: &str, id: &str, body: Value) -> Change {
        Change {
            seq: 7,
            kind: ChangeKind::Update,
            resource: StoredResource {
                resource_type: resource_type.into(),
                id: id.into(),
                version: 3,
                last_updated: OffsetDateTime::UNIX_EPOCH,
                deleted: false,
                body: Some(serde_json::to_vec(&body).unwrap()),
                seq: 7,
            },
        }
    }

    fn loinc(code: &str) -> Value {
        json!({"coding": [{"system": LOINC, "code": code}]})
    }

    #[test]
    fn patient_row_takes_the_mr_identifier_official_name_and_ranked_telecom() {
        let body = json!({
            "resourceType": "Patient",
            "identifier": [
                {"system": "urn:ssn", "value": "123"},
                {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": "MRN-9"}
            ],
            "name": [{"use": "nickname", "family": "X"}, {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
            "telecom": [{"system": "phone", "value": "555-2", "rank": 2}, {"system": "phone", "value": "555-1", "rank": 1}, {"system": "email", "value": "p@example.org"}],
            "gender": "male",
            "birthDate": "1974-12-25"
        });
        let Projected::Patient(row) = project(&change("Patient", "p1", body)) else { panic!("a patient row") };
        assert_eq!(row.mrn.as_deref(), Some("MRN-9"));
        assert_eq!(row.family_name.as_deref(), Some("Chalmers"));
        assert_eq!(row.given_names.as_deref(), Some("Peter James"));
        assert_eq!(row.phone.as_deref(), Some("555-1"));
        assert_eq!(row.email.as_deref(), Some("p@example.org"));
        assert_eq!(row.gender, Some("male"));
        assert_eq!(row.birth_date, Some(time::macros::date!(1974 - 12 - 25)));
        assert_eq!((row.fhir_id.as_str(), row.fhir_version), ("p1", 3));
    }

    #[test]
    fn device_row_reads_serial_model_firmware_and_status() {
        let body = json!({
            "resourceType": "Device",
            "serialNumber": "SN-1",
            "manufacturer": "Acme",
            "deviceName": [{"name": "Monitor 3000", "type": "model-name"}],
            "type": {"coding": [{"system": "urn:iso:std:iso:11073:10101", "code": "69837", "display": "Patient monitor"}]},
            "version": [{"type": {"text": "hardware"}, "value": "A"}, {"type": {"text": "Firmware revision"}, "value": "2.1.0"}],
            "status": "active",
            "statusReason": [{"coding": [{"code": "standby"}]}]
        });
        let Projected::Device(row) = project(&change("Device", "d1", body)) else { panic!("a device row") };
        assert_eq!(row.serial_number.as_deref(), Some("SN-1"));
        assert_eq!(row.model.as_deref(), Some("Monitor 3000"));
        assert_eq!(row.device_type.as_deref(), Some("Patient monitor"));
        assert_eq!(row.firmware_version.as_deref(), Some("2.1.0"));
        assert_eq!(row.status, DeviceStatus::Maintenance);
    }

    #[test]
    fn a_blood_pressure_panel_gives_one_measurement_per_component() {
        let body = json!({
            "resourceType": "Observation", "status": "final", "code": loinc("85354-9"),
            "subject": {"reference": "Patient/p1"}, "device": {"reference": "http://x/fhir/Device/d1"},
            "effectiveDateTime": "2026-03-01T10:00:00+01:00",
            "component": [
                {"code": loinc("8480-6"), "valueQuantity": {"value": 120, "code": "mm[Hg]"}},
                {"code": loinc("8462-4"), "valueQuantity": {"value": 80, "code": "mm[Hg]"}}
            ]
        });
        let Projected::Observation { measurements, .. } = project(&change("Observation", "o1", body)) else { panic!() };
        let values: Vec<_> = measurements.iter().map(|m| (m.kind, m.value)).collect();
        assert_eq!(values, vec![(VitalSign::BpSystolic, 120.0), (VitalSign::BpDiastolic, 80.0)]);
        assert_eq!(measurements[0].measured_at, time::macros::datetime!(2026-03-01 09:00 UTC));
        assert_eq!(measurements[0].patient_id.as_deref(), Some("p1"));
        assert_eq!(measurements[0].device_id.as_deref(), Some("d1"));
    }

    #[test]
    fn unusable_observations_give_no_measurements() {
        let base = json!({"resourceType": "Observation", "status": "final", "code": loinc("8310-5"),
            "effectiveDateTime": "2026-03-01T10:00:00Z", "valueQuantity": {"value": 98.6, "code": "[degF]"}});
        let Projected::Observation { measurements, .. } = project(&change("Observation", "o", base.clone())) else { panic!() };
        assert_eq!((measurements[0].value * 10.0).round(), 370.0);
        for (key, value) in [("status", json!("entered-in-error")), ("effectiveDateTime", json!("2026-03-01")), ("valueQuantity", json!({"value": 1, "code": "kg"})), ("code", loinc("1234-5"))] {
            let mut body = base.clone();
            body[key] = value;
            let Projected::Observation { measurements, .. } = project(&change("Observation", "o", body)) else { panic!() };
            assert!(measurements.is_empty(), "{key}");
        }
    }

    #[test]
    fn deletes_remove_and_other_types_are_ignored() {
        let mut deleted = change("Patient", "p1", json!({}));
        deleted.kind = ChangeKind::Delete;
        deleted.resource.deleted = true;
        deleted.resource.body = None;
        assert_eq!(project(&deleted), Projected::Deleted { resource_type: "Patient".into(), id: "p1".into() });
        assert_eq!(project(&change("Encounter", "e", json!({"resourceType": "Encounter"}))), Projected::Ignored);
    }
}
