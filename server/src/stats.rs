//! `Observation/$stats` (FHIR R4 operation): statistics of one patient's vital signs over a
//! period, by GET query parameters or a POST `Parameters` body, answered from the
//! time-series database when one is configured and up, else from the store.
//!
//! Input: `subject` (`Patient/<id>` or an absolute URL ending in it), `code` (bare LOINC
//! codes, comma lists allowed; `system` must be http://loinc.org if given) and/or `coding`
//! (`system|code`), `statistic` (codes of http://hl7.org/fhir/observation-statistics),
//! `duration` (hours ending now) or `period` (GET `<start>/<end>` as RFC 3339 instants, POST
//! `valuePeriod`; `[start, end)`), the last 24 hours by default, `include` (also return the
//! source Observations, read from the store) with `limit` (at most that many of them, the
//! most recent; 1..=1000, default 1000), and the Tessera extension `window` (`30s`, `1m`,
//! `5m`, `1h`, `1d`…): one result per epoch-aligned window that holds values, like InfluxDB's
//! `aggregateWindow`.
//!
//! Output: a `Parameters` resource with, per requested code and window, a `statistic` part
//! holding an Observation (one component per statistic), then the `source` parts. Each
//! result carries the `stats-source` extension saying which database answered.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use projections::{SeriesQuery, Statistic, StatisticValue, VitalSign, WindowStats};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::fhir_http::{body_format, body_value, negotiate, query_params, read_body, render_value, respond};
use crate::routes::AppState;

type State = web::Data<AppState>;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const STATISTICS_SYSTEM: &str = "http://hl7.org/fhir/observation-statistics";
const DATA_ABSENT_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
/// The extension on each result saying whether the time-series database or the store answered.
pub const SOURCE_EXTENSION: &str = "https://tessera.health/fhir/StructureDefinition/stats-source";

/// The period when neither `duration` nor `period` is given.
const DEFAULT_HOURS: i64 = 24;
/// The longest `duration` accepted, in hours (about a century), so the arithmetic stays exact.
const MAX_DURATION_HOURS: f64 = 24.0 * 366.0 * 100.0;
/// The most windows one request may span.
const MAX_WINDOWS: i128 = 10_000;
/// The most source Observations one response carries (and the default `limit`).
const MAX_LIMIT: usize = 1000;

const PARAMETERS: &str = "subject, code, system, coding, statistic, duration, period, include, limit, window";

/// `GET /fhir/Observation/$stats?subject=…&code=…&statistic=…`
pub async fn get(req: HttpRequest, state: State) -> HttpResponse {
    let result = async {
        let neg = negotiate(&req)?;
        let mut input = Input::default();
        for (name, value) in query_params(&req) {
            input.add_text(&name, value)?;
        }
        let request = input.into_request(OffsetDateTime::now_utc())?;
        render_value(StatusCode::OK, &neg, &answer(&state, &request).await?)
    }
    .await;
    respond(&req, result)
}

/// `POST /fhir/Observation/$stats` with a `Parameters` resource (JSON or XML).
pub async fn post(req: HttpRequest, state: State, payload: web::Payload) -> HttpResponse {
    let result = async {
        let neg = negotiate(&req)?;
        let format = body_format(&req)?;
        let body = read_body(&req, payload, state.max_body).await?;
        let parameters = fhir_model::parse_resource(&body, format)?;
        let mut input = Input::default();
        for (name, _) in query_params(&req) {
            if !is_format_parameter(&name) {
                return Err(bad(format!("parameter {name:?} belongs in the Parameters body of a POST")));
            }
        }
        input.add_parameters(&parameters)?;
        let request = input.into_request(OffsetDateTime::now_utc())?;
        render_value(StatusCode::OK, &neg, &answer(&state, &request).await?)
    }
    .await;
    respond(&req, result)
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest(message.into())
}

fn is_format_parameter(name: &str) -> bool {
    matches!(name, "_format" | "_pretty")
}

// ---------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------

/// The operation's parameters as given, before they are checked.
#[derive(Debug, Default)]
struct Input {
    subject: Option<String>,
    codes: Vec<String>,
    system: Option<String>,
    /// `(system, code)`.
    codings: Vec<(String, String)>,
    statistics: Vec<String>,
    duration: Option<String>,
    period: Option<(String, String)>,
    include: Option<bool>,
    limit: Option<String>,
    window: Option<String>,
}

/// Sets a parameter that may be given once.
fn once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), ApiError> {
    if slot.is_some() {
        return Err(bad(format!("parameter {name} may be given only once")));
    }
    *slot = Some(value);
    Ok(())
}

/// The non-empty items of a comma-separated list; an empty item is a mistake.
fn list(name: &str, value: &str) -> Result<Vec<String>, ApiError> {
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            if item.is_empty() {
                Err(bad(format!("parameter {name} has an empty value in {value:?}")))
            } else {
                Ok(item.to_string())
            }
        })
        .collect()
}

fn coding(value: &str) -> Result<(String, String), ApiError> {
    match value.split_once('|') {
        Some((system, code)) if !system.is_empty() && !code.is_empty() => Ok((system.to_string(), code.to_string())),
        _ => Err(bad(format!("coding {value:?} is not system|code (e.g. {LOINC}|8867-4)"))),
    }
}

fn boolean(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(bad(format!("{name} must be true or false, not {other:?}"))),
    }
}

impl Input {
    /// One GET query parameter (text form).
    fn add_text(&mut self, name: &str, value: String) -> Result<(), ApiError> {
        match name {
            "subject" => once(&mut self.subject, name, value),
            "code" => {
                self.codes.extend(list(name, &value)?);
                Ok(())
            }
            "system" => once(&mut self.system, name, value),
            "coding" => {
                for item in list(name, &value)? {
                    self.codings.push(coding(&item)?);
                }
                Ok(())
            }
            "statistic" => {
                self.statistics.extend(list(name, &value)?);
                Ok(())
            }
            "duration" => once(&mut self.duration, name, value),
            "period" => {
                let (start, end) = value
                    .split_once('/')
                    .ok_or_else(|| bad(format!("period {value:?} is not <start>/<end> (RFC 3339 instants)")))?;
                once(&mut self.period, name, (start.to_string(), end.to_string()))
            }
            "include" => once(&mut self.include, name, boolean(name, &value)?),
            "limit" => once(&mut self.limit, name, value),
            "window" => once(&mut self.window, name, value),
            other if is_format_parameter(other) => Ok(()),
            other => Err(bad(format!("unknown parameter {other:?} (known: {PARAMETERS})"))),
        }
    }

    /// The parameters of a POSTed `Parameters` resource.
    fn add_parameters(&mut self, resource: &Value) -> Result<(), ApiError> {
        if resource["resourceType"] != "Parameters" {
            return Err(bad("the body of a $stats POST must be a Parameters resource"));
        }
        let parameters = match &resource["parameter"] {
            Value::Null => return Err(bad("the Parameters resource has no parameter")),
            Value::Array(parameters) => parameters,
            _ => return Err(bad("Parameters.parameter must be an array")),
        };
        for parameter in parameters {
            let name = parameter["name"].as_str().ok_or_else(|| bad("every parameter needs a name"))?;
            if parameter.get("part").is_some() || parameter.get("resource").is_some() {
                return Err(bad(format!("parameter {name} takes a value, not parts or a resource")));
            }
            let text = |types: &[&str]| -> Result<String, ApiError> {
                types
                    .iter()
                    .find_map(|t| parameter[*t].as_str())
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("parameter {name} needs a {} value", types.join(" or "))))
            };
            match name {
                "subject" => {
                    let value = parameter["valueReference"]["reference"].as_str().map(str::to_string);
                    let value = match value {
                        Some(v) => v,
                        None => text(&["valueUri", "valueString"])?,
                    };
                    once(&mut self.subject, name, value)?
                }
                "code" => self.codes.extend(list(name, &text(&["valueString", "valueCode"])?)?),
                "system" => once(&mut self.system, name, text(&["valueUri"])?)?,
                "coding" => {
                    let coding = &parameter["valueCoding"];
                    match (coding["system"].as_str(), coding["code"].as_str()) {
                        (Some(system), Some(code)) if !system.is_empty() && !code.is_empty() => {
                            self.codings.push((system.to_string(), code.to_string()))
                        }
                        _ => return Err(bad("parameter coding needs a valueCoding with a system and a code")),
                    }
                }
                "statistic" => self.statistics.extend(list(name, &text(&["valueCode", "valueString"])?)?),
                "duration" => {
                    let value = parameter.get("valueDecimal").or(parameter.get("valueInteger")).filter(|v| v.is_number());
                    let value = value.ok_or_else(|| bad("parameter duration needs a valueDecimal (hours)"))?;
                    once(&mut self.duration, name, value.to_string())?
                }
                "period" => {
                    let period = &parameter["valuePeriod"];
                    match (period["start"].as_str(), period["end"].as_str()) {
                        (Some(start), Some(end)) => once(&mut self.period, name, (start.to_string(), end.to_string()))?,
                        _ => return Err(bad("parameter period needs a valuePeriod with a start and an end")),
                    }
                }
                "include" => {
                    let value = parameter["valueBoolean"].as_bool().ok_or_else(|| bad("parameter include needs a valueBoolean"))?;
                    once(&mut self.include, name, value)?
                }
                "limit" => {
                    let value = parameter.get("valuePositiveInt").or(parameter.get("valueInteger")).filter(|v| v.is_number());
                    let value = value.ok_or_else(|| bad("parameter limit needs a valuePositiveInt"))?;
                    once(&mut self.limit, name, value.to_string())?
                }
                "window" => once(&mut self.window, name, text(&["valueString", "valueCode"])?)?,
                other => return Err(bad(format!("unknown parameter {other:?} (known: {PARAMETERS})"))),
            }
        }
        Ok(())
    }

    /// Checks everything and resolves the period against `now`.
    fn into_request(self, now: OffsetDateTime) -> Result<StatsRequest, ApiError> {
        let subject = self.subject.ok_or_else(|| bad("parameter subject (e.g. Patient/123) is required"))?;
        let patient_id = patient_id(&subject)?;

        if let Some(system) = &self.system {
            if system != LOINC {
                return Err(bad(format!("system {system:?} is not supported; codes are LOINC ({LOINC})")));
            }
            if self.codes.is_empty() {
                return Err(bad("parameter system goes with code"));
            }
        }
        let mut codes: Vec<(String, VitalSign)> = Vec::new();
        let wanted = self.codes.into_iter().map(|code| (LOINC.to_string(), code)).chain(self.codings);
        for (system, code) in wanted {
            if system != LOINC {
                return Err(bad(format!("coding system {system:?} is not supported; codes are LOINC ({LOINC})")));
            }
            if code.contains('|') {
                return Err(bad(format!("code {code:?} must be a bare LOINC code; use coding for system|code")));
            }
            let kind = VitalSign::from_loinc(&code)
                .ok_or_else(|| bad(format!("code {code:?} is not a supported vital sign (supported LOINC codes: {})", supported_codes())))?;
            if !codes.iter().any(|(c, _)| *c == code) {
                codes.push((code, kind));
            }
        }
        if codes.is_empty() {
            return Err(bad(format!("parameter code or coding is required (supported LOINC codes: {})", supported_codes())));
        }

        let mut statistics = Vec::new();
        for code in &self.statistics {
            let statistic = Statistic::from_code(code)
                .ok_or_else(|| bad(format!("statistic {code:?} is not supported (supported: {})", supported_statistics())))?;
            if !statistics.contains(&statistic) {
                statistics.push(statistic);
            }
        }
        if statistics.is_empty() {
            return Err(bad(format!("parameter statistic is required (supported: {})", supported_statistics())));
        }

        let (start, end) = match (self.duration, self.period) {
            (Some(_), Some(_)) => return Err(bad("give either duration or period, not both")),
            (Some(hours), None) => {
                let hours: f64 = hours.trim().parse().map_err(|_| bad(format!("duration {hours:?} is not a decimal number of hours")))?;
                if !(hours.is_finite() && hours > 0.0 && hours <= MAX_DURATION_HOURS) {
                    return Err(bad(format!("duration must be more than 0 and at most {MAX_DURATION_HOURS} hours")));
                }
                let span = time::Duration::seconds_f64(hours * 3600.0);
                (now.checked_sub(span).ok_or_else(|| bad("duration reaches out of the time range"))?, now)
            }
            (None, Some((start, end))) => {
                let (start, end) = (instant("period start", &start)?, instant("period end", &end)?);
                if start >= end {
                    return Err(bad("period start must be before its end"));
                }
                (start, end)
            }
            (None, None) => (now - time::Duration::hours(DEFAULT_HOURS), now),
        };

        let window = self.window.as_deref().map(window).transpose()?;
        if let Some(window) = window {
            let width = i128::try_from(window.as_nanos()).unwrap_or(i128::MAX);
            let first = start.unix_timestamp_nanos().div_euclid(width);
            let last = (end.unix_timestamp_nanos() - 1).div_euclid(width);
            let count = last - first + 1;
            if count > MAX_WINDOWS {
                return Err(bad(format!("the period spans {count} windows; at most {MAX_WINDOWS} are allowed (use a wider window)")));
            }
        }

        let limit = match self.limit {
            None => MAX_LIMIT,
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| bad(format!("limit must be a whole number from 1 to {MAX_LIMIT}, not {text:?}")))?,
        };

        Ok(StatsRequest { subject, patient_id, codes, statistics, start, end, window, include: self.include.unwrap_or(false), limit })
    }
}

/// A checked `$stats` request.
#[derive(Debug)]
struct StatsRequest {
    /// The reference as given, echoed in the results.
    subject: String,
    patient_id: String,
    /// Each requested LOINC code (once) with the sign it names, in request order.
    codes: Vec<(String, VitalSign)>,
    statistics: Vec<Statistic>,
    start: OffsetDateTime,
    end: OffsetDateTime,
    window: Option<Duration>,
    include: bool,
    limit: usize,
}

/// The logical id of `Patient/<id>` or of an absolute `…/Patient/<id>` URL.
fn patient_id(subject: &str) -> Result<String, ApiError> {
    let relative = if subject.starts_with("http://") || subject.starts_with("https://") {
        let mut segments = subject.rsplitn(3, '/');
        match (segments.next(), segments.next()) {
            (Some(id), Some("Patient")) => Some(id),
            _ => None,
        }
    } else {
        subject.strip_prefix("Patient/")
    };
    relative
        .filter(|id| fhir_model::is_valid_id(id))
        .map(str::to_string)
        .ok_or_else(|| bad(format!("subject {subject:?} is not a Patient reference (Patient/<id> or an absolute URL ending in it)")))
}

fn instant(what: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map_err(|_| bad(format!("{what} {text:?} is not an instant with a time zone (e.g. 2025-01-10T10:00:00Z)")))
}

/// `30s`, `1m`, `5m`, `1h`, `1d`: a positive whole number and a unit.
fn window(text: &str) -> Result<Duration, ApiError> {
    let invalid = || bad(format!("window {text:?} is not a positive whole number of s, m, h or d (e.g. 30s, 5m, 1h)"));
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(digits);
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    let number: u64 = number.parse().map_err(|_| invalid())?;
    number.checked_mul(seconds_per_unit).filter(|s| *s > 0).map(Duration::from_secs).ok_or_else(invalid)
}

fn supported_codes() -> String {
    VitalSign::ALL.iter().flat_map(|sign| sign.loinc_codes().iter().map(move |code| format!("{code} ({})", sign.name()))).collect::<Vec<_>>().join(", ")
}

fn supported_statistics() -> String {
    Statistic::ALL.iter().map(|s| s.code()).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------
// Answer
// ---------------------------------------------------------------------------------------

/// The `Parameters` answering `request`.
async fn answer(state: &AppState, request: &StatsRequest) -> Result<Value, ApiError> {
    let mut parts = Vec::new();
    for (code, kind) in &request.codes {
        let query = SeriesQuery {
            patient_id: request.patient_id.clone(),
            kind: *kind,
            start: request.start,
            end: request.end,
            window: request.window,
            statistics: request.statistics.clone(),
        };
        let (windows, source) = series(state, &query).await?;
        for window in &windows {
            parts.push(json!({"name": "statistic", "resource": statistic_observation(request, code, *kind, window, source)}));
        }
    }
    if request.include {
        for observation in sources(state, request).await? {
            parts.push(json!({"name": "source", "resource": observation}));
        }
    }
    let mut parameters = json!({"resourceType": "Parameters"});
    if !parts.is_empty() {
        parameters["parameter"] = Value::Array(parts);
    }
    Ok(parameters)
}

/// The series from the time-series database when there is one and it answers, else from the
/// store; with the name of the source that answered.
async fn series(state: &AppState, query: &SeriesQuery) -> Result<(Vec<WindowStats>, &'static str), ApiError> {
    if let Some(tsdb) = state.projections.tsdb() {
        match tsdb.series(query).await {
            Ok(windows) => return Ok((windows, "tsdb")),
            Err(error) => tracing::warn!(%error, sign = query.kind.name(), "time-series database failed, $stats answered from the store"),
        }
    }
    Ok((projections::series_from_store(state.store.as_ref(), query).await?, "store"))
}

fn statistic_observation(request: &StatsRequest, code: &str, kind: VitalSign, window: &WindowStats, source: &str) -> Value {
    let components: Vec<Value> = window.values.iter().map(|value| component(kind, value)).collect();
    json!({
        "resourceType": "Observation",
        "extension": [{"url": SOURCE_EXTENSION, "valueCode": source}],
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": request.subject},
        "effectivePeriod": {"start": fhir_model::format_instant(window.start), "end": fhir_model::format_instant(window.end)},
        "component": components,
    })
}

fn component(kind: VitalSign, value: &StatisticValue) -> Value {
    let statistic = value.statistic;
    let code = json!({"coding": [{"system": STATISTICS_SYSTEM, "code": statistic.code(), "display": statistic.display()}]});
    match value.value.filter(|v| v.is_finite()) {
        // Counts are whole numbers; they are written as integers.
        Some(count) if statistic == Statistic::Count => {
            json!({"code": code, "valueQuantity": {"value": count as u64, "system": UCUM, "code": "1"}})
        }
        Some(number) => {
            json!({"code": code, "valueQuantity": {"value": number, "unit": kind.unit(), "system": UCUM, "code": kind.unit()}})
        }
        None => json!({
            "code": code,
            "dataAbsentReason": {"coding": [{"system": DATA_ABSENT_SYSTEM, "code": "not-applicable", "display": "Not Applicable"}]},
        }),
    }
}

/// The Observations the statistics were computed from, read from the store: those of the
/// patient holding a requested sign measured in `[start, end)`; the `limit` most recent, in
/// time order.
async fn sources(state: &AppState, request: &StatsRequest) -> Result<Vec<Value>, ApiError> {
    let mut kinds: Vec<VitalSign> = request.codes.iter().map(|(_, kind)| *kind).collect();
    kinds.sort();
    kinds.dedup();
    let observations = projections::measured_observations(state.store.as_ref(), &request.patient_id, &kinds, request.start, request.end).await?;
    let mut found: Vec<(OffsetDateTime, Value)> = Vec::with_capacity(observations.len());
    for (resource, measurements) in observations {
        let Some(first) = measurements.first() else { continue };
        found.push((first.measured_at, body_value(&resource)?));
    }
    found.sort_by_key(|(at, _)| *at);
    let skip = found.len().saturating_sub(request.limit);
    Ok(found.into_iter().skip(skip).map(|(_, body)| body).collect())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn input(pairs: &[(&str, &str)]) -> Result<StatsRequest, ApiError> {
        let mut input = Input::default();
        for (name, value) in pairs {
            input.add_text(name, value.to_string())?;
        }
        input.into_request(datetime!(2025-01-10 12:00 UTC))
    }

    #[test]
    fn windows_and_durations_parse() {
        assert_eq!(window("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(window("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(window("1h").unwrap(), Duration::from_secs(3600));
        for text in ["", "0s", "1", "m", "-1m", "1.5m", "1w", "99999999999999999999h"] {
            assert!(window(text).is_err(), "{text}");
        }
        let request = input(&[("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count"), ("duration", "1.5")]).unwrap();
        assert_eq!((request.start, request.end), (datetime!(2025-01-10 10:30 UTC), datetime!(2025-01-10 12:00 UTC)));
    }

    #[test]
    fn subjects_are_patient_references() {
        assert_eq!(patient_id("Patient/p-1.2").unwrap(), "p-1.2");
        assert_eq!(patient_id("https://example.org/fhir/Patient/p1").unwrap(), "p1");
        for subject in ["p1", "Patient/", "Device/d1", "https://example.org/fhir/Device/p1", "Patient/a,b", "Patient/a/b"] {
            assert!(patient_id(subject).is_err(), "{subject}");
        }
    }

    #[test]
    fn windows_are_counted_over_the_period() {
        let base = [("subject", "Patient/p1"), ("code", "8867-4"), ("statistic", "count")];
        // 10,000 one-second windows fit exactly; 10,001 do not.
        let ok = [&base[..], &[("period", "2025-01-10T00:00:00Z/2025-01-10T02:46:40Z"), ("window", "1s")]].concat();
        assert!(input(&ok).is_ok());
        let too_many = [&base[..], &[("period", "2025-01-10T00:00:00Z/2025-01-10T02:46:40.5Z"), ("window", "1s")]].concat();
        assert!(input(&too_many).is_err());
    }
}
