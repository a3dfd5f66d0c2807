//! Business rules for vital-sign Observations: plausible ranges, UCUM units, systolic above
//! diastolic, and an effective time that is not in the future.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::offset;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::Issue;

const LOINC: &str = "http://loinc.org";

/// Clocks of devices and servers drift; an effective time up to this far ahead of the server's
/// clock is taken as skew, not as a measurement from the future.
const CLOCK_SKEW: Duration = Duration::seconds(60);

/// The plausible range of one measurement, in its canonical UCUM unit.
struct Limits {
    name: &'static str,
    low: f64,
    high: f64,
    unit: &'static str,
}

const HEART_RATE: Limits = Limits { name: "heart rate", low: 20.0, high: 300.0, unit: "/min" };
const OXYGEN_SATURATION: Limits = Limits { name: "oxygen saturation", low: 0.0, high: 100.0, unit: "%" };
const BODY_TEMPERATURE: Limits = Limits { name: "body temperature", low: 30.0, high: 45.0, unit: "Cel" };
const SYSTOLIC: Limits = Limits { name: "systolic blood pressure", low: 50.0, high: 250.0, unit: "mm[Hg]" };
const DIASTOLIC: Limits = Limits { name: "diastolic blood pressure", low: 30.0, high: 150.0, unit: "mm[Hg]" };

const SYSTOLIC_CODE: &str = "8480-6";
const DIASTOLIC_CODE: &str = "8462-4";

enum VitalSign {
    Single(&'static Limits),
    BloodPressurePanel,
}

/// The issues `resource` raises under the vital-sign rules; empty for anything that is not an
/// Observation with a LOINC vital-sign code.
pub(crate) fn check(resource_type: &str, resource: &Value, now: OffsetDateTime) -> Vec<Issue> {
    let mut issues = Vec::new();
    if resource_type != "Observation" {
        return issues;
    }
    let Some(sign) = resource.get("code").and_then(vital_sign) else {
        return issues;
    };
    match sign {
        VitalSign::Single(limits) => {
            check_quantity(resource.get("valueQuantity"), "Observation.valueQuantity", limits, &mut issues);
        }
        VitalSign::BloodPressurePanel => check_blood_pressure(resource, &mut issues),
    }
    check_effective(resource, now, &mut issues);
    issues
}

/// The vital sign the first recognised LOINC coding of `code` names.
fn vital_sign(code: &Value) -> Option<VitalSign> {
    loinc_codes(code).find_map(|c| match c {
        "8867-4" => Some(VitalSign::Single(&HEART_RATE)),
        "2708-6" | "59408-5" => Some(VitalSign::Single(&OXYGEN_SATURATION)),
        "8310-5" => Some(VitalSign::Single(&BODY_TEMPERATURE)),
        "85354-9" => Some(VitalSign::BloodPressurePanel),
        _ => None,
    })
}

/// The LOINC codes among `code.coding` (a CodeableConcept).
fn loinc_codes(code: &Value) -> impl Iterator<Item = &str> {
    code.get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|coding| coding.get("system").and_then(Value::as_str) == Some(LOINC))
        .filter_map(|coding| coding.get("code").and_then(Value::as_str))
}

fn check_blood_pressure(resource: &Value, issues: &mut Vec<Issue>) {
    let Some(components) = resource.get("component").and_then(Value::as_array) else {
        return;
    };
    let mut systolic = None;
    let mut diastolic = None;
    for (i, component) in components.iter().enumerate() {
        let Some(code) = component.get("code") else { continue };
        let path = format!("Observation.component[{i}].valueQuantity");
        let quantity = component.get("valueQuantity");
        if systolic.is_none() && loinc_codes(code).any(|c| c == SYSTOLIC_CODE) {
            systolic = check_quantity(quantity, &path, &SYSTOLIC, issues).map(|v| (v, path));
        } else if diastolic.is_none() && loinc_codes(code).any(|c| c == DIASTOLIC_CODE) {
            diastolic = check_quantity(quantity, &path, &DIASTOLIC, issues).map(|v| (v, path));
        }
    }
    if let (Some((sys, sys_path)), Some((dia, _))) = (systolic, diastolic) {
        if sys.number <= dia.number {
            issues.push(Issue::error(
                format!("{sys_path}.value"),
                "bp-systolic-above-diastolic",
                format!(
                    "systolic blood pressure {} mm[Hg] must be above diastolic blood pressure {} mm[Hg]",
                    sys.text, dia.text
                ),
            ));
        }
    }
}

/// A measured value in the canonical unit of its limits, with its text as written.
struct Reading {
    number: f64,
    text: String,
}

/// Checks one Quantity against `limits`, returning the value in the canonical unit when it is
/// present and its unit is understood. A quantity without a value (e.g. a cancelled
/// measurement with a dataAbsentReason) has nothing to range-check. A quantity without a UCUM
/// code is read in the canonical unit; with a code, only the canonical one (or, for body
/// temperature, `[degF]`) is accepted.
fn check_quantity(quantity: Option<&Value>, path: &str, limits: &Limits, issues: &mut Vec<Issue>) -> Option<Reading> {
    let quantity = quantity?;
    let code = quantity.get("code").and_then(Value::as_str);
    if let Some(code) = code {
        if code != limits.unit && !(limits.unit == "Cel" && code == "[degF]") {
            let allowed =
                if limits.unit == "Cel" { "'Cel' or '[degF]'".to_string() } else { format!("'{}'", limits.unit) };
            issues.push(Issue::error(
                format!("{path}.code"),
                "vital-sign-unit",
                format!("{} must be in {allowed}, not '{code}'", limits.name),
            ));
            // A value in an unknown unit cannot be compared with the range.
            return None;
        }
    }
    let value = quantity.get("value")?;
    // Schema validation has already made sure `value` is a JSON number.
    let raw = value.as_f64()?;
    let unit = code.unwrap_or(limits.unit);
    let number = if unit == "[degF]" { (raw - 32.0) * 5.0 / 9.0 } else { raw };
    // Under serde_json's arbitrary_precision the number prints exactly as it was written.
    let mut text = format!("{value} {unit}");
    if unit != limits.unit {
        text = format!("{text} ({number:.1} {})", limits.unit);
    }
    if !(limits.low..=limits.high).contains(&number) {
        issues.push(Issue::error(
            format!("{path}.value"),
            "vital-sign-range",
            format!(
                "{} {text} is outside the allowed range {} to {} {}",
                limits.name, limits.low, limits.high, limits.unit
            ),
        ));
    }
    Some(Reading { number, text: value.to_string() })
}

/// The effective time of a vital sign must not lie in the future. For a partial date (`2012`,
/// `2012-09`, `2012-09-17`) the earliest instant it can denote is used, so that a date that is
/// already "today" somewhere on earth is never rejected.
fn check_effective(resource: &Value, now: OffsetDateTime, issues: &mut Vec<Issue>) {
    let candidates = [
        ("Observation.effectiveDateTime", resource.get("effectiveDateTime")),
        ("Observation.effectiveInstant", resource.get("effectiveInstant")),
        ("Observation.effectivePeriod.start", resource.get("effectivePeriod").and_then(|p| p.get("start"))),
    ];
    let Some((path, text)) = candidates.into_iter().find_map(|(path, v)| Some((path, v?.as_str()?))) else {
        return;
    };
    // A date the calendar does not have (2012-02-30) gets past the schema pattern and
    // fhirbolt; it is not this rule's business, which judges only times it can place.
    let Some(earliest) = earliest_instant(text) else {
        return;
    };
    if earliest > now + CLOCK_SKEW {
        let now_text = now.format(&Rfc3339).unwrap_or_else(|_| now.to_string());
        issues.push(Issue::error(
            path,
            "effective-not-future",
            format!("effective time {text} is in the future (server time {now_text}, 60 s of clock skew allowed)"),
        ));
    }
}

/// The earliest instant a FHIR `dateTime` or `instant` can denote.
fn earliest_instant(text: &str) -> Option<OffsetDateTime> {
    if text.contains('T') {
        return OffsetDateTime::parse(text, &Rfc3339).ok();
    }
    let mut parts = text.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: u8 = parts.next().map_or(Some(1), |d| d.parse().ok())?;
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()?;
    // +14:00 is the earliest time zone in use, so midnight there is the earliest moment at
    // which this date has begun anywhere.
    Some(PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(offset!(+14:00)))
}
