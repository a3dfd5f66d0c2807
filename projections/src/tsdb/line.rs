//! Points of the `vital_signs` measurement and their InfluxDB line-protocol encoding: which
//! measurements a point holds, its key (patient, device, time), and escaping.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::Measurement;

/// The one measurement every vital sign is written to.
pub(super) const MEASUREMENT: &str = "vital_signs";

/// The tag keys, in the order the line protocol wants them (sorted).
pub(super) const DEVICE_TAG: &str = "device_id";
pub(super) const PATIENT_TAG: &str = "patient_id";

/// The earliest and latest instants InfluxDB can store, in nanoseconds since the epoch.
pub(super) const MIN_TIME_NS: i64 = i64::MIN + 2;
pub(super) const MAX_TIME_NS: i64 = i64::MAX - 1;

/// What identifies a point: its series (the tags) and its time. Writing the same key again
/// overwrites the fields it names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct PointKey {
    pub patient_id: Option<String>,
    pub device_id: Option<String>,
    pub time_ns: i64,
}

/// A point's fields: vital-sign name to value.
pub(super) type Fields = BTreeMap<&'static str, f64>;

/// The points `measurements` make, one per (patient, device, time); a later measurement of
/// the same field at the same key wins. Returns how many measurements could not be
/// represented (see `point_key`) and were left out.
pub(super) fn points<'a>(measurements: impl IntoIterator<Item = &'a Measurement>) -> (BTreeMap<PointKey, Fields>, usize) {
    let mut points: BTreeMap<PointKey, Fields> = BTreeMap::new();
    let mut skipped = 0;
    for measurement in measurements {
        match point_key(measurement) {
            Some(key) if measurement.value.is_finite() => {
                points.entry(key).or_default().insert(measurement.kind.name(), measurement.value);
            }
            _ => skipped += 1,
        }
    }
    (points, skipped)
}

/// The key of the point a measurement belongs to, or None when the line protocol cannot carry
/// it: a time outside InfluxDB's range, or an id that is empty or holds a backslash or a
/// control character. InfluxDB 1.x has no escape for a backslash in a tag value (`a\` and
/// `a\,b` cannot be written), and a line cannot hold a newline. FHIR logical ids never
/// contain any of these; only a malformed reference can produce one.
pub(super) fn point_key(measurement: &Measurement) -> Option<PointKey> {
    let time_ns = i64::try_from(measurement.measured_at.unix_timestamp_nanos()).ok()?;
    if !(MIN_TIME_NS..=MAX_TIME_NS).contains(&time_ns) {
        return None;
    }
    let representable = |id: &Option<String>| id.as_deref().is_none_or(is_representable_tag_value);
    if !representable(&measurement.patient_id) || !representable(&measurement.device_id) {
        return None;
    }
    Some(PointKey { patient_id: measurement.patient_id.clone(), device_id: measurement.device_id.clone(), time_ns })
}

fn is_representable_tag_value(value: &str) -> bool {
    !value.is_empty() && !value.chars().any(|c| c == '\\' || c.is_control())
}

/// One line: `vital_signs,device_id=…,patient_id=… heart_rate=72.0,spo2=98.0 <ns>`. Tags
/// appear only when present, sorted by key; every field is a float.
pub(super) fn encode(key: &PointKey, fields: &Fields) -> String {
    let mut line = escape(MEASUREMENT, &[',', ' ']);
    for (tag, value) in [(DEVICE_TAG, &key.device_id), (PATIENT_TAG, &key.patient_id)] {
        if let Some(value) = value {
            let _ = write!(line, ",{}={}", escape(tag, TAG_SPECIALS), escape(value, TAG_SPECIALS));
        }
    }
    for (i, (name, value)) in fields.iter().enumerate() {
        let separator = if i == 0 { ' ' } else { ',' };
        // Debug formatting is the shortest text that reads back as the same f64, and it
        // always has a decimal point or exponent, so no reader takes it for an integer.
        let _ = write!(line, "{separator}{}={value:?}", escape(name, TAG_SPECIALS));
    }
    let _ = write!(line, " {}", key.time_ns);
    line
}

/// Characters a tag key, tag value or field key must escape.
const TAG_SPECIALS: &[char] = &[',', '=', ' '];

fn escape(text: &str, specials: &[char]) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if specials.contains(&c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::VitalSign;

    fn measurement(kind: VitalSign, value: f64, patient: Option<&str>, device: Option<&str>) -> Measurement {
        Measurement {
            observation_id: "o1".into(),
            observation_version: 1,
            kind,
            value,
            measured_at: datetime!(2026-03-01 10:00:00.5 UTC),
            patient_id: patient.map(str::to_string),
            device_id: device.map(str::to_string),
        }
    }

    #[test]
    fn a_panel_is_one_line_with_sorted_tags_and_float_fields() {
        let (points, skipped) = points(&[
            measurement(VitalSign::BpSystolic, 120.0, Some("p1"), Some("d1")),
            measurement(VitalSign::BpDiastolic, 80.5, Some("p1"), Some("d1")),
        ]);
        assert_eq!(skipped, 0);
        let lines: Vec<String> = points.iter().map(|(k, f)| encode(k, f)).collect();
        assert_eq!(lines, vec!["vital_signs,device_id=d1,patient_id=p1 bp_diastolic=80.5,bp_systolic=120.0 1772359200500000000"]);
    }

    #[test]
    fn tag_values_are_escaped_and_absent_tags_left_out() {
        let (points, _) = points(&[measurement(VitalSign::HeartRate, 72.0, Some("a b,c=d"), None)]);
        let (key, fields) = points.iter().next().unwrap();
        assert_eq!(encode(key, fields), r"vital_signs,patient_id=a\ b\,c\=d heart_rate=72.0 1772359200500000000");
    }

    #[test]
    fn unrepresentable_measurements_are_left_out() {
        let (points, skipped) = points(&[
            measurement(VitalSign::HeartRate, 72.0, Some("a\\"), None),
            measurement(VitalSign::HeartRate, 72.0, Some("a\nb"), None),
            measurement(VitalSign::HeartRate, f64::INFINITY, Some("p"), None),
            measurement(VitalSign::HeartRate, 72.0, Some(""), None),
        ]);
        assert!(points.is_empty());
        assert_eq!(skipped, 4);
    }
}
