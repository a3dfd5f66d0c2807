//! The time-series projection against a real InfluxDB 1.x (`influxd` started per test):
//! points, updates and deletes, `$stats` series, checkpoints, rebuilds, re-sent batches, the
//! consistency check and an outage while following.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fhir_store::{ResourceStore, SqliteStore, SqliteStoreOptions};
use projections::testing::InfluxServer;
use projections::tsdb::{TsdbConfig, TsdbProjection};
use projections::{compute_statistics, Follower, FollowerOptions, Projection, ProjectionError, SeriesQuery, Statistic, VitalSign};
use serde_json::{json, Value};
use time::macros::datetime;
use time::OffsetDateTime;

const LOINC: &str = "http://loinc.org";

type Fields = BTreeMap<String, f64>;

fn fields(pairs: &[(&str, f64)]) -> Fields {
    pairs.iter().map(|(name, value)| (name.to_string(), *value)).collect()
}

struct Fixture {
    influx: InfluxServer,
    store: Arc<SqliteStore>,
    projection: Arc<TsdbProjection>,
    database: &'static str,
    _dir: tempfile::TempDir,
}

/// A fresh server, store and projection writing to `database`; None when influxd is missing.
async fn fixture(database: &'static str) -> Option<Fixture> {
    let influx = InfluxServer::start()?;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.unwrap());
    let config = TsdbConfig { url: influx.url(), database: database.into(), org: None, bucket: None, token: None };
    let projection = Arc::new(TsdbProjection::new(config, store.clone()).unwrap());
    Some(Fixture { influx, store, projection, database, _dir: dir })
}

impl Fixture {
    fn follower(&self) -> Follower {
        Follower::new(self.projection.clone(), self.store.clone(), FollowerOptions::default())
    }

    /// Applies the whole feed.
    async fn catch_up(&self) -> u64 {
        let head = self.store.last_seq().await.unwrap();
        self.follower().catch_up(head, |_| {}).await.unwrap()
    }

    /// Every point as (patient, device, time in ns, fields without nulls), in series order.
    async fn points(&self) -> Vec<(String, String, i64, Fields)> {
        let answer = self.influx.query(self.database, r#"SELECT * FROM "vital_signs" GROUP BY *"#).await;
        assert!(answer["results"][0]["error"].is_null(), "{answer}");
        let mut points = Vec::new();
        for series in answer["results"][0]["series"].as_array().into_iter().flatten() {
            let columns: Vec<&str> = series["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
            for row in series["values"].as_array().unwrap() {
                let row = row.as_array().unwrap();
                let fields: Fields =
                    columns.iter().zip(row).filter(|(c, v)| **c != "time" && !v.is_null()).map(|(c, v)| (c.to_string(), v.as_f64().unwrap())).collect();
                let tag = |name: &str| series["tags"][name].as_str().unwrap_or("").to_string();
                points.push((tag("patient_id"), tag("device_id"), row[0].as_i64().unwrap(), fields));
            }
        }
        points
    }

    async fn assert_consistent(&self) {
        let report = self.projection.check_consistency(self.store.as_ref()).await.unwrap();
        assert!(report.is_consistent(), "{report:#?}");
    }
}

fn ns(time: OffsetDateTime) -> i64 {
    time.unix_timestamp_nanos() as i64
}

fn vital(code: &str, value: f64, unit: &str, patient: &str, device: Option<&str>, at: OffsetDateTime) -> Value {
    let mut body = json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    });
    if let Some(device) = device {
        body["device"] = json!({"reference": format!("Device/{device}")});
    }
    body
}

fn heart_rate(value: f64, patient: &str, device: Option<&str>, at: OffsetDateTime) -> Value {
    vital("8867-4", value, "/min", patient, device, at)
}

fn bp_panel(systolic: f64, diastolic: f64, patient: &str, device: &str, at: OffsetDateTime) -> Value {
    let component = |code: &str, value: f64| {
        json!({"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": {"value": value, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}})
    };
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "device": {"reference": format!("Device/{device}")},
        "effectiveDateTime": at.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "component": [component("8480-6", systolic), component("8462-4", diastolic)]
    })
}

const T0: OffsetDateTime = datetime!(2026-03-01 10:00 UTC);

#[tokio::test]
async fn points_carry_the_tags_fields_and_time_of_their_observations() {
    let Some(f) = fixture("points").await else { return };
    f.store.create("Observation", "hr1", heart_rate(72.0, "p1", Some("monitor-1"), T0)).await.unwrap();
    f.store.create("Observation", "hr2", heart_rate(64.5, "p 2,x=y", None, T0 + Duration::from_secs(1))).await.unwrap();
    f.store.create("Observation", "bp1", bp_panel(120.0, 80.0, "p1", "cuff-1", T0 + Duration::from_millis(1500))).await.unwrap();
    f.store.create("Observation", "temp", vital("8310-5", 98.6, "[degF]", "p1", None, T0 + Duration::from_secs(3))).await.unwrap();
    let checkpoint = f.catch_up().await;
    assert_eq!(checkpoint, 4);
    assert_eq!(f.projection.checkpoint().await.unwrap(), 4);
    assert_eq!(f.store.checkpoint("tsdb").await.unwrap(), Some(4));

    let mut points = f.points().await;
    points.sort_by_key(|p| p.2);
    let temperature = points.pop().unwrap();
    assert_eq!((temperature.0.as_str(), temperature.1.as_str(), temperature.2), ("p1", "", ns(T0) + 3_000_000_000));
    assert!((temperature.3["temperature"] - 37.0).abs() < 1e-9, "{temperature:?}");
    assert_eq!(
        points,
        vec![
            ("p1".into(), "monitor-1".into(), ns(T0), fields(&[("heart_rate", 72.0)])),
            ("p 2,x=y".into(), "".into(), ns(T0) + 1_000_000_000, fields(&[("heart_rate", 64.5)])),
            // A blood-pressure panel is one point with both components.
            ("p1".into(), "cuff-1".into(), ns(T0) + 1_500_000_000, fields(&[("bp_diastolic", 80.0), ("bp_systolic", 120.0)])),
        ]
    );
    // The values are floats, even where they look like integers.
    let types = f.influx.query(f.database, r#"SHOW FIELD KEYS FROM "vital_signs""#).await;
    for row in types["results"][0]["series"][0]["values"].as_array().unwrap() {
        assert_eq!(row[1], "float", "{types}");
    }
    f.assert_consistent().await;
}

#[tokio::test]
async fn updates_that_move_a_point_and_deletes_remove_the_old_points() {
    let Some(f) = fixture("moves").await else { return };
    f.store.create("Observation", "hr", heart_rate(70.0, "p1", Some("d1"), T0)).await.unwrap();
    f.store.create("Observation", "bp", bp_panel(120.0, 80.0, "p1", "d1", T0 + Duration::from_secs(60))).await.unwrap();
    f.store.create("Observation", "gone", heart_rate(50.0, "p2", None, T0)).await.unwrap();
    f.catch_up().await;
    assert_eq!(f.points().await.len(), 3);

    // Across batches: the time moves, a panel loses a component, an Observation is deleted.
    f.store.update("Observation", "hr", heart_rate(71.0, "p1", Some("d1"), T0 + Duration::from_secs(5)), None).await.unwrap();
    let mut systolic_only = bp_panel(121.0, 80.0, "p1", "d1", T0 + Duration::from_secs(60));
    systolic_only["component"].as_array_mut().unwrap().pop();
    f.store.update("Observation", "bp", systolic_only, None).await.unwrap();
    f.store.delete("Observation", "gone", None).await.unwrap();
    f.catch_up().await;
    assert_eq!(
        f.points().await,
        vec![
            ("p1".into(), "d1".into(), ns(T0) + 5_000_000_000, fields(&[("heart_rate", 71.0)])),
            ("p1".into(), "d1".into(), ns(T0) + 60_000_000_000, fields(&[("bp_systolic", 121.0)])),
        ]
    );

    // Within one batch: an intermediate version's point goes too, and so does the point of
    // the version before the batch when the last version moved to another patient.
    f.store.update("Observation", "hr", heart_rate(72.0, "p1", Some("d1"), T0 + Duration::from_secs(10)), None).await.unwrap();
    f.store.update("Observation", "hr", heart_rate(73.0, "p3", Some("d1"), T0 + Duration::from_secs(20)), None).await.unwrap();
    f.store.delete("Observation", "bp", None).await.unwrap();
    f.store.create("Observation", "new", heart_rate(55.0, "p2", None, T0)).await.unwrap();
    f.catch_up().await;
    assert_eq!(
        f.points().await,
        vec![
            ("p2".into(), "".into(), ns(T0), fields(&[("heart_rate", 55.0)])),
            ("p3".into(), "d1".into(), ns(T0) + 20_000_000_000, fields(&[("heart_rate", 73.0)])),
        ]
    );
    f.assert_consistent().await;
}

#[tokio::test]
async fn series_statistics_equal_hand_computed_ones() {
    let Some(f) = fixture("series").await else { return };
    let at = |seconds: u64| T0 + Duration::from_secs(seconds);
    let readings = [(10, 60.0), (40, 70.0), (65, 80.0), (90, 90.0), (110, 100.0), (180, 50.0)];
    for (i, (seconds, value)) in readings.iter().enumerate() {
        f.store.create("Observation", &format!("hr{i}"), heart_rate(*value, "p'1", Some("d1"), at(*seconds))).await.unwrap();
    }
    // Not in the answers: another patient, another sign, and the end of the range (exclusive).
    f.store.create("Observation", "other", heart_rate(500.0, "p2", Some("d1"), at(40))).await.unwrap();
    f.store.create("Observation", "spo2", vital("59408-5", 97.0, "%", "p'1", Some("d1"), at(40))).await.unwrap();
    f.store.create("Observation", "late", heart_rate(500.0, "p'1", Some("d1"), at(3600))).await.unwrap();
    f.catch_up().await;

    let statistics = vec![
        Statistic::Count,
        Statistic::Sum,
        Statistic::Average,
        Statistic::Minimum,
        Statistic::Maximum,
        Statistic::Median,
        Statistic::Variance,
        Statistic::StdDev,
    ];
    let query = SeriesQuery { patient_id: "p'1".into(), kind: VitalSign::HeartRate, start: T0, end: at(3600), window: None, statistics: statistics.clone() };
    let whole = f.projection.series(&query).await.unwrap();
    assert_eq!(whole.len(), 1);
    assert_eq!((whole[0].start, whole[0].end), (T0, at(3600)));
    // 60, 70, 80, 90, 100, 50: mean 75, squared deviations 1750, sample variance 1750/5.
    let expected = [Some(6.0), Some(450.0), Some(75.0), Some(50.0), Some(100.0), Some(75.0), Some(350.0), Some(350f64.sqrt())];
    assert_close(&whole[0].values.iter().map(|v| v.value).collect::<Vec<_>>(), &expected);
    assert_eq!(whole[0].values.iter().map(|v| v.statistic).collect::<Vec<_>>(), statistics);
    // The same as the definitions the store-side answer uses.
    let values: Vec<f64> = readings.iter().map(|r| r.1).collect();
    let computed: Vec<Option<f64>> = compute_statistics(&values, &statistics).into_iter().map(|s| s.value).collect();
    assert_close(&computed, &expected);

    let windowed = f.projection.series(&SeriesQuery { window: Some(Duration::from_secs(60)), ..query.clone() }).await.unwrap();
    let bounds: Vec<_> = windowed.iter().map(|w| (w.start, w.end)).collect();
    assert_eq!(bounds, vec![(T0, at(60)), (at(60), at(120)), (at(180), at(240))]);
    assert_close(&windowed[0].values.iter().map(|v| v.value).collect::<Vec<_>>(), &[Some(2.0), Some(130.0), Some(65.0), Some(60.0), Some(70.0), Some(65.0), Some(50.0), Some(50f64.sqrt())]);
    assert_close(&windowed[1].values.iter().map(|v| v.value).collect::<Vec<_>>(), &[Some(3.0), Some(270.0), Some(90.0), Some(80.0), Some(100.0), Some(90.0), Some(100.0), Some(10.0)]);
    assert_close(&windowed[2].values.iter().map(|v| v.value).collect::<Vec<_>>(), &[Some(1.0), Some(50.0), Some(50.0), Some(50.0), Some(50.0), Some(50.0), None, None]);

    // Windows stay aligned to the epoch when the range is not.
    let shifted = f.projection.series(&SeriesQuery { start: at(30), end: at(100), window: Some(Duration::from_secs(60)), ..query.clone() }).await.unwrap();
    assert_eq!(shifted.iter().map(|w| (w.start, w.values[0].value)).collect::<Vec<_>>(), vec![(T0, Some(1.0)), (at(60), Some(2.0))]);

    // Nothing in range: one empty window without a window size (count and sum 0, as the
    // store answers), none with one.
    let empty = SeriesQuery { patient_id: "nobody".into(), ..query.clone() };
    let answer = f.projection.series(&empty).await.unwrap();
    assert_eq!(answer.len(), 1);
    assert_eq!(answer[0].values.iter().map(|v| v.value).collect::<Vec<_>>(), vec![Some(0.0), Some(0.0), None, None, None, None, None, None]);
    assert!(f.projection.series(&SeriesQuery { window: Some(Duration::from_secs(60)), ..empty }).await.unwrap().is_empty());
}

fn assert_close(got: &[Option<f64>], want: &[Option<f64>]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        match (g, w) {
            (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{got:?} vs {want:?}"),
            (None, None) => {}
            _ => panic!("{got:?} vs {want:?}"),
        }
    }
}

#[tokio::test]
async fn apply_after_the_wrong_checkpoint_writes_nothing() {
    let Some(f) = fixture("moved").await else { return };
    f.store.create("Observation", "hr1", heart_rate(72.0, "p1", None, T0)).await.unwrap();
    f.store.create("Observation", "hr2", heart_rate(73.0, "p1", None, T0 + Duration::from_secs(1))).await.unwrap();
    let batch = f.store.changes(1, 10).await.unwrap();
    match f.projection.apply(1, &batch).await {
        Err(ProjectionError::CheckpointMoved { expected: 1, found: 0 }) => {}
        other => panic!("expected CheckpointMoved, got {other:?}"),
    }
    assert_eq!(f.store.checkpoint("tsdb").await.unwrap(), None);
    // A question before anything was written: the database is created, the answer empty.
    let question = SeriesQuery {
        patient_id: "p1".into(),
        kind: VitalSign::HeartRate,
        start: T0,
        end: T0 + Duration::from_secs(60),
        window: None,
        statistics: vec![Statistic::Count, Statistic::Average],
    };
    let answer = f.projection.series(&question).await.unwrap();
    assert_eq!(answer[0].values.iter().map(|v| v.value).collect::<Vec<_>>(), vec![Some(0.0), None]);
    let answer = f.influx.query(f.database, r#"SELECT * FROM "vital_signs""#).await;
    assert!(answer["results"][0]["series"].is_null(), "{answer}");

    let all = f.store.changes(0, 10).await.unwrap();
    f.projection.apply(0, &all).await.unwrap();
    assert_eq!(f.store.checkpoint("tsdb").await.unwrap(), Some(2));
    assert_eq!(f.points().await.len(), 2);
}

#[tokio::test]
async fn reset_and_rebuild_is_consistent_and_resending_a_batch_leaves_no_duplicates() {
    let Some(f) = fixture("rebuild").await else { return };
    f.store.create("Observation", "hr", heart_rate(70.0, "p1", Some("d1"), T0)).await.unwrap();
    f.store.create("Observation", "bp", bp_panel(120.0, 80.0, "p1", "d1", T0)).await.unwrap();
    f.store.update("Observation", "hr", heart_rate(71.0, "p1", Some("d1"), T0 + Duration::from_secs(30)), None).await.unwrap();
    f.store.create("Observation", "hr2", heart_rate(90.0, "p2", None, T0)).await.unwrap();
    f.store.delete("Observation", "hr2", None).await.unwrap();
    let batch = f.store.changes(0, 100).await.unwrap();
    f.projection.apply(0, &batch).await.unwrap();
    let first = f.points().await;
    assert_eq!(first.len(), 2, "{first:?}");
    f.assert_consistent().await;

    // A crash after the writes but before the checkpoint: the batch comes again.
    f.store.save_checkpoint("tsdb", 0).await.unwrap();
    f.projection.apply(0, &batch).await.unwrap();
    assert_eq!(f.points().await, first);
    f.assert_consistent().await;

    f.projection.reset().await.unwrap();
    assert_eq!(f.projection.checkpoint().await.unwrap(), 0);
    assert!(f.points().await.is_empty());
    // Reset is fine on an empty measurement too.
    f.projection.reset().await.unwrap();
    let report = f.projection.check_consistency(f.store.as_ref()).await.unwrap();
    assert!(report.is_consistent(), "nothing applied, nothing expected: {report:?}");

    let mut progress = Vec::new();
    let head = f.store.last_seq().await.unwrap();
    f.follower().catch_up(head, |p| progress.push(p.checkpoint)).await.unwrap();
    assert_eq!(progress.last(), Some(&head));
    assert_eq!(f.points().await, first);
    let report = f.projection.check_consistency(f.store.as_ref()).await.unwrap();
    assert!(report.is_consistent(), "{report:#?}");
    assert_eq!((report.at_seq, report.resources_checked, report.rows_checked), (head, 2, 2));
}

#[tokio::test]
async fn the_checker_reports_points_changed_behind_its_back() {
    let Some(f) = fixture("checker").await else { return };
    f.store.create("Observation", "hr", heart_rate(70.0, "p1", Some("d1"), T0)).await.unwrap();
    f.store.create("Observation", "bp", bp_panel(120.0, 80.0, "p1", "d1", T0 + Duration::from_secs(60))).await.unwrap();
    f.catch_up().await;
    f.assert_consistent().await;

    let deleted = f.influx.query(f.database, r#"DELETE FROM "vital_signs" WHERE "patient_id" = 'p1' AND time = '2026-03-01T10:00:00Z'"#).await;
    assert!(deleted["results"][0]["error"].is_null(), "{deleted}");
    let report = f.projection.check_consistency(f.store.as_ref()).await.unwrap();
    assert_eq!(report.problems, vec!["missing point patient p1 device d1 at 2026-03-01T10:00:00Z (heart_rate)"]);

    // A wrong value and an extra point, written directly.
    let url = format!("{}/write?db={}&precision=ns", f.influx.url(), f.database);
    let lines = format!("vital_signs,device_id=d1,patient_id=p1 bp_systolic=999.0 {}\nvital_signs,patient_id=ghost heart_rate=1.0 {}", ns(T0) + 60_000_000_000, ns(T0));
    let response = reqwest::Client::new().post(url).body(lines).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let report = f.projection.check_consistency(f.store.as_ref()).await.unwrap();
    assert_eq!(report.problems.len(), 3, "{report:#?}");
    assert!(report.problems.iter().any(|p| p.starts_with("wrong value of bp_systolic at patient p1 device d1 at 2026-03-01T10:01:00Z: 999")), "{report:#?}");
    assert!(report.problems.iter().any(|p| p == "extra point patient ghost device - at 2026-03-01T10:00:00Z"), "{report:#?}");

    // A rebuild repairs it all.
    f.projection.reset().await.unwrap();
    f.catch_up().await;
    f.assert_consistent().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_rides_out_an_influxdb_restart() {
    let Some(mut f) = fixture("outage").await else { return };
    let options = FollowerOptions { batch_size: 3, poll_interval: Duration::from_millis(50), max_backoff: Duration::from_millis(500) };
    let follower = Follower::new(f.projection.clone(), f.store.clone(), options);
    let status = follower.status();
    let task = tokio::spawn(follower.run());

    for i in 0..5u64 {
        f.store.create("Observation", &format!("a{i}"), heart_rate(60.0 + i as f64, "p1", Some("d1"), T0 + Duration::from_secs(i))).await.unwrap();
    }
    wait_for(|| async { status.snapshot(f.store.as_ref()).await.checkpoint == 5 }).await;

    f.influx.stop();
    for i in 0..5u64 {
        f.store.create("Observation", &format!("b{i}"), heart_rate(80.0 + i as f64, "p2", None, T0 + Duration::from_secs(i))).await.unwrap();
    }
    f.store.update("Observation", "a0", heart_rate(99.0, "p1", Some("d1"), T0 + Duration::from_secs(100)), None).await.unwrap();
    f.store.delete("Observation", "a1", None).await.unwrap();
    wait_for(|| async { status.snapshot(f.store.as_ref()).await.last_error.is_some() }).await;
    assert!(status.snapshot(f.store.as_ref()).await.checkpoint < 12);

    f.influx.restart();
    for i in 5..8u64 {
        f.store.create("Observation", &format!("a{i}"), heart_rate(60.0 + i as f64, "p1", Some("d1"), T0 + Duration::from_secs(i))).await.unwrap();
    }
    let head = f.store.last_seq().await.unwrap();
    wait_for(|| async { status.snapshot(f.store.as_ref()).await.checkpoint == head }).await;
    task.abort();

    let snapshot = status.snapshot(f.store.as_ref()).await;
    assert_eq!(snapshot.last_error, None);
    let report = f.projection.check_consistency(f.store.as_ref()).await.unwrap();
    assert!(report.is_consistent(), "{report:#?}");
    assert_eq!(report.rows_checked, 12);
    assert_eq!(f.points().await.len(), 12);
}

/// Polls `condition` until it holds (for up to 60 s).
async fn wait_for<F, Fut>(condition: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(std::time::Instant::now() < deadline, "condition not met within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
