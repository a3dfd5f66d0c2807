//! The follower: reads the change feed from a projection's durable checkpoint, applies it in
//! contiguous batches, follows it for ever, backs off while the target is down, and keeps
//! the status `/admin/projections` and the metrics report.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fhir_store::{Change, ResourceStore};
use hdrhistogram::Histogram;
use opentelemetry::KeyValue;
use serde::Serialize;
use time::OffsetDateTime;

use crate::ProjectionError;

/// A database kept in sync with the change feed.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// `postgres` or `tsdb`: the name in `/admin/projections`, metrics and the CLI.
    fn name(&self) -> &'static str;

    /// The feed position everything up to which is applied, read from durable storage.
    async fn checkpoint(&self) -> Result<u64, ProjectionError>;

    /// Applies `batch` — the changes directly after `after`, in feed order — and moves the
    /// durable checkpoint to the last one's `seq`, as one unit: after a crash either all of
    /// it or none of it counts as applied. Fails with `CheckpointMoved` (having changed
    /// nothing) when the durable checkpoint is not `after`.
    async fn apply(&self, after: u64, batch: &[Change]) -> Result<(), ProjectionError>;

    /// Empties the projection and moves its checkpoint back to 0, so that following the
    /// feed rebuilds it from the whole store.
    async fn reset(&self) -> Result<(), ProjectionError>;
}

#[derive(Debug, Clone)]
pub struct FollowerOptions {
    /// Most changes applied in one batch.
    pub batch_size: usize,
    /// How long to wait for new changes once caught up.
    pub poll_interval: Duration,
    /// Longest wait between retries while the target fails.
    pub max_backoff: Duration,
}

impl Default for FollowerOptions {
    fn default() -> Self {
        FollowerOptions { batch_size: 1000, poll_interval: Duration::from_millis(100), max_backoff: Duration::from_secs(5) }
    }
}

/// A projection's state as `/admin/projections` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProjectionStatus {
    pub name: String,
    /// Applied up to this feed position.
    pub checkpoint: u64,
    /// The newest feed position.
    pub head: u64,
    /// Changes not applied yet.
    pub lag_changes: u64,
    /// Age of the oldest change not applied yet; 0 when caught up.
    pub lag_seconds: f64,
    /// Changes applied since this process started.
    pub applied_changes: u64,
    /// From a change's commit to its projection being committed, over the changes applied
    /// since this process started.
    pub apply_lag_ms_p50: u64,
    pub apply_lag_ms_p99: u64,
    pub apply_lag_ms_max: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_applied_at: Option<OffsetDateTime>,
    /// The last failure, until the next successful batch.
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_error_at: Option<OffsetDateTime>,
}

struct StatusInner {
    checkpoint: u64,
    head: u64,
    applied_changes: u64,
    apply_lag_ms: Histogram<u64>,
    last_applied_at: Option<OffsetDateTime>,
    last_error: Option<(String, OffsetDateTime)>,
}

/// Shared view of one follower's progress.
#[derive(Clone)]
pub struct StatusHandle {
    name: &'static str,
    inner: Arc<Mutex<StatusInner>>,
}

impl StatusHandle {
    fn new(name: &'static str) -> StatusHandle {
        let histogram = Histogram::new_with_bounds(1, 24 * 3_600_000, 3).expect("valid histogram bounds");
        StatusHandle {
            name,
            inner: Arc::new(Mutex::new(StatusInner {
                checkpoint: 0,
                head: 0,
                applied_changes: 0,
                apply_lag_ms: histogram,
                last_applied_at: None,
                last_error: None,
            })),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The status with the feed head and the age of the oldest unapplied change read now.
    pub async fn snapshot(&self, store: &dyn ResourceStore) -> ProjectionStatus {
        let head = store.last_seq().await.ok();
        let checkpoint = self.lock().checkpoint;
        let oldest_pending = match head {
            Some(head) if head > checkpoint => store.changes(checkpoint, 1).await.ok().and_then(|c| c.first().map(|c| c.resource.last_updated)),
            _ => None,
        };
        let mut inner = self.lock();
        if let Some(head) = head {
            inner.head = inner.head.max(head);
        }
        let lag_seconds = oldest_pending
            .map(|t| ((OffsetDateTime::now_utc() - t).as_seconds_f64()).max(0.0))
            .unwrap_or(0.0);
        ProjectionStatus {
            name: self.name.to_string(),
            checkpoint: inner.checkpoint,
            head: inner.head,
            lag_changes: inner.head.saturating_sub(inner.checkpoint),
            lag_seconds,
            applied_changes: inner.applied_changes,
            apply_lag_ms_p50: inner.apply_lag_ms.value_at_quantile(0.5),
            apply_lag_ms_p99: inner.apply_lag_ms.value_at_quantile(0.99),
            apply_lag_ms_max: inner.apply_lag_ms.max(),
            last_applied_at: inner.last_applied_at,
            last_error: inner.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: inner.last_error.as_ref().map(|(_, at)| *at),
        }
    }
}

/// Progress of a catch-up (a rebuild), for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub checkpoint: u64,
    pub target: u64,
    pub applied: u64,
    pub elapsed: Duration,
}

/// Where a follower is: the checkpoint it applied up to (None until read from the
/// projection), and the batch after it when already read ahead.
#[derive(Default)]
struct Position {
    checkpoint: Option<u64>,
    prefetched: Option<(u64, Vec<Change>)>,
}

/// Drives one projection from the change feed.
pub struct Follower {
    projection: Arc<dyn Projection>,
    store: Arc<dyn ResourceStore>,
    options: FollowerOptions,
    status: StatusHandle,
    metrics: Metrics,
}

struct Metrics {
    applied: opentelemetry::metrics::Counter<u64>,
    lag_changes: opentelemetry::metrics::Gauge<u64>,
    apply_lag: opentelemetry::metrics::Histogram<f64>,
    attributes: [KeyValue; 1],
}

impl Follower {
    pub fn new(projection: Arc<dyn Projection>, store: Arc<dyn ResourceStore>, options: FollowerOptions) -> Follower {
        let name = projection.name();
        let meter = opentelemetry::global::meter("tessera.projections");
        let metrics = Metrics {
            applied: meter.u64_counter("tessera.projection.applied").with_description("Changes applied to the projection").build(),
            lag_changes: meter.u64_gauge("tessera.projection.lag").with_description("Changes not yet applied").with_unit("{change}").build(),
            apply_lag: meter
                .f64_histogram("tessera.projection.apply_lag")
                .with_description("From a change's commit to its projection's commit")
                .with_unit("s")
                .build(),
            attributes: [KeyValue::new("projection", name)],
        };
        Follower { status: StatusHandle::new(name), projection, store, options, metrics }
    }

    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Follows the feed until the task is dropped. Failures are recorded in the status and
    /// retried with backoff; nothing is skipped.
    pub async fn run(self) {
        let mut position = Position::default();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.step(&mut position).await {
                Ok(0) => tokio::time::sleep(self.options.poll_interval).await,
                Ok(_) => backoff = Duration::from_millis(200),
                Err(error) => {
                    tracing::warn!(projection = self.status.name, %error, retry_in_ms = backoff.as_millis() as u64, "projection failed; retrying");
                    self.status.lock().last_error = Some((error.to_string(), OffsetDateTime::now_utc()));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    /// Applies the feed until the checkpoint reaches `target` (the head when the rebuild
    /// started), reporting progress after every batch. Fails on the first error.
    pub async fn catch_up(&self, target: u64, mut on_progress: impl FnMut(Progress)) -> Result<u64, ProjectionError> {
        let started = Instant::now();
        let mut position = Position::default();
        let mut applied = 0;
        loop {
            let count = self.step(&mut position).await?;
            applied += count as u64;
            let current = position.checkpoint.unwrap_or(0);
            on_progress(Progress { checkpoint: current, target, applied, elapsed: started.elapsed() });
            if current >= target || (count == 0 && self.store.last_seq().await? <= current) {
                return Ok(current);
            }
        }
    }

    /// Reads and applies one batch; returns how many changes were applied. While a full batch
    /// is applied, the next one is read, so the feed read and the target's write overlap.
    async fn step(&self, position: &mut Position) -> Result<usize, ProjectionError> {
        let after = match position.checkpoint {
            Some(seq) => seq,
            None => {
                let seq = self.projection.checkpoint().await?;
                position.checkpoint = Some(seq);
                self.status.lock().checkpoint = seq;
                seq
            }
        };
        let batch = match position.prefetched.take() {
            Some((from, batch)) if from == after => batch,
            _ => self.store.changes(after, self.options.batch_size).await?,
        };
        let Some(last) = batch.last().map(|c| c.seq) else { return Ok(0) };
        let applied = if batch.len() == self.options.batch_size {
            let (applied, next) = tokio::join!(self.projection.apply(after, &batch), self.store.changes(last, self.options.batch_size));
            if let Ok(next) = next {
                position.prefetched = Some((last, next));
            }
            applied
        } else {
            self.projection.apply(after, &batch).await
        };
        match applied {
            Ok(()) => {}
            Err(ProjectionError::CheckpointMoved { found, .. }) => {
                tracing::info!(projection = self.status.name, from = after, to = found, "checkpoint moved elsewhere; continuing from it");
                *position = Position { checkpoint: Some(found), prefetched: None };
                self.status.lock().checkpoint = found;
                return Ok(0);
            }
            Err(error) => {
                position.prefetched = None;
                return Err(error);
            }
        }
        position.checkpoint = Some(last);
        let now = OffsetDateTime::now_utc();
        let head = self.store.last_seq().await.unwrap_or(last).max(last);
        {
            let mut status = self.status.lock();
            status.checkpoint = last;
            status.head = head;
            status.applied_changes += batch.len() as u64;
            status.last_applied_at = Some(now);
            status.last_error = None;
            for change in &batch {
                let lag = (now - change.resource.last_updated).as_seconds_f64().max(0.0);
                status.apply_lag_ms.saturating_record((lag * 1000.0) as u64);
                self.metrics.apply_lag.record(lag, &self.metrics.attributes);
            }
        }
        self.metrics.applied.add(batch.len() as u64, &self.metrics.attributes);
        self.metrics.lag_changes.record(head - last, &self.metrics.attributes);
        Ok(batch.len())
    }
}
