//! The FHIR mirror: keeps one ImagingStudy per study in the FHIR store, linked to its Patient.
//!
//! One task drains the index's queue of pending studies (`Index::pending_studies`): for each
//! study it reads the index snapshot, finds or creates the Patient, writes the ImagingStudy and
//! only then clears the study's pending mark up to the generation it read. The mark lives in
//! the index, so a crash, a failed write or a store outage loses nothing: the study stays
//! pending, is retried with backoff, and is re-synced at the next start.
//!
//! Bursts are coalesced twice: the queue holds one entry per study whatever the number of
//! instances, and the task waits `DEBOUNCE` after a wake before draining, so a study arriving
//! instance by instance gets a few ImagingStudy versions, not one per instance. A rewrite that
//! would change nothing is skipped.
//!
//! Finding the Patient of a study with a PatientID, in order:
//! 1. `Patient?identifier=<system>|<PatientID>`, where the system is the Issuer of Patient ID
//!    when it is a URI or an OID (`urn:oid:`), else the configured system (a free-text issuer
//!    is kept as the created Patient's `identifier.assigner.display`). Several matches are
//!    duplicates of one person (same system, same value): the oldest is linked, with a warning.
//! 2. `Patient?identifier=<PatientID>` in any system: exactly one match is linked (a Patient
//!    registered by the EHR under its own MRN system). Several matches may be different people
//!    of different issuers, so none is picked.
//! 3. Otherwise a Patient is created with that identifier, name, birth date and gender, by a
//!    conditional create (`If-None-Exist: identifier=<system>|<PatientID>`) under an id derived
//!    from the identifier, so concurrent mirrors converge on one Patient.
//!
//! An existing Patient is linked, never modified: its demographics belong to the EHR feed.
//! A study without a PatientID still needs a subject (R4 `ImagingStudy.subject` is 1..1): it
//! gets a Patient of its own, with the DICOM name/birth date/sex and no identifier, under an id
//! derived from the StudyInstanceUID, for someone to merge once the patient is known.
//!
//! The mirror owns the ImagingStudy elements the mapper writes; anything else put on the
//! resource over REST (basedOn, referrer, notes, meta tags…) is kept on rewrite, under the
//! version read (a concurrent change is re-read and merged again).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fhir_model::{ModelError, SearchQuery};
use fhir_store::{ResourceStore, StoreError, StoredResource, WriteOp};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::imaging_study::{fhir_date, imaging_study_id, imaging_study_resource};
use crate::index::Index;
use crate::{DicomStoreError, StudyRecord, StudySnapshot};

/// How long the task waits after a wake before draining, so a burst of instances of one study
/// becomes one write.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// Studies taken from the queue per pass.
const BATCH: u32 = 64;
/// Backoff of a failing study (or of the index): doubles from the first to the last.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(300);
/// Re-reads of an ImagingStudy that keeps changing under the mirror before the study is
/// retried later.
const WRITE_ATTEMPTS: usize = 5;

/// How ImagingStudies are written.
#[derive(Clone, Debug)]
pub(crate) struct MirrorConfig {
    /// The public DICOMweb base URL, the address of the ImagingStudy's endpoint.
    pub(crate) dicomweb_base_url: String,
    /// The identifier system of PatientIDs without a usable Issuer of Patient ID.
    pub(crate) patient_identifier_system: String,
}

/// The running mirror. Dropping it stops the task; whatever was pending stays pending in the
/// index for the next start.
pub(crate) struct FhirMirror {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

impl FhirMirror {
    /// Starts the mirror task on the current tokio runtime. It first drains whatever an earlier
    /// run left pending.
    pub(crate) fn start(index: Arc<Index>, store: Arc<dyn ResourceStore>, config: MirrorConfig) -> FhirMirror {
        Self::start_with(index, store, config)
    }

    fn start_with(queue: Arc<dyn StudyQueue>, store: Arc<dyn ResourceStore>, config: MirrorConfig) -> FhirMirror {
        let wake = Arc::new(Notify::new());
        let mirror = Mirror { queue, store, config, retries: HashMap::new() };
        let task = tokio::spawn(mirror.run(wake.clone()));
        FhirMirror { wake, task }
    }

    /// Tells the mirror a study became pending (call after each indexed instance). Cheap; many
    /// wakes in a burst make one pass.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Drop for FhirMirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The index as the mirror uses it: the pending queue and study snapshots.
#[async_trait]
trait StudyQueue: Send + Sync + 'static {
    async fn pending_studies(&self, limit: u32) -> Result<Vec<(String, i64)>, DicomStoreError>;
    async fn study_snapshot(&self, study_uid: &str) -> Result<Option<StudySnapshot>, DicomStoreError>;
    async fn clear_pending(&self, study_uid: &str, generation: i64) -> Result<(), DicomStoreError>;
}

#[async_trait]
impl StudyQueue for Index {
    async fn pending_studies(&self, limit: u32) -> Result<Vec<(String, i64)>, DicomStoreError> {
        Index::pending_studies(self, limit).await
    }

    async fn study_snapshot(&self, study_uid: &str) -> Result<Option<StudySnapshot>, DicomStoreError> {
        Index::study_snapshot(self, study_uid).await
    }

    async fn clear_pending(&self, study_uid: &str, generation: i64) -> Result<(), DicomStoreError> {
        Index::clear_pending(self, study_uid, generation).await
    }
}

/// Why one study could not be mirrored this time.
#[derive(Debug, thiserror::Error)]
enum MirrorError {
    #[error(transparent)]
    Index(#[from] DicomStoreError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A mapped resource fails validation: a mapping bug, retried with backoff until fixed.
    #[error("mapped {resource_type} is not valid: {source}")]
    Invalid { resource_type: &'static str, source: ModelError },
    #[error("ImagingStudy/{0} kept changing while being written")]
    Contended(String),
}

/// When a failing study is tried again.
struct Retry {
    attempts: u32,
    at: Instant,
}

struct Mirror {
    queue: Arc<dyn StudyQueue>,
    store: Arc<dyn ResourceStore>,
    config: MirrorConfig,
    retries: HashMap<String, Retry>,
}

impl Mirror {
    async fn run(mut self, wake: Arc<Notify>) {
        let mut index_failures = 0u32;
        let mut ready = true;
        loop {
            if !ready {
                match self.retries.values().map(|r| r.at).min() {
                    Some(at) => {
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = tokio::time::sleep_until(at) => {}
                        }
                    }
                    None => wake.notified().await,
                }
            }
            tokio::time::sleep(DEBOUNCE).await;
            match self.pass().await {
                Ok(more) => {
                    index_failures = 0;
                    ready = more;
                }
                Err(error) => {
                    index_failures = index_failures.saturating_add(1);
                    let delay = backoff(index_failures);
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "fhir mirror cannot read the pending studies");
                    tokio::time::sleep(delay).await;
                    ready = true;
                }
            }
        }
    }

    /// Mirrors the pending studies not waiting for a retry. Fails only when the queue itself
    /// cannot be read or updated; a study that fails is scheduled for a retry. True when more
    /// studies may be waiting.
    async fn pass(&mut self) -> Result<bool, DicomStoreError> {
        // Studies waiting for a retry are at the head of the queue (oldest first); asking for
        // that many more keeps them from starving the rest.
        let limit = BATCH.saturating_add(u32::try_from(self.retries.len()).unwrap_or(u32::MAX)).min(10_000);
        let pending = self.queue.pending_studies(limit).await?;
        self.retries.retain(|uid, _| pending.iter().any(|(pending_uid, _)| pending_uid == uid));
        let now = Instant::now();
        let mut taken = 0u32;
        for (study_uid, generation) in pending {
            if self.retries.get(&study_uid).is_some_and(|r| r.at > now) {
                continue;
            }
            taken += 1;
            match self.mirror_study(&study_uid).await {
                Ok(()) => {
                    self.queue.clear_pending(&study_uid, generation).await?;
                    self.retries.remove(&study_uid);
                }
                Err(error) => {
                    let retry = self.retries.entry(study_uid.clone()).or_insert(Retry { attempts: 0, at: now });
                    retry.attempts = retry.attempts.saturating_add(1);
                    let delay = backoff(retry.attempts);
                    retry.at = Instant::now() + delay;
                    tracing::warn!(
                        study_uid = %study_uid,
                        attempts = retry.attempts,
                        retry_in_ms = delay.as_millis() as u64,
                        error = %error,
                        "imaging study not mirrored"
                    );
                }
            }
        }
        Ok(taken >= BATCH)
    }

    async fn mirror_study(&self, study_uid: &str) -> Result<(), MirrorError> {
        // A study whose instances are all gone has nothing to show; its ImagingStudy (if any)
        // is left as it was.
        let Some(snapshot) = self.queue.study_snapshot(study_uid).await? else {
            return Ok(());
        };
        let patient = find_or_create_patient(self.store.as_ref(), &self.config, &snapshot.study).await?;
        let body = imaging_study_resource(&snapshot, &format!("Patient/{patient}"), &self.config.dicomweb_base_url);
        let written = write_imaging_study(self.store.as_ref(), body).await?;
        tracing::debug!(
            study_uid = %study_uid,
            imaging_study = %imaging_study_id(study_uid),
            version = ?written.map(|w| w.version),
            patient = %patient,
            "imaging study mirrored"
        );
        Ok(())
    }
}

fn backoff(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(factor).min(LAST_RETRY)
}

/// The id of the study's Patient, found or created as the module comment says.
async fn find_or_create_patient(
    store: &dyn ResourceStore,
    config: &MirrorConfig,
    study: &StudyRecord,
) -> Result<String, MirrorError> {
    let patient_id = study.patient_id.trim();
    if patient_id.is_empty() {
        return study_own_patient(store, study).await;
    }
    let issuer = PatientIssuer::of(&study.issuer_of_patient_id, &config.patient_identifier_system);
    let exact = format!("{}|{}", escape(&issuer.system), escape(patient_id));

    let matches = search_patients(store, &exact).await?;
    if let Some(first) = matches.first() {
        if matches.len() > 1 {
            tracing::warn!(identifier = %exact, patient = %first.id, "several patients have this identifier, linking the oldest");
        }
        return Ok(first.id.clone());
    }

    let any_system = search_patients(store, &escape(patient_id)).await?;
    match any_system.as_slice() {
        [only] => return Ok(only.id.clone()),
        [] => {}
        several => tracing::warn!(
            patient_id = %patient_id,
            matches = several.len(),
            "several patients in other identifier systems have this patient id, creating one in {}",
            issuer.system
        ),
    }

    let id = derived_id(&format!("Patient?identifier={}|{patient_id}", issuer.system));
    let mut identifier = Map::new();
    identifier.insert("use".into(), json!("usual"));
    if !issuer.system.is_empty() {
        identifier.insert("system".into(), json!(issuer.system));
    }
    identifier.insert("value".into(), json!(patient_id));
    if let Some(assigner) = &issuer.assigner {
        identifier.insert("assigner".into(), json!({ "display": assigner }));
    }
    let body = patient_resource(study, Some(Value::Object(identifier)));
    validate("Patient", &body)?;
    let op = WriteOp::Create { resource_type: "Patient".into(), id: id.clone(), body: body.clone(), if_none_exist: Some(identifier_query(&exact)?) };
    match store.write(vec![op]).await {
        Ok(outcomes) => Ok(outcomes.first().and_then(|o| o.resource()).map_or(id, |r| r.id.clone())),
        // Our id is taken by a live Patient that no longer carries the identifier (edited over
        // REST): it is still the one the mirror made for this identifier.
        Err(StoreError::AlreadyExists { .. }) => Ok(id),
        Err(error) => Err(error.into()),
    }
}

/// The Patient of a study without PatientID: one per study, never shared.
async fn study_own_patient(store: &dyn ResourceStore, study: &StudyRecord) -> Result<String, MirrorError> {
    let id = derived_id(&format!("Patient?study={}", study.study_instance_uid.trim()));
    if store.read("Patient", &id).await?.is_some_and(|p| !p.deleted) {
        return Ok(id);
    }
    let body = patient_resource(study, None);
    validate("Patient", &body)?;
    match store.create("Patient", &id, body).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(id),
        Err(error) => Err(error.into()),
    }
}

/// The identifier system of a study's PatientID.
struct PatientIssuer {
    system: String,
    /// A free-text issuer, kept as `identifier.assigner.display`.
    assigner: Option<String>,
}

impl PatientIssuer {
    fn of(issuer_of_patient_id: &str, default_system: &str) -> PatientIssuer {
        let issuer = issuer_of_patient_id.trim();
        let default = PatientIssuer { system: default_system.trim().to_string(), assigner: None };
        if issuer.is_empty() {
            default
        } else if is_oid(issuer) {
            PatientIssuer { system: format!("urn:oid:{issuer}"), assigner: None }
        } else if is_absolute_uri(issuer) {
            PatientIssuer { system: issuer.to_string(), assigner: None }
        } else {
            PatientIssuer { assigner: Some(issuer.to_string()), ..default }
        }
    }
}

fn is_oid(value: &str) -> bool {
    value.contains('.')
        && value.split('.').all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()) && (arc == "0" || !arc.starts_with('0')))
}

/// `scheme:rest` with an RFC 3986 scheme and no whitespace (so also `urn:…`).
fn is_absolute_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else { return false };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !value.chars().any(char::is_whitespace)
}

/// Escapes a token part for a FHIR search value (`\`, `|`, `,`, `$`).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | '|' | ',' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn identifier_query(token: &str) -> Result<SearchQuery, MirrorError> {
    let params = vec![("identifier".to_string(), token.to_string()), ("_count".to_string(), "2".to_string())];
    fhir_model::parse_search(Some("Patient"), &params, true)
        .map_err(|e| MirrorError::Store(StoreError::InvalidQuery(format!("identifier {token:?}: {e}"))))
}

/// Up to two Patients with this identifier token, oldest first.
async fn search_patients(store: &dyn ResourceStore, token: &str) -> Result<Vec<StoredResource>, MirrorError> {
    Ok(store.search(&identifier_query(token)?).await?.resources)
}

/// A FHIR id from a key: UUID v5 in the URL namespace of `tessera:dicom:<key>`.
fn derived_id(key: &str) -> String {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("tessera:dicom:{key}").as_bytes()).to_string()
}

/// A Patient with `identifier` and what DICOM says of the person: name, birth date, sex.
fn patient_resource(study: &StudyRecord, identifier: Option<Value>) -> Value {
    let mut patient = Map::new();
    patient.insert("resourceType".into(), json!("Patient"));
    if let Some(identifier) = identifier {
        patient.insert("identifier".into(), json!([identifier]));
    }
    if let Some(name) = human_name(&study.patient_name) {
        patient.insert("name".into(), json!([name]));
    }
    if let Some(gender) = gender(&study.patient_sex) {
        patient.insert("gender".into(), json!(gender));
    }
    if let Some(birth_date) = fhir_date(&study.patient_birth_date) {
        patient.insert("birthDate".into(), json!(birth_date));
    }
    Value::Object(patient)
}

/// A DICOM PN (`Family^Given^Middle^Prefix^Suffix`, alphabetic group first of
/// `alphabetic=ideographic=phonetic`) as a HumanName; None when it has no name part.
fn human_name(person_name: &str) -> Option<Value> {
    let group = person_name.split('=').map(str::trim).find(|g| !g.trim_matches('^').trim().is_empty())?;
    let parts: Vec<&str> = group.split('^').map(str::trim).collect();
    let part = |i: usize| parts.get(i).copied().filter(|p| !p.is_empty());
    let mut name = Map::new();
    name.insert("use".into(), json!("official"));
    if let Some(family) = part(0) {
        name.insert("family".into(), json!(family));
    }
    let given: Vec<&str> = [part(1), part(2)].into_iter().flatten().collect();
    if !given.is_empty() {
        name.insert("given".into(), json!(given));
    }
    if let Some(prefix) = part(3) {
        name.insert("prefix".into(), json!([prefix]));
    }
    if let Some(suffix) = part(4) {
        name.insert("suffix".into(), json!([suffix]));
    }
    Some(Value::Object(name))
}

/// DICOM Patient's Sex (M, F, O) as FHIR administrative gender; anything else has none.
fn gender(patient_sex: &str) -> Option<&'static str> {
    match patient_sex.trim().to_ascii_uppercase().as_str() {
        "M" => Some("male"),
        "F" => Some("female"),
        "O" => Some("other"),
        _ => None,
    }
}

fn validate(resource_type: &'static str, body: &Value) -> Result<(), MirrorError> {
    fhir_model::validate(body, OffsetDateTime::now_utc()).map_err(|source| MirrorError::Invalid { resource_type, source })
}

/// Elements of an ImagingStudy the mapper writes; every other element of a stored version is
/// someone else's and is kept.
const OWNED: &[&str] = &[
    "resourceType",
    "id",
    "meta",
    "contained",
    "identifier",
    "status",
    "modality",
    "subject",
    "started",
    "endpoint",
    "numberOfSeries",
    "numberOfInstances",
    "description",
    "series",
];

/// Creates or updates the ImagingStudy `mapped`, merged with the stored version, under the
/// version read. Returns the version written, or None when the stored one already said the
/// same.
async fn write_imaging_study(store: &dyn ResourceStore, mapped: Value) -> Result<Option<StoredResource>, MirrorError> {
    let id = mapped["id"].as_str().unwrap_or_default().to_string();
    validate("ImagingStudy", &mapped)?;
    for _ in 0..WRITE_ATTEMPTS {
        let current = store.read("ImagingStudy", &id).await?;
        let stored_body = current.as_ref().and_then(|c| c.body.as_deref()).and_then(|b| serde_json::from_slice::<Value>(b).ok());
        let op = match (&current, stored_body) {
            (Some(current), Some(stored)) if !current.deleted => {
                let merged = merge(&mapped, &stored);
                if without_version(&stored) == merged {
                    return Ok(None);
                }
                validate("ImagingStudy", &merged)?;
                WriteOp::Update { resource_type: "ImagingStudy".into(), id: id.clone(), body: merged, expected_version: Some(current.version) }
            }
            (Some(current), _) => {
                WriteOp::Update { resource_type: "ImagingStudy".into(), id: id.clone(), body: mapped.clone(), expected_version: Some(current.version) }
            }
            (None, _) => WriteOp::Create { resource_type: "ImagingStudy".into(), id: id.clone(), body: mapped.clone(), if_none_exist: None },
        };
        match store.write(vec![op]).await {
            Ok(outcomes) => return Ok(outcomes.first().and_then(|o| o.resource()).cloned()),
            Err(StoreError::VersionConflict { .. } | StoreError::AlreadyExists { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(MirrorError::Contended(id))
}

/// `mapped` plus what of `stored` the mirror does not own (and `stored`'s meta, without the
/// store's own fields).
fn merge(mapped: &Value, stored: &Value) -> Value {
    let mut merged = mapped.as_object().cloned().unwrap_or_default();
    if let Some(Value::Object(meta)) = without_version(stored).get("meta") {
        if !meta.is_empty() {
            merged.insert("meta".into(), Value::Object(meta.clone()));
        }
    }
    if let Some(stored) = stored.as_object() {
        for (key, value) in stored {
            if !OWNED.contains(&key.as_str()) {
                merged.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(merged)
}

/// A stored body without `meta.versionId`/`meta.lastUpdated` (and without `meta` if nothing
/// else was in it), to compare with what the mirror would write.
fn without_version(stored: &Value) -> Value {
    let mut body = stored.clone();
    if let Some(object) = body.as_object_mut() {
        if let Some(Value::Object(meta)) = object.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if meta.is_empty() {
                object.remove("meta");
            }
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use fhir_store::{SqliteStore, SqliteStoreOptions};

    use super::*;
    use crate::object_store::ObjectKey;
    use crate::{IndexedInstance, SeriesRecord};

    fn config() -> MirrorConfig {
        MirrorConfig {
            dicomweb_base_url: "http://tessera.test/dicomweb".into(),
            patient_identifier_system: "urn:tessera:dicom:patient-id".into(),
        }
    }

    fn study(uid: &str, patient_id: &str, issuer: &str) -> StudyRecord {
        StudyRecord {
            patient_id: patient_id.into(),
            issuer_of_patient_id: issuer.into(),
            patient_name: "Doe^Jane^Q^Dr^III".into(),
            patient_birth_date: "19800214".into(),
            patient_sex: "F".into(),
            study_instance_uid: uid.into(),
            study_date: "20240315".into(),
            study_time: "101500".into(),
            accession_number: "ACC1".into(),
            study_description: "CT CHEST".into(),
            study_id: "1".into(),
            referring_physician_name: String::new(),
            modalities_in_study: vec!["CT".into()],
            number_of_series: 0,
            number_of_instances: 0,
        }
    }

    fn snapshot(uid: &str, patient_id: &str, series_count: usize, instances_per_series: usize) -> StudySnapshot {
        let record = study(uid, patient_id, "");
        let series = (0..series_count)
            .map(|s| {
                let series_uid = format!("{uid}.{}", s + 1);
                let series = SeriesRecord {
                    study_instance_uid: uid.into(),
                    series_instance_uid: series_uid.clone(),
                    modality: "CT".into(),
                    series_number: Some(s as i64 + 1),
                    series_description: String::new(),
                    body_part_examined: "CHEST".into(),
                    number_of_instances: instances_per_series as i64,
                };
                let instances = (0..instances_per_series)
                    .map(|i| instance(&record, &series_uid, &format!("{series_uid}.{}", i + 1), i as i64 + 1))
                    .collect();
                (series, instances)
            })
            .collect();
        StudySnapshot { study: record, series }
    }

    fn instance(study: &StudyRecord, series_uid: &str, sop_uid: &str, number: i64) -> IndexedInstance {
        IndexedInstance {
            patient_id: study.patient_id.clone(),
            issuer_of_patient_id: study.issuer_of_patient_id.clone(),
            patient_name: study.patient_name.clone(),
            patient_birth_date: study.patient_birth_date.clone(),
            patient_sex: study.patient_sex.clone(),
            study_instance_uid: study.study_instance_uid.clone(),
            study_date: study.study_date.clone(),
            study_time: study.study_time.clone(),
            accession_number: study.accession_number.clone(),
            study_description: study.study_description.clone(),
            study_id: study.study_id.clone(),
            referring_physician_name: String::new(),
            series_instance_uid: series_uid.into(),
            modality: "CT".into(),
            series_number: Some(1),
            series_description: String::new(),
            body_part_examined: "CHEST".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: sop_uid.into(),
            instance_number: Some(number),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            rows: Some(512),
            columns: Some(512),
            number_of_frames: None,
            object_key: ObjectKey::new(format!("dicom/x/{sop_uid}.dcm")),
            sha256: "0".repeat(64),
            size: 1,
            stored_at: "2024-03-15T10:15:00Z".into(),
        }
    }

    async fn store() -> (Arc<dyn ResourceStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(SqliteStoreOptions::new(dir.path())).await.expect("open store");
        (Arc::new(store), dir)
    }

    async fn patients(store: &dyn ResourceStore) -> Vec<Value> {
        let mut query = SearchQuery::all(Some("Patient"));
        query.count = 100;
        let page = store.search(&query).await.expect("search");
        page.resources.iter().map(|r| serde_json::from_slice(r.body.as_deref().expect("body")).expect("json")).collect()
    }

    async fn read(store: &dyn ResourceStore, resource_type: &str, id: &str) -> (u64, Value) {
        let stored = store.read(resource_type, id).await.expect("read").unwrap_or_else(|| panic!("no {resource_type}/{id}"));
        (stored.version, serde_json::from_slice(stored.body.as_deref().expect("body")).expect("json"))
    }

    #[tokio::test]
    async fn creates_a_patient_once_from_the_dicom_demographics() {
        let (store, _dir) = store().await;
        let record = study("1.2.3", "MRN-7", "");
        let id = find_or_create_patient(store.as_ref(), &config(), &record).await.expect("patient");
        let again = find_or_create_patient(store.as_ref(), &config(), &record).await.expect("patient");
        assert_eq!(id, again);
        let all = patients(store.as_ref()).await;
        assert_eq!(all.len(), 1);
        let patient = &all[0];
        assert_eq!(patient["identifier"], json!([{ "use": "usual", "system": "urn:tessera:dicom:patient-id", "value": "MRN-7" }]));
        assert_eq!(
            patient["name"],
            json!([{ "use": "official", "family": "Doe", "given": ["Jane", "Q"], "prefix": ["Dr"], "suffix": ["III"] }])
        );
        assert_eq!(patient["birthDate"], "1980-02-14");
        assert_eq!(patient["gender"], "female");
    }

    #[tokio::test]
    async fn links_an_existing_patient_in_the_configured_system() {
        let (store, _dir) = store().await;
        let existing = json!({ "resourceType": "Patient", "identifier": [{ "system": "urn:tessera:dicom:patient-id", "value": "MRN|7" }] });
        store.create("Patient", "ehr-1", existing).await.expect("create");
        let id = find_or_create_patient(store.as_ref(), &config(), &study("1.2.3", "MRN|7", "")).await.expect("patient");
        assert_eq!(id, "ehr-1");
        assert_eq!(patients(store.as_ref()).await.len(), 1);
    }

    #[tokio::test]
    async fn links_one_patient_of_another_system_but_not_one_of_several() {
        let (store, _dir) = store().await;
        let with = |system: &str| json!({ "resourceType": "Patient", "identifier": [{ "system": system, "value": "4711" }] });
        store.create("Patient", "ehr-1", with("urn:oid:1.2.36.146.595.217.0.1")).await.expect("create");
        let id = find_or_create_patient(store.as_ref(), &config(), &study("1.2.3", "4711", "")).await.expect("patient");
        assert_eq!(id, "ehr-1");

        store.create("Patient", "other-1", with("http://other.example/mrn")).await.expect("create");
        let id = find_or_create_patient(store.as_ref(), &config(), &study("1.2.4", "4711", "")).await.expect("patient");
        assert!(id != "ehr-1" && id != "other-1", "several matches in other systems must not be picked");
        assert_eq!(patients(store.as_ref()).await.len(), 3);
        // The created one is found by its exact identifier from then on.
        let again = find_or_create_patient(store.as_ref(), &config(), &study("1.2.5", "4711", "")).await.expect("patient");
        assert_eq!(again, id);
    }

    #[tokio::test]
    async fn the_issuer_of_patient_id_names_the_system() {
        let (store, _dir) = store().await;
        for (issuer, system, assigner) in [
            ("1.2.840.99.1", "urn:oid:1.2.840.99.1", None),
            ("https://hospital.example/mrn", "https://hospital.example/mrn", None),
            ("General Hospital", "urn:tessera:dicom:patient-id", Some("General Hospital")),
        ] {
            let record = study("1.2.3", &format!("P-{}", issuer.len()), issuer);
            let id = find_or_create_patient(store.as_ref(), &config(), &record).await.expect("patient");
            let (_, patient) = read(store.as_ref(), "Patient", &id).await;
            assert_eq!(patient["identifier"][0]["system"], system, "{issuer}");
            assert_eq!(patient["identifier"][0]["assigner"]["display"].as_str(), assigner, "{issuer}");
        }
    }

    #[tokio::test]
    async fn a_study_without_patient_id_gets_a_patient_of_its_own() {
        let (store, _dir) = store().await;
        let first = find_or_create_patient(store.as_ref(), &config(), &study("1.2.3", "  ", "")).await.expect("patient");
        let again = find_or_create_patient(store.as_ref(), &config(), &study("1.2.3", "", "")).await.expect("patient");
        let other = find_or_create_patient(store.as_ref(), &config(), &study("1.2.4", "", "")).await.expect("patient");
        assert_eq!(first, again);
        assert_ne!(first, other);
        let (_, patient) = read(store.as_ref(), "Patient", &first).await;
        assert!(patient.get("identifier").is_none());
        assert_eq!(patient["name"][0]["family"], "Doe");
    }

    #[tokio::test]
    async fn rewrites_keep_foreign_elements_and_skip_no_op_versions() {
        let (store, _dir) = store().await;
        let snap = snapshot("1.2.3", "MRN-7", 1, 2);
        let body = imaging_study_resource(&snap, "Patient/p1", "http://tessera.test/dicomweb");
        let id = imaging_study_id("1.2.3");
        let first = write_imaging_study(store.as_ref(), body.clone()).await.expect("write").expect("written");
        assert_eq!(first.version, 1);
        assert!(write_imaging_study(store.as_ref(), body).await.expect("write").is_none(), "no-op rewrite");

        // Someone adds a note and a tag over REST.
        let (version, mut edited) = read(store.as_ref(), "ImagingStudy", &id).await;
        edited["note"] = json!([{ "text": "reviewed" }]);
        edited["meta"]["tag"] = json!([{ "system": "urn:test", "code": "t" }]);
        store.update("ImagingStudy", &id, edited, Some(version)).await.expect("edit");

        let bigger = imaging_study_resource(&snapshot("1.2.3", "MRN-7", 2, 2), "Patient/p1", "http://tessera.test/dicomweb");
        let written = write_imaging_study(store.as_ref(), bigger).await.expect("write").expect("written");
        assert_eq!(written.version, 3);
        let (_, stored) = read(store.as_ref(), "ImagingStudy", &id).await;
        assert_eq!(stored["numberOfSeries"], 2);
        assert_eq!(stored["note"], json!([{ "text": "reviewed" }]));
        assert_eq!(stored["meta"]["tag"], json!([{ "system": "urn:test", "code": "t" }]));
    }

    /// An in-memory queue: study → (generation, cleared generation, snapshot).
    #[derive(Default)]
    struct FakeQueue {
        studies: Mutex<HashMap<String, (i64, i64, StudySnapshot)>>,
        snapshot_failures: Mutex<u32>,
    }

    impl FakeQueue {
        fn put(&self, snapshot: StudySnapshot) {
            let mut studies = self.studies.lock().unwrap();
            let entry = studies.entry(snapshot.study.study_instance_uid.clone()).or_insert((0, 0, snapshot.clone()));
            entry.0 += 1;
            entry.2 = snapshot;
        }

        fn pending(&self) -> usize {
            self.studies.lock().unwrap().values().filter(|(generation, cleared, _)| cleared < generation).count()
        }
    }

    #[async_trait]
    impl StudyQueue for FakeQueue {
        async fn pending_studies(&self, limit: u32) -> Result<Vec<(String, i64)>, DicomStoreError> {
            let studies = self.studies.lock().unwrap();
            let mut pending: Vec<(String, i64)> =
                studies.iter().filter(|(_, (g, c, _))| c < g).map(|(uid, (g, _, _))| (uid.clone(), *g)).collect();
            pending.sort();
            pending.truncate(limit as usize);
            Ok(pending)
        }

        async fn study_snapshot(&self, study_uid: &str) -> Result<Option<StudySnapshot>, DicomStoreError> {
            {
                let mut failures = self.snapshot_failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(DicomStoreError::Index("index unavailable (test)".into()));
                }
            }
            Ok(self.studies.lock().unwrap().get(study_uid).map(|(_, _, s)| s.clone()))
        }

        async fn clear_pending(&self, study_uid: &str, generation: i64) -> Result<(), DicomStoreError> {
            if let Some(entry) = self.studies.lock().unwrap().get_mut(study_uid) {
                entry.1 = entry.1.max(generation);
            }
            Ok(())
        }
    }

    async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    #[tokio::test]
    async fn a_burst_of_instances_makes_few_versions() {
        let (store, _dir) = store().await;
        let queue = Arc::new(FakeQueue::default());
        let mirror = FhirMirror::start_with(queue.clone(), store.clone(), config());
        let burst = Instant::now();
        for i in 1..=40 {
            queue.put(snapshot("1.2.3", "MRN-7", 1, i));
            mirror.wake();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // At most one pass per debounce period of the burst, plus the one after it.
        let most = u64::try_from(burst.elapsed().as_millis() / DEBOUNCE.as_millis()).unwrap() + 2;
        eventually("the study to be mirrored", || async { queue.pending() == 0 }).await;
        let (version, stored) = read(store.as_ref(), "ImagingStudy", &imaging_study_id("1.2.3")).await;
        assert_eq!(stored["numberOfInstances"], 40);
        assert!(version <= most.min(10), "40 instances in a burst made {version} versions (at most {most} expected)");
        drop(mirror);
    }

    #[tokio::test]
    async fn drains_what_was_pending_at_start_and_retries_failures() {
        let (store, _dir) = store().await;
        let queue = Arc::new(FakeQueue::default());
        queue.put(snapshot("1.2.3", "MRN-7", 1, 1));
        queue.put(snapshot("1.2.4", "MRN-8", 2, 1));
        *queue.snapshot_failures.lock().unwrap() = 1;
        // No wake: the start itself drains; the failing study is retried after its backoff.
        let _mirror = FhirMirror::start_with(queue.clone(), store.clone(), config());
        eventually("both studies to be mirrored", || async { queue.pending() == 0 }).await;
        for uid in ["1.2.3", "1.2.4"] {
            let (_, stored) = read(store.as_ref(), "ImagingStudy", &imaging_study_id(uid)).await;
            assert_eq!(stored["subject"]["reference"].as_str().map(|r| r.starts_with("Patient/")), Some(true));
        }
        assert_eq!(patients(store.as_ref()).await.len(), 2);
    }

    #[tokio::test]
    async fn dropping_the_mirror_stops_it() {
        let (store, _dir) = store().await;
        let queue = Arc::new(FakeQueue::default());
        let mirror = FhirMirror::start_with(queue.clone(), store.clone(), config());
        drop(mirror);
        queue.put(snapshot("1.2.3", "MRN-7", 1, 1));
        tokio::time::sleep(DEBOUNCE * 3).await;
        assert_eq!(queue.pending(), 1);
        assert!(store.read("ImagingStudy", &imaging_study_id("1.2.3")).await.expect("read").is_none());
    }

    #[test]
    fn escapes_search_separators() {
        assert_eq!(escape(r"a|b,c$d\e"), r"a\|b\,c\$d\\e");
    }

    #[test]
    fn person_names() {
        assert_eq!(human_name("Yamada^Tarou=山田^太郎"), Some(json!({ "use": "official", "family": "Yamada", "given": ["Tarou"] })));
        assert_eq!(human_name("^^^"), None);
        assert_eq!(human_name(""), None);
        assert_eq!(human_name("=山田^太郎"), Some(json!({ "use": "official", "family": "山田", "given": ["太郎"] })));
        assert_eq!(human_name("^Cher"), Some(json!({ "use": "official", "given": ["Cher"] })));
    }

    #[test]
    fn genders() {
        assert_eq!(gender("M"), Some("male"));
        assert_eq!(gender("f"), Some("female"));
        assert_eq!(gender("O"), Some("other"));
        assert_eq!(gender(""), None);
        assert_eq!(gender("X"), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), FIRST_RETRY);
        assert_eq!(backoff(2), FIRST_RETRY * 2);
        assert_eq!(backoff(40), LAST_RETRY);
    }
}
