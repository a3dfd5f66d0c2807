//! The SQLite schema of the embedded store (version 2) and its idempotent creation at open.
//!
//! Tables:
//! - `versions`: every version ever written, with its body (tombstones have none).
//!   `seq INTEGER PRIMARY KEY` is the change-feed position. Rows are never deleted, so SQLite's
//!   rowid choice (largest + 1) keeps the feed gap-free even when a savepoint is rolled back:
//!   the rolled-back rows no longer exist when the next row is inserted. (`AUTOINCREMENT` is
//!   deliberately absent; it adds nothing here.)
//! - `resources`: one row per resource ever written, tombstones included, with an integer key
//!   `rid` that never changes, and `seq` pointing at the current version in `versions`. The
//!   body lives only in `versions`, so no body is stored twice.
//! - `params`: the interned parameter names, one `pid` per (resource type, name). A `pid`
//!   therefore implies the resource type, and index rows carry neither type nor name.
//! - `idx_*`: the search index of the current, live version only, one table per value kind.
//!   Each is `WITHOUT ROWID` with every column in its primary key, which leads with
//!   `(pid, value…)` and ends with `rid`: every value predicate is a seek on it. The `*_owner`
//!   index `(rid, pid)` also holds the key columns, so it covers the correlated `EXISTS`
//!   checks of the search plan, `:missing`, sorting and includes, and it serves the delete of
//!   a resource's rows. Absent optional text (a token without system) is stored as `''`,
//!   which FHIR never produces as a value (extraction drops empty strings). `idx_composite`
//!   keeps one row per tuple with up to three components in fixed columns (`cN_a`, `cN_b`,
//!   `cN_c` text and `cN_lo`, `cN_hi` numbers, by kind, see `search.rs`), seekable on the first
//!   component's code.
//!   Deliberately absent: an index on a quantity's `unit` alone. Convertible units are searched
//!   canonically (system and code), so a unit-only match is rare, and that index cost a quarter
//!   of the quantity table's size (about 240 bytes per Observation).
//! - `resources_reindex`: a trigger that drops a resource's index rows whenever its current
//!   version changes, so the writer only ever inserts.
//! - `checkpoints`: change-feed positions of consumers.
//!
//! A file of an older schema version is refused with an error that says so: nothing had been
//! deployed with version 1, and rebuilding the index needs every body re-extracted anyway.

use sqlx::SqliteConnection;

use super::backend;
use crate::StoreError;

/// Bumped whenever the statements below change shape; a file of another version is refused.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Every search index table, for the reindex trigger and the query-plan tests.
pub(super) const INDEX_TABLES: &[&str] = &[
    "idx_string",
    "idx_token",
    "idx_token_text",
    "idx_of_type",
    "idx_date",
    "idx_number",
    "idx_quantity",
    "idx_reference",
    "idx_reference_identifier",
    "idx_uri",
    "idx_composite",
];

const COMPONENT_COLUMNS: &str = "c1_a TEXT NOT NULL, c1_b TEXT NOT NULL, c1_c TEXT NOT NULL, c1_lo REAL NOT NULL, c1_hi REAL NOT NULL,
        c2_a TEXT NOT NULL, c2_b TEXT NOT NULL, c2_c TEXT NOT NULL, c2_lo REAL NOT NULL, c2_hi REAL NOT NULL,
        c3_a TEXT NOT NULL, c3_b TEXT NOT NULL, c3_c TEXT NOT NULL, c3_lo REAL NOT NULL, c3_hi REAL NOT NULL";

fn statements() -> Vec<String> {
    let mut statements: Vec<String> = [
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
        "CREATE INDEX IF NOT EXISTS versions_type_seq ON versions (resource_type, seq)",
        "CREATE INDEX IF NOT EXISTS versions_time ON versions (last_updated, seq)",
        "CREATE TABLE IF NOT EXISTS resources (
            rid INTEGER PRIMARY KEY,
            resource_type TEXT NOT NULL,
            id TEXT NOT NULL,
            version INTEGER NOT NULL,
            last_updated INTEGER NOT NULL,
            deleted INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            UNIQUE (resource_type, id)
        )",
        "CREATE TABLE IF NOT EXISTS params (
            pid INTEGER PRIMARY KEY,
            resource_type TEXT NOT NULL,
            name TEXT NOT NULL,
            UNIQUE (name, resource_type)
        )",
        "CREATE TABLE IF NOT EXISTS idx_string (
            pid INTEGER NOT NULL, normalized TEXT NOT NULL, exact TEXT NOT NULL, rid INTEGER NOT NULL,
            PRIMARY KEY (pid, normalized, exact, rid)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS idx_string_exact ON idx_string (pid, exact)",
        "CREATE TABLE IF NOT EXISTS idx_token (
            pid INTEGER NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL, rid INTEGER NOT NULL,
            PRIMARY KEY (pid, code, system, rid)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS idx_token_system ON idx_token (pid, system)",
        "CREATE TABLE IF NOT EXISTS idx_token_text (
            pid INTEGER NOT NULL, normalized TEXT NOT NULL, rid INTEGER NOT NULL,
            PRIMARY KEY (pid, normalized, rid)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS idx_of_type (
            pid INTEGER NOT NULL, value TEXT NOT NULL, type_code TEXT NOT NULL, type_system TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (pid, value, type_code, type_system, rid)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS idx_date (
            pid INTEGER NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL, rid INTEGER NOT NULL,
            PRIMARY KEY (pid, lo, hi, rid)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS idx_date_hi ON idx_date (pid, hi)",
        "CREATE TABLE IF NOT EXISTS idx_number (
            pid INTEGER NOT NULL, lo REAL NOT NULL, hi REAL NOT NULL, rid INTEGER NOT NULL,
            PRIMARY KEY (pid, lo, hi, rid)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS idx_number_hi ON idx_number (pid, hi)",
        "CREATE TABLE IF NOT EXISTS idx_quantity (
            pid INTEGER NOT NULL, code TEXT NOT NULL, system TEXT NOT NULL, unit TEXT NOT NULL,
            lo REAL NOT NULL, hi REAL NOT NULL, canonical INTEGER NOT NULL, rid INTEGER NOT NULL,
            PRIMARY KEY (pid, code, system, unit, lo, hi, canonical, rid)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS idx_reference (
            pid INTEGER NOT NULL, target_id TEXT NOT NULL, target_type TEXT NOT NULL, url TEXT NOT NULL,
            rid INTEGER NOT NULL,
            PRIMARY KEY (pid, target_id, target_type, url, rid)) WITHOUT ROWID",
        "CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (pid, url)",
        "CREATE TABLE IF NOT EXISTS idx_reference_identifier (
            pid INTEGER NOT NULL, value TEXT NOT NULL, system TEXT NOT NULL, rid INTEGER NOT NULL,
            PRIMARY KEY (pid, value, system, rid)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS idx_uri (
            pid INTEGER NOT NULL, value TEXT NOT NULL, rid INTEGER NOT NULL,
            PRIMARY KEY (pid, value, rid)) WITHOUT ROWID",
        "CREATE TABLE IF NOT EXISTS checkpoints (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Composite tuples have too many columns for a full-key table; a rowid table with the
    // first component's code leading its value index is enough.
    statements.push(format!(
        "CREATE TABLE IF NOT EXISTS idx_composite (pid INTEGER NOT NULL, rid INTEGER NOT NULL, {COMPONENT_COLUMNS})"
    ));
    statements.push("CREATE INDEX IF NOT EXISTS idx_composite_value ON idx_composite (pid, c1_b, c1_a, rid)".into());
    for table in INDEX_TABLES {
        statements.push(format!("CREATE INDEX IF NOT EXISTS {table}_owner ON {table} (rid, pid)"));
    }
    let deletes: String = INDEX_TABLES.iter().map(|table| format!("DELETE FROM {table} WHERE rid = OLD.rid; ")).collect();
    statements.push(format!(
        "CREATE TRIGGER IF NOT EXISTS resources_reindex AFTER UPDATE OF seq ON resources BEGIN {deletes}END"
    ));
    statements
}

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
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .execute(&mut *conn)
        .await
        .map_err(backend("create schema"))?;
    let recorded: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(backend("read schema version"))?;
    match recorded {
        Some(version) if version == SCHEMA_VERSION => {}
        Some(version) => {
            return Err(StoreError::Backend {
                message: format!(
                    "database schema version {version} is not the supported version {SCHEMA_VERSION}; \
                     export the data and load it into a new data directory"
                ),
                source: None,
            })
        }
        None => {
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(SCHEMA_VERSION)
                .execute(&mut *conn)
                .await
                .map_err(backend("record schema version"))?;
        }
    }
    for statement in statements() {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut *conn).await.map_err(backend("create schema"))?;
    }
    Ok(())
}
