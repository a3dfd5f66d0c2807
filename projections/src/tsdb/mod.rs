//! The time-series projection: vital signs as InfluxDB line protocol (1.x `/write`, 2.x/3.x
//! `/api/v2/write`), the checkpoint kept in the store, and `$stats` series queries.
//!
//! Every Observation's measurements become fields of points of the `vital_signs`
//! measurement, tagged with the patient and device ids and stamped with the measurement time
//! (`line.rs`). Writing a point again overwrites it, so re-sending a batch after a crash is
//! harmless; that is why the checkpoint can live in the store and be saved after the writes.

mod check;
mod client;
mod line;
mod query;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use fhir_store::{Change, ChangeKind, ResourceStore};

use crate::{project, ConsistencyReport, Measurement, Projected, Projection, ProjectionError, SeriesQuery, WindowStats};
use client::Client;
use line::{Fields, PointKey};

/// The projection's name, and its consumer name for the checkpoint in the store.
const NAME: &str = "tsdb";

#[derive(Debug, Clone)]
pub struct TsdbConfig {
    /// Base URL, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// InfluxDB 1.x database (created if missing); with `org` and `bucket` set the v2 API is
    /// used instead.
    pub database: String,
    pub org: Option<String>,
    pub bucket: Option<String>,
    pub token: Option<String>,
}

pub struct TsdbProjection {
    client: Client,
    store: Arc<dyn ResourceStore>,
}

impl TsdbProjection {
    /// Checks the settings; the database is first contacted by the first write or query, so
    /// an unreachable one does not fail start-up.
    pub fn new(config: TsdbConfig, store: Arc<dyn ResourceStore>) -> Result<TsdbProjection, ProjectionError> {
        Ok(TsdbProjection { client: Client::new(&config)?, store })
    }

    /// Answers a `$stats` question from the database.
    pub async fn series(&self, query: &SeriesQuery) -> Result<Vec<WindowStats>, ProjectionError> {
        let statement = query::series_statement(query)?;
        if query.start >= query.end {
            return query::parse_series(query, &serde_json::json!({}));
        }
        let answer = self.client.influxql(&statement).await?;
        query::parse_series(query, &answer)
    }

    /// Compares the points with the store's current state.
    pub async fn check_consistency(&self, store: &dyn ResourceStore) -> Result<ConsistencyReport, ProjectionError> {
        check::check(&self.client, store).await
    }

    /// The points `measurements` make, warning about the ones the line protocol cannot carry.
    fn points_of(&self, id: &str, measurements: &[Measurement]) -> BTreeMap<PointKey, Fields> {
        let (points, skipped) = line::points(measurements);
        if skipped > 0 {
            tracing::warn!(observation = id, skipped, "measurements left out of the time series: time out of range, unusable id or value");
        }
        points
    }

    /// The points of one version of an Observation (none when deleted or not a vital sign).
    fn points_of_change(&self, change: &Change) -> BTreeMap<PointKey, Fields> {
        match project(change) {
            Projected::Observation { id, measurements, .. } => self.points_of(&id, &measurements),
            _ => BTreeMap::new(),
        }
    }

    /// The points the Observation had before this batch: its version before the batch's
    /// first change of it, unless there is none or it is a tombstone.
    async fn points_before(&self, first: &Change) -> Result<BTreeMap<PointKey, Fields>, ProjectionError> {
        let resource = &first.resource;
        let Some(previous) = resource.version.checked_sub(1).filter(|v| *v > 0) else { return Ok(BTreeMap::new()) };
        let Some(previous) = self.store.vread(&resource.resource_type, &resource.id, previous).await? else {
            return Ok(BTreeMap::new());
        };
        if previous.deleted {
            return Ok(BTreeMap::new());
        }
        let change = Change { seq: previous.seq, kind: ChangeKind::Update, resource: previous };
        Ok(self.points_of_change(&change))
    }
}

#[async_trait]
impl Projection for TsdbProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn checkpoint(&self) -> Result<u64, ProjectionError> {
        Ok(self.store.checkpoint(NAME).await?.unwrap_or(0))
    }

    /// Collapses the batch to each Observation's last version, removes the points its earlier
    /// versions had that the last one no longer writes, writes the last versions' points and
    /// only then saves the checkpoint. Removal comes first so that a point another Observation
    /// of this batch writes is written again afterwards.
    ///
    /// Deleting removes a whole point: if another Observation had a field at exactly the same
    /// (patient, device, time) in an earlier batch, that field goes with it until the other
    /// Observation is written again (a rebuild restores it; the consistency check reports it).
    async fn apply(&self, after: u64, batch: &[Change]) -> Result<(), ProjectionError> {
        let found = self.checkpoint().await?;
        if found != after {
            return Err(ProjectionError::CheckpointMoved { expected: after, found });
        }
        let Some(last_seq) = batch.last().map(|c| c.seq) else { return Ok(()) };

        let mut versions: BTreeMap<&str, Vec<&Change>> = BTreeMap::new();
        for change in batch.iter().filter(|c| c.resource.resource_type == "Observation") {
            versions.entry(change.resource.id.as_str()).or_default().push(change);
        }
        let mut writes: Vec<(u64, BTreeMap<PointKey, Fields>)> = Vec::with_capacity(versions.len());
        let mut deletes: BTreeSet<PointKey> = BTreeSet::new();
        for changes in versions.values() {
            let (Some(first), Some(last)) = (changes.first(), changes.last()) else { continue };
            let last_points = self.points_of_change(last);
            let mut earlier = vec![self.points_before(first).await?];
            earlier.extend(changes[..changes.len() - 1].iter().map(|c| self.points_of_change(c)));
            for (key, fields) in earlier.iter().flatten() {
                // A point the last version still writes keeps only the fields it writes again;
                // one with fields the last version lacks must go before being rewritten.
                let kept = last_points.get(key).is_some_and(|now| fields.keys().all(|f| now.contains_key(f)));
                if !kept {
                    deletes.insert(key.clone());
                }
            }
            writes.push((last.seq, last_points));
        }
        // Later versions last, so that of two Observations writing the same field of the
        // same point the later one wins, as on a rebuild.
        writes.sort_by_key(|(seq, _)| *seq);
        let lines: Vec<String> = writes.iter().flat_map(|(_, points)| points.iter().map(|(key, fields)| line::encode(key, fields))).collect();

        let deletes: Vec<PointKey> = deletes.into_iter().collect();
        self.client.delete_points(&deletes).await?;
        self.client.write(&lines).await?;
        self.store.save_checkpoint(NAME, last_seq).await?;
        Ok(())
    }

    async fn reset(&self) -> Result<(), ProjectionError> {
        self.client.delete_all().await?;
        self.store.save_checkpoint(NAME, 0).await?;
        Ok(())
    }
}
