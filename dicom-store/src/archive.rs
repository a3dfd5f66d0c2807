//! `Archive`: stores a staged DICOM object (parse, check, object store, index, FHIR mirror) and
//! answers queries and retrieves; the one entry point DIMSE and DICOMweb both use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fhir_store::ResourceStore;

use crate::fhir_mirror::{FhirMirror, MirrorConfig};
use crate::index::Index;
use crate::object_store::{ObjectStore, ObjectStoreError, RestoreState};
use crate::parse;
use crate::staging::{StagedFile, StagingArea};
use crate::{DicomQuery, DicomStoreError, IndexedInstance, QueryMatch};

/// What to do when a SOP Instance UID arrives again with different bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConflictPolicy {
    /// Keep the stored object, answer success with a warning (the default).
    #[default]
    KeepFirst,
    /// Replace the stored object with the new one.
    Replace,
    /// Refuse the new one with a failure status.
    Reject,
}

/// How the archive is set up.
#[derive(Clone, Debug)]
pub struct ArchiveConfig {
    /// Where the index database and the staging directory live.
    pub data_dir: PathBuf,
    pub on_conflict: ConflictPolicy,
    /// The public DICOMweb base URL (e.g. `http://host:8080/dicomweb`), for ImagingStudy's
    /// endpoint.
    pub dicomweb_base_url: String,
    /// The identifier system of Patients created for a PatientID without a Patient.
    pub patient_identifier_system: String,
}

/// What storing one object did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreStatus {
    /// New instance, stored and indexed.
    Stored,
    /// Same SOP Instance UID, same bytes: nothing to do.
    AlreadyStored,
    /// Same SOP Instance UID, different bytes, policy KeepFirst: the first copy is kept.
    KeptExisting,
    /// Same SOP Instance UID, different bytes, policy Replace.
    Replaced,
}

/// What a stored object must be, as far as the sender said.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expected<'a> {
    /// The SOP class it was sent as (C-STORE's Affected SOP Class UID).
    pub sop_class_uid: Option<&'a str>,
    /// The study it was sent to (STOW-RS `POST /studies/{study}`).
    pub study_instance_uid: Option<&'a str>,
}

/// The result of `Archive::store`.
#[derive(Clone, Debug)]
pub struct StoreOutcome {
    pub instance: IndexedInstance,
    pub status: StoreStatus,
}

/// The DICOM archive.
pub struct Archive {
    config: ArchiveConfig,
    index: Arc<Index>,
    objects: Arc<dyn ObjectStore>,
    staging: StagingArea,
    /// Keeps each study's ImagingStudy in the FHIR store, when there is one.
    mirror: Option<FhirMirror>,
    /// Stores of one SOP Instance UID run one at a time (striped by hash), so a duplicate's
    /// check-then-write cannot race another copy of the same instance.
    instance_locks: Vec<tokio::sync::Mutex<()>>,
}

const INSTANCE_LOCK_STRIPES: usize = 64;

impl Archive {
    /// Opens the index and staging area under `config.data_dir`; with `fhir`, mirrors every
    /// study as an ImagingStudy there.
    pub async fn open(
        config: ArchiveConfig,
        objects: Arc<dyn ObjectStore>,
        fhir: Option<Arc<dyn ResourceStore>>,
    ) -> Result<Arc<Archive>, DicomStoreError> {
        std::fs::create_dir_all(&config.data_dir)?;
        let index = Arc::new(Index::open(&config.data_dir.join("dicom-index.sqlite")).await?);
        let staging = StagingArea::open(config.data_dir.join("dicom-staging"))?;
        let instance_locks = (0..INSTANCE_LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect();
        let mirror = fhir.map(|store| {
            let mirror_config = MirrorConfig {
                dicomweb_base_url: config.dicomweb_base_url.clone(),
                patient_identifier_system: config.patient_identifier_system.clone(),
            };
            FhirMirror::start(index.clone(), store, mirror_config)
        });
        tracing::info!(objects = %objects.describe(), "DICOM archive open");
        Ok(Arc::new(Archive { config, index, objects, staging, mirror, instance_locks }))
    }

    /// Where incoming objects are staged.
    pub fn staging(&self) -> &StagingArea {
        &self.staging
    }

    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// Stores one staged Part 10 file. A dataset that is not what `expected` says it is (another
    /// SOP class than the C-STORE request's, another study than the STOW-RS URL's) is
    /// `SopClassMismatch` / `StudyMismatch`. Returns only when the object is durable in the
    /// object store and indexed. The staged file stays the caller's.
    pub async fn store(&self, staged: &StagedFile, expected: Expected<'_>) -> Result<StoreOutcome, DicomStoreError> {
        // Three things at once: the parse (which proves the file complete), its SHA-256, and the
        // write-back of its bytes to disk.
        let path = staged.path().to_path_buf();
        let size = staged.size;
        let (hash, writeback) = (staged.start_hash(), staged.start_writeback());
        let parsed = tokio::task::spawn_blocking(move || parse::read_instance(&path, size)).await;
        let hashed = hash.await;
        let _ = writeback.await;
        let mut instance = parsed.map_err(|e| DicomStoreError::Index(format!("parser task failed: {e}")))??;
        instance.sha256 = hashed.map_err(|e| DicomStoreError::Index(format!("hash task failed: {e}")))?.map_err(DicomStoreError::Staging)?;
        if let Some(sent_as) = expected.sop_class_uid {
            if sent_as != instance.sop_class_uid {
                return Err(DicomStoreError::SopClassMismatch(format!(
                    "sent as SOP class {sent_as} but the dataset is {}",
                    instance.sop_class_uid
                )));
            }
        }
        if let Some(study) = expected.study_instance_uid {
            if study != instance.study_instance_uid {
                return Err(DicomStoreError::StudyMismatch(format!(
                    "the instance belongs to study {:?}, not to study {study:?} named by the URL",
                    instance.study_instance_uid
                )));
            }
        }

        let _guard = self.lock_for(&instance.sop_instance_uid).await;
        let status = match self.index.instance(&instance.sop_instance_uid).await? {
            Some(existing) if existing.sha256 == instance.sha256 => {
                return Ok(StoreOutcome { instance: existing, status: StoreStatus::AlreadyStored });
            }
            Some(existing) => match self.config.on_conflict {
                ConflictPolicy::KeepFirst => {
                    tracing::warn!(
                        sop_instance_uid = %existing.sop_instance_uid,
                        kept = %existing.sha256,
                        received = %instance.sha256,
                        "SOP instance received again with different content; keeping the first copy"
                    );
                    return Ok(StoreOutcome { instance: existing, status: StoreStatus::KeptExisting });
                }
                ConflictPolicy::Reject => return Err(DicomStoreError::Conflict(existing.sop_instance_uid)),
                ConflictPolicy::Replace => {
                    // The replacement keeps the first copy's key, so a changed PatientID does not
                    // leave the old object behind under another path.
                    instance.object_key = existing.object_key;
                    StoreStatus::Replaced
                }
            },
            None => StoreStatus::Stored,
        };
        self.objects.put_file(&instance.object_key, staged.path(), staged.size, &instance.sha256).await?;
        self.index.put(&instance).await?;
        if let Some(mirror) = &self.mirror {
            mirror.wake();
        }
        Ok(StoreOutcome { instance, status })
    }

    async fn lock_for(&self, sop_instance_uid: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        sop_instance_uid.hash(&mut hasher);
        self.instance_locks[hasher.finish() as usize % self.instance_locks.len()].lock().await
    }

    /// Matches at the query's level, in a stable order, after offset/limit.
    pub async fn query(&self, query: &DicomQuery) -> Result<Vec<QueryMatch>, DicomStoreError> {
        self.index.query(query).await
    }

    /// The instances of a study, optionally of one series / one instance, in series then
    /// instance number order. Empty when nothing matches.
    pub async fn instances(
        &self,
        study_uid: &str,
        series_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
    ) -> Result<Vec<IndexedInstance>, DicomStoreError> {
        self.index.instances(study_uid, series_uid, sop_instance_uid).await
    }

    /// The stored Part 10 bytes, verified against the SHA-256 recorded in the index and in the
    /// object store.
    pub async fn read(&self, instance: &IndexedInstance) -> Result<Bytes, DicomStoreError> {
        let object = self.objects.get(&instance.object_key).await?;
        // The object store verified the bytes against its own record; the index's record is
        // checked too, so an object replaced behind the index's back is never served.
        if object.sha256 != instance.sha256 {
            let (expected, actual) = (instance.sha256.clone(), object.sha256);
            return Err(ObjectStoreError::Integrity { key: instance.object_key.clone(), expected, actual }.into());
        }
        Ok(object.bytes)
    }

    /// A presigned download URL, when the object store has them.
    pub async fn presigned_url(&self, instance: &IndexedInstance, expires_in: Duration) -> Result<Option<String>, DicomStoreError> {
        Ok(self.objects.presigned_get(&instance.object_key, expires_in).await?)
    }

    /// Asks the object store to restore an archived instance for `days` days.
    pub async fn request_restore(&self, instance: &IndexedInstance, days: u32) -> Result<RestoreState, DicomStoreError> {
        Ok(self.objects.request_restore(&instance.object_key, days).await?)
    }
}
