//! The ImagingStudy mapper: one study's index snapshot as a FHIR R4 ImagingStudy.
//!
//! Pure: no I/O, no clock. What is mapped, and what is deliberately left out:
//! - `id` is a UUID v5 of the StudyInstanceUID in the OID namespace, so every writer of a study
//!   names the same resource;
//! - `identifier`: the StudyInstanceUID (`urn:dicom:uid`, `urn:oid:` value) and the accession
//!   number (type ACSN) when there is one;
//! - `started` is the StudyDate as a FHIR date. A FHIR dateTime with a time of day must carry a
//!   UTC offset, and the index keeps none (DICOM times are the facility's local time unless
//!   Timezone Offset From UTC (0008,0201) says otherwise), so the time of day is given only
//!   when an offset is known (`started`), never guessed;
//! - modalities are Codings of the DICOM code system (DCM); a series without a Modality is
//!   `OT` ("other"), since `series.modality` is mandatory;
//! - `series.bodySite` is the SNOMED CT code that DICOM PS3.16 (CID 4031) gives the Body Part
//!   Examined defined term, for the terms in `BODY_PARTS`; any other term is left out rather
//!   than sent as an uncoded string;
//! - the DICOMweb service is a contained Endpoint (`#dicomweb`, WADO-RS), referenced by the
//!   study; no endpoint when no base URL is configured (its address is mandatory).

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::{IndexedInstance, SeriesRecord, StudySnapshot};

const DICOM_UID_SYSTEM: &str = "urn:dicom:uid";
const DCM_SYSTEM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const V2_0203_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const ENDPOINT_CONNECTION_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type";
const RFC3986_SYSTEM: &str = "urn:ietf:rfc:3986";
const SNOMED_SYSTEM: &str = "http://snomed.info/sct";
const ENDPOINT_ID: &str = "dicomweb";

/// Body Part Examined (0018,0015) defined terms and the SNOMED CT concept DICOM PS3.16
/// CID 4031 "Common Anatomic Region" gives each: (term, code, display).
const BODY_PARTS: &[(&str, &str, &str)] = &[
    ("ABDOMEN", "818981001", "Abdomen"),
    ("ABDOMENPELVIS", "818982008", "Abdomen and Pelvis"),
    ("ANKLE", "70258002", "Ankle joint"),
    ("BREAST", "76752008", "Breast"),
    ("CHEST", "816094009", "Chest"),
    ("CHESTABDOMEN", "416550000", "Chest and Abdomen"),
    ("CHESTABDPELVIS", "416775004", "Chest, Abdomen and Pelvis"),
    ("CSPINE", "122494005", "Cervical spine"),
    ("ELBOW", "16953009", "Elbow joint"),
    ("FOOT", "56459004", "Foot"),
    ("HAND", "85562004", "Hand"),
    ("HEAD", "69536005", "Head"),
    ("HEADNECK", "774007", "Head and Neck"),
    ("HEART", "80891009", "Heart"),
    ("HIP", "29836001", "Hip"),
    ("KNEE", "72696002", "Knee"),
    ("LSPINE", "122496007", "Lumbar spine"),
    ("NECK", "45048000", "Neck"),
    ("PELVIS", "816092008", "Pelvis"),
    ("SHOULDER", "16982005", "Shoulder"),
    ("SKULL", "89546000", "Skull"),
    ("SPINE", "421060004", "Spine"),
    ("TSPINE", "122495006", "Thoracic spine"),
    ("WHOLEBODY", "38266002", "Entire body"),
    ("WRIST", "74670003", "Wrist joint"),
];

/// The FHIR id of a study's ImagingStudy: UUID v5 of the StudyInstanceUID in the OID
/// namespace (RFC 9562), the same on every node and after every restart.
pub fn imaging_study_id(study_instance_uid: &str) -> String {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, study_instance_uid.trim().as_bytes()).to_string()
}

/// The ImagingStudy of `snapshot`, whose subject is `patient_reference` (e.g. `Patient/abc`)
/// and whose endpoint is the WADO-RS service at `dicomweb_base_url` (none when empty).
pub fn imaging_study_resource(snapshot: &StudySnapshot, patient_reference: &str, dicomweb_base_url: &str) -> Value {
    let study = &snapshot.study;
    let mut resource = Map::new();
    resource.insert("resourceType".into(), json!("ImagingStudy"));
    resource.insert("id".into(), json!(imaging_study_id(&study.study_instance_uid)));

    let base_url = dicomweb_base_url.trim();
    if !base_url.is_empty() {
        resource.insert("contained".into(), json!([endpoint(base_url)]));
    }

    let mut identifiers = vec![json!({
        "use": "official",
        "system": DICOM_UID_SYSTEM,
        "value": format!("urn:oid:{}", study.study_instance_uid.trim()),
    })];
    let accession = study.accession_number.trim();
    if !accession.is_empty() {
        identifiers.push(json!({
            "use": "usual",
            "type": { "coding": [{ "system": V2_0203_SYSTEM, "code": "ACSN" }] },
            "value": accession,
        }));
    }
    resource.insert("identifier".into(), Value::Array(identifiers));
    resource.insert("status".into(), json!("available"));

    let mut modalities: Vec<&str> = Vec::new();
    for (series, _) in &snapshot.series {
        let code = modality_code(&series.modality);
        if !modalities.contains(&code) {
            modalities.push(code);
        }
    }
    if !modalities.is_empty() {
        resource.insert("modality".into(), modalities.iter().map(|m| modality_coding(m)).collect());
    }

    resource.insert("subject".into(), json!({ "reference": patient_reference }));
    if let Some(started) = started(&study.study_date, &study.study_time, None) {
        resource.insert("started".into(), json!(started));
    }
    if !base_url.is_empty() {
        resource.insert("endpoint".into(), json!([{ "reference": format!("#{ENDPOINT_ID}") }]));
    }
    let instance_count: usize = snapshot.series.iter().map(|(_, instances)| instances.len()).sum();
    resource.insert("numberOfSeries".into(), json!(snapshot.series.len()));
    resource.insert("numberOfInstances".into(), json!(instance_count));
    insert_text(&mut resource, "description", &study.study_description);
    if !snapshot.series.is_empty() {
        let series = snapshot.series.iter().map(|(series, instances)| series_element(series, instances)).collect();
        resource.insert("series".into(), Value::Array(series));
    }
    Value::Object(resource)
}

/// The contained Endpoint of the DICOMweb (WADO-RS) service.
fn endpoint(address: &str) -> Value {
    json!({
        "resourceType": "Endpoint",
        "id": ENDPOINT_ID,
        "status": "active",
        "connectionType": { "system": ENDPOINT_CONNECTION_TYPE_SYSTEM, "code": "dicom-wado-rs" },
        "payloadType": [{ "text": "DICOM" }],
        "address": address,
    })
}

fn series_element(series: &SeriesRecord, instances: &[IndexedInstance]) -> Value {
    let mut element = Map::new();
    element.insert("uid".into(), json!(series.series_instance_uid.trim()));
    if let Some(number) = unsigned(series.series_number) {
        element.insert("number".into(), json!(number));
    }
    element.insert("modality".into(), modality_coding(modality_code(&series.modality)));
    insert_text(&mut element, "description", &series.series_description);
    element.insert("numberOfInstances".into(), json!(instances.len()));
    if let Some(body_site) = body_site(&series.body_part_examined) {
        element.insert("bodySite".into(), body_site);
    }
    if !instances.is_empty() {
        element.insert("instance".into(), instances.iter().map(instance_element).collect());
    }
    Value::Object(element)
}

fn instance_element(instance: &IndexedInstance) -> Value {
    let mut element = Map::new();
    element.insert("uid".into(), json!(instance.sop_instance_uid.trim()));
    element.insert(
        "sopClass".into(),
        json!({ "system": RFC3986_SYSTEM, "code": format!("urn:oid:{}", instance.sop_class_uid.trim()) }),
    );
    if let Some(number) = unsigned(instance.instance_number) {
        element.insert("number".into(), json!(number));
    }
    Value::Object(element)
}

/// The DCM code of a Modality value; `OT` (other) when it has none.
fn modality_code(modality: &str) -> &str {
    match modality.trim() {
        "" => "OT",
        code => code,
    }
}

fn modality_coding(code: &str) -> Value {
    json!({ "system": DCM_SYSTEM, "code": code })
}

fn body_site(body_part_examined: &str) -> Option<Value> {
    let term = body_part_examined.trim().to_ascii_uppercase();
    BODY_PARTS
        .iter()
        .find(|(defined, _, _)| *defined == term)
        .map(|(_, code, display)| json!({ "system": SNOMED_SYSTEM, "code": code, "display": display }))
}

/// A FHIR unsignedInt from a DICOM IS value; a negative number (which IS allows) has none.
fn unsigned(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok()).filter(|v| i32::try_from(*v).is_ok())
}

fn insert_text(object: &mut Map<String, Value>, key: &str, value: &str) {
    let value = value.trim();
    if !value.is_empty() {
        object.insert(key.into(), json!(value));
    }
}

/// `started` from a DICOM DA (`YYYYMMDD`) and TM (`HH[MM[SS[.F{1,6}]]]`, or the old
/// `HH:MM:SS` form), with the study's UTC offset (`±HHMM`, as in Timezone Offset From UTC) when
/// one is known. Without an offset only the date is given (see the module comment); an absent
/// or invalid date gives nothing, an invalid time gives the date alone.
pub(crate) fn started(date: &str, time: &str, utc_offset: Option<&str>) -> Option<String> {
    let date = fhir_date(date)?;
    let Some(offset) = utc_offset.and_then(offset) else {
        return Some(date);
    };
    match time_of_day(time) {
        Some(time) => Some(format!("{date}T{time}{offset}")),
        None => Some(date),
    }
}

/// A DICOM DA (`YYYYMMDD`) as a FHIR date (`YYYY-MM-DD`), if it is a real calendar date.
pub(crate) fn fhir_date(value: &str) -> Option<String> {
    let value = value.trim();
    // The ACR-NEMA form `YYYY.MM.DD` is still sent by old equipment.
    let digits: String = if value.len() == 10 && value.as_bytes()[4] == b'.' && value.as_bytes()[7] == b'.' {
        value.replace('.', "")
    } else {
        value.to_string()
    };
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[0..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..8].parse().ok()?;
    if year == 0 {
        return None;
    }
    let month = time::Month::try_from(month).ok()?;
    time::Date::from_calendar_date(year, month, day).ok()?;
    Some(format!("{}-{}-{}", &digits[0..4], &digits[4..6], &digits[6..8]))
}

/// `HH:MM:SS[.fff…]` from a DICOM TM; missing minutes and seconds are zero.
fn time_of_day(value: &str) -> Option<String> {
    let value = value.trim();
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    let whole: String = if whole.contains(':') { whole.replace(':', "") } else { whole.to_string() };
    if !matches!(whole.len(), 2 | 4 | 6) || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |at: usize| whole.get(at..at + 2).map_or(Some(0), |s| s.parse::<u8>().ok());
    let (hour, minute, second) = (field(0)?, field(2)?, field(4)?);
    // DICOM allows a leap second (60); FHIR's dateTime does too.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut text = format!("{hour:02}:{minute:02}:{second:02}");
    match fraction {
        Some(f) if !f.is_empty() && f.len() <= 6 && f.bytes().all(|b| b.is_ascii_digit()) => {
            text.push('.');
            text.push_str(f);
        }
        Some("") | None => {}
        Some(_) => return None,
    }
    Some(text)
}

/// A DICOM `±HHMM` offset as FHIR's `±HH:MM` (`Z` for zero).
fn offset(value: &str) -> Option<String> {
    let value = value.trim();
    let bytes = value.as_bytes();
    if bytes.len() != 5 || !matches!(bytes[0], b'+' | b'-') || !bytes[1..].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let hours: u8 = value[1..3].parse().ok()?;
    let minutes: u8 = value[3..5].parse().ok()?;
    if hours > 14 || minutes > 59 || (hours == 14 && minutes != 0) {
        return None;
    }
    if hours == 0 && minutes == 0 {
        return Some("Z".into());
    }
    Some(format!("{}{:02}:{:02}", &value[0..1], hours, minutes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_against_the_calendar() {
        assert_eq!(fhir_date("20240229").as_deref(), Some("2024-02-29"));
        assert_eq!(fhir_date("1999.12.31").as_deref(), Some("1999-12-31"));
        assert_eq!(fhir_date("20230229"), None);
        assert_eq!(fhir_date("20241301"), None);
        assert_eq!(fhir_date("00000101"), None);
        assert_eq!(fhir_date("2024"), None);
        assert_eq!(fhir_date(""), None);
        assert_eq!(fhir_date("2024-02-01"), None);
    }

    #[test]
    fn started_gives_a_time_only_with_an_offset() {
        assert_eq!(started("20240315", "101530", None).as_deref(), Some("2024-03-15"));
        assert_eq!(started("20240315", "101530.25", Some("+0100")).as_deref(), Some("2024-03-15T10:15:30.25+01:00"));
        assert_eq!(started("20240315", "10:15:30", Some("-0530")).as_deref(), Some("2024-03-15T10:15:30-05:30"));
        assert_eq!(started("20240315", "1015", Some("+0000")).as_deref(), Some("2024-03-15T10:15:00Z"));
        assert_eq!(started("20240315", "", Some("+0100")).as_deref(), Some("2024-03-15"));
        assert_eq!(started("20240315", "2561", Some("+0100")).as_deref(), Some("2024-03-15"));
        assert_eq!(started("20240315", "101530", Some("+1500")).as_deref(), Some("2024-03-15"));
        assert_eq!(started("", "101530", Some("+0100")), None);
    }

    #[test]
    fn unsigned_numbers_only() {
        assert_eq!(unsigned(Some(3)), Some(3));
        assert_eq!(unsigned(Some(0)), Some(0));
        assert_eq!(unsigned(Some(-1)), None);
        assert_eq!(unsigned(Some(i64::from(i32::MAX) + 1)), None);
        assert_eq!(unsigned(None), None);
    }

    #[test]
    fn every_body_part_row_maps_and_others_do_not() {
        for (term, code, display) in BODY_PARTS {
            let coding = body_site(&term.to_ascii_lowercase()).expect(term);
            assert_eq!(coding, json!({ "system": SNOMED_SYSTEM, "code": code, "display": display }));
        }
        assert_eq!(body_site("LEFT FOOT"), None);
        assert_eq!(body_site(""), None);
    }

    #[test]
    fn study_ids_are_stable_fhir_ids() {
        let id = imaging_study_id("1.2.840.113619.2.55.3");
        assert_eq!(id, imaging_study_id(" 1.2.840.113619.2.55.3 "));
        assert_ne!(id, imaging_study_id("1.2.840.113619.2.55.4"));
        assert!(id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
