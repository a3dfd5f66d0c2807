//! One batch of the change feed as bulk statements: the batch collapsed to the last change
//! of each resource, then one statement per table and kind of change (arrays through
//! `unnest`, never a statement per row), all in the caller's transaction. Also the rules
//! that decide what a column holds, shared with the consistency check.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use fhir_store::Change;
use sqlx::PgConnection;
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::schema::{row_uuid, Month};
use super::to_i64;
use crate::mapping::{project, DeviceRow, Measurement, PatientRow, Projected};
use crate::{AlertRules, ProjectionError};

/// What a batch does to the tables.
pub(super) struct Plan {
    /// Upserted rows, their MRN / serial number already given to the newest writer within
    /// the batch.
    patients: Vec<PatientRow>,
    deleted_patients: Vec<String>,
    devices: Vec<DeviceRow>,
    deleted_devices: Vec<String>,
    /// Observations changed or deleted: their earlier measurements and open alerts go.
    /// An Observation's first version has none, so it is left out (on a rebuild that spares
    /// nearly every delete).
    replaced_observations: Vec<String>,
    measurements: Vec<Measurement>,
    pub last_seq: u64,
}

impl Plan {
    /// Collapses `batch` to the last change of each (type, id). None for an empty batch.
    pub fn of(batch: &[Change]) -> Option<Plan> {
        let last_seq = batch.last()?.seq;
        let mut latest: BTreeMap<(String, String), (u64, u64, Projected)> = BTreeMap::new();
        for change in batch {
            let projected = project(change);
            if projected == Projected::Ignored {
                continue;
            }
            let key = (change.resource.resource_type.clone(), db_text(&change.resource.id).into_owned());
            latest.insert(key, (change.seq, change.resource.version, projected));
        }
        let mut plan = Plan {
            patients: Vec::new(),
            deleted_patients: Vec::new(),
            devices: Vec::new(),
            deleted_devices: Vec::new(),
            replaced_observations: Vec::new(),
            measurements: Vec::new(),
            last_seq,
        };
        let mut patient_seqs = Vec::new();
        let mut device_seqs = Vec::new();
        for ((resource_type, id), (seq, version, projected)) in latest {
            match projected {
                Projected::Patient(row) => {
                    patient_seqs.push(seq);
                    plan.patients.push(patient_for_db(row));
                }
                Projected::Device(row) => {
                    device_seqs.push(seq);
                    plan.devices.push(device_for_db(row));
                }
                Projected::Observation { measurements, .. } => {
                    plan.measurements.extend(measurement_rows(measurements));
                    // Versions count from 1 and survive deletes, so version 1 is the first
                    // change of this Observation the feed ever had.
                    if version > 1 {
                        plan.replaced_observations.push(id);
                    }
                }
                Projected::Deleted { .. } => match resource_type.as_str() {
                    "Patient" => plan.deleted_patients.push(id),
                    "Device" => plan.deleted_devices.push(id),
                    "Observation" => plan.replaced_observations.push(id),
                    _ => {}
                },
                Projected::Ignored => {}
            }
        }
        let holders = newest_holders(plan.patients.iter().zip(&patient_seqs).map(|(p, &seq)| (p.fhir_id.as_str(), seq, p.mrn.as_deref())));
        let keep: Vec<bool> = plan.patients.iter().map(|p| holds(&holders, &p.fhir_id, p.mrn.as_deref())).collect();
        for (patient, keep) in plan.patients.iter_mut().zip(keep) {
            if !keep {
                patient.mrn = None;
            }
        }
        let holders =
            newest_holders(plan.devices.iter().zip(&device_seqs).map(|(d, &seq)| (d.fhir_id.as_str(), seq, d.serial_number.as_deref())));
        let keep: Vec<bool> = plan.devices.iter().map(|d| holds(&holders, &d.fhir_id, d.serial_number.as_deref())).collect();
        for (device, keep) in plan.devices.iter_mut().zip(keep) {
            if !keep {
                device.serial_number = None;
            }
        }
        Some(plan)
    }

    /// The months the batch's measurements fall in.
    pub fn months(&self) -> BTreeSet<Month> {
        self.measurements.iter().map(|m| Month::of(m.measured_at)).collect()
    }

    /// Runs the batch's statements in the caller's transaction.
    pub async fn write(&self, tx: &mut PgConnection, rules: &AlertRules) -> Result<(), ProjectionError> {
        self.write_patients(tx).await?;
        self.write_devices(tx).await?;
        self.write_observations(tx, rules).await?;
        Ok(())
    }

    async fn write_patients(&self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        if !self.patients.is_empty() {
            let rows = &self.patients;
            // An MRN identifies one patient, so `mrn` is unique; when a patient is written
            // with an MRN another row holds, the newest writer takes it and the other row's
            // MRN becomes null (before the upsert, which would otherwise fail on the unique
            // key). The store stays the source of truth: both still carry it there.
            let (mrns, holders): (Vec<&str>, Vec<&str>) =
                rows.iter().filter_map(|p| Some((p.mrn.as_deref()?, p.fhir_id.as_str()))).unzip();
            if !mrns.is_empty() {
                sqlx::query(
                    "update patients p set mrn = null from unnest($1::text[], $2::text[]) as n(mrn, fhir_id) \
                     where p.mrn = n.mrn and p.fhir_id <> n.fhir_id",
                )
                .bind(&mrns)
                .bind(&holders)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "insert into patients (id, fhir_id, fhir_version, mrn, family_name, given_names, birth_date, gender, \
                     phone, email, active, created_at, updated_at) \
                 select id, fhir_id, fhir_version, mrn, family_name, given_names, birth_date, gender, phone, email, active, \
                     updated_at, updated_at \
                 from unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::date[], $8::text[], \
                     $9::text[], $10::text[], $11::bool[], $12::timestamptz[]) \
                     as u(id, fhir_id, fhir_version, mrn, family_name, given_names, birth_date, gender, phone, email, active, updated_at) \
                 on conflict (fhir_id) do update set fhir_version = excluded.fhir_version, mrn = excluded.mrn, \
                     family_name = excluded.family_name, given_names = excluded.given_names, birth_date = excluded.birth_date, \
                     gender = excluded.gender, phone = excluded.phone, email = excluded.email, active = excluded.active, \
                     updated_at = excluded.updated_at",
            )
            .bind(rows.iter().map(|p| row_uuid("Patient", &p.fhir_id)).collect::<Vec<Uuid>>())
            .bind(rows.iter().map(|p| p.fhir_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| to_i64(p.fhir_version)).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| p.mrn.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| p.family_name.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| p.given_names.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| p.birth_date).collect::<Vec<Option<Date>>>())
            .bind(rows.iter().map(|p| p.gender).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| p.phone.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| p.email.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| p.active).collect::<Vec<_>>())
            .bind(rows.iter().map(|p| p.last_updated).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !self.deleted_patients.is_empty() {
            sqlx::query("delete from patients where fhir_id = any($1)").bind(&self.deleted_patients).execute(&mut *tx).await?;
        }
        Ok(())
    }

    async fn write_devices(&self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        if !self.devices.is_empty() {
            let rows = &self.devices;
            // A serial number moves to its newest writer, like a patient's MRN.
            let (serials, holders): (Vec<&str>, Vec<&str>) =
                rows.iter().filter_map(|d| Some((d.serial_number.as_deref()?, d.fhir_id.as_str()))).unzip();
            if !serials.is_empty() {
                sqlx::query(
                    "update devices d set serial_number = null from unnest($1::text[], $2::text[]) as n(serial_number, fhir_id) \
                     where d.serial_number = n.serial_number and d.fhir_id <> n.fhir_id",
                )
                .bind(&serials)
                .bind(&holders)
                .execute(&mut *tx)
                .await?;
            }
            // A new row's last_seen comes from measurements that arrived before the device.
            sqlx::query(
                "insert into devices (id, fhir_id, fhir_version, serial_number, type, manufacturer, model, firmware_version, \
                     status, last_seen, created_at, updated_at) \
                 select u.id, u.fhir_id, u.fhir_version, u.serial_number, u.type, u.manufacturer, u.model, u.firmware_version, \
                     u.status, (select max(m.measured_at) from measurements m where m.device_id = u.id), u.updated_at, u.updated_at \
                 from unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
                     $9::text[], $10::timestamptz[]) \
                     as u(id, fhir_id, fhir_version, serial_number, type, manufacturer, model, firmware_version, status, updated_at) \
                 on conflict (fhir_id) do update set fhir_version = excluded.fhir_version, serial_number = excluded.serial_number, \
                     type = excluded.type, manufacturer = excluded.manufacturer, model = excluded.model, \
                     firmware_version = excluded.firmware_version, status = excluded.status, updated_at = excluded.updated_at",
            )
            .bind(rows.iter().map(|d| row_uuid("Device", &d.fhir_id)).collect::<Vec<Uuid>>())
            .bind(rows.iter().map(|d| d.fhir_id.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|d| to_i64(d.fhir_version)).collect::<Vec<_>>())
            .bind(rows.iter().map(|d| d.serial_number.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|d| d.device_type.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|d| d.manufacturer.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|d| d.model.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|d| d.firmware_version.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|d| d.status.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|d| d.last_updated).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        if !self.deleted_devices.is_empty() {
            sqlx::query("delete from devices where fhir_id = any($1)").bind(&self.deleted_devices).execute(&mut *tx).await?;
        }
        Ok(())
    }

    async fn write_observations(&self, tx: &mut PgConnection, rules: &AlertRules) -> Result<(), ProjectionError> {
        if !self.replaced_observations.is_empty() {
            // A join with the ids rather than `= any($1)`: should the planner not use the
            // index (fresh partitions have no statistics yet), a hash join still costs one
            // pass instead of one comparison per row and id.
            sqlx::query("delete from measurements m using unnest($1::text[]) as r(id) where m.observation_fhir_id = r.id")
                .bind(&self.replaced_observations)
                .execute(&mut *tx)
                .await?;
            // An acknowledged alert stays: someone has seen it, and the insert below keeps it.
            sqlx::query("delete from alerts a using unnest($1::text[]) as r(id) where a.observation_fhir_id = r.id and not a.acknowledged")
                .bind(&self.replaced_observations)
                .execute(&mut *tx)
                .await?;
        }
        let rows = &self.measurements;
        if rows.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "insert into measurements (observation_fhir_id, observation_version, type, value, unit, measured_at, \
                 patient_id, patient_fhir_id, device_id, device_fhir_id) \
             select * from unnest($1::text[], $2::int8[], $3::text[], $4::float8[], $5::text[], $6::timestamptz[], \
                 $7::uuid[], $8::text[], $9::uuid[], $10::text[]) \
             on conflict (observation_fhir_id, type, measured_at) do nothing",
        )
        .bind(rows.iter().map(|m| m.observation_id.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| to_i64(m.observation_version)).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.kind.name()).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.value).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.kind.unit()).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.measured_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.patient_id.as_deref().map(|id| row_uuid("Patient", id))).collect::<Vec<Option<Uuid>>>())
        .bind(rows.iter().map(|m| m.patient_id.as_deref()).collect::<Vec<_>>())
        .bind(rows.iter().map(|m| m.device_id.as_deref().map(|id| row_uuid("Device", id))).collect::<Vec<Option<Uuid>>>())
        .bind(rows.iter().map(|m| m.device_id.as_deref()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;

        let mut last_seen: HashMap<&str, OffsetDateTime> = HashMap::new();
        for m in rows {
            if let Some(device) = m.device_id.as_deref() {
                let seen = last_seen.entry(device).or_insert(m.measured_at);
                *seen = (*seen).max(m.measured_at);
            }
        }
        if !last_seen.is_empty() {
            let (devices, times): (Vec<&str>, Vec<OffsetDateTime>) = last_seen.into_iter().unzip();
            sqlx::query(
                "update devices d set last_seen = greatest(d.last_seen, u.seen) \
                 from unnest($1::text[], $2::timestamptz[]) as u(fhir_id, seen) where d.fhir_id = u.fhir_id",
            )
            .bind(&devices)
            .bind(&times)
            .execute(&mut *tx)
            .await?;
        }

        let alerts: Vec<(&Measurement, String, &'static str)> = rows
            .iter()
            .filter_map(|m| rules.evaluate(m).map(|rule| (m, rule.to_string(), rule.severity.as_str())))
            .collect();
        if !alerts.is_empty() {
            sqlx::query(
                "insert into alerts (observation_fhir_id, measurement_type, value, unit, measured_at, severity, rule, \
                     patient_id, patient_fhir_id, device_id, device_fhir_id) \
                 select * from unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], \
                     $8::uuid[], $9::text[], $10::uuid[], $11::text[]) \
                 on conflict (observation_fhir_id, measurement_type) do nothing",
            )
            .bind(alerts.iter().map(|(m, ..)| m.observation_id.as_str()).collect::<Vec<_>>())
            .bind(alerts.iter().map(|(m, ..)| m.kind.name()).collect::<Vec<_>>())
            .bind(alerts.iter().map(|(m, ..)| m.value).collect::<Vec<_>>())
            .bind(alerts.iter().map(|(m, ..)| m.kind.unit()).collect::<Vec<_>>())
            .bind(alerts.iter().map(|(m, ..)| m.measured_at).collect::<Vec<_>>())
            .bind(alerts.iter().map(|(_, _, severity)| *severity).collect::<Vec<_>>())
            .bind(alerts.iter().map(|(_, rule, _)| rule.as_str()).collect::<Vec<_>>())
            .bind(alerts.iter().map(|(m, ..)| m.patient_id.as_deref().map(|id| row_uuid("Patient", id))).collect::<Vec<Option<Uuid>>>())
            .bind(alerts.iter().map(|(m, ..)| m.patient_id.as_deref()).collect::<Vec<_>>())
            .bind(alerts.iter().map(|(m, ..)| m.device_id.as_deref().map(|id| row_uuid("Device", id))).collect::<Vec<Option<Uuid>>>())
            .bind(alerts.iter().map(|(m, ..)| m.device_id.as_deref()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

/// Text as PostgreSQL can hold it: `text` cannot contain NUL, which JSON strings can.
pub(super) fn db_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    }
}

fn db_opt(text: Option<String>) -> Option<String> {
    text.map(|t| db_text(&t).into_owned())
}

/// An instant as `timestamptz` holds it: UTC, whole microseconds (rounded down).
pub(super) fn db_time(at: OffsetDateTime) -> OffsetDateTime {
    let utc = at.to_offset(UtcOffset::UTC);
    utc.replace_nanosecond(utc.nanosecond() / 1000 * 1000).unwrap_or(utc)
}

/// A date `date` can hold (it starts in 4713 BC); others are left out.
fn db_date(date: Option<Date>) -> Option<Date> {
    date.filter(|d| d.year() > -4713)
}

/// The patient row as written: text without NUL, the date PostgreSQL can hold. (The MRN is
/// then decided by `newest_holders`.)
pub(super) fn patient_for_db(row: PatientRow) -> PatientRow {
    PatientRow {
        fhir_id: db_text(&row.fhir_id).into_owned(),
        mrn: db_opt(row.mrn),
        family_name: db_opt(row.family_name),
        given_names: db_opt(row.given_names),
        birth_date: db_date(row.birth_date),
        phone: db_opt(row.phone),
        email: db_opt(row.email),
        last_updated: db_time(row.last_updated),
        ..row
    }
}

pub(super) fn device_for_db(row: DeviceRow) -> DeviceRow {
    DeviceRow {
        fhir_id: db_text(&row.fhir_id).into_owned(),
        serial_number: db_opt(row.serial_number),
        device_type: db_opt(row.device_type),
        manufacturer: db_opt(row.manufacturer),
        model: db_opt(row.model),
        firmware_version: db_opt(row.firmware_version),
        last_updated: db_time(row.last_updated),
        ..row
    }
}

/// The `measurements` rows of one Observation version: one per type (the first value of a
/// type wins when a panel repeats a component, as the unique key allows one), cleaned for
/// PostgreSQL, leaving out instants no partition can hold (before year 0 in UTC).
pub(super) fn measurement_rows(measurements: Vec<Measurement>) -> Vec<Measurement> {
    let mut seen = BTreeSet::new();
    measurements
        .into_iter()
        .filter(|m| seen.insert(m.kind))
        .filter(|m| m.measured_at.to_offset(UtcOffset::UTC).year() >= 0)
        .map(|m| Measurement {
            observation_id: db_text(&m.observation_id).into_owned(),
            measured_at: db_time(m.measured_at),
            patient_id: db_opt(m.patient_id),
            device_id: db_opt(m.device_id),
            ..m
        })
        .collect()
}

/// Who holds each unique key (MRN, serial number) that rows claim: the row written last
/// (highest feed position).
pub(super) fn newest_holders<'a>(rows: impl Iterator<Item = (&'a str, u64, Option<&'a str>)>) -> HashMap<&'a str, (u64, &'a str)> {
    let mut holders: HashMap<&str, (u64, &str)> = HashMap::new();
    for (fhir_id, seq, key) in rows {
        let Some(key) = key else { continue };
        let holder = holders.entry(key).or_insert((seq, fhir_id));
        if seq > holder.0 {
            *holder = (seq, fhir_id);
        }
    }
    holders
}

/// Whether the row `fhir_id` keeps its claimed `key`.
pub(super) fn holds(holders: &HashMap<&str, (u64, &str)>, fhir_id: &str, key: Option<&str>) -> bool {
    key.is_some_and(|key| holders.get(key).is_some_and(|&(_, holder)| holder == fhir_id))
}

#[cfg(test)]
mod tests {
    use fhir_store::{ChangeKind, StoredResource};
    use serde_json::{json, Value};
    use time::macros::datetime;

    use super::*;

    fn change(seq: u64, resource_type: &str, id: &str, body: Option<Value>) -> Change {
        Change {
            seq,
            kind: if body.is_some() { ChangeKind::Update } else { ChangeKind::Delete },
            resource: StoredResource {
                resource_type: resource_type.into(),
                id: id.into(),
                version: seq,
                last_updated: OffsetDateTime::UNIX_EPOCH,
                deleted: body.is_none(),
                body: body.map(|b| serde_json::to_vec(&b).unwrap()),
                seq,
            },
        }
    }

    fn first_version(mut change: Change) -> Change {
        change.resource.version = 1;
        change
    }

    fn patient(mrn: &str) -> Option<Value> {
        Some(json!({"resourceType": "Patient", "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": mrn}]}))
    }

    #[test]
    fn a_batch_collapses_to_the_last_change_per_resource() {
        let batch = vec![
            change(1, "Patient", "p1", patient("A")),
            change(2, "Patient", "p2", patient("B")),
            change(3, "Patient", "p1", None),
            change(4, "Patient", "p2", patient("C")),
            change(5, "Encounter", "e1", Some(json!({"resourceType": "Encounter"}))),
            change(6, "Observation", "o1", None),
            first_version(change(7, "Observation", "o2", Some(json!({"resourceType": "Observation"})))),
        ];
        let plan = Plan::of(&batch).unwrap();
        assert_eq!(plan.last_seq, 7);
        assert_eq!(plan.deleted_patients, vec!["p1".to_string()]);
        assert_eq!(plan.patients.iter().map(|p| (p.fhir_id.as_str(), p.mrn.as_deref())).collect::<Vec<_>>(), vec![("p2", Some("C"))]);
        assert_eq!(plan.replaced_observations, vec!["o1".to_string()]);
        // o2's first version replaces nothing.
        assert!(Plan::of(&[]).is_none());
    }

    #[test]
    fn a_shared_mrn_goes_to_the_newest_writer_of_the_batch() {
        let batch = vec![change(1, "Patient", "p2", patient("A")), change(2, "Patient", "p1", patient("A"))];
        let plan = Plan::of(&batch).unwrap();
        let mrns: Vec<_> = plan.patients.iter().map(|p| (p.fhir_id.as_str(), p.mrn.as_deref())).collect();
        assert_eq!(mrns, vec![("p1", Some("A")), ("p2", None)]);
    }

    #[test]
    fn column_values_are_made_storable() {
        assert_eq!(db_text("a\0b"), "ab");
        assert_eq!(db_time(datetime!(2026-03-01 10:00:00.123456789 +01:00)), datetime!(2026-03-01 09:00:00.123456 UTC));
        let m = |kind, value| Measurement {
            observation_id: "o".into(),
            observation_version: 1,
            kind,
            value,
            measured_at: datetime!(2026-03-01 10:00 UTC),
            patient_id: None,
            device_id: None,
        };
        use crate::VitalSign::*;
        let rows = measurement_rows(vec![m(BpSystolic, 120.0), m(BpSystolic, 121.0), m(BpDiastolic, 80.0)]);
        assert_eq!(rows.iter().map(|r| (r.kind, r.value)).collect::<Vec<_>>(), vec![(BpSystolic, 120.0), (BpDiastolic, 80.0)]);
        let mut ancient = m(HeartRate, 60.0);
        ancient.measured_at = datetime!(0000-01-01 00:30 +01:00);
        assert!(measurement_rows(vec![ancient]).is_empty());
    }
}
