//! The time-series consistency check: every point the store's current Observations make (as
//! of the projection's checkpoint) read back from InfluxDB, with missing points, wrong values
//! and extra points or fields reported.

use std::collections::BTreeMap;

use fhir_store::ResourceStore;
use serde_json::Value;

use super::client::Client;
use super::line::{self, Fields, PointKey, DEVICE_TAG, MEASUREMENT, PATIENT_TAG};
use super::query::{identifier, rfc3339};
use super::NAME;
use crate::state::Problems;
use crate::{current_resources, ConsistencyReport, ProjectionError, Projected, VitalSign};

/// Problems listed one by one before the rest are only counted.

/// Compares the measurement with the store. A follower applying meanwhile can make points
/// newer than the checkpoint show up as extra; check a quiet projection.
pub(super) async fn check(client: &Client, store: &dyn ResourceStore) -> Result<ConsistencyReport, ProjectionError> {
    let at_seq = store.checkpoint(NAME).await?.unwrap_or(0);
    let current = current_resources(store, at_seq).await?;
    // Where two Observations write the same field of the same point, the later write wins,
    // so replay them in feed order.
    let mut observations: Vec<_> = current
        .values()
        .filter_map(|r| match &r.projected {
            Projected::Observation { measurements, .. } => Some((r.change.seq, measurements)),
            _ => None,
        })
        .collect();
    observations.sort_by_key(|(seq, _)| *seq);
    let mut expected: BTreeMap<PointKey, Fields> = BTreeMap::new();
    for (_, measurements) in &observations {
        for (key, fields) in line::points(measurements.iter()).0 {
            expected.entry(key).or_default().extend(fields);
        }
    }

    let mut problems = Problems::default();
    let mut rows_checked = 0;
    let statement = format!("SELECT * FROM {} GROUP BY *", identifier(MEASUREMENT));
    client
        .select_chunked(&statement, |series| {
            rows_checked += compare_series(series, &mut expected, &mut problems);
        })
        .await?;
    for (key, fields) in &expected {
        let names: Vec<&str> = fields.keys().copied().collect();
        problems.push(format!("missing point {} ({})", describe(key), names.join(", ")));
    }
    Ok(ConsistencyReport {
        projection: NAME.to_string(),
        at_seq,
        resources_checked: observations.len(),
        rows_checked,
        problems: problems.finish(),
    })
}

/// Compares one series of the answer, removing what it found from `expected`; returns how
/// many points it held.
fn compare_series(series: &Value, expected: &mut BTreeMap<PointKey, Fields>, problems: &mut Problems) -> usize {
    let tags = series["tags"].as_object();
    let tag = |name: &str| tags.and_then(|t| t.get(name)).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_string);
    let (patient_id, device_id) = (tag(PATIENT_TAG), tag(DEVICE_TAG));
    let foreign_tags: Vec<String> = tags
        .into_iter()
        .flatten()
        .filter(|(name, value)| *name != PATIENT_TAG && *name != DEVICE_TAG && value.as_str().is_some_and(|v| !v.is_empty()))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let columns: Vec<&str> = series["columns"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let mut points = 0;
    for row in series["values"].as_array().into_iter().flatten().filter_map(Value::as_array) {
        points += 1;
        let Some(time_ns) = columns.iter().position(|c| *c == "time").and_then(|i| row.get(i)).and_then(Value::as_i64) else {
            problems.push(format!("a point without a time in series {patient_id:?}/{device_id:?}"));
            continue;
        };
        let key = PointKey { patient_id: patient_id.clone(), device_id: device_id.clone(), time_ns };
        if !foreign_tags.is_empty() {
            problems.push(format!("extra point {} with unexpected tags {}", describe(&key), foreign_tags.join(",")));
            continue;
        }
        let want = expected.remove(&key);
        let Some(want) = want else {
            problems.push(format!("extra point {}", describe(&key)));
            continue;
        };
        let mut seen = Vec::new();
        for (column, value) in columns.iter().zip(row).filter(|(c, v)| **c != "time" && !v.is_null()) {
            let name = VitalSign::from_name(column).map(VitalSign::name);
            let wanted = name.and_then(|n| want.get(n));
            match (wanted, value.as_f64()) {
                (None, _) => problems.push(format!("extra field {column} = {value} at {}", describe(&key))),
                (Some(w), Some(v)) if *w == v => {}
                (Some(w), _) => problems.push(format!("wrong value of {column} at {}: {value}, expected {w}", describe(&key))),
            }
            seen.extend(name);
        }
        for name in want.keys().filter(|n| !seen.contains(n)) {
            problems.push(format!("missing field {name} at {}", describe(&key)));
        }
    }
    points
}

fn describe(key: &PointKey) -> String {
    format!(
        "patient {} device {} at {}",
        key.patient_id.as_deref().unwrap_or("-"),
        key.device_id.as_deref().unwrap_or("-"),
        rfc3339(key.time_ns)
    )
}

