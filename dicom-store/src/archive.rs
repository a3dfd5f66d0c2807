//! `Archive`: stores a staged DICOM object (parse, check, object store, index, FHIR mirror) and
//! answers queries and retrieves; the one entry point DIMSE and DICOMweb both use.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fhir_store::ResourceStore;

use crate::index::Index;
use crate::object_store::{ObjectStore, RestoreState};
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

/// The result of `Archive::store`.
#[derive(Clone, Debug)]
pub struct StoreOutcome {
    pub instance: IndexedInstance,
    pub status: StoreStatus,
}

/// The DICOM archive.
pub struct Archive {
    config: ArchiveConfig,
    index: Index,
    objects: Arc<dyn ObjectStore>,
    staging: StagingArea,
    fhir: Option<Arc<dyn ResourceStore>>,
}

impl Archive {
    /// Opens the index and staging area under `config.data_dir`; with `fhir`, mirrors every
    /// study as an ImagingStudy there.
    pub async fn open(
        config: ArchiveConfig,
        objects: Arc<dyn ObjectStore>,
        fhir: Option<Arc<dyn ResourceStore>>,
    ) -> Result<Arc<Archive>, DicomStoreError> {
        let _ = (&config, &objects, &fhir);
        todo!()
    }

    /// Where incoming objects are staged.
    pub fn staging(&self) -> &StagingArea {
        &self.staging
    }

    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// Stores one staged Part 10 file. With `sent_as` (the SOP class of the C-STORE request),
    /// a dataset of another SOP class is `SopClassMismatch`. Returns only when the object is
    /// durable in the object store and indexed.
    pub async fn store(&self, staged: StagedFile, sent_as: Option<&str>) -> Result<StoreOutcome, DicomStoreError> {
        let _ = (staged, sent_as);
        todo!()
    }

    /// Matches at the query's level, in a stable order, after offset/limit.
    pub async fn query(&self, query: &DicomQuery) -> Result<Vec<QueryMatch>, DicomStoreError> {
        let _ = query;
        todo!()
    }

    /// The instances of a study, optionally of one series / one instance, in series then
    /// instance number order. Empty when nothing matches.
    pub async fn instances(
        &self,
        study_uid: &str,
        series_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
    ) -> Result<Vec<IndexedInstance>, DicomStoreError> {
        let _ = (study_uid, series_uid, sop_instance_uid);
        todo!()
    }

    /// The stored Part 10 bytes, verified against the SHA-256 recorded in the index and in the
    /// object store.
    pub async fn read(&self, instance: &IndexedInstance) -> Result<Bytes, DicomStoreError> {
        let _ = instance;
        todo!()
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
