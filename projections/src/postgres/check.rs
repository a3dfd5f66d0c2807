//! The consistency check: the tables, read in one snapshot together with the checkpoint,
//! against the store's current resources at that checkpoint, mapped and cleaned exactly as
//! `apply.rs` writes them.

use std::collections::{BTreeMap, HashMap};

use fhir_store::ResourceStore;
use sqlx::postgres::PgPool;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::apply::{db_text, device_for_db, holds, measurement_rows, newest_holders, patient_for_db};
use super::schema::row_uuid;
use super::{to_u64, CHECKPOINT_NAME};
use crate::mapping::{DeviceRow, PatientRow, Projected};
use crate::state::Problems;
use crate::{current_resources, AlertRules, ConsistencyReport, Measurement, ProjectionError};

type PatientColumns =
    (String, Uuid, i64, Option<String>, Option<String>, Option<String>, Option<Date>, Option<String>, Option<String>, Option<String>, bool);
type DeviceColumns = (String, Uuid, i64, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>, String);
type MeasurementColumns =
    (String, i64, String, f64, String, OffsetDateTime, Option<Uuid>, Option<String>, Option<Uuid>, Option<String>);
type AlertColumns = (String, String, String, bool);

/// One measurement as compared: (type, value bits, measured_at, version, unit, patient id,
/// patient fhir id, device id, device fhir id).
type MeasurementKey = (String, u64, OffsetDateTime, i64, String, Option<Uuid>, Option<String>, Option<Uuid>, Option<String>);

pub(super) async fn check(pool: &PgPool, store: &dyn ResourceStore, rules: &AlertRules) -> Result<ConsistencyReport, ProjectionError> {
    // One snapshot: a follower applying meanwhile moves tables and checkpoint together.
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only").execute(&mut *tx).await?;
    let checkpoint: Option<i64> =
        sqlx::query_scalar("select seq from projection_checkpoints where name = $1").bind(CHECKPOINT_NAME).fetch_optional(&mut *tx).await?;
    let at_seq = checkpoint.map_or(0, to_u64);
    let patients: Vec<PatientColumns> = sqlx::query_as(
        "select fhir_id, id, fhir_version, mrn, family_name, given_names, birth_date, gender, phone, email, active from patients",
    )
    .fetch_all(&mut *tx)
    .await?;
    let devices: Vec<DeviceColumns> =
        sqlx::query_as("select fhir_id, id, fhir_version, serial_number, type, manufacturer, model, firmware_version, status from devices")
            .fetch_all(&mut *tx)
            .await?;
    let measurements: Vec<MeasurementColumns> = sqlx::query_as(
        "select observation_fhir_id, observation_version, type, value, unit, measured_at, patient_id, patient_fhir_id, \
             device_id, device_fhir_id from measurements",
    )
    .fetch_all(&mut *tx)
    .await?;
    let alerts: Vec<AlertColumns> =
        sqlx::query_as("select observation_fhir_id, measurement_type, severity, acknowledged from alerts").fetch_all(&mut *tx).await?;
    tx.commit().await?;

    let current = current_resources(store, at_seq).await?;
    let mut expected_patients = Vec::new();
    let mut expected_devices = Vec::new();
    let mut expected_observations: BTreeMap<String, Vec<Measurement>> = BTreeMap::new();
    for resource in current.values() {
        match &resource.projected {
            Projected::Patient(row) => expected_patients.push((resource.change.seq, patient_for_db(row.clone()))),
            Projected::Device(row) => expected_devices.push((resource.change.seq, device_for_db(row.clone()))),
            Projected::Observation { id, measurements, .. } => {
                expected_observations.insert(db_text(id).into_owned(), measurement_rows(measurements.clone()));
            }
            Projected::Deleted { .. } | Projected::Ignored => {}
        }
    }

    let mut problems = Problems::default();
    let rows_checked = patients.len() + devices.len() + measurements.len() + alerts.len();
    check_patients(&mut problems, patients, expected_patients);
    check_devices(&mut problems, devices, expected_devices);
    check_measurements(&mut problems, measurements, &expected_observations);
    check_alerts(&mut problems, alerts, &expected_observations, rules);

    Ok(ConsistencyReport {
        projection: "postgres".into(),
        at_seq,
        resources_checked: current.len(),
        rows_checked,
        problems: problems.finish(),
    })
}


fn check_patients(problems: &mut Problems, rows: Vec<PatientColumns>, expected: Vec<(u64, PatientRow)>) {
    let holders = newest_holders(expected.iter().map(|(seq, p)| (p.fhir_id.as_str(), *seq, p.mrn.as_deref())));
    let mut rows: HashMap<String, PatientColumns> = rows.into_iter().map(|r| (r.0.clone(), r)).collect();
    for (_, p) in &expected {
        let what = format!("Patient/{}", p.fhir_id);
        let Some(row) = rows.remove(&p.fhir_id) else {
            problems.push(format!("{what}: no row, store has version {}", p.fhir_version));
            continue;
        };
        let (_, id, version, mrn, family, given, birth_date, gender, phone, email, active) = row;
        if to_u64(version) != p.fhir_version {
            problems.push(format!("{what}: row has version {version}, store has {}", p.fhir_version));
            continue;
        }
        let mrn_expected = p.mrn.clone().filter(|_| holds(&holders, &p.fhir_id, p.mrn.as_deref()));
        problems.column(&what, "id", id, row_uuid("Patient", &p.fhir_id));
        problems.column(&what, "mrn", mrn, mrn_expected);
        problems.column(&what, "family_name", family, p.family_name.clone());
        problems.column(&what, "given_names", given, p.given_names.clone());
        problems.column(&what, "birth_date", birth_date, p.birth_date);
        problems.column(&what, "gender", gender.as_deref(), p.gender);
        problems.column(&what, "phone", phone, p.phone.clone());
        problems.column(&what, "email", email, p.email.clone());
        problems.column(&what, "active", active, p.active);
    }
    for (fhir_id, row) in rows {
        problems.push(format!("Patient/{fhir_id}: row (version {}) for a patient the store does not have", row.2));
    }
}

fn check_devices(problems: &mut Problems, rows: Vec<DeviceColumns>, expected: Vec<(u64, DeviceRow)>) {
    let holders = newest_holders(expected.iter().map(|(seq, d)| (d.fhir_id.as_str(), *seq, d.serial_number.as_deref())));
    let mut rows: HashMap<String, DeviceColumns> = rows.into_iter().map(|r| (r.0.clone(), r)).collect();
    for (_, d) in &expected {
        let what = format!("Device/{}", d.fhir_id);
        let Some(row) = rows.remove(&d.fhir_id) else {
            problems.push(format!("{what}: no row, store has version {}", d.fhir_version));
            continue;
        };
        let (_, id, version, serial, device_type, manufacturer, model, firmware, status) = row;
        if to_u64(version) != d.fhir_version {
            problems.push(format!("{what}: row has version {version}, store has {}", d.fhir_version));
            continue;
        }
        let serial_expected = d.serial_number.clone().filter(|_| holds(&holders, &d.fhir_id, d.serial_number.as_deref()));
        problems.column(&what, "id", id, row_uuid("Device", &d.fhir_id));
        problems.column(&what, "serial_number", serial, serial_expected);
        problems.column(&what, "type", device_type, d.device_type.clone());
        problems.column(&what, "manufacturer", manufacturer, d.manufacturer.clone());
        problems.column(&what, "model", model, d.model.clone());
        problems.column(&what, "firmware_version", firmware, d.firmware_version.clone());
        problems.column(&what, "status", status.as_str(), d.status.as_str());
    }
    for (fhir_id, row) in rows {
        problems.push(format!("Device/{fhir_id}: row (version {}) for a device the store does not have", row.2));
    }
}

fn check_measurements(problems: &mut Problems, rows: Vec<MeasurementColumns>, expected: &BTreeMap<String, Vec<Measurement>>) {
    let mut actual: BTreeMap<String, Vec<MeasurementKey>> = BTreeMap::new();
    for (observation, version, kind, value, unit, measured_at, patient_id, patient, device_id, device) in rows {
        actual.entry(observation).or_default().push((kind, value.to_bits(), measured_at, version, unit, patient_id, patient, device_id, device));
    }
    let mut duplicates = 0;
    for keys in actual.values() {
        let mut kinds: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        kinds.sort_unstable();
        let before = kinds.len();
        kinds.dedup();
        duplicates += before - kinds.len();
    }
    if duplicates > 0 {
        problems.push(format!("measurements: {duplicates} duplicate rows (same Observation and type)"));
    }
    for (observation, measurements) in expected {
        let mut want: Vec<MeasurementKey> = measurements
            .iter()
            .map(|m| {
                (
                    m.kind.name().to_string(),
                    m.value.to_bits(),
                    m.measured_at,
                    super::to_i64(m.observation_version),
                    m.kind.unit().to_string(),
                    m.patient_id.as_deref().map(|id| row_uuid("Patient", id)),
                    m.patient_id.clone(),
                    m.device_id.as_deref().map(|id| row_uuid("Device", id)),
                    m.device_id.clone(),
                )
            })
            .collect();
        let mut have = actual.remove(observation).unwrap_or_default();
        want.sort();
        have.sort();
        if want != have {
            problems.push(format!("Observation/{observation}: measurements are [{}], store gives [{}]", describe(&have), describe(&want)));
        }
    }
    for (observation, rows) in actual {
        problems.push(format!("Observation/{observation}: {} measurement rows for an Observation the store does not have", rows.len()));
    }
}

fn describe(keys: &[MeasurementKey]) -> String {
    let items: Vec<String> = keys
        .iter()
        .map(|(kind, bits, at, version, unit, _, patient, _, device)| {
            let at = at.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| at.to_string());
            let mut text = format!("{kind}={} {unit} at {at} v{version}", f64::from_bits(*bits));
            if let Some(patient) = patient {
                text.push_str(&format!(" Patient/{patient}"));
            }
            if let Some(device) = device {
                text.push_str(&format!(" Device/{device}"));
            }
            text
        })
        .collect();
    items.join(", ")
}

/// Every measurement the rules flag has its alert (acknowledged or not); every open alert
/// belongs to a flagged measurement, at the rule's severity. Acknowledged alerts may outlive
/// their value.
fn check_alerts(problems: &mut Problems, rows: Vec<AlertColumns>, expected: &BTreeMap<String, Vec<Measurement>>, rules: &AlertRules) {
    let mut want: BTreeMap<(String, String), &'static str> = BTreeMap::new();
    for (observation, measurements) in expected {
        for m in measurements {
            if let Some(rule) = rules.evaluate(m) {
                want.insert((observation.clone(), m.kind.name().to_string()), rule.severity.as_str());
            }
        }
    }
    for (observation, kind, severity, acknowledged) in rows {
        let key = (observation, kind);
        match want.remove(&key) {
            Some(wanted) if !acknowledged && wanted != severity => {
                problems.push(format!("Observation/{}: open {} alert is {severity}, the rules give {wanted}", key.0, key.1))
            }
            Some(_) => {}
            None if !acknowledged => {
                problems.push(format!("Observation/{}: open {severity} {} alert without a measurement the rules flag", key.0, key.1))
            }
            None => {}
        }
    }
    for ((observation, kind), severity) in want {
        problems.push(format!("Observation/{observation}: {kind} measurement flagged {severity} has no alert"));
    }
}
