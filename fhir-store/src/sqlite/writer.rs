//! The single writer task: group commit of queued write requests on the one write connection.
//!
//! The task takes the first queued request plus everything already waiting (up to
//! `max_batch`), opens one `BEGIN IMMEDIATE` transaction, applies each request inside its own
//! savepoint (a failing request is rolled back alone and gets its own error), commits once and
//! only then answers everybody. Concurrent writers therefore share one fsync, and nobody is
//! told "done" before the data is durable.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fhir_model::{IndexEntry, IndexValue};
use serde_json::{Map, Value};
use sqlx::{Connection, Row, SqliteConnection};
use time::macros::format_description;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{backend, instant_from_ms, search};
use crate::{ChangeKind, StoreError, StoredResource, WriteOp, WriteOutcome};

/// A request to the writer, with the channel its answer goes back on.
pub(super) enum Command {
    Write { ops: Vec<WriteOp>, reply: oneshot::Sender<Result<Vec<WriteOutcome>, StoreError>> },
    SaveCheckpoint { consumer: String, seq: u64, reply: oneshot::Sender<Result<(), StoreError>> },
}

/// What the writer has done, for `SqliteStore::commit_count` and tests of group commit.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) commits: AtomicU64,
    pub(super) requests: AtomicU64,
}

enum Request {
    Write(Vec<WriteOp>),
    SaveCheckpoint { consumer: String, seq: u64 },
}

enum Reply {
    Write(oneshot::Sender<Result<Vec<WriteOutcome>, StoreError>>),
    SaveCheckpoint(oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    fn send(self, result: Result<Vec<WriteOutcome>, StoreError>) {
        // A caller that went away no longer needs its answer; its write stands regardless.
        match self {
            Reply::Write(reply) => drop(reply.send(result)),
            Reply::SaveCheckpoint(reply) => drop(reply.send(result.map(drop))),
        }
    }
}

fn split(command: Command) -> (Request, Reply) {
    match command {
        Command::Write { ops, reply } => (Request::Write(ops), Reply::Write(reply)),
        Command::SaveCheckpoint { consumer, seq, reply } => {
            (Request::SaveCheckpoint { consumer, seq }, Reply::SaveCheckpoint(reply))
        }
    }
}

pub(super) struct Writer {
    conn: SqliteConnection,
    commands: mpsc::Receiver<Command>,
    max_batch: usize,
    counters: Arc<Counters>,
    /// Epoch milliseconds of the last batch. Time handed out never goes backwards, which keeps
    /// `last_updated` ordered like `seq` (history's `since` relies on it).
    last_ms: i64,
}

impl Writer {
    pub(super) fn new(
        conn: SqliteConnection,
        commands: mpsc::Receiver<Command>,
        max_batch: usize,
        counters: Arc<Counters>,
        last_ms: i64,
    ) -> Self {
        Writer { conn, commands, max_batch, counters, last_ms }
    }

    pub(super) async fn run(mut self) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while self.commands.recv_many(&mut batch, self.max_batch).await > 0 {
            let (requests, replies): (Vec<Request>, Vec<Reply>) = batch.drain(..).map(split).unzip();
            self.counters.requests.fetch_add(requests.len() as u64, Ordering::Relaxed);
            let results = self.apply(requests).await;
            for (reply, result) in replies.into_iter().zip(results) {
                reply.send(result);
            }
        }
        if let Err(error) = self.conn.close().await {
            tracing::warn!(%error, "closing the sqlite write connection failed");
        }
    }

    fn now_ms(&mut self) -> i64 {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos().div_euclid(1_000_000);
        self.last_ms = self.last_ms.max(i64::try_from(now).unwrap_or(i64::MAX));
        self.last_ms
    }

    /// Applies one batch in one transaction; returns one result per request, in order.
    async fn apply(&mut self, requests: Vec<Request>) -> Vec<Result<Vec<WriteOutcome>, StoreError>> {
        let count = requests.len();
        let now = match Timestamp::new(self.now_ms()) {
            Ok(now) => now,
            Err(error) => return failed_batch(count, "stamp batch time", Arc::new(error)),
        };
        if let Err(error) = exec(&mut self.conn, "BEGIN IMMEDIATE").await {
            return failed_batch(count, "begin write transaction", Arc::new(error));
        }
        let mut results = Vec::with_capacity(count);
        for request in requests {
            match self.apply_in_savepoint(request, &now).await {
                Ok(result) => results.push(result),
                Err(error) => {
                    // The connection cannot tell us which savepoints survived; give up the batch.
                    tracing::error!(%error, "sqlite write batch aborted");
                    let _ = exec(&mut self.conn, "ROLLBACK").await;
                    return failed_batch(count, "write batch aborted", Arc::new(error));
                }
            }
        }
        if let Err(error) = exec(&mut self.conn, "COMMIT").await {
            tracing::error!(%error, "sqlite commit failed");
            let _ = exec(&mut self.conn, "ROLLBACK").await;
            return failed_batch(count, "commit write transaction", Arc::new(error));
        }
        self.counters.commits.fetch_add(1, Ordering::Relaxed);
        results
    }

    /// Runs one request inside its own savepoint. The outer error is a failure of the
    /// savepoint machinery itself; the inner one is the request's own failure, already undone.
    async fn apply_in_savepoint(
        &mut self,
        request: Request,
        now: &Timestamp,
    ) -> Result<Result<Vec<WriteOutcome>, StoreError>, sqlx::Error> {
        exec(&mut self.conn, "SAVEPOINT request").await?;
        let result = match request {
            Request::Write(ops) => apply_ops(&mut self.conn, ops, now).await,
            Request::SaveCheckpoint { consumer, seq } => save_checkpoint(&mut self.conn, &consumer, seq).await,
        };
        if result.is_err() {
            exec(&mut self.conn, "ROLLBACK TO request").await?;
        }
        exec(&mut self.conn, "RELEASE request").await?;
        Ok(result)
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), sqlx::Error> {
    sqlx::query(sql).execute(conn).await.map(drop)
}

fn failed_batch(
    count: usize,
    message: &'static str,
    error: Arc<dyn std::error::Error + Send + Sync>,
) -> Vec<Result<Vec<WriteOutcome>, StoreError>> {
    (0..count)
        .map(|_| Err(StoreError::Backend { message: message.into(), source: Some(Box::new(error.clone())) }))
        .collect()
}

/// The batch's time, as stored (epoch ms) and as written into `meta.lastUpdated`.
struct Timestamp {
    ms: i64,
    instant: OffsetDateTime,
    text: String,
}

impl Timestamp {
    fn new(ms: i64) -> Result<Self, StoreError> {
        let instant = instant_from_ms(ms)?;
        let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
        let text = instant.format(format).map_err(|e| StoreError::backend("format lastUpdated", e))?;
        Ok(Timestamp { ms, instant, text })
    }
}

async fn save_checkpoint(conn: &mut SqliteConnection, consumer: &str, seq: u64) -> Result<Vec<WriteOutcome>, StoreError> {
    let seq = i64::try_from(seq)
        .map_err(|_| StoreError::Backend { message: format!("checkpoint seq {seq} out of range"), source: None })?;
    sqlx::query(
        "INSERT INTO checkpoints (consumer, seq) VALUES (?, ?) \
         ON CONFLICT (consumer) DO UPDATE SET seq = excluded.seq",
    )
    .bind(consumer)
    .bind(seq)
    .execute(conn)
    .await
    .map_err(backend("save checkpoint"))?;
    Ok(Vec::new())
}

async fn apply_ops(conn: &mut SqliteConnection, ops: Vec<WriteOp>, now: &Timestamp) -> Result<Vec<WriteOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        outcomes.push(apply_op(conn, op, now).await?);
    }
    Ok(outcomes)
}

/// The current version of a resource as far as writing is concerned.
#[derive(Clone, Copy)]
struct Current {
    version: i64,
    deleted: bool,
}

impl Current {
    fn live(current: Option<Current>) -> bool {
        current.is_some_and(|c| !c.deleted)
    }
}

async fn apply_op(conn: &mut SqliteConnection, op: WriteOp, now: &Timestamp) -> Result<WriteOutcome, StoreError> {
    match op {
        WriteOp::Create { resource_type, id, body, if_none_exist } => {
            if let Some(mut query) = if_none_exist {
                // Searched inside this transaction, so earlier writes of the batch count and no
                // other writer can slip in between the check and the create.
                query.count = 1;
                query.cursor = None;
                let page = search::execute(conn, &query).await?;
                match (page.total.unwrap_or(0), page.resources.into_iter().next()) {
                    (0, _) => {}
                    (1, Some(existing)) => return Ok(WriteOutcome::Existing(existing)),
                    (total, _) => {
                        let count = usize::try_from(total).unwrap_or(usize::MAX);
                        return Err(StoreError::MultipleMatches { operation: "create", count });
                    }
                }
            }
            let current = current(conn, &resource_type, &id).await?;
            if Current::live(current) {
                return Err(StoreError::AlreadyExists { resource_type, id });
            }
            let stored = write_version(conn, &resource_type, &id, current, ChangeKind::Create, Some(body), now).await?;
            Ok(WriteOutcome::Created(stored))
        }
        WriteOp::Update { resource_type, id, body, expected_version } => {
            let current = current(conn, &resource_type, &id).await?;
            check_expected(&resource_type, &id, expected_version, current)?;
            if Current::live(current) {
                let stored =
                    write_version(conn, &resource_type, &id, current, ChangeKind::Update, Some(body), now).await?;
                Ok(WriteOutcome::Updated(stored))
            } else {
                let stored =
                    write_version(conn, &resource_type, &id, current, ChangeKind::Create, Some(body), now).await?;
                Ok(WriteOutcome::Created(stored))
            }
        }
        WriteOp::Delete { resource_type, id, expected_version } => {
            let current = current(conn, &resource_type, &id).await?;
            check_expected(&resource_type, &id, expected_version, current)?;
            if !Current::live(current) {
                return Ok(WriteOutcome::Deleted(None));
            }
            let stored = write_version(conn, &resource_type, &id, current, ChangeKind::Delete, None, now).await?;
            Ok(WriteOutcome::Deleted(Some(stored)))
        }
    }
}

async fn current(conn: &mut SqliteConnection, resource_type: &str, id: &str) -> Result<Option<Current>, StoreError> {
    let row = sqlx::query("SELECT version, deleted FROM resources WHERE resource_type = ? AND id = ?")
        .bind(resource_type)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(backend("read current version"))?;
    row.map(|row| {
        let get = backend("decode current version");
        Ok(Current { version: row.try_get("version").map_err(&get)?, deleted: row.try_get("deleted").map_err(&get)? })
    })
    .transpose()
}

fn check_expected(
    resource_type: &str,
    id: &str,
    expected: Option<u64>,
    current: Option<Current>,
) -> Result<(), StoreError> {
    let Some(expected) = expected else { return Ok(()) };
    let current = current.and_then(|c| u64::try_from(c.version).ok());
    if current == Some(expected) {
        Ok(())
    } else {
        Err(StoreError::VersionConflict { resource_type: resource_type.into(), id: id.into(), expected, current })
    }
}

/// Writes the next version of a resource (a tombstone when `body` is None): the history row,
/// the current row and the search index of the new current version.
async fn write_version(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
    current: Option<Current>,
    kind: ChangeKind,
    body: Option<Value>,
    now: &Timestamp,
) -> Result<StoredResource, StoreError> {
    let version = match current {
        None => 1,
        Some(c) => c.version.checked_add(1).ok_or_else(|| StoreError::Backend {
            message: format!("{resource_type}/{id} has run out of version numbers"),
            source: None,
        })?,
    };
    let (bytes, entries) = match body {
        Some(body) => {
            let body = stamp(body, id, version, now)?;
            let entries = extract_index(resource_type, &body)?;
            let bytes = serde_json::to_vec(&body).map_err(|e| StoreError::backend("serialise resource", e))?;
            (Some(bytes), entries)
        }
        None => (None, Vec::new()),
    };
    let method = match kind {
        ChangeKind::Create => "create",
        ChangeKind::Update => "update",
        ChangeKind::Delete => "delete",
    };
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO versions (resource_type, id, version, last_updated, method, body) \
         VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(resource_type)
    .bind(id)
    .bind(version)
    .bind(now.ms)
    .bind(method)
    .bind(bytes.as_deref())
    .fetch_one(&mut *conn)
    .await
    .map_err(backend("insert version"))?;
    sqlx::query(
        "INSERT INTO resources (resource_type, id, version, last_updated, deleted, body, seq) \
         VALUES (?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (resource_type, id) DO UPDATE SET version = excluded.version, \
         last_updated = excluded.last_updated, deleted = excluded.deleted, body = excluded.body, seq = excluded.seq",
    )
    .bind(resource_type)
    .bind(id)
    .bind(version)
    .bind(now.ms)
    .bind(bytes.is_none())
    .bind(bytes.as_deref())
    .bind(seq)
    .execute(&mut *conn)
    .await
    .map_err(backend("write current version"))?;

    // The index describes the current live version only: a tombstone or a re-create after
    // one has no rows to replace, an update replaces the previous version's rows.
    if Current::live(current) {
        for sql in [
            "DELETE FROM idx_string WHERE resource_type = ? AND id = ?",
            "DELETE FROM idx_token WHERE resource_type = ? AND id = ?",
            "DELETE FROM idx_date WHERE resource_type = ? AND id = ?",
            "DELETE FROM idx_reference WHERE resource_type = ? AND id = ?",
        ] {
            sqlx::query(sql)
                .bind(resource_type)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend("remove index rows"))?;
        }
    }
    insert_index_entries(conn, resource_type, id, entries).await?;
    if current.is_none() {
        sqlx::query("INSERT OR IGNORE INTO known_types (resource_type) VALUES (?)")
            .bind(resource_type)
            .execute(&mut *conn)
            .await
            .map_err(backend("record resource type"))?;
    }

    Ok(StoredResource {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version: u64::try_from(version).unwrap_or_default(),
        last_updated: now.instant,
        deleted: bytes.is_none(),
        body: bytes,
        seq: u64::try_from(seq).unwrap_or_default(),
    })
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta`. `id` and
/// `meta` go right after `resourceType`, where FHIR JSON conventionally has them.
fn stamp(mut body: Value, id: &str, version: i64, now: &Timestamp) -> Result<Value, StoreError> {
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
/// odd resource must fail that write, not kill the writer task and with it every later write.
fn extract_index(resource_type: &str, body: &Value) -> Result<Vec<IndexEntry>, StoreError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| fhir_model::extract_index(resource_type, body))).map_err(|_| {
        StoreError::Backend { message: format!("search index extraction failed for {resource_type}"), source: None }
    })
}

/// Inserts a version's index rows with one multi-row INSERT per index table: every statement
/// is a round trip to SQLite's worker thread, and the single writer's per-write cost bounds
/// the throughput of every client.
async fn insert_index_entries(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
    entries: Vec<IndexEntry>,
) -> Result<(), StoreError> {
    let (mut strings, mut tokens, mut dates, mut references) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for entry in entries {
        match entry.value {
            IndexValue::String { normalized, exact } => strings.push((entry.param, normalized, exact)),
            IndexValue::Token { system, code } => tokens.push((entry.param, system, code)),
            IndexValue::Date { lo, hi } => dates.push((entry.param, lo, hi)),
            IndexValue::Reference { target_type, target_id, url } => references.push((entry.param, target_type, target_id, url)),
            _ => {}
        }
    }
    let rows = |n: usize, width: usize| vec![format!("({})", vec!["?"; width].join(", ")); n].join(", ");
    if !strings.is_empty() {
        let sql = format!("INSERT INTO idx_string (resource_type, id, param, normalized, exact) VALUES {}", rows(strings.len(), 5));
        // Only placeholders are generated here; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (param, normalized, exact) in strings {
            query = query.bind(resource_type).bind(id).bind(param).bind(normalized).bind(exact);
        }
        query.execute(&mut *conn).await.map_err(backend("insert index rows"))?;
    }
    if !tokens.is_empty() {
        let sql = format!("INSERT INTO idx_token (resource_type, id, param, system, code) VALUES {}", rows(tokens.len(), 5));
        // Only placeholders are generated here; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (param, system, code) in tokens {
            query = query.bind(resource_type).bind(id).bind(param).bind(system).bind(code);
        }
        query.execute(&mut *conn).await.map_err(backend("insert index rows"))?;
    }
    if !dates.is_empty() {
        let sql = format!("INSERT INTO idx_date (resource_type, id, param, lo, hi) VALUES {}", rows(dates.len(), 5));
        // Only placeholders are generated here; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (param, lo, hi) in dates {
            query = query.bind(resource_type).bind(id).bind(param).bind(lo).bind(hi);
        }
        query.execute(&mut *conn).await.map_err(backend("insert index rows"))?;
    }
    if !references.is_empty() {
        let sql = format!(
            "INSERT INTO idx_reference (resource_type, id, param, target_type, target_id, url) VALUES {}",
            rows(references.len(), 6)
        );
        // Only placeholders are generated here; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (param, target_type, target_id, url) in references {
            query = query.bind(resource_type).bind(id).bind(param).bind(target_type).bind(target_id).bind(url);
        }
        query.execute(&mut *conn).await.map_err(backend("insert index rows"))?;
    }
    Ok(())
}
