//! The embedded default backend: SQLite (WAL) with one writer task doing group commit.
//!
//! Writes go over a channel to the single writer task, which owns the only write connection
//! and folds everything queued into one transaction (one fsync); see `writer.rs`. Reads use a
//! pool of read-only connections, which WAL lets run alongside the writer.

mod schema;
mod search;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fhir_model::SearchQuery;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{
    Change, ChangeKind, HistoryEntry, HistoryPage, HistoryRequest, HistoryScope, ResourceStore, SearchPage,
    StoreError, StoredResource, WriteOp, WriteOutcome,
};
use crate::paging::{history_page_end, since_ms};
use crate::versioning::instant_from_ms;
use search::Sql;
use writer::{Command, Counters, Writer};

/// File name of the database inside `data_dir`.
const DATABASE_FILE: &str = "tessera.db";

/// Options for opening the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteStoreOptions {
    /// Directory holding `tessera.db` (created if missing).
    pub data_dir: std::path::PathBuf,
    /// Most write requests folded into one commit.
    pub max_batch: usize,
    /// Read connections in the pool.
    pub readers: u32,
}

impl SqliteStoreOptions {
    /// Defaults: up to 256 write requests per commit, 4 read connections.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        SqliteStoreOptions { data_dir: data_dir.into(), max_batch: 256, readers: 4 }
    }
}

pub struct SqliteStore {
    readers: SqlitePool,
    commands: mpsc::Sender<Command>,
    counters: Arc<Counters>,
    writer: JoinHandle<()>,
    /// Match lists of sorted searches, for their later pages.
    snapshots: search::Snapshots,
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/tessera.db`, creates the schema and starts the
    /// writer task on the current tokio runtime.
    pub async fn open(options: SqliteStoreOptions) -> Result<SqliteStore, StoreError> {
        tokio::fs::create_dir_all(&options.data_dir)
            .await
            .map_err(|e| StoreError::backend(format!("create data directory {}", options.data_dir.display()), e))?;
        let base = SqliteConnectOptions::new()
            .filename(options.data_dir.join(DATABASE_FILE))
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false)
            // Each write request runs in a savepoint; keep its journal in memory instead of a
            // temporary file, and give every connection a 64 MiB page cache so random-UUID
            // index lookups stay off the disk. Durability is untouched: the WAL is still
            // fsync'd on every commit.
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536");

        // The write connection alone creates the file and switches it to WAL (a persistent
        // setting), so the read-only connections opened afterwards find both in place.
        let mut conn = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await
            .map_err(backend("open write connection"))?;
        schema::create(&mut conn).await?;
        let last_ms: Option<i64> = sqlx::query_scalar("SELECT max(last_updated) FROM versions")
            .fetch_one(&mut conn)
            .await
            .map_err(backend("read last write time"))?;

        let readers = SqlitePoolOptions::new()
            .max_connections(options.readers.max(1))
            .connect_with(base.read_only(true))
            .await
            .map_err(backend("open read connections"))?;

        let max_batch = options.max_batch.max(1);
        let (commands, receiver) = mpsc::channel(max_batch.saturating_mul(4));
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(conn, receiver, max_batch, counters.clone(), last_ms.unwrap_or(0));
        let writer = tokio::spawn(writer.run());
        Ok(SqliteStore { readers, commands, counters, writer, snapshots: search::Snapshots::default() })
    }

    /// Stops the writer after the requests already queued and closes every connection.
    /// Dropping the store does the same, without waiting.
    pub async fn close(self) {
        drop(self.commands);
        if let Err(error) = self.writer.await {
            tracing::warn!(%error, "sqlite writer task ended abnormally");
        }
        self.readers.close().await;
    }

    /// Transactions committed by the writer so far. Lower than `write_requests` when
    /// concurrent writes shared a commit.
    pub fn commit_count(&self) -> u64 {
        self.counters.commits.load(Ordering::Relaxed)
    }

    /// Write and checkpoint requests the writer has processed so far (committed or failed).
    pub fn write_requests(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    async fn send(&self, command: Command) -> Result<(), StoreError> {
        self.commands.send(command).await.map_err(|_| writer_stopped())
    }
}

fn writer_stopped() -> StoreError {
    StoreError::Backend { message: "sqlite writer task stopped".into(), source: None }
}

/// Maps a sqlx error to `StoreError::Backend`, keeping it as the source.
pub(super) fn backend(context: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |error| StoreError::backend(context, error)
}

fn corrupt(message: String) -> StoreError {
    StoreError::Backend { message, source: None }
}

fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what} {value} in database")))
}

/// Clamps a caller's position to SQLite's integer range; no stored seq is that large anyway.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A row of `resources` joined with its current version's body: resource_type, id, version,
/// last_updated, deleted, body, seq.
pub(super) fn current_from_row(row: &SqliteRow) -> Result<StoredResource, StoreError> {
    let get = backend("decode resource row");
    Ok(StoredResource {
        resource_type: row.try_get("resource_type").map_err(&get)?,
        id: row.try_get("id").map_err(&get)?,
        version: to_u64(row.try_get("version").map_err(&get)?, "version")?,
        last_updated: instant_from_ms(row.try_get("last_updated").map_err(&get)?)?,
        deleted: row.try_get("deleted").map_err(&get)?,
        body: row.try_get("body").map_err(&get)?,
        seq: to_u64(row.try_get("seq").map_err(&get)?, "seq")?,
    })
}

/// A row of `versions`: seq, resource_type, id, version, last_updated, method, body.
fn version_from_row(row: &SqliteRow) -> Result<(ChangeKind, StoredResource), StoreError> {
    let get = backend("decode version row");
    let method: String = row.try_get("method").map_err(&get)?;
    let kind = match method.as_str() {
        "create" => ChangeKind::Create,
        "update" => ChangeKind::Update,
        "delete" => ChangeKind::Delete,
        other => return Err(corrupt(format!("unknown method {other:?} in database"))),
    };
    let resource = StoredResource {
        resource_type: row.try_get("resource_type").map_err(&get)?,
        id: row.try_get("id").map_err(&get)?,
        version: to_u64(row.try_get("version").map_err(&get)?, "version")?,
        last_updated: instant_from_ms(row.try_get("last_updated").map_err(&get)?)?,
        deleted: kind == ChangeKind::Delete,
        body: row.try_get("body").map_err(&get)?,
        seq: to_u64(row.try_get("seq").map_err(&get)?, "seq")?,
    };
    Ok((kind, resource))
}

const VERSION_COLUMNS: &str = "seq, resource_type, id, version, last_updated, method, body";

#[async_trait]
impl ResourceStore for SqliteStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WriteOutcome>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, outcome) = oneshot::channel();
        self.send(Command::Write { ops, reply }).await?;
        outcome.await.map_err(|_| writer_stopped())?
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Option<StoredResource>, StoreError> {
        let row = sqlx::query(
            "SELECT r.resource_type, r.id, r.version, r.last_updated, r.deleted, v.body, r.seq \
             FROM resources AS r CROSS JOIN versions AS v ON v.seq = r.seq \
             WHERE r.resource_type = ? AND r.id = ?",
        )
        .bind(resource_type)
        .bind(id)
        .fetch_optional(&self.readers)
        .await
        .map_err(backend("read resource"))?;
        row.as_ref().map(current_from_row).transpose()
    }

    async fn vread(&self, resource_type: &str, id: &str, version: u64) -> Result<Option<StoredResource>, StoreError> {
        let Ok(version) = i64::try_from(version) else { return Ok(None) };
        let row = sqlx::query(
            "SELECT seq, resource_type, id, version, last_updated, method, body FROM versions \
             WHERE resource_type = ? AND id = ? AND version = ?",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version)
        .fetch_optional(&self.readers)
        .await
        .map_err(backend("read version"))?;
        Ok(row.as_ref().map(version_from_row).transpose()?.map(|(_, resource)| resource))
    }

    async fn history(&self, request: &HistoryRequest) -> Result<HistoryPage, StoreError> {
        let mut tx = self.readers.begin().await.map_err(backend("begin history read"))?;
        // `last_updated` never decreases along `seq` (the writer's clock is monotonic), so
        // `since` becomes a lower bound on `seq` and every history query stays a range seek.
        let since_seq = match request.since {
            None => 0,
            Some(since) => {
                let since_ms = since_ms(since);
                let first: Option<i64> = sqlx::query_scalar(
                    "SELECT seq FROM versions WHERE last_updated >= ? ORDER BY last_updated, seq LIMIT 1",
                )
                .bind(since_ms)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend("find history start"))?;
                match first {
                    Some(seq) => seq,
                    None => return Ok(HistoryPage { entries: Vec::new(), next_cursor: None, total: 0 }),
                }
            }
        };
        let scope = |sql: &mut Sql| match &request.scope {
            HistoryScope::Instance { resource_type, id } => {
                sql.push("resource_type = ");
                sql.text(resource_type);
                sql.push(" AND id = ");
                sql.text(id);
                sql.push(" AND ");
            }
            HistoryScope::Type(resource_type) => {
                sql.push("resource_type = ");
                sql.text(resource_type);
                sql.push(" AND ");
            }
            HistoryScope::System => {}
        };

        let mut entries = Vec::new();
        if request.count > 0 {
            let mut page = Sql::default();
            page.push(&format!("SELECT {VERSION_COLUMNS} FROM versions WHERE "));
            scope(&mut page);
            page.push("seq >= ");
            page.int(since_seq);
            page.push(" AND seq < ");
            page.int(request.before_seq.map_or(i64::MAX, to_i64));
            page.push(" ORDER BY seq DESC LIMIT ");
            page.int(i64::try_from(request.count.saturating_add(1)).unwrap_or(i64::MAX));
            let rows = page.query().fetch_all(&mut *tx).await.map_err(backend("read history"))?;
            for row in &rows {
                let (kind, resource) = version_from_row(row)?;
                entries.push(HistoryEntry { kind, resource });
            }
        }
        let next_cursor = history_page_end(&mut entries, request.count);

        let mut total = Sql::default();
        total.push("SELECT count(*) FROM versions WHERE ");
        scope(&mut total);
        total.push("seq >= ");
        total.int(since_seq);
        let row = total.query().fetch_one(&mut *tx).await.map_err(backend("count history"))?;
        let total = to_u64(row.try_get(0).map_err(backend("decode history count"))?, "count")?;
        tx.commit().await.map_err(backend("end history read"))?;
        Ok(HistoryPage { entries, next_cursor, total })
    }

    async fn search(&self, query: &SearchQuery) -> Result<SearchPage, StoreError> {
        // One read transaction, so the page and the total come from the same snapshot.
        let mut tx = self.readers.begin().await.map_err(backend("begin search read"))?;
        let page = search::execute(&mut tx, Some(&self.snapshots), query).await?;
        tx.commit().await.map_err(backend("end search read"))?;
        Ok(page)
    }

    async fn changes(&self, after_seq: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT seq, resource_type, id, version, last_updated, method, body FROM versions \
             WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(to_i64(after_seq))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.readers)
        .await
        .map_err(backend("read changes"))?;
        rows.iter()
            .map(|row| {
                let (kind, resource) = version_from_row(row)?;
                Ok(Change { seq: resource.seq, kind, resource })
            })
            .collect()
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        let seq: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM versions")
            .fetch_one(&self.readers)
            .await
            .map_err(backend("read last seq"))?;
        to_u64(seq, "seq")
    }

    async fn checkpoint(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM checkpoints WHERE consumer = ?")
            .bind(consumer)
            .fetch_optional(&self.readers)
            .await
            .map_err(backend("read checkpoint"))?;
        seq.map(|seq| to_u64(seq, "checkpoint")).transpose()
    }

    async fn save_checkpoint(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::SaveCheckpoint { consumer: consumer.to_string(), seq, reply }).await?;
        done.await.map_err(|_| writer_stopped())?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.commands.is_closed() || self.writer.is_finished() {
            return Err(writer_stopped());
        }
        sqlx::query("SELECT 1").execute(&self.readers).await.map_err(backend("ping"))?;
        Ok(())
    }
}
