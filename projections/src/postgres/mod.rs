//! The relational projection into PostgreSQL: schema owned by sqlx migrations, batches
//! applied in one transaction with the checkpoint, alerts, and the consistency check.
//!
//! `schema.rs` holds the migrations, row ids and monthly partitions; `apply.rs` turns a batch
//! of the feed into bulk statements; `alerts.rs` lists and acknowledges alerts; `check.rs`
//! compares the tables with the store.

mod alerts;
mod apply;
mod check;
mod schema;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use fhir_store::{Change, ResourceStore};
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::PgConnection;
use time::OffsetDateTime;

use crate::{AlertRules, ConsistencyReport, Projection, ProjectionError};
use schema::Month;

/// The most partitions created ahead of the current month, whatever the setting says.
pub const MAX_MONTHS_AHEAD: u32 = 120;

/// The projection's row in `projection_checkpoints`.
const CHECKPOINT_NAME: &str = "postgres";

#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user:pass@host:port/db`.
    pub url: String,
    pub alert_rules: AlertRules,
    /// Monthly `measurements` partitions kept created ahead of the current month (at most
    /// `MAX_MONTHS_AHEAD`; later months get theirs when data needs them).
    pub months_ahead: u32,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub acknowledged: Option<bool>,
    pub severity: Option<crate::Severity>,
    /// FHIR logical id of the patient.
    pub patient_fhir_id: Option<String>,
    /// Most alerts returned; 0 means the default of 100.
    pub limit: usize,
}

/// One row of `alerts`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertRecord {
    pub id: i64,
    pub severity: String,
    pub measurement_type: String,
    pub value: f64,
    pub unit: String,
    #[serde(with = "time::serde::rfc3339")]
    pub measured_at: OffsetDateTime,
    pub rule: String,
    pub observation_fhir_id: String,
    pub patient_fhir_id: Option<String>,
    pub device_fhir_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub acknowledged: bool,
    pub acknowledged_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
}

pub struct PostgresProjection {
    config: PostgresConfig,
    pool: PgPool,
    migrator: Migrator,
    setup: tokio::sync::Mutex<Setup>,
    /// Partitions of `measurements` known to exist. Emptied after a failed batch, since a
    /// partition may have been dropped behind our back (creation is `if not exists`).
    partitions: Mutex<BTreeSet<Month>>,
}

/// What first contact with the database has done.
#[derive(Default)]
struct Setup {
    migrated: bool,
    /// The current month when the partitions ahead were last created.
    ahead_from: Option<Month>,
}

impl PostgresProjection {
    /// Connects lazily: an unreachable database does not fail start-up; migrations run on
    /// first contact. Must be called inside a tokio runtime (the pool keeps a maintenance
    /// task).
    pub fn new(config: PostgresConfig) -> Result<PostgresProjection, ProjectionError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(&config.url)
            // The URL may hold a password: the message names the problem, not the URL.
            .map_err(|e| ProjectionError::Config(format!("postgres url: {e}")))?;
        Ok(PostgresProjection {
            config,
            pool,
            migrator: schema::migrator(),
            setup: tokio::sync::Mutex::new(Setup::default()),
            partitions: Mutex::new(BTreeSet::new()),
        })
    }

    pub async fn list_alerts(&self, filter: &AlertFilter) -> Result<Vec<AlertRecord>, ProjectionError> {
        self.ready().await?;
        alerts::list(&self.pool, filter).await
    }

    /// Marks an alert acknowledged; None when there is no such alert. Acknowledging again
    /// keeps the first acknowledgement's author and time.
    pub async fn acknowledge_alert(&self, id: i64, by: &str) -> Result<Option<AlertRecord>, ProjectionError> {
        self.ready().await?;
        alerts::acknowledge(&self.pool, id, by).await
    }

    /// Compares the tables with the store's current state at the projection's checkpoint.
    pub async fn check_consistency(&self, store: &dyn ResourceStore) -> Result<ConsistencyReport, ProjectionError> {
        self.ready().await?;
        check::check(&self.pool, store, &self.config.alert_rules).await
    }

    /// On first contact runs the migrations; whenever the month changes (first contact
    /// included) creates the partitions of the current month and `months_ahead` after it.
    /// A failure is retried on the next call.
    async fn ready(&self) -> Result<(), ProjectionError> {
        let current = Month::of(OffsetDateTime::now_utc());
        let mut setup = self.setup.lock().await;
        if !setup.migrated {
            self.migrator.run(&self.pool).await?;
            setup.migrated = true;
        }
        if setup.ahead_from != Some(current) {
            let ahead = self.config.months_ahead.min(MAX_MONTHS_AHEAD) as usize;
            let months: Vec<Month> = std::iter::successors(Some(current), |m| Some(m.next())).take(ahead + 1).collect();
            let mut tx = self.pool.begin().await?;
            // Holding the checkpoint row serialises partition creation with every other
            // process applying batches to this database.
            lock_checkpoint(&mut tx).await?;
            for &month in &months {
                schema::create_partition(&mut tx, month).await?;
            }
            tx.commit().await?;
            self.known_partitions().extend(months);
            setup.ahead_from = Some(current);
        }
        Ok(())
    }

    fn known_partitions(&self) -> std::sync::MutexGuard<'_, BTreeSet<Month>> {
        self.partitions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn apply_in_transaction(&self, after: u64, plan: &apply::Plan, new_partitions: &[Month]) -> Result<(), ProjectionError> {
        let mut tx = self.pool.begin().await?;
        let found = lock_checkpoint(&mut tx).await?;
        if found != after {
            tx.rollback().await?;
            return Err(ProjectionError::CheckpointMoved { expected: after, found });
        }
        for &month in new_partitions {
            schema::create_partition(&mut tx, month).await?;
        }
        plan.write(&mut tx, &self.config.alert_rules).await?;
        save_checkpoint(&mut tx, plan.last_seq).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Projection for PostgresProjection {
    fn name(&self) -> &'static str {
        "postgres"
    }

    async fn checkpoint(&self) -> Result<u64, ProjectionError> {
        self.ready().await?;
        let seq: Option<i64> = sqlx::query_scalar("select seq from projection_checkpoints where name = $1")
            .bind(CHECKPOINT_NAME)
            .fetch_optional(&self.pool)
            .await?;
        Ok(seq.map_or(0, to_u64))
    }

    async fn apply(&self, after: u64, batch: &[Change]) -> Result<(), ProjectionError> {
        let Some(plan) = apply::Plan::of(batch) else { return Ok(()) };
        self.ready().await?;
        let new_partitions: Vec<Month> = {
            let known = self.known_partitions();
            plan.months().into_iter().filter(|m| !known.contains(m)).collect()
        };
        match self.apply_in_transaction(after, &plan, &new_partitions).await {
            Ok(()) => {
                self.known_partitions().extend(new_partitions);
                Ok(())
            }
            Err(error) => {
                if !matches!(error, ProjectionError::CheckpointMoved { .. }) {
                    self.known_partitions().clear();
                }
                Err(error)
            }
        }
    }

    async fn reset(&self) -> Result<(), ProjectionError> {
        self.ready().await?;
        let mut tx = self.pool.begin().await?;
        lock_checkpoint(&mut tx).await?;
        sqlx::query("truncate patients, devices, measurements, alerts restart identity").execute(&mut *tx).await?;
        save_checkpoint(&mut tx, 0).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Locks the projection's checkpoint row until the transaction ends and returns it (0 when
/// the row is missing).
async fn lock_checkpoint(connection: &mut PgConnection) -> Result<u64, ProjectionError> {
    let seq: Option<i64> = sqlx::query_scalar("select seq from projection_checkpoints where name = $1 for update")
        .bind(CHECKPOINT_NAME)
        .fetch_optional(connection)
        .await?;
    Ok(seq.map_or(0, to_u64))
}

async fn save_checkpoint(connection: &mut PgConnection, seq: u64) -> Result<(), ProjectionError> {
    sqlx::query(
        "insert into projection_checkpoints (name, seq, updated_at) values ($1, $2, now()) \
         on conflict (name) do update set seq = excluded.seq, updated_at = excluded.updated_at",
    )
    .bind(CHECKPOINT_NAME)
    .bind(to_i64(seq))
    .execute(connection)
    .await?;
    Ok(())
}

/// Feed positions and versions as PostgreSQL `bigint`.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
