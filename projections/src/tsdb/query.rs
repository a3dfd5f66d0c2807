//! InfluxQL for the time-series projection: quoting of identifiers and string literals, the
//! `$stats` statement and the reading of its JSON answer.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::line::{MAX_TIME_NS, MEASUREMENT, MIN_TIME_NS, PATIENT_TAG};
use crate::{ProjectionError, SeriesQuery, Statistic, StatisticValue, WindowStats};

/// `text` as an InfluxQL string literal. The scanner knows the escapes `\\`, `\'` and `\n`;
/// everything else is literal, so no input can end the literal early.
pub(super) fn string_literal(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('\'');
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str(r"\\"),
            '\'' => quoted.push_str(r"\'"),
            '\n' => quoted.push_str(r"\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

/// `name` as a double-quoted InfluxQL identifier.
pub(super) fn identifier(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for c in name.chars() {
        match c {
            '\\' => quoted.push_str(r"\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str(r"\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// An instant in nanoseconds as an RFC 3339 literal InfluxDB reads back exactly.
pub(super) fn rfc3339(time_ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(time_ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

/// Nanoseconds since the epoch, clamped to what InfluxDB can store.
pub(super) fn clamped_ns(time: OffsetDateTime) -> i64 {
    let clamped = time.unix_timestamp_nanos().clamp(i128::from(MIN_TIME_NS), i128::from(MAX_TIME_NS));
    i64::try_from(clamped).unwrap_or(MAX_TIME_NS)
}

/// The aggregates the `$stats` statement selects, by column name. Variance is the square of
/// the (sample) standard deviation.
const AGGREGATES: [&str; 7] = ["count", "mean", "min", "max", "median", "stddev", "sum"];

/// The statement answering `query`: every aggregate of the sign's field for the patient over
/// `[start, end)`, grouped in epoch-aligned windows when a window is asked for.
pub(super) fn series_statement(query: &SeriesQuery) -> Result<String, ProjectionError> {
    let field = identifier(query.kind.name());
    let selected: Vec<String> = AGGREGATES.iter().map(|f| format!("{f}({field}) AS {}", identifier(f))).collect();
    let mut statement = format!(
        "SELECT {} FROM {} WHERE {} = {} AND time >= {} AND time < {}",
        selected.join(", "),
        identifier(MEASUREMENT),
        identifier(PATIENT_TAG),
        string_literal(&query.patient_id),
        string_literal(&rfc3339(clamped_ns(query.start))),
        string_literal(&rfc3339(clamped_ns(query.end))),
    );
    if let Some(window) = query.window {
        statement.push_str(&format!(" GROUP BY time({}) fill(none)", duration_literal(window)?));
    }
    Ok(statement)
}

/// A window as an InfluxQL duration literal, in the coarsest exact unit.
fn duration_literal(window: std::time::Duration) -> Result<String, ProjectionError> {
    let nanos = window.as_nanos();
    if nanos == 0 || nanos > MAX_TIME_NS as u128 {
        return Err(ProjectionError::Config(format!("statistics window of {window:?} is out of range")));
    }
    Ok(match nanos {
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}u", n / 1_000),
        n => format!("{n}ns"),
    })
}

/// Reads the answer to `series_statement(query)`.
pub(super) fn parse_series(query: &SeriesQuery, response: &Value) -> Result<Vec<WindowStats>, ProjectionError> {
    let rows = rows(response)?;
    let Some(window) = query.window else {
        let values = match rows.first() {
            Some(row) => statistics(query, row),
            None => empty_statistics(query),
        };
        return Ok(vec![WindowStats { start: query.start, end: query.end, values }]);
    };
    let window = time::Duration::try_from(window).map_err(|e| ProjectionError::Config(format!("statistics window: {e}")))?;
    let mut windows = Vec::with_capacity(rows.len());
    for row in rows {
        if row.get("count").and_then(Value::as_f64).unwrap_or(0.0) == 0.0 {
            continue;
        }
        let start_ns = row.get("time").and_then(Value::as_i64).ok_or_else(|| unexpected("a window without a time", response))?;
        let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(start_ns)).map_err(|e| unexpected(&e.to_string(), response))?;
        let end = start.checked_add(window).ok_or_else(|| unexpected("a window ending out of range", response))?;
        windows.push(WindowStats { start, end, values: statistics(query, &row) });
    }
    Ok(windows)
}

/// The rows of the first series of the first result, as column name → value.
fn rows(response: &Value) -> Result<Vec<serde_json::Map<String, Value>>, ProjectionError> {
    let Some(series) = response["results"][0]["series"].as_array() else { return Ok(Vec::new()) };
    let Some(series) = series.first() else { return Ok(Vec::new()) };
    let columns: Vec<&str> = series["columns"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let values = series["values"].as_array().ok_or_else(|| unexpected("a series without values", response))?;
    Ok(values
        .iter()
        .filter_map(Value::as_array)
        .map(|row| columns.iter().zip(row).map(|(c, v)| (c.to_string(), v.clone())).collect())
        .collect())
}

fn statistics(query: &SeriesQuery, row: &serde_json::Map<String, Value>) -> Vec<StatisticValue> {
    let column = |name: &str| row.get(name).and_then(Value::as_f64);
    let count = column("count").unwrap_or(0.0);
    query
        .statistics
        .iter()
        .map(|&statistic| {
            let value = match statistic {
                Statistic::Count => Some(count),
                Statistic::Average => column("mean"),
                Statistic::Minimum => column("min"),
                Statistic::Maximum => column("max"),
                Statistic::Median => column("median"),
                Statistic::Sum => column("sum"),
                // InfluxDB answers null for fewer than two values; so do we, either way.
                Statistic::StdDev => column("stddev").filter(|_| count > 1.0),
                Statistic::Variance => column("stddev").filter(|_| count > 1.0).map(|s| s * s),
            };
            StatisticValue { statistic, value }
        })
        .collect()
}

/// The statistics of no values, as the store computes them (count and sum 0, the rest
/// undefined), so both sources answer an empty window alike.
fn empty_statistics(query: &SeriesQuery) -> Vec<StatisticValue> {
    crate::compute_statistics(&[], &query.statistics)
}

fn unexpected(what: &str, response: &Value) -> ProjectionError {
    let text: String = response.to_string().chars().take(300).collect();
    ProjectionError::Tsdb(format!("unexpected query answer ({what}): {text}"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use time::macros::datetime;

    use super::*;
    use crate::VitalSign;

    fn query(window: Option<Duration>) -> SeriesQuery {
        SeriesQuery {
            patient_id: r"p'1\x".into(),
            kind: VitalSign::HeartRate,
            start: datetime!(2026-03-01 10:00 UTC),
            end: datetime!(2026-03-01 11:00 UTC),
            window,
            statistics: vec![Statistic::Variance, Statistic::Count, Statistic::Average],
        }
    }

    #[test]
    fn the_patient_id_is_escaped_and_the_window_aligned() {
        let statement = series_statement(&query(Some(Duration::from_secs(60)))).unwrap();
        assert!(statement.contains(r#"WHERE "patient_id" = 'p\'1\\x' AND time >= '2026-03-01T10:00:00Z' AND time < '2026-03-01T11:00:00Z'"#), "{statement}");
        assert!(statement.ends_with("GROUP BY time(60s) fill(none)"), "{statement}");
        assert!(statement.starts_with(r#"SELECT count("heart_rate") AS "count", mean("heart_rate") AS "mean""#), "{statement}");
    }

    #[test]
    fn answers_become_windows_with_the_asked_statistics_in_order() {
        let response = json!({"results": [{"statement_id": 0, "series": [{"name": "vital_signs",
            "columns": ["time", "count", "mean", "min", "max", "median", "stddev", "sum"],
            "values": [[1772359200000000000i64, 2, 63, 60, 66, 63, 3.0, 126], [1772359260000000000i64, 1, 70, 70, 70, 70, null, 70]]}]}]});
        let windows = parse_series(&query(Some(Duration::from_secs(60))), &response).unwrap();
        assert_eq!(windows.len(), 2);
        assert_eq!(windows[1].start, datetime!(2026-03-01 10:01 UTC));
        assert_eq!(windows[1].end, datetime!(2026-03-01 10:02 UTC));
        let values: Vec<_> = windows.iter().map(|w| w.values.iter().map(|v| v.value).collect::<Vec<_>>()).collect();
        assert_eq!(values, vec![vec![Some(9.0), Some(2.0), Some(63.0)], vec![None, Some(1.0), Some(70.0)]]);
    }

    #[test]
    fn no_answer_without_a_window_is_one_empty_window() {
        let windows = parse_series(&query(None), &json!({"results": [{"statement_id": 0}]})).unwrap();
        assert_eq!(windows.len(), 1);
        assert_eq!((windows[0].start, windows[0].end), (datetime!(2026-03-01 10:00 UTC), datetime!(2026-03-01 11:00 UTC)));
        assert_eq!(windows[0].values.iter().map(|v| v.value).collect::<Vec<_>>(), vec![None, Some(0.0), None]);
    }
}
