//! The single writer task: group commit of queued write requests on the one write connection.
//!
//! The task takes the first queued request plus everything already waiting (up to
//! `max_batch`), opens one `BEGIN IMMEDIATE` transaction, applies each request inside its own
//! savepoint (a failing request is rolled back alone and gets its own error), commits once and
//! only then answers everybody. Concurrent writers therefore share one fsync, and nobody is
//! told "done" before the data is durable.
//!
//! Per version the writer runs three statements (read the current row, insert the version,
//! insert or update the `resources` row, whose `seq` change makes a trigger drop the old index
//! rows); the index rows of every op of a request are collected and inserted at the end of the
//! request with one multi-row `INSERT` per index table, so a transaction bundle of a thousand
//! creates costs a few dozen index statements, not thousands. Parameter names are interned
//! through an in-memory cache of `params`, cleared whenever a savepoint is rolled back (the
//! rows it inserted are gone then).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::collections::HashMap;

use fhir_model::IndexValue;
use serde_json::Value;
use sqlx::{Connection, Row, SqliteConnection};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::search::Bind;
use super::{backend, search};
use crate::components::{component_slots, MAX_COMPONENTS};
use crate::versioning::{check_expected, extract_index, next_version, stamp, Timestamp};
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
    params: ParamCache,
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
        Writer { conn, commands, max_batch, counters, params: ParamCache::default(), last_ms }
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
                    self.params.clear();
                    return failed_batch(count, "write batch aborted", Arc::new(error));
                }
            }
        }
        if let Err(error) = exec(&mut self.conn, "COMMIT").await {
            tracing::error!(%error, "sqlite commit failed");
            let _ = exec(&mut self.conn, "ROLLBACK").await;
            self.params.clear();
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
            Request::Write(ops) => apply_ops(&mut self.conn, &mut self.params, ops, now).await,
            Request::SaveCheckpoint { consumer, seq } => save_checkpoint(&mut self.conn, &consumer, seq).await,
        };
        if result.is_err() {
            exec(&mut self.conn, "ROLLBACK TO request").await?;
            self.params.clear();
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

async fn apply_ops(
    conn: &mut SqliteConnection,
    params: &mut ParamCache,
    ops: Vec<WriteOp>,
    now: &Timestamp,
) -> Result<Vec<WriteOutcome>, StoreError> {
    let mut pending = PendingIndex::default();
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        outcomes.push(apply_op(conn, params, &mut pending, op, now).await?);
    }
    pending.flush(conn).await?;
    Ok(outcomes)
}

/// The current version of a resource as far as writing is concerned.
#[derive(Clone, Copy)]
struct Current {
    rid: i64,
    version: i64,
    deleted: bool,
}

impl Current {
    fn live(current: Option<Current>) -> bool {
        current.is_some_and(|c| !c.deleted)
    }
}

async fn apply_op(
    conn: &mut SqliteConnection,
    params: &mut ParamCache,
    pending: &mut PendingIndex,
    op: WriteOp,
    now: &Timestamp,
) -> Result<WriteOutcome, StoreError> {
    match op {
        WriteOp::Create { resource_type, id, body, if_none_exist } => {
            if let Some(mut query) = if_none_exist {
                // Searched inside this transaction, so earlier writes of the batch count and no
                // other writer can slip in between the check and the create.
                pending.flush(conn).await?;
                query.count = 1;
                query.cursor = None;
                query.sort.clear();
                query.includes.clear();
                query.revincludes.clear();
                query.total = fhir_model::TotalMode::Accurate;
                let page = search::execute(conn, None, &query).await?;
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
            let write = VersionWrite { resource_type: &resource_type, id: &id, current, kind: ChangeKind::Create, body: Some(body) };
            let stored = write_version(conn, params, pending, write, now).await?;
            Ok(WriteOutcome::Created(stored))
        }
        WriteOp::Update { resource_type, id, body, expected_version } => {
            let current = current(conn, &resource_type, &id).await?;
            check_expected(&resource_type, &id, expected_version, current.and_then(|c| u64::try_from(c.version).ok()))?;
            let kind = if Current::live(current) { ChangeKind::Update } else { ChangeKind::Create };
            let write = VersionWrite { resource_type: &resource_type, id: &id, current, kind, body: Some(body) };
            let stored = write_version(conn, params, pending, write, now).await?;
            Ok(if kind == ChangeKind::Update { WriteOutcome::Updated(stored) } else { WriteOutcome::Created(stored) })
        }
        WriteOp::Delete { resource_type, id, expected_version } => {
            let current = current(conn, &resource_type, &id).await?;
            check_expected(&resource_type, &id, expected_version, current.and_then(|c| u64::try_from(c.version).ok()))?;
            if !Current::live(current) {
                return Ok(WriteOutcome::Deleted(None));
            }
            let write = VersionWrite { resource_type: &resource_type, id: &id, current, kind: ChangeKind::Delete, body: None };
            let stored = write_version(conn, params, pending, write, now).await?;
            Ok(WriteOutcome::Deleted(Some(stored)))
        }
    }
}

async fn current(conn: &mut SqliteConnection, resource_type: &str, id: &str) -> Result<Option<Current>, StoreError> {
    let row = sqlx::query("SELECT rid, version, deleted FROM resources WHERE resource_type = ? AND id = ?")
        .bind(resource_type)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(backend("read current version"))?;
    row.map(|row| {
        let get = backend("decode current version");
        Ok(Current {
            rid: row.try_get("rid").map_err(&get)?,
            version: row.try_get("version").map_err(&get)?,
            deleted: row.try_get("deleted").map_err(&get)?,
        })
    })
    .transpose()
}

/// The next version of one resource; a tombstone when `body` is None.
struct VersionWrite<'a> {
    resource_type: &'a str,
    id: &'a str,
    current: Option<Current>,
    kind: ChangeKind,
    body: Option<Value>,
}

/// Writes the next version of a resource: the history row, the current row, and (queued in
/// `pending`) the search index of the new current version.
async fn write_version(
    conn: &mut SqliteConnection,
    params: &mut ParamCache,
    pending: &mut PendingIndex,
    write: VersionWrite<'_>,
    now: &Timestamp,
) -> Result<StoredResource, StoreError> {
    let VersionWrite { resource_type, id, current, kind, body } = write;
    let current_version = current.and_then(|c| u64::try_from(c.version).ok());
    let version = next_version(resource_type, id, current_version)?;
    let version = i64::try_from(version)
        .map_err(|_| StoreError::Backend { message: format!("{resource_type}/{id} version out of range"), source: None })?;
    let (bytes, entries) = match body {
        Some(body) => {
            let body = stamp(body, id, version.unsigned_abs(), now)?;
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
    let rid = match current {
        // The new `seq` fires `resources_reindex`, which drops the previous version's rows.
        Some(current) => {
            sqlx::query("UPDATE resources SET version = ?, last_updated = ?, deleted = ?, seq = ? WHERE rid = ?")
                .bind(version)
                .bind(now.ms)
                .bind(bytes.is_none())
                .bind(seq)
                .bind(current.rid)
                .execute(&mut *conn)
                .await
                .map_err(backend("write current version"))?;
            current.rid
        }
        None => sqlx::query_scalar(
            "INSERT INTO resources (resource_type, id, version, last_updated, deleted, seq) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING rid",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version)
        .bind(now.ms)
        .bind(bytes.is_none())
        .bind(seq)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend("insert resource"))?,
    };
    // Rows queued for an earlier version of the same resource in this request are stale now.
    pending.forget(rid);
    for entry in entries {
        let pid = params.pid(conn, resource_type, &entry.param).await?;
        pending.push(pid, rid, entry.value);
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

/// The writer's copy of `params`: (resource type, name) → pid.
#[derive(Default)]
pub(super) struct ParamCache {
    pids: HashMap<(String, String), i64>,
}

impl ParamCache {
    /// Forgets everything; called when a rollback may have removed rows this cache saw inserted.
    fn clear(&mut self) {
        self.pids.clear();
    }

    async fn pid(&mut self, conn: &mut SqliteConnection, resource_type: &str, name: &str) -> Result<i64, StoreError> {
        let key = (resource_type.to_string(), name.to_string());
        if let Some(pid) = self.pids.get(&key) {
            return Ok(*pid);
        }
        let existing: Option<i64> = sqlx::query_scalar("SELECT pid FROM params WHERE name = ? AND resource_type = ?")
            .bind(name)
            .bind(resource_type)
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend("read parameter id"))?;
        let pid = match existing {
            Some(pid) => pid,
            None => sqlx::query_scalar("INSERT INTO params (resource_type, name) VALUES (?, ?) RETURNING pid")
                .bind(resource_type)
                .bind(name)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend("record parameter"))?,
        };
        self.pids.insert(key, pid);
        Ok(pid)
    }
}

/// The index rows of one request, by table, inserted together at its end (or before a
/// conditional create's search, which must see them).
#[derive(Default)]
struct PendingIndex {
    /// Per table (in `TABLES` order): rows of binds, `rid` first.
    rows: [Vec<Vec<Bind>>; TABLES.len()],
    /// The rids with queued rows.
    rids: std::collections::HashSet<i64>,
}

/// Each index table with its columns, `rid` first; the order `PendingIndex::push` fills.
const TABLES: [(&str, &str); 11] = [
    ("idx_string", "rid, pid, normalized, exact"),
    ("idx_token", "rid, pid, system, code"),
    ("idx_token_text", "rid, pid, normalized"),
    ("idx_of_type", "rid, pid, type_system, type_code, value"),
    ("idx_date", "rid, pid, lo, hi"),
    ("idx_number", "rid, pid, lo, hi"),
    ("idx_quantity", "rid, pid, system, code, unit, lo, hi, canonical"),
    ("idx_reference", "rid, pid, target_type, target_id, url"),
    ("idx_reference_identifier", "rid, pid, system, value"),
    ("idx_uri", "rid, pid, value"),
    (
        "idx_composite",
        "rid, pid, c1_a, c1_b, c1_c, c1_lo, c1_hi, c2_a, c2_b, c2_c, c2_lo, c2_hi, c3_a, c3_b, c3_c, c3_lo, c3_hi",
    ),
];

/// SQLite's default limit on bound parameters per statement is 32766.
const MAX_BINDS: usize = 32_000;

impl PendingIndex {
    fn forget(&mut self, rid: i64) {
        if !self.rids.remove(&rid) {
            return;
        }
        for rows in &mut self.rows {
            rows.retain(|row| row.first() != Some(&Bind::Int(rid)));
        }
    }

    fn push(&mut self, pid: i64, rid: i64, value: IndexValue) {
        let text = |s: String| Bind::Text(s);
        let opt = |s: Option<String>| Bind::Text(s.unwrap_or_default());
        let (table, values) = match value {
            IndexValue::String { normalized, exact } => (0, vec![text(normalized), text(exact)]),
            IndexValue::Token { system, code } => (1, vec![opt(system), text(code)]),
            IndexValue::TokenText { normalized } => (2, vec![text(normalized)]),
            IndexValue::IdentifierOfType { type_system, type_code, value } => {
                (3, vec![opt(type_system), text(type_code), text(value)])
            }
            IndexValue::Date { lo, hi } => (4, vec![Bind::Int(lo), Bind::Int(hi)]),
            IndexValue::Number { lo, hi } => (5, vec![Bind::Real(lo), Bind::Real(hi)]),
            IndexValue::Quantity { system, code, unit, lo, hi, canonical } => {
                (6, vec![opt(system), opt(code), opt(unit), Bind::Real(lo), Bind::Real(hi), Bind::Int(i64::from(canonical))])
            }
            IndexValue::Reference { target_type, target_id, url } => (7, vec![opt(target_type), text(target_id), text(url)]),
            IndexValue::ReferenceIdentifier { system, value } => (8, vec![opt(system), text(value)]),
            IndexValue::Uri(value) => (9, vec![text(value)]),
            IndexValue::Composite(components) => {
                let mut values = Vec::with_capacity(5 * MAX_COMPONENTS);
                for i in 0..MAX_COMPONENTS {
                    // The fixed columns `cN_a, cN_b, cN_c, cN_lo, cN_hi` of `idx_composite`.
                    let (a, b, c, lo, hi) = components.get(i).map(component_slots).unwrap_or_default();
                    values.extend([text(a.into()), text(b.into()), text(c.into()), Bind::Real(lo), Bind::Real(hi)]);
                }
                (10, values)
            }
        };
        let mut row = Vec::with_capacity(values.len() + 2);
        row.push(Bind::Int(rid));
        row.push(Bind::Int(pid));
        row.extend(values);
        self.rows[table].push(row);
        self.rids.insert(rid);
    }

    /// Inserts everything queued, one multi-row `INSERT` per table (split only past SQLite's
    /// bind limit): every statement is a round trip to SQLite's worker thread, and the single
    /// writer's per-write cost bounds the throughput of every client.
    async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        for (rows, (table, columns)) in self.rows.iter_mut().zip(TABLES) {
            let Some(width) = rows.first().map(Vec::len) else { continue };
            for chunk in rows.chunks(MAX_BINDS / width) {
                let placeholders = format!("({})", vec!["?"; width].join(", "));
                let values = vec![placeholders.as_str(); chunk.len()].join(", ");
                // Identical rows (the same value reached twice) collapse on the primary key.
                let mut sql = search::Sql::default();
                sql.push(&format!("INSERT OR IGNORE INTO {table} ({columns}) VALUES {values}"));
                sql.binds.extend(chunk.iter().flatten().cloned());
                sql.query().execute(&mut *conn).await.map_err(backend("insert index rows"))?;
            }
            rows.clear();
        }
        self.rids.clear();
        Ok(())
    }
}
