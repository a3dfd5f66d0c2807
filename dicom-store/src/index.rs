//! The study/series/instance index (SQLite in the data dir): one row per stored instance with
//! the attributes QIDO-RS and C-FIND match on, and the queue of studies whose ImagingStudy
//! needs writing. Study and series records are computed from the instance rows.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::sqlite::SqliteArguments;
use sqlx::{AssertSqlSafe, Row, Sqlite};

use crate::object_store::ObjectKey;
use crate::query::{DateRange, TextMatch};
use crate::{DicomQuery, DicomStoreError, IndexedInstance, QueryLevel, QueryMatch, SeriesRecord, StudyRecord, StudySnapshot};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    issuer_of_patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    patient_birth_date TEXT NOT NULL,
    patient_sex TEXT NOT NULL,
    study_date TEXT NOT NULL,
    study_time TEXT NOT NULL,
    accession_number TEXT NOT NULL,
    study_description TEXT NOT NULL,
    study_id TEXT NOT NULL,
    referring_physician_name TEXT NOT NULL,
    modality TEXT NOT NULL,
    series_number INTEGER,
    series_description TEXT NOT NULL,
    body_part_examined TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    instance_number INTEGER,
    transfer_syntax_uid TEXT NOT NULL,
    rows INTEGER,
    columns INTEGER,
    number_of_frames INTEGER,
    object_key TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances (study_instance_uid, series_instance_uid);
CREATE INDEX IF NOT EXISTS instances_series ON instances (series_instance_uid);
CREATE INDEX IF NOT EXISTS instances_patient_id ON instances (patient_id);
CREATE INDEX IF NOT EXISTS instances_patient_name ON instances (patient_name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS instances_study_date ON instances (study_date);
CREATE INDEX IF NOT EXISTS instances_accession ON instances (accession_number);
CREATE INDEX IF NOT EXISTS instances_modality ON instances (modality);
CREATE TABLE IF NOT EXISTS pending_studies (
    study_instance_uid TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
"#;

/// The columns of `instances`, in `IndexedInstance` field order (see `instance_from_row`).
const INSTANCE_COLUMNS: &str = "sop_instance_uid, study_instance_uid, series_instance_uid, patient_id, \
    issuer_of_patient_id, patient_name, patient_birth_date, patient_sex, study_date, study_time, accession_number, \
    study_description, study_id, referring_physician_name, modality, series_number, series_description, \
    body_part_examined, sop_class_uid, instance_number, transfer_syntax_uid, rows, columns, number_of_frames, \
    object_key, sha256, size, stored_at";

/// The order instances are listed in: series then instance number, then arrival.
const INSTANCE_ORDER: &str = "series_number IS NULL, series_number, series_instance_uid, instance_number IS NULL, instance_number, rowid";

pub(crate) struct Index {
    pool: sqlx::SqlitePool,
}

impl Index {
    pub(crate) async fn open(path: &Path) -> Result<Index, DicomStoreError> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed row survives power loss, as the C-STORE success it backs must.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(30));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(Index { pool })
    }

    /// The indexed instance with this SOP Instance UID.
    pub(crate) async fn instance(&self, sop_instance_uid: &str) -> Result<Option<IndexedInstance>, DicomStoreError> {
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE sop_instance_uid = ?");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(sop_instance_uid).fetch_optional(&self.pool).await?;
        row.map(|r| instance_from_row(&r)).transpose()
    }

    /// Inserts or replaces an instance and queues its study for the FHIR mirror, in one
    /// transaction.
    pub(crate) async fn put(&self, i: &IndexedInstance) -> Result<(), DicomStoreError> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "INSERT OR REPLACE INTO instances ({INSTANCE_COLUMNS}) VALUES ({})",
            vec!["?"; INSTANCE_COLUMNS.split(',').count()].join(", ")
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(&i.sop_instance_uid)
            .bind(&i.study_instance_uid)
            .bind(&i.series_instance_uid)
            .bind(&i.patient_id)
            .bind(&i.issuer_of_patient_id)
            .bind(&i.patient_name)
            .bind(&i.patient_birth_date)
            .bind(&i.patient_sex)
            .bind(&i.study_date)
            .bind(&i.study_time)
            .bind(&i.accession_number)
            .bind(&i.study_description)
            .bind(&i.study_id)
            .bind(&i.referring_physician_name)
            .bind(&i.modality)
            .bind(i.series_number)
            .bind(&i.series_description)
            .bind(&i.body_part_examined)
            .bind(&i.sop_class_uid)
            .bind(i.instance_number)
            .bind(&i.transfer_syntax_uid)
            .bind(i.rows)
            .bind(i.columns)
            .bind(i.number_of_frames)
            .bind(i.object_key.as_str())
            .bind(&i.sha256)
            .bind(i.size as i64)
            .bind(&i.stored_at)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pending_studies (study_instance_uid, generation) VALUES (?, 1) \
             ON CONFLICT (study_instance_uid) DO UPDATE SET generation = generation + 1",
        )
        .bind(&i.study_instance_uid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn query(&self, query: &DicomQuery) -> Result<Vec<QueryMatch>, DicomStoreError> {
        let filter = Filter::of(query);
        let page = format!("LIMIT {} OFFSET {}", query.limit.map(i64::from).unwrap_or(-1), query.offset);
        match query.level {
            QueryLevel::Study => {
                let sql = format!(
                    "SELECT {STUDY_COLUMNS} FROM instances WHERE study_instance_uid IN \
                     (SELECT study_instance_uid FROM instances WHERE {}) \
                     GROUP BY study_instance_uid ORDER BY MIN(rowid) {page}",
                    filter.sql
                );
                let rows = filter.bind(sqlx::query(AssertSqlSafe(sql))).fetch_all(&self.pool).await?;
                rows.iter().map(|r| study_from_row(r).map(QueryMatch::Study)).collect()
            }
            QueryLevel::Series => {
                let sql = format!(
                    "SELECT {SERIES_COLUMNS} FROM instances WHERE series_instance_uid IN \
                     (SELECT series_instance_uid FROM instances WHERE {}) \
                     GROUP BY series_instance_uid ORDER BY MIN(rowid) {page}",
                    filter.sql
                );
                let rows = filter.bind(sqlx::query(AssertSqlSafe(sql))).fetch_all(&self.pool).await?;
                rows.iter().map(|r| series_from_row(r).map(QueryMatch::Series)).collect()
            }
            QueryLevel::Instance => {
                let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE {} ORDER BY rowid {page}", filter.sql);
                let rows = filter.bind(sqlx::query(AssertSqlSafe(sql))).fetch_all(&self.pool).await?;
                rows.iter().map(|r| instance_from_row(r).map(QueryMatch::Instance)).collect()
            }
        }
    }

    pub(crate) async fn instances(
        &self,
        study_uid: &str,
        series_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
    ) -> Result<Vec<IndexedInstance>, DicomStoreError> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE study_instance_uid = ? \
             AND (? IS NULL OR series_instance_uid = ?) AND (? IS NULL OR sop_instance_uid = ?) ORDER BY {INSTANCE_ORDER}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(study_uid)
            .bind(series_uid)
            .bind(series_uid)
            .bind(sop_instance_uid)
            .bind(sop_instance_uid)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    /// One study with all its series and instances; None if it has no instances.
    pub(crate) async fn study_snapshot(&self, study_uid: &str) -> Result<Option<StudySnapshot>, DicomStoreError> {
        let sql = format!("SELECT {STUDY_COLUMNS} FROM instances WHERE study_instance_uid = ? GROUP BY study_instance_uid");
        let Some(row) = sqlx::query(AssertSqlSafe(sql)).bind(study_uid).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let study = study_from_row(&row)?;
        let sql = format!(
            "SELECT {SERIES_COLUMNS} FROM instances WHERE study_instance_uid = ? GROUP BY series_instance_uid \
             ORDER BY series_number IS NULL, series_number, MIN(rowid)"
        );
        let series_rows = sqlx::query(AssertSqlSafe(sql)).bind(study_uid).fetch_all(&self.pool).await?;
        let mut instances = self.instances(study_uid, None, None).await?;
        let mut series = Vec::with_capacity(series_rows.len());
        for row in &series_rows {
            let record = series_from_row(row)?;
            let (mine, rest): (Vec<_>, Vec<_>) =
                instances.into_iter().partition(|i| i.series_instance_uid == record.series_instance_uid);
            instances = rest;
            series.push((record, mine));
        }
        Ok(Some(StudySnapshot { study, series }))
    }

    /// Studies whose ImagingStudy is out of date: (StudyInstanceUID, generation). The
    /// generation grows every time an instance of the study is indexed.
    pub(crate) async fn pending_studies(&self, limit: u32) -> Result<Vec<(String, i64)>, DicomStoreError> {
        let rows = sqlx::query("SELECT study_instance_uid, generation FROM pending_studies ORDER BY rowid LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
    }

    /// Marks a study's ImagingStudy as written up to `generation` (a later instance keeps it
    /// pending).
    pub(crate) async fn clear_pending(&self, study_uid: &str, generation: i64) -> Result<(), DicomStoreError> {
        sqlx::query("DELETE FROM pending_studies WHERE study_instance_uid = ? AND generation = ?")
            .bind(study_uid)
            .bind(generation)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Study-level columns: the first instance's study attributes (SQLite takes bare columns from
/// the MIN(rowid) row) and the aggregates over the study.
const STUDY_COLUMNS: &str = "MIN(rowid), patient_id, issuer_of_patient_id, patient_name, patient_birth_date, patient_sex, \
    study_instance_uid, study_date, study_time, accession_number, study_description, study_id, referring_physician_name, \
    (SELECT group_concat(m, '\\') FROM (SELECT DISTINCT modality AS m FROM instances AS i \
        WHERE i.study_instance_uid = instances.study_instance_uid AND modality <> '' ORDER BY m)), \
    COUNT(DISTINCT series_instance_uid), COUNT(*)";

const SERIES_COLUMNS: &str = "MIN(rowid), study_instance_uid, series_instance_uid, modality, series_number, \
    series_description, body_part_examined, COUNT(*)";

fn study_from_row(r: &SqliteRow) -> Result<StudyRecord, DicomStoreError> {
    let modalities: Option<String> = r.try_get(13)?;
    Ok(StudyRecord {
        patient_id: r.try_get(1)?,
        issuer_of_patient_id: r.try_get(2)?,
        patient_name: r.try_get(3)?,
        patient_birth_date: r.try_get(4)?,
        patient_sex: r.try_get(5)?,
        study_instance_uid: r.try_get(6)?,
        study_date: r.try_get(7)?,
        study_time: r.try_get(8)?,
        accession_number: r.try_get(9)?,
        study_description: r.try_get(10)?,
        study_id: r.try_get(11)?,
        referring_physician_name: r.try_get(12)?,
        modalities_in_study: modalities.map(|m| m.split('\\').map(str::to_string).collect()).unwrap_or_default(),
        number_of_series: r.try_get(14)?,
        number_of_instances: r.try_get(15)?,
    })
}

fn series_from_row(r: &SqliteRow) -> Result<SeriesRecord, DicomStoreError> {
    Ok(SeriesRecord {
        study_instance_uid: r.try_get(1)?,
        series_instance_uid: r.try_get(2)?,
        modality: r.try_get(3)?,
        series_number: r.try_get(4)?,
        series_description: r.try_get(5)?,
        body_part_examined: r.try_get(6)?,
        number_of_instances: r.try_get(7)?,
    })
}

fn instance_from_row(r: &SqliteRow) -> Result<IndexedInstance, DicomStoreError> {
    let object_key: String = r.try_get(24)?;
    let size: i64 = r.try_get(26)?;
    Ok(IndexedInstance {
        sop_instance_uid: r.try_get(0)?,
        study_instance_uid: r.try_get(1)?,
        series_instance_uid: r.try_get(2)?,
        patient_id: r.try_get(3)?,
        issuer_of_patient_id: r.try_get(4)?,
        patient_name: r.try_get(5)?,
        patient_birth_date: r.try_get(6)?,
        patient_sex: r.try_get(7)?,
        study_date: r.try_get(8)?,
        study_time: r.try_get(9)?,
        accession_number: r.try_get(10)?,
        study_description: r.try_get(11)?,
        study_id: r.try_get(12)?,
        referring_physician_name: r.try_get(13)?,
        modality: r.try_get(14)?,
        series_number: r.try_get(15)?,
        series_description: r.try_get(16)?,
        body_part_examined: r.try_get(17)?,
        sop_class_uid: r.try_get(18)?,
        instance_number: r.try_get(19)?,
        transfer_syntax_uid: r.try_get(20)?,
        rows: r.try_get(21)?,
        columns: r.try_get(22)?,
        number_of_frames: r.try_get(23)?,
        object_key: ObjectKey::new(object_key),
        sha256: r.try_get(25)?,
        size: size as u64,
        stored_at: r.try_get(27)?,
    })
}

/// A query's matching keys as one SQL condition over instance rows, with its bind values.
struct Filter {
    sql: String,
    binds: Vec<String>,
}

impl Filter {
    fn of(query: &DicomQuery) -> Filter {
        let mut filter = Filter { sql: "1 = 1".to_string(), binds: Vec::new() };
        filter.text("patient_id", query.patient_id.as_ref(), false);
        filter.text("patient_name", query.patient_name.as_ref(), true);
        filter.text("accession_number", query.accession_number.as_ref(), false);
        filter.text("modality", query.modality.as_ref(), false);
        if let Some(DateRange { from, to }) = &query.study_date {
            if let Some(from) = from {
                filter.push("study_date <> '' AND study_date >= ?", [from.clone()]);
            }
            if let Some(to) = to {
                filter.push("study_date <> '' AND study_date <= ?", [to.clone()]);
            }
        }
        filter.list("study_instance_uid", &query.study_instance_uid);
        filter.list("series_instance_uid", &query.series_instance_uid);
        filter.list("sop_instance_uid", &query.sop_instance_uid);
        if !query.modalities_in_study.is_empty() {
            let marks = vec!["?"; query.modalities_in_study.len()].join(", ");
            filter.push(
                &format!("study_instance_uid IN (SELECT study_instance_uid FROM instances WHERE modality IN ({marks}))"),
                query.modalities_in_study.iter().cloned(),
            );
        }
        filter
    }

    fn push(&mut self, condition: &str, binds: impl IntoIterator<Item = String>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self.binds.extend(binds);
    }

    /// Exact or wildcard match; `case_insensitive` for person names (LIKE is case-insensitive
    /// for ASCII in SQLite; exact values of other attributes compare exactly).
    fn text(&mut self, column: &str, matcher: Option<&TextMatch>, case_insensitive: bool) {
        match matcher {
            None => {}
            Some(TextMatch::Exact(value)) if !case_insensitive => self.push(&format!("{column} = ?"), [value.clone()]),
            Some(m) => self.push(&format!("{column} LIKE ? ESCAPE '\\'"), [m.like_pattern()]),
        }
    }

    fn list(&mut self, column: &str, values: &[String]) {
        if !values.is_empty() {
            let marks = vec!["?"; values.len()].join(", ");
            self.push(&format!("{column} IN ({marks})"), values.iter().cloned());
        }
    }

    fn bind(&self, mut query: sqlx::query::Query<'static, Sqlite, SqliteArguments>) -> sqlx::query::Query<'static, Sqlite, SqliteArguments> {
        for value in &self.binds {
            query = query.bind(value.clone());
        }
        query
    }
}
