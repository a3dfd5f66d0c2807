//! The time-series projection: vital signs as InfluxDB line protocol (1.x `/write`, 2.x/3.x
//! `/api/v2/write`), the checkpoint kept in the store, and `$stats` series queries.

use std::sync::Arc;

use async_trait::async_trait;
use fhir_store::{Change, ResourceStore};

use crate::{ConsistencyReport, Projection, ProjectionError, SeriesQuery, WindowStats};

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
    _config: TsdbConfig,
    _store: Arc<dyn ResourceStore>,
}

impl TsdbProjection {
    pub fn new(config: TsdbConfig, store: Arc<dyn ResourceStore>) -> Result<TsdbProjection, ProjectionError> {
        let _ = (config, store);
        unimplemented!("filled in by the tsdb work")
    }

    /// Answers a `$stats` question from the database.
    pub async fn series(&self, query: &SeriesQuery) -> Result<Vec<WindowStats>, ProjectionError> {
        let _ = query;
        unimplemented!()
    }

    /// Compares the points with the store's current state.
    pub async fn check_consistency(&self, store: &dyn ResourceStore) -> Result<ConsistencyReport, ProjectionError> {
        let _ = store;
        unimplemented!()
    }
}

#[async_trait]
impl Projection for TsdbProjection {
    fn name(&self) -> &'static str {
        "tsdb"
    }
    async fn checkpoint(&self) -> Result<u64, ProjectionError> {
        unimplemented!()
    }
    async fn apply(&self, after: u64, batch: &[Change]) -> Result<(), ProjectionError> {
        let _ = (after, batch);
        unimplemented!()
    }
    async fn reset(&self) -> Result<(), ProjectionError> {
        unimplemented!()
    }
}
