//! The SQLite schema of the embedded store and its idempotent creation at open.
//!
//! Tables:
//! - `versions`: every version ever written. `seq INTEGER PRIMARY KEY` is the change-feed
//!   position. Rows are never deleted, so SQLite's rowid choice (largest + 1) keeps the feed
//!   gap-free even when a savepoint is rolled back: the rolled-back rows no longer exist when
//!   the next row is inserted. (`AUTOINCREMENT` is deliberately absent; it adds nothing here.)
//! - `resources`: the current version of each resource, tombstones included.
//! - `idx_string`, `idx_token`, `idx_date`, `idx_reference`: the search index of the current,
//!   live version only. Each value index leads with `(resource_type, param, value)` and ends with
//!   `id`, so every predicate is a seek on a covering index; the `*_owner` indexes serve the
//!   delete-and-reinsert done on every update.
//! - `known_types`: every resource type ever written, so a system-level search can seek the
//!   value indexes type by type instead of scanning them.
//! - `checkpoints`: change-feed positions of consumers.

use sqlx::SqliteConnection;

use super::backend;
use crate::StoreError;

/// Bumped whenever the statements below change shape; an older binary refuses a newer file.
pub(super) const SCHEMA_VERSION: i64 = 1;

const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS versions (
        seq INTEGER PRIMARY KEY,
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        method TEXT NOT NULL CHECK (method IN ('create', 'update', 'delete')),
        body BLOB,
        UNIQUE (resource_type, id, version)
    )",
    "CREATE INDEX IF NOT EXISTS versions_instance_seq ON versions (resource_type, id, seq)",
    "CREATE INDEX IF NOT EXISTS versions_type_seq ON versions (resource_type, seq)",
    "CREATE INDEX IF NOT EXISTS versions_time ON versions (last_updated, seq)",
    "CREATE TABLE IF NOT EXISTS resources (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        body BLOB,
        seq INTEGER NOT NULL,
        PRIMARY KEY (resource_type, id)
    )",
    "CREATE TABLE IF NOT EXISTS known_types (resource_type TEXT PRIMARY KEY) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS idx_string (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        param TEXT NOT NULL,
        normalized TEXT NOT NULL,
        exact TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS idx_string_normalized ON idx_string (resource_type, param, normalized, id)",
    "CREATE INDEX IF NOT EXISTS idx_string_exact ON idx_string (resource_type, param, exact, id)",
    "CREATE INDEX IF NOT EXISTS idx_string_owner ON idx_string (resource_type, id)",
    "CREATE TABLE IF NOT EXISTS idx_token (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        param TEXT NOT NULL,
        system TEXT,
        code TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS idx_token_code ON idx_token (resource_type, param, code, system, id)",
    "CREATE INDEX IF NOT EXISTS idx_token_system ON idx_token (resource_type, param, system, code, id)",
    "CREATE INDEX IF NOT EXISTS idx_token_owner ON idx_token (resource_type, id)",
    "CREATE TABLE IF NOT EXISTS idx_date (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        param TEXT NOT NULL,
        lo INTEGER NOT NULL,
        hi INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS idx_date_lo ON idx_date (resource_type, param, lo, hi, id)",
    "CREATE INDEX IF NOT EXISTS idx_date_hi ON idx_date (resource_type, param, hi, lo, id)",
    "CREATE INDEX IF NOT EXISTS idx_date_owner ON idx_date (resource_type, id)",
    "CREATE TABLE IF NOT EXISTS idx_reference (
        resource_type TEXT NOT NULL,
        id TEXT NOT NULL,
        param TEXT NOT NULL,
        target_type TEXT,
        target_id TEXT NOT NULL,
        url TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS idx_reference_target ON idx_reference (resource_type, param, target_id, target_type, id)",
    "CREATE INDEX IF NOT EXISTS idx_reference_owner ON idx_reference (resource_type, id)",
    "CREATE TABLE IF NOT EXISTS checkpoints (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
];

/// Creates the schema if missing and checks the recorded version, in one transaction so two
/// processes opening the same new file cannot both half-create it.
pub(super) async fn create(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(backend("begin schema transaction"))?;
    let result = create_in_transaction(conn).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = sqlx::query(end).execute(&mut *conn).await.map_err(backend("end schema transaction"));
    result.and(ended.map(drop))
}

async fn create_in_transaction(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    for statement in STATEMENTS {
        sqlx::query(*statement).execute(&mut *conn).await.map_err(backend("create schema"))?;
    }
    let recorded: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(backend("read schema version"))?;
    match recorded {
        None => {
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(SCHEMA_VERSION)
                .execute(&mut *conn)
                .await
                .map_err(backend("record schema version"))?;
            Ok(())
        }
        Some(version) if version <= SCHEMA_VERSION => Ok(()),
        Some(version) => Err(StoreError::Backend {
            message: format!("database schema version {version} is newer than supported {SCHEMA_VERSION}"),
            source: None,
        }),
    }
}

