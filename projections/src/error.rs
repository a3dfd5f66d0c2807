//! `ProjectionError`: what can go wrong keeping a projection in sync.

use fhir_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Reading the change feed (or saving a checkpoint kept in the store) failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// PostgreSQL refused or was unreachable.
    #[error("postgresql: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A PostgreSQL migration failed.
    #[error("postgresql migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The time-series database refused or was unreachable.
    #[error("time-series database: {0}")]
    Tsdb(String),
    /// The durable checkpoint is not where the batch was read from: another process applied
    /// (or a rebuild reset) the projection meanwhile. The follower re-reads and retries.
    #[error("checkpoint moved: expected {expected}, found {found}")]
    CheckpointMoved { expected: u64, found: u64 },
    /// A setting (URL, alert rule, statistic) is malformed.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl ProjectionError {
    /// True when retrying later can succeed (the peer is down, a conflict); false for
    /// configuration mistakes.
    pub fn is_transient(&self) -> bool {
        !matches!(self, ProjectionError::Config(_))
    }
}
