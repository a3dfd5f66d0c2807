//! What every backend does the same way when it writes a version: the batch timestamp, the
//! stamped body (`id`, `meta.versionId`, `meta.lastUpdated`), the index extraction and the
//! expected-version check.

use std::panic::AssertUnwindSafe;

use fhir_model::IndexEntry;
use serde_json::{Map, Value};
use time::macros::format_description;
use time::OffsetDateTime;

use crate::StoreError;

/// A write's time, as stored (epoch ms) and as written into `meta.lastUpdated`.
pub(crate) struct Timestamp {
    pub(crate) ms: i64,
    pub(crate) instant: OffsetDateTime,
    pub(crate) text: String,
}

impl Timestamp {
    pub(crate) fn new(ms: i64) -> Result<Self, StoreError> {
        let instant = instant_from_ms(ms)?;
        let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        let text = instant.format(format).map_err(|e| StoreError::backend("format lastUpdated", e))?;
        Ok(Timestamp { ms, instant, text })
    }
}

/// The instant of stored epoch milliseconds.
pub(crate) fn instant_from_ms(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::backend("timestamp out of range", e))
}

/// The wall clock in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta`. `id` and
/// `meta` go right after `resourceType`, where FHIR JSON conventionally has them.
pub(crate) fn stamp(mut body: Value, id: &str, version: u64, now: &Timestamp) -> Result<Value, StoreError> {
    let Value::Object(resource) = &mut body else {
        return Err(StoreError::Backend { message: "resource body is not a json object".into(), source: None });
    };
    let mut meta = match resource.shift_remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert("lastUpdated".into(), Value::String(now.text.clone()));
    resource.shift_remove("id");
    let mut at = 0;
    if let Some(resource_type) = resource.shift_remove("resourceType") {
        resource.shift_insert(0, "resourceType".into(), resource_type);
        at = 1;
    }
    resource.shift_insert(at, "id".into(), Value::String(id.into()));
    resource.shift_insert(at + 1, "meta".into(), Value::Object(meta));
    Ok(body)
}

/// `fhir_model::extract_index`, with a panic turned into an error: a bug in extraction for one
/// odd resource must fail that write, not kill a writer task and with it every later write.
pub(crate) fn extract_index(resource_type: &str, body: &Value) -> Result<Vec<IndexEntry>, StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| fhir_model::extract_index(resource_type, body))).map_err(|_| {
        StoreError::Backend { message: format!("search index extraction failed for {resource_type}"), source: None }
    })
}

/// With `expected`, the current version must be exactly that one.
pub(crate) fn check_expected(
    resource_type: &str,
    id: &str,
    expected: Option<u64>,
    current: Option<u64>,
) -> Result<(), StoreError> {
    let Some(expected) = expected else { return Ok(()) };
    if current == Some(expected) {
        Ok(())
    } else {
        Err(StoreError::VersionConflict { resource_type: resource_type.into(), id: id.into(), expected, current })
    }
}

/// The next version number after `current` (1 for a new resource).
pub(crate) fn next_version(resource_type: &str, id: &str, current: Option<u64>) -> Result<u64, StoreError> {
    match current {
        None => Ok(1),
        Some(version) => version.checked_add(1).ok_or_else(|| StoreError::Backend {
            message: format!("{resource_type}/{id} has run out of version numbers"),
            source: None,
        }),
    }
}
