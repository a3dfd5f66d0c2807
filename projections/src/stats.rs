//! Statistics of a series of values, with the definitions the time-series database uses
//! (sample standard deviation and variance, median averaging the two middle values), so that
//! `$stats` answers the same from either source.

/// The supported codes of http://hl7.org/fhir/observation-statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    Average,
    Maximum,
    Minimum,
    Count,
    Median,
    StdDev,
    Sum,
    Variance,
}

impl Statistic {
    pub const ALL: [Statistic; 8] = [
        Statistic::Average,
        Statistic::Maximum,
        Statistic::Minimum,
        Statistic::Count,
        Statistic::Median,
        Statistic::StdDev,
        Statistic::Sum,
        Statistic::Variance,
    ];

    /// The code in http://hl7.org/fhir/observation-statistics.
    pub fn code(self) -> &'static str {
        match self {
            Statistic::Average => "average",
            Statistic::Maximum => "maximum",
            Statistic::Minimum => "minimum",
            Statistic::Count => "count",
            Statistic::Median => "median",
            Statistic::StdDev => "std-dev",
            Statistic::Sum => "sum",
            Statistic::Variance => "variance",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Statistic::Average => "Average",
            Statistic::Maximum => "Maximum",
            Statistic::Minimum => "Minimum",
            Statistic::Count => "Count",
            Statistic::Median => "Median",
            Statistic::StdDev => "Standard Deviation",
            Statistic::Sum => "Sum",
            Statistic::Variance => "Variance",
        }
    }

    pub fn from_code(code: &str) -> Option<Statistic> {
        Statistic::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// One computed statistic; `value` is None where it is undefined (no values, or a deviation
/// of fewer than two).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatisticValue {
    pub statistic: Statistic,
    pub value: Option<f64>,
}

/// Computes `statistics` over `values`.
pub fn compute_statistics(values: &[f64], statistics: &[Statistic]) -> Vec<StatisticValue> {
    let n = values.len() as f64;
    let sum = values.iter().fold(0.0, |total, v| total + v);
    let mean = (!values.is_empty()).then(|| sum / n);
    let variance = mean.filter(|_| values.len() > 1).map(|m| values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0));
    statistics
        .iter()
        .map(|&statistic| {
            let value = match statistic {
                Statistic::Average => mean,
                Statistic::Maximum => values.iter().copied().reduce(f64::max),
                Statistic::Minimum => values.iter().copied().reduce(f64::min),
                Statistic::Count => Some(n),
                Statistic::Sum => Some(sum),
                Statistic::Median => median(values),
                Statistic::StdDev => variance.map(f64::sqrt),
                Statistic::Variance => variance,
            };
            StatisticValue { statistic, value }
        })
        .collect()
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        len if len % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_match_hand_computed_values() {
        let values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let got: Vec<_> = compute_statistics(&values, &Statistic::ALL).into_iter().map(|s| s.value.unwrap()).collect();
        // mean 5, sum of squares 32, sample variance 32/7.
        assert_eq!(got[..5], [5.0, 9.0, 2.0, 8.0, 4.5]);
        assert!((got[5] - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(got[6], 40.0);
        assert!((got[7] - 32.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn undefined_statistics_are_none() {
        let one = compute_statistics(&[3.0], &[Statistic::StdDev, Statistic::Median, Statistic::Count]);
        assert_eq!(one.iter().map(|s| s.value).collect::<Vec<_>>(), vec![None, Some(3.0), Some(1.0)]);
        let none = compute_statistics(&[], &[Statistic::Average, Statistic::Count]);
        assert_eq!(none.iter().map(|s| s.value).collect::<Vec<_>>(), vec![None, Some(0.0)]);
    }
}

/// A `$stats` question: statistics of one vital sign of one patient over `[start, end)`,
/// either as one window or in windows of `window` aligned to the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    /// The Patient's logical id.
    pub patient_id: String,
    pub kind: crate::VitalSign,
    pub start: time::OffsetDateTime,
    pub end: time::OffsetDateTime,
    pub window: Option<std::time::Duration>,
    pub statistics: Vec<Statistic>,
}

/// The statistics of one window. Without a window there is exactly one, `[start, end)`,
/// even when it holds no values; with windows, only those holding values are returned, in
/// time order.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStats {
    pub start: time::OffsetDateTime,
    pub end: time::OffsetDateTime,
    pub values: Vec<StatisticValue>,
}

/// Answers `query` from the store's Observations (when no time-series database is
/// configured, or it is down): the patient's Observations of the sign are found with the
/// store's own search, mapped by the same `project` the projections use, kept when their
/// time is in `[start, end)`, and bucketed.
pub async fn series_from_store(store: &dyn fhir_store::ResourceStore, query: &SeriesQuery) -> Result<Vec<WindowStats>, crate::ProjectionError> {
    let points = store_points(store, query).await?;
    bucket(query, points)
}

/// Page size of the store searches: the largest the search allows, so a day of one-second
/// readings is a few round trips.
const PAGE_SIZE: usize = fhir_model::MAX_PAGE_SIZE;

/// The `(time, value)` points of `query`'s sign and patient in `[start, end)`, from the store.
async fn store_points(
    store: &dyn fhir_store::ResourceStore,
    query: &SeriesQuery,
) -> Result<Vec<(time::OffsetDateTime, f64)>, crate::ProjectionError> {
    let observations = measured_observations(store, &query.patient_id, &[query.kind], query.start, query.end).await?;
    Ok(observations.into_iter().flat_map(|(_, measurements)| measurements).map(|m| (m.measured_at, m.value)).collect())
}

/// The patient's Observations in the store holding a measurement of one of `kinds` in
/// `[start, end)`, each with those measurements (the others dropped), in search order. They
/// are found with the store's own search, and mapped by the same `project` the projections
/// use.
pub async fn measured_observations(
    store: &dyn fhir_store::ResourceStore,
    patient_id: &str,
    kinds: &[crate::VitalSign],
    start: time::OffsetDateTime,
    end: time::OffsetDateTime,
) -> Result<Vec<(fhir_store::StoredResource, Vec<crate::Measurement>)>, crate::ProjectionError> {
    if start >= end || kinds.is_empty() {
        return Ok(Vec::new());
    }
    let mut search = fhir_model::parse_search(Some("Observation"), &search_params(patient_id, kinds, start, end)?, true)
        .map_err(|e| crate::ProjectionError::Config(format!("cannot search the store for the series: {e}")))?;
    let mut found = Vec::new();
    loop {
        let page = store.search(&search).await?;
        for resource in page.resources {
            let change = fhir_store::Change { seq: resource.seq, kind: fhir_store::ChangeKind::Update, resource };
            let crate::Projected::Observation { measurements, .. } = crate::project(&change) else { continue };
            let measurements: Vec<crate::Measurement> = measurements
                .into_iter()
                .filter(|m| kinds.contains(&m.kind) && m.patient_id.as_deref() == Some(patient_id))
                .filter(|m| start <= m.measured_at && m.measured_at < end)
                .collect();
            if !measurements.is_empty() {
                found.push((change.resource, measurements));
            }
        }
        match page.next_cursor {
            Some(cursor) => search.cursor = Some(cursor),
            None => break,
        }
    }
    Ok(found)
}

/// The search that narrows the store to candidates: the patient, every LOINC code of the
/// signs in `code` or `component.code` (with the panels that carry blood pressures as
/// components), and the time range. The date bounds are widened to whole milliseconds (the
/// index resolution); the exact `[start, end)` test is made on each measurement.
fn search_params(
    id: &str,
    kinds: &[crate::VitalSign],
    start: time::OffsetDateTime,
    end: time::OffsetDateTime,
) -> Result<Vec<(String, String)>, crate::ProjectionError> {
    if !fhir_model::is_valid_id(id) {
        return Err(crate::ProjectionError::Config(format!("{id:?} is not a valid patient id")));
    }
    let mut codes: Vec<&str> = kinds.iter().flat_map(|kind| kind.loinc_codes().iter().copied()).collect();
    if kinds.iter().any(|kind| matches!(kind, crate::VitalSign::BpSystolic | crate::VitalSign::BpDiastolic | crate::VitalSign::BpMean)) {
        codes.extend_from_slice(crate::vitals::BP_PANEL_CODES);
    }
    let codes: Vec<String> = codes.iter().map(|c| format!("{}|{c}", crate::vitals::LOINC)).collect();
    let end = end.checked_add(time::Duration::MILLISECOND).unwrap_or(end);
    Ok(vec![
        ("subject".into(), format!("Patient/{id}")),
        ("combo-code".into(), codes.join(",")),
        ("date".into(), format!("ge{}", fhir_model::format_instant(start))),
        ("date".into(), format!("lt{}", fhir_model::format_instant(end))),
        ("_count".into(), PAGE_SIZE.to_string()),
        ("_total".into(), "none".into()),
    ])
}

/// The statistics of `points`: one window `[start, end)` without `query.window`, else one per
/// window aligned to the Unix epoch that holds a point, in time order.
fn bucket(query: &SeriesQuery, points: Vec<(time::OffsetDateTime, f64)>) -> Result<Vec<WindowStats>, crate::ProjectionError> {
    let Some(window) = query.window else {
        let values: Vec<f64> = points.into_iter().map(|(_, v)| v).collect();
        let values = compute_statistics(&values, &query.statistics);
        return Ok(vec![WindowStats { start: query.start, end: query.end, values }]);
    };
    let width = i128::try_from(window.as_nanos()).ok().filter(|w| *w > 0).ok_or_else(|| {
        crate::ProjectionError::Config(format!("a window of {window:?} is not a positive duration"))
    })?;
    let mut windows: std::collections::BTreeMap<i128, Vec<f64>> = std::collections::BTreeMap::new();
    for (at, value) in points {
        windows.entry(at.unix_timestamp_nanos().div_euclid(width)).or_default().push(value);
    }
    windows
        .into_iter()
        .map(|(index, values)| {
            let bound = |i: i128| {
                i.checked_mul(width)
                    .and_then(|nanos| time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok())
                    .ok_or_else(|| crate::ProjectionError::Config(format!("window {i} of {window:?} is out of the time range")))
            };
            Ok(WindowStats { start: bound(index)?, end: bound(index + 1)?, values: compute_statistics(&values, &query.statistics) })
        })
        .collect()
}

#[cfg(test)]
mod series_tests {
    use std::time::Duration;

    use fhir_store::{ResourceStore, SqliteStore, SqliteStoreOptions, WriteOp};
    use serde_json::{json, Value};
    use time::macros::datetime;
    use time::OffsetDateTime;

    use super::*;
    use crate::VitalSign;

    fn loinc(code: &str) -> Value {
        json!({"coding": [{"system": "http://loinc.org", "code": code}]})
    }

    fn heart_rate(patient: &str, at: &str, value: f64) -> Value {
        json!({"resourceType": "Observation", "status": "final", "code": loinc("8867-4"),
            "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": at,
            "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
    }

    fn bp_panel(patient: &str, at: &str, systolic: f64, diastolic: f64) -> Value {
        json!({"resourceType": "Observation", "status": "final", "code": loinc("85354-9"),
            "subject": {"reference": format!("Patient/{patient}")}, "effectiveDateTime": at,
            "component": [
                {"code": loinc("8480-6"), "valueQuantity": {"value": systolic, "code": "mm[Hg]"}},
                {"code": loinc("8462-4"), "valueQuantity": {"value": diastolic, "code": "mm[Hg]"}}
            ]})
    }

    async fn store_with(bodies: Vec<Value>) -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.unwrap();
        let ops = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| WriteOp::Create { resource_type: "Observation".into(), id: format!("o{i}"), body, if_none_exist: None })
            .collect();
        store.write(ops).await.unwrap();
        (store, dir)
    }

    fn query(kind: VitalSign, start: OffsetDateTime, end: OffsetDateTime, window: Option<Duration>) -> SeriesQuery {
        SeriesQuery { patient_id: "p1".into(), kind, start, end, window, statistics: Statistic::ALL.to_vec() }
    }

    fn values(window: &WindowStats) -> Vec<Option<f64>> {
        window.values.iter().map(|v| v.value).collect()
    }

    #[tokio::test]
    async fn the_store_answers_with_the_patients_values_in_the_half_open_range() {
        let (store, _dir) = store_with(vec![
            heart_rate("p1", "2025-01-10T10:00:00Z", 60.0), // at start: in
            heart_rate("p1", "2025-01-10T10:00:30+01:00", 99.0), // 09:00:30Z: before start
            heart_rate("p1", "2025-01-10T10:00:30Z", 70.0),
            heart_rate("p1", "2025-01-10T10:01:10Z", 80.0),
            heart_rate("p1", "2025-01-10T10:01:59.999Z", 90.0),
            heart_rate("p1", "2025-01-10T10:02:00Z", 200.0), // at end: out
            heart_rate("p2", "2025-01-10T10:00:40Z", 150.0), // another patient
            json!({"resourceType": "Observation", "status": "entered-in-error", "code": loinc("8867-4"),
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-01-10T10:00:50Z",
                "valueQuantity": {"value": 250, "code": "/min"}}),
        ])
        .await;
        let (start, end) = (datetime!(2025-01-10 10:00 UTC), datetime!(2025-01-10 10:02 UTC));
        let got = series_from_store(&store, &query(VitalSign::HeartRate, start, end, None)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].start, got[0].end), (start, end));
        // 60, 70, 80, 90: mean 75, squares 225+25+25+225 = 500, sample variance 500/3.
        let v = values(&got[0]);
        assert_eq!(v[..5], [Some(75.0), Some(90.0), Some(60.0), Some(4.0), Some(75.0)]);
        assert!((v[5].unwrap() - (500.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(v[6], Some(300.0));
        assert!((v[7].unwrap() - 500.0 / 3.0).abs() < 1e-9);

        let windows = series_from_store(&store, &query(VitalSign::HeartRate, start, end, Some(Duration::from_secs(60)))).await.unwrap();
        let shape: Vec<_> = windows.iter().map(|w| (w.start, w.end, w.values[3].value)).collect();
        assert_eq!(
            shape,
            vec![
                (datetime!(2025-01-10 10:00 UTC), datetime!(2025-01-10 10:01 UTC), Some(2.0)),
                (datetime!(2025-01-10 10:01 UTC), datetime!(2025-01-10 10:02 UTC), Some(2.0)),
            ]
        );
        assert_eq!(windows[1].values[0].value, Some(85.0));
    }

    #[tokio::test]
    async fn an_empty_range_is_one_window_without_windows_and_none_with_them() {
        let (store, _dir) = store_with(vec![heart_rate("p1", "2025-01-10T10:00:00Z", 60.0)]).await;
        let (start, end) = (datetime!(2025-01-11 00:00 UTC), datetime!(2025-01-12 00:00 UTC));
        let got = series_from_store(&store, &query(VitalSign::HeartRate, start, end, None)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(values(&got[0]), vec![None, None, None, Some(0.0), None, None, Some(0.0), None]);
        let windows = series_from_store(&store, &query(VitalSign::HeartRate, start, end, Some(Duration::from_secs(3600)))).await.unwrap();
        assert!(windows.is_empty());
    }

    #[tokio::test]
    async fn blood_pressure_comes_from_panels_and_single_observations() {
        let (store, _dir) = store_with(vec![
            bp_panel("p1", "2025-01-10T10:00:00Z", 120.0, 80.0),
            bp_panel("p1", "2025-01-10T10:05:00Z", 130.0, 85.0),
            bp_panel("p2", "2025-01-10T10:05:00Z", 180.0, 110.0),
            json!({"resourceType": "Observation", "status": "final", "code": loinc("8480-6"),
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-01-10T10:10:00Z",
                "valueQuantity": {"value": 140, "code": "mm[Hg]"}}),
        ])
        .await;
        let (start, end) = (datetime!(2025-01-10 09:00 UTC), datetime!(2025-01-10 11:00 UTC));
        let systolic = series_from_store(&store, &query(VitalSign::BpSystolic, start, end, None)).await.unwrap();
        // 120, 130, 140: mean 130, variance (100 + 0 + 100) / 2 = 100.
        assert_eq!(values(&systolic[0]), vec![Some(130.0), Some(140.0), Some(120.0), Some(3.0), Some(130.0), Some(10.0), Some(390.0), Some(100.0)]);
        let diastolic = series_from_store(&store, &query(VitalSign::BpDiastolic, start, end, None)).await.unwrap();
        assert_eq!(values(&diastolic[0])[..4], [Some(82.5), Some(85.0), Some(80.0), Some(2.0)]);
    }

    #[tokio::test]
    async fn every_page_of_the_search_is_read() {
        // 1,001 readings one second apart, 40..=1040 alternating: more than one search page.
        let base = datetime!(2025-01-10 00:00 UTC);
        let bodies = (0..1001)
            .map(|i| {
                let at = fhir_model::format_instant(base + time::Duration::seconds(i));
                heart_rate("p1", &at, if i % 2 == 0 { 40.0 } else { 50.0 })
            })
            .collect();
        let (store, _dir) = store_with(bodies).await;
        let q = SeriesQuery { statistics: vec![Statistic::Count, Statistic::Sum], ..query(VitalSign::HeartRate, base, base + time::Duration::hours(1), None) };
        let got = series_from_store(&store, &q).await.unwrap();
        // 501 readings of 40 and 500 of 50.
        assert_eq!(values(&got[0]), vec![Some(1001.0), Some(501.0 * 40.0 + 500.0 * 50.0)]);
    }

    #[tokio::test]
    async fn a_malformed_patient_id_is_a_config_error_not_a_panic() {
        let (store, _dir) = store_with(vec![]).await;
        let mut q = query(VitalSign::HeartRate, datetime!(2025-01-10 00:00 UTC), datetime!(2025-01-11 00:00 UTC), None);
        q.patient_id = "p1,p2".into();
        assert!(matches!(series_from_store(&store, &q).await, Err(crate::ProjectionError::Config(_))));
    }

    #[test]
    fn windows_align_to_the_epoch_before_the_start() {
        let points = vec![(datetime!(2025-01-10 10:07:10 UTC), 1.0), (datetime!(2025-01-10 10:04:59 UTC), 3.0)];
        let q = SeriesQuery {
            statistics: vec![Statistic::Sum],
            ..query(VitalSign::Spo2, datetime!(2025-01-10 10:03 UTC), datetime!(2025-01-10 10:09 UTC), Some(Duration::from_secs(300)))
        };
        let got = bucket(&q, points).unwrap();
        let shape: Vec<_> = got.iter().map(|w| (w.start, w.end, w.values[0].value)).collect();
        assert_eq!(
            shape,
            vec![
                (datetime!(2025-01-10 10:00 UTC), datetime!(2025-01-10 10:05 UTC), Some(3.0)),
                (datetime!(2025-01-10 10:05 UTC), datetime!(2025-01-10 10:10 UTC), Some(1.0)),
            ]
        );
        let zero = SeriesQuery { window: Some(Duration::ZERO), ..q };
        assert!(bucket(&zero, vec![(datetime!(2025-01-10 10:07 UTC), 1.0)]).is_err());
    }
}
