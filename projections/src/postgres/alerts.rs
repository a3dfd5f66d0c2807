//! Reading and acknowledging the `alerts` table (the rows themselves are written with their
//! measurements, in `apply.rs`).

use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

use super::{AlertFilter, AlertRecord};
use crate::ProjectionError;

const DEFAULT_LIMIT: usize = 100;
/// The most alerts one call returns, whatever the filter asks.
const MAX_LIMIT: usize = 10_000;

const COLUMNS: &str = "id, severity, measurement_type, value, unit, measured_at, rule, observation_fhir_id, \
    patient_fhir_id, device_fhir_id, created_at, acknowledged, acknowledged_by, acknowledged_at";

/// The alerts the filter selects, newest first: by when they were raised, then (for alerts
/// raised by one batch) by when their value was measured.
pub(super) async fn list(pool: &PgPool, filter: &AlertFilter) -> Result<Vec<AlertRecord>, ProjectionError> {
    let limit = match filter.limit {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    };
    let sql = format!(
        "select {COLUMNS} from alerts \
         where ($1::bool is null or acknowledged = $1) and ($2::text is null or severity = $2) \
             and ($3::text is null or patient_fhir_id = $3) \
         order by created_at desc, measured_at desc, id desc limit $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(filter.acknowledged)
        .bind(filter.severity.map(|s| s.as_str()))
        .bind(filter.patient_fhir_id.as_deref())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    rows.iter().map(record).collect::<Result<_, _>>().map_err(ProjectionError::from)
}

/// Marks the alert acknowledged by `by`, now, unless it already is: the first
/// acknowledgement's author and time are kept.
pub(super) async fn acknowledge(pool: &PgPool, id: i64, by: &str) -> Result<Option<AlertRecord>, ProjectionError> {
    let sql = format!(
        "update alerts set acknowledged = true, acknowledged_by = coalesce(acknowledged_by, $2), \
             acknowledged_at = coalesce(acknowledged_at, now()) \
         where id = $1 returning {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(super::apply::db_text(by).as_ref()).fetch_optional(pool).await?;
    row.as_ref().map(record).transpose().map_err(ProjectionError::from)
}

fn record(row: &PgRow) -> Result<AlertRecord, sqlx::Error> {
    Ok(AlertRecord {
        id: row.try_get("id")?,
        severity: row.try_get("severity")?,
        measurement_type: row.try_get("measurement_type")?,
        value: row.try_get("value")?,
        unit: row.try_get("unit")?,
        measured_at: row.try_get("measured_at")?,
        rule: row.try_get("rule")?,
        observation_fhir_id: row.try_get("observation_fhir_id")?,
        patient_fhir_id: row.try_get("patient_fhir_id")?,
        device_fhir_id: row.try_get("device_fhir_id")?,
        created_at: row.try_get("created_at")?,
        acknowledged: row.try_get("acknowledged")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
    })
}
