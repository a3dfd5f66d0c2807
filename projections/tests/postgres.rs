//! The PostgreSQL projection against a real PostgreSQL: every test starts its own server (a
//! temporary cluster on a free port) and database, writes resources through the embedded
//! store, and drives the projection through its public API and the follower.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fhir_store::{Change, ChangeKind, ResourceStore, SqliteStore, SqliteStoreOptions, StoredResource};
use projections::postgres::{AlertFilter, PostgresConfig, PostgresProjection};
use projections::testing::PostgresServer;
use projections::{AlertRules, Follower, FollowerOptions, Projection, ProjectionError, Severity};
use serde_json::{json, Value};
use sqlx::PgPool;
use time::OffsetDateTime;

struct Env {
    projection: Arc<PostgresProjection>,
    store: Arc<SqliteStore>,
    db: PgPool,
    // Dropped last: the server outlives the pools connected to it.
    _dir: tempfile::TempDir,
    server: PostgresServer,
}

impl Env {
    async fn start(name: &str) -> Option<Env> {
        let server = PostgresServer::start()?;
        let url = server.create_database(name).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.expect("open store"));
        let config = PostgresConfig { url: url.clone(), alert_rules: AlertRules::default(), months_ahead: 2 };
        let projection = Arc::new(PostgresProjection::new(config).expect("projection"));
        let db = PgPool::connect(&url).await.expect("connect");
        Some(Env { projection, store, db, _dir: dir, server })
    }

    fn follower(&self, batch_size: usize) -> Follower {
        let options = FollowerOptions { batch_size, poll_interval: Duration::from_millis(20), max_backoff: Duration::from_millis(500) };
        Follower::new(self.projection.clone(), self.store.clone(), options)
    }

    /// Applies the whole feed.
    async fn sync(&self) {
        let head = self.store.last_seq().await.expect("last seq");
        let reached = self.follower(1000).catch_up(head, |_| {}).await.expect("catch up");
        assert_eq!(reached, head);
    }

    async fn put(&self, resource_type: &str, id: &str, body: Value) -> StoredResource {
        self.store.update(resource_type, id, body, None).await.expect("write")
    }

    async fn delete(&self, resource_type: &str, id: &str) {
        self.store.delete(resource_type, id, None).await.expect("delete");
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string())).fetch_one(&self.db).await.expect(sql)
    }

    async fn assert_consistent(&self) {
        let report = self.projection.check_consistency(self.store.as_ref()).await.expect("check");
        assert!(report.is_consistent(), "{:#?}", report.problems);
    }
}

fn loinc(code: &str) -> Value {
    json!({"coding": [{"system": "http://loinc.org", "code": code}]})
}

fn patient(mrn: &str, family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": mrn}],
        "name": [{"use": "official", "family": family, "given": ["Ada", "Maria"]}],
        "telecom": [{"system": "phone", "value": "+41 44 555 01 01"}, {"system": "email", "value": "ada@example.org"}],
        "gender": "female",
        "birthDate": "1961-04-12"
    })
}

fn device(serial: &str) -> Value {
    json!({
        "resourceType": "Device",
        "serialNumber": serial,
        "manufacturer": "Acme Medical",
        "modelNumber": "M-3000",
        "type": {"text": "Patient monitor"},
        "version": [{"type": {"text": "firmware"}, "value": "4.2.1"}],
        "status": "active"
    })
}

/// A single-value vital sign of `p1` measured by `d1`.
fn vital(code: &str, value: f64, unit: &str, at: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final", "code": loinc(code),
        "subject": {"reference": "Patient/p1"}, "device": {"reference": "Device/d1"},
        "effectiveDateTime": at, "valueQuantity": {"value": value, "code": unit}
    })
}

fn bp_panel(systolic: f64, diastolic: f64, at: &str) -> Value {
    json!({
        "resourceType": "Observation", "status": "final", "code": loinc("85354-9"),
        "subject": {"reference": "Patient/p1"}, "device": {"reference": "Device/d1"},
        "effectiveDateTime": at,
        "component": [
            {"code": loinc("8480-6"), "valueQuantity": {"value": systolic, "code": "mm[Hg]"}},
            {"code": loinc("8462-4"), "valueQuantity": {"value": diastolic, "code": "mm[Hg]"}}
        ]
    })
}

#[tokio::test]
async fn rows_hold_the_mapped_patient_and_device_columns() {
    let Some(env) = Env::start("rows").await else { return };
    env.put("Patient", "p1", patient("MRN-100", "Lovelace")).await;
    env.put("Device", "d1", device("SN-9")).await;
    env.put("Observation", "o1", vital("8867-4", 72.0, "/min", "2026-03-10T08:00:00+01:00")).await;
    env.sync().await;

    type PatientColumns = (i64, Option<String>, Option<String>, Option<String>, Option<time::Date>, Option<String>, Option<String>, Option<String>, bool);
    let row: PatientColumns = sqlx::query_as(
        "select fhir_version, mrn, family_name, given_names, birth_date, gender, phone, email, active from patients where fhir_id = 'p1'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            1,
            Some("MRN-100".into()),
            Some("Lovelace".into()),
            Some("Ada Maria".into()),
            Some(time::macros::date!(1961 - 04 - 12)),
            Some("female".into()),
            Some("+41 44 555 01 01".into()),
            Some("ada@example.org".into()),
            true
        )
    );
    type DeviceColumns = (Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, String, Option<OffsetDateTime>);
    let row: DeviceColumns = sqlx::query_as(
        "select serial_number, type, manufacturer, model, firmware_version, status, last_seen from devices where fhir_id = 'd1'",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            Some("SN-9".into()),
            Some("Patient monitor".into()),
            Some("Acme Medical".into()),
            Some("M-3000".into()),
            Some("4.2.1".into()),
            "active".into(),
            Some(time::macros::datetime!(2026-03-10 07:00 UTC))
        )
    );
    // The measurement points at both rows by their UUIDv5 ids, without lookups.
    let joined: (String, f64, String, String, String) = sqlx::query_as(
        "select m.type, m.value, m.unit, p.fhir_id, d.fhir_id from measurements m \
         join patients p on p.id = m.patient_id join devices d on d.id = m.device_id",
    )
    .fetch_one(&env.db)
    .await
    .unwrap();
    assert_eq!(joined, ("heart_rate".into(), 72.0, "/min".into(), "p1".into(), "d1".into()));
    assert_eq!(env.projection.checkpoint().await.unwrap(), env.store.last_seq().await.unwrap());
    env.assert_consistent().await;
}

#[tokio::test]
async fn measurements_go_to_monthly_partitions_created_ahead_and_on_demand() {
    let Some(env) = Env::start("partitions").await else { return };
    env.put("Observation", "march", vital("8867-4", 70.0, "/min", "2026-03-15T12:00:00Z")).await;
    env.put("Observation", "old", vital("8867-4", 71.0, "/min", "2019-07-01T00:00:00Z")).await;
    // 23:30 at -02:00 on 31 March is already April in UTC.
    env.put("Observation", "edge", vital("8867-4", 73.0, "/min", "2026-03-31T23:30:00-02:00")).await;
    env.sync().await;

    let partition_of = |id: &'static str| {
        let db = env.db.clone();
        async move {
            let name: String = sqlx::query_scalar("select tableoid::regclass::text from measurements where observation_fhir_id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap();
            name
        }
    };
    assert_eq!(partition_of("march").await, "measurements_y2026m03");
    assert_eq!(partition_of("old").await, "measurements_y2019m07");
    assert_eq!(partition_of("edge").await, "measurements_y2026m04");

    let partitions: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid \
         where i.inhparent = 'measurements'::regclass order by 1",
    )
    .fetch_all(&env.db)
    .await
    .unwrap();
    let now = OffsetDateTime::now_utc();
    let (mut year, mut month) = (now.year(), u8::from(now.month()));
    for _ in 0..=2 {
        let name = format!("measurements_y{year:04}m{month:02}");
        assert!(partitions.contains(&name), "{name} missing from {partitions:?}");
        (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    }
    // No default partition: a month nobody created would be an error, not a catch-all.
    let defaults = env.count("select count(*) from pg_partitioned_table where partdefid <> 0").await;
    assert_eq!(defaults, 0);
    env.assert_consistent().await;
}

#[tokio::test]
async fn updates_replace_and_deletes_remove() {
    let Some(env) = Env::start("updates").await else { return };
    env.put("Patient", "p1", patient("MRN-1", "Before")).await;
    env.put("Device", "d1", device("SN-1")).await;
    env.put("Observation", "bp", bp_panel(128.0, 84.0, "2026-03-02T09:00:00Z")).await;
    env.put("Observation", "hr", vital("8867-4", 64.0, "/min", "2026-03-02T09:00:00Z")).await;
    env.sync().await;
    let bp: Vec<(String, f64)> =
        sqlx::query_as("select type, value from measurements where observation_fhir_id = 'bp' order by type").fetch_all(&env.db).await.unwrap();
    assert_eq!(bp, vec![("bp_diastolic".into(), 84.0), ("bp_systolic".into(), 128.0)]);

    env.put("Patient", "p1", patient("MRN-1", "After")).await;
    env.put("Observation", "bp", bp_panel(140.0, 90.0, "2026-03-02T09:05:00Z")).await;
    env.put("Observation", "hr", vital("8867-4", 66.0, "/min", "2026-03-02T09:00:00Z")).await;
    env.sync().await;
    let family: (String, i64) = sqlx::query_as("select family_name, fhir_version from patients where fhir_id = 'p1'").fetch_one(&env.db).await.unwrap();
    assert_eq!(family, ("After".into(), 2));
    let values: Vec<(String, String, f64, i64)> =
        sqlx::query_as("select observation_fhir_id, type, value, observation_version from measurements order by 1, 2").fetch_all(&env.db).await.unwrap();
    assert_eq!(
        values,
        vec![
            ("bp".into(), "bp_diastolic".into(), 90.0, 2),
            ("bp".into(), "bp_systolic".into(), 140.0, 2),
            ("hr".into(), "heart_rate".into(), 66.0, 2)
        ]
    );
    // An Observation that stops being a usable vital sign keeps no measurements.
    let mut cancelled = vital("8867-4", 66.0, "/min", "2026-03-02T09:00:00Z");
    cancelled["status"] = json!("entered-in-error");
    env.put("Observation", "hr", cancelled).await;
    env.delete("Observation", "bp").await;
    env.delete("Patient", "p1").await;
    env.delete("Device", "d1").await;
    env.sync().await;
    assert_eq!(env.count("select count(*) from measurements").await, 0);
    assert_eq!(env.count("select count(*) from patients").await, 0);
    assert_eq!(env.count("select count(*) from devices").await, 0);
    env.assert_consistent().await;
}

#[tokio::test]
async fn a_shared_mrn_moves_to_the_newest_writer() {
    let Some(env) = Env::start("mrn").await else { return };
    env.put("Patient", "p1", patient("MRN-7", "First")).await;
    env.sync().await;
    env.put("Patient", "p2", patient("MRN-7", "Second")).await;
    // A later batch holding both writers in another order: the newest one still wins.
    env.put("Device", "d2", device("SN-X")).await;
    env.put("Device", "d1", device("SN-X")).await;
    env.sync().await;
    let mrns: Vec<(String, Option<String>)> = sqlx::query_as("select fhir_id, mrn from patients order by 1").fetch_all(&env.db).await.unwrap();
    assert_eq!(mrns, vec![("p1".into(), None), ("p2".into(), Some("MRN-7".into()))]);
    let serials: Vec<(String, Option<String>)> =
        sqlx::query_as("select fhir_id, serial_number from devices order by 1").fetch_all(&env.db).await.unwrap();
    assert_eq!(serials, vec![("d1".into(), Some("SN-X".into())), ("d2".into(), None)]);
    env.assert_consistent().await;
    // Writing p1 again gives it back to p1.
    env.put("Patient", "p1", patient("MRN-7", "First again")).await;
    env.sync().await;
    let mrns: Vec<(String, Option<String>)> = sqlx::query_as("select fhir_id, mrn from patients order by 1").fetch_all(&env.db).await.unwrap();
    assert_eq!(mrns, vec![("p1".into(), Some("MRN-7".into())), ("p2".into(), None)]);
    env.assert_consistent().await;
}

#[tokio::test]
async fn alerts_follow_the_rules_and_stay_once_acknowledged() {
    let Some(env) = Env::start("alerts").await else { return };
    env.put("Patient", "p1", patient("MRN-1", "Lovelace")).await;
    env.put("Observation", "spo2", vital("59408-5", 88.0, "%", "2026-03-02T10:00:00Z")).await;
    env.put("Observation", "hr", vital("8867-4", 142.0, "/min", "2026-03-02T10:01:00Z")).await;
    env.put("Observation", "normal", vital("8867-4", 72.0, "/min", "2026-03-02T10:02:00Z")).await;
    env.sync().await;

    let all = env.projection.list_alerts(&AlertFilter::default()).await.unwrap();
    let summary: Vec<(&str, &str, &str, f64)> =
        all.iter().map(|a| (a.observation_fhir_id.as_str(), a.measurement_type.as_str(), a.severity.as_str(), a.value)).collect();
    // Newest first.
    assert_eq!(summary, vec![("hr", "heart_rate", "high", 142.0), ("spo2", "spo2", "critical", 88.0)]);
    let spo2 = &all[1];
    assert_eq!((spo2.rule.as_str(), spo2.unit.as_str(), spo2.patient_fhir_id.as_deref()), ("spo2<90:critical", "%", Some("p1")));
    assert_eq!(spo2.measured_at, time::macros::datetime!(2026-03-02 10:00 UTC));
    assert!(!spo2.acknowledged);

    let critical = AlertFilter { severity: Some(Severity::Critical), ..AlertFilter::default() };
    assert_eq!(env.projection.list_alerts(&critical).await.unwrap().len(), 1);
    let other_patient = AlertFilter { patient_fhir_id: Some("p9".into()), ..AlertFilter::default() };
    assert!(env.projection.list_alerts(&other_patient).await.unwrap().is_empty());
    let one = AlertFilter { limit: 1, ..AlertFilter::default() };
    assert_eq!(env.projection.list_alerts(&one).await.unwrap().len(), 1);

    let acked = env.projection.acknowledge_alert(spo2.id, "nurse.jones").await.unwrap().expect("the alert");
    assert!(acked.acknowledged);
    assert_eq!(acked.acknowledged_by.as_deref(), Some("nurse.jones"));
    let first_at = acked.acknowledged_at.expect("acknowledged at");
    let again = env.projection.acknowledge_alert(spo2.id, "dr.smith").await.unwrap().expect("the alert");
    assert_eq!((again.acknowledged_by.as_deref(), again.acknowledged_at), (Some("nurse.jones"), Some(first_at)));
    assert!(env.projection.acknowledge_alert(999_999, "x").await.unwrap().is_none());
    let open = AlertFilter { acknowledged: Some(false), ..AlertFilter::default() };
    let open: Vec<String> = env.projection.list_alerts(&open).await.unwrap().into_iter().map(|a| a.observation_fhir_id).collect();
    assert_eq!(open, vec!["hr".to_string()]);

    // Values back to normal: the open alert goes, the acknowledged one stays.
    env.put("Observation", "spo2", vital("59408-5", 97.0, "%", "2026-03-02T10:00:00Z")).await;
    env.put("Observation", "hr", vital("8867-4", 80.0, "/min", "2026-03-02T10:01:00Z")).await;
    env.sync().await;
    let left: Vec<(String, bool)> =
        env.projection.list_alerts(&AlertFilter::default()).await.unwrap().into_iter().map(|a| (a.observation_fhir_id, a.acknowledged)).collect();
    assert_eq!(left, vec![("spo2".to_string(), true)]);
    env.assert_consistent().await;
}

#[tokio::test]
async fn a_batch_after_a_moved_checkpoint_changes_nothing() {
    let Some(env) = Env::start("moved").await else { return };
    env.put("Patient", "p1", patient("MRN-1", "Kept")).await;
    env.sync().await;
    let checkpoint = env.projection.checkpoint().await.unwrap();
    env.put("Patient", "p1", patient("MRN-1", "Changed")).await;
    env.put("Observation", "o1", vital("8867-4", 75.0, "/min", "2026-03-02T09:00:00Z")).await;
    let batch = env.store.changes(checkpoint, 100).await.unwrap();
    assert_eq!(batch.len(), 2);

    let error = env.projection.apply(checkpoint - 1, &batch).await.unwrap_err();
    assert!(
        matches!(error, ProjectionError::CheckpointMoved { expected, found } if expected == checkpoint - 1 && found == checkpoint),
        "{error}"
    );
    assert_eq!(env.projection.checkpoint().await.unwrap(), checkpoint);
    let family: String = sqlx::query_scalar("select family_name from patients").fetch_one(&env.db).await.unwrap();
    assert_eq!(family, "Kept");
    assert_eq!(env.count("select count(*) from measurements").await, 0);

    env.projection.apply(checkpoint, &batch).await.unwrap();
    let family: String = sqlx::query_scalar("select family_name from patients").fetch_one(&env.db).await.unwrap();
    assert_eq!(family, "Changed");
    // The same batch again is refused: it was applied once.
    assert!(matches!(env.projection.apply(checkpoint, &batch).await, Err(ProjectionError::CheckpointMoved { .. })));
    assert_eq!(env.count("select count(*) from measurements").await, 1);
    env.assert_consistent().await;
}

#[tokio::test]
async fn reset_and_catch_up_rebuild_the_same_projection() {
    let Some(env) = Env::start("rebuild").await else { return };
    for i in 0..20 {
        env.put("Patient", &format!("p{i}"), patient(&format!("MRN-{}", i % 15), &format!("Family {i}"))).await;
    }
    env.put("Device", "d1", device("SN-1")).await;
    for i in 0..60 {
        let body = if i % 3 == 0 {
            bp_panel(110.0 + i as f64, 70.0, &format!("2026-0{}-01T10:{:02}:00Z", 1 + i % 5, i))
        } else {
            vital("59408-5", 80.0 + (i % 20) as f64, "%", &format!("2025-1{}-01T10:{:02}:00Z", i % 3, i))
        };
        env.put("Observation", &format!("o{i}"), body).await;
    }
    for i in (0..60).step_by(7) {
        env.delete("Observation", &format!("o{i}")).await;
    }
    env.delete("Patient", "p3").await;
    // Small batches, so shared MRNs cross batch boundaries.
    let head = env.store.last_seq().await.unwrap();
    env.follower(7).catch_up(head, |_| {}).await.unwrap();
    env.assert_consistent().await;
    let tables = "select (select count(*) from patients) * 1000000 + (select count(*) from measurements) * 1000 + (select count(*) from alerts)";
    let before = env.count(tables).await;
    assert!(before > 19_000_000, "{before}");

    env.projection.reset().await.unwrap();
    assert_eq!(env.projection.checkpoint().await.unwrap(), 0);
    assert_eq!(env.count(tables).await, 0);
    let mut progress = Vec::new();
    env.follower(1000).catch_up(head, |p| progress.push(p.checkpoint)).await.unwrap();
    assert_eq!(progress.last(), Some(&head));
    assert_eq!(env.count(tables).await, before);
    env.assert_consistent().await;
}

#[tokio::test]
async fn the_check_reports_rows_changed_behind_its_back() {
    let Some(env) = Env::start("check").await else { return };
    env.put("Patient", "p1", patient("MRN-1", "One")).await;
    env.put("Patient", "p2", patient("MRN-2", "Two")).await;
    env.put("Device", "d1", device("SN-1")).await;
    env.put("Observation", "o1", vital("8867-4", 72.0, "/min", "2026-03-02T09:00:00Z")).await;
    env.put("Observation", "o2", vital("59408-5", 85.0, "%", "2026-03-02T09:00:00Z")).await;
    env.sync().await;
    env.assert_consistent().await;

    for sql in [
        "delete from patients where fhir_id = 'p1'",
        "update patients set fhir_version = 9 where fhir_id = 'p2'",
        "update devices set model = 'Other' where fhir_id = 'd1'",
        "update measurements set value = 73 where observation_fhir_id = 'o1'",
        "insert into measurements (observation_fhir_id, observation_version, type, value, unit, measured_at) \
             values ('ghost', 1, 'heart_rate', 60, '/min', '2026-03-05T00:00:00Z')",
        "delete from alerts where observation_fhir_id = 'o2'",
    ] {
        sqlx::query(sql).execute(&env.db).await.expect(sql);
    }
    let report = env.projection.check_consistency(env.store.as_ref()).await.unwrap();
    assert_eq!(report.at_seq, env.store.last_seq().await.unwrap());
    assert_eq!(report.resources_checked, 5);
    let expected = [
        "Patient/p1: no row",
        "Patient/p2: row has version 9, store has 1",
        "Device/d1: model is Some(\"Other\") in the row, Some(\"M-3000\") in the store",
        "Observation/o1: measurements are [heart_rate=73",
        "Observation/ghost: 1 measurement rows for an Observation the store does not have",
        "Observation/o2: spo2 measurement flagged critical has no alert",
    ];
    for problem in expected {
        assert!(report.problems.iter().any(|p| p.starts_with(problem)), "{problem:?} not in {:#?}", report.problems);
    }
    assert_eq!(report.problems.len(), expected.len(), "{:#?}", report.problems);
}

#[tokio::test]
async fn an_unreachable_database_fails_calls_not_start_up() {
    let port = projections::testing::free_port();
    let config = PostgresConfig { url: format!("postgres://postgres@127.0.0.1:{port}/none"), alert_rules: AlertRules::default(), months_ahead: 1 };
    let projection = PostgresProjection::new(config).expect("lazy connection");
    let error = projection.checkpoint().await.unwrap_err();
    assert!(matches!(error, ProjectionError::Migrate(_) | ProjectionError::Postgres(_)), "{error}");
    assert!(error.is_transient());
    let bad = PostgresConfig { url: "postgres://host:port/db".into(), alert_rules: AlertRules::default(), months_ahead: 1 };
    assert!(matches!(PostgresProjection::new(bad), Err(ProjectionError::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_while_following_loses_and_duplicates_nothing() {
    let Some(env) = Env::start("restart").await else { return };
    let env = Arc::new(env);
    let follower = tokio::spawn(env.follower(25).run());
    let writer = {
        let env = env.clone();
        tokio::spawn(async move {
            for i in 0..400u32 {
                let at = format!("2026-03-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60);
                let body = if i % 4 == 0 { bp_panel(120.0, 80.0, &at) } else { vital("8867-4", 60.0 + f64::from(i % 50), "/min", &at) };
                env.put("Observation", &format!("o{i}"), body).await;
                if i % 10 == 0 {
                    // Some updates too, whose earlier measurements must be replaced.
                    env.put("Observation", &format!("o{}", i / 2), vital("8867-4", 99.0, "/min", &at)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let server = env.clone();
    tokio::task::spawn_blocking(move || server.server.stop()).await.unwrap();
    assert!(env.projection.checkpoint().await.is_err(), "the server is down");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = env.clone();
    tokio::task::spawn_blocking(move || server.server.start_again()).await.unwrap();
    writer.await.unwrap();

    let head = env.store.last_seq().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.projection.checkpoint().await.ok() != Some(head) {
        assert!(Instant::now() < deadline, "the follower did not catch up after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    follower.abort();
    env.assert_consistent().await;
    // Every Observation's current version, counted from the store.
    let mut expected = 0;
    for i in 0..400u32 {
        let current = env.store.read("Observation", &format!("o{i}")).await.unwrap().expect("written");
        let body: Value = serde_json::from_slice(current.body.as_deref().unwrap()).unwrap();
        expected += if body["component"].is_array() { 2 } else { 1 };
    }
    assert_eq!(env.count("select count(*) from measurements").await, expected);
}

/// The rebuild's bulk path: whole batches of BP panels over a year of partitions, straight
/// into `apply`, land exactly once. (Its speed is measured by the `projections` bench.)
#[tokio::test]
async fn whole_batches_land_exactly_once_across_partitions() {
    let Some(env) = Env::start("bulk").await else { return };
    let batches = 10;
    let per_batch = 1000u64;
    let changes: Vec<Vec<Change>> = (0..batches)
        .map(|b| {
            (0..per_batch)
                .map(|i| {
                    let seq = b * per_batch + i + 1;
                    let at = format!("2025-{:02}-{:02}T{:02}:00:00Z", 1 + seq % 12, 1 + seq % 28, seq % 24);
                    let body = bp_panel(100.0 + (seq % 90) as f64, 60.0 + (seq % 30) as f64, &at);
                    Change {
                        seq,
                        kind: ChangeKind::Create,
                        resource: StoredResource {
                            resource_type: "Observation".into(),
                            id: format!("o{seq}"),
                            version: 1,
                            last_updated: OffsetDateTime::now_utc(),
                            deleted: false,
                            body: Some(serde_json::to_vec(&body).unwrap()),
                            seq,
                        },
                    }
                })
                .collect()
        })
        .collect();
    let mut after = 0;
    for batch in &changes {
        env.projection.apply(after, batch).await.unwrap();
        after = batch.last().unwrap().seq;
    }
    let measurements = env.count("select count(*) from measurements").await;
    assert_eq!(measurements, (batches * per_batch * 2) as i64);
    let partitions = env.count("select count(distinct tableoid) from measurements").await;
    assert_eq!(partitions, 12);
}
