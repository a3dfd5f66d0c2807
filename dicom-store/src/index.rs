//! The study/series/instance index (SQLite in the data dir): one row per stored instance with
//! the attributes QIDO-RS and C-FIND match on, and the queue of studies whose ImagingStudy
//! needs writing.

use std::path::Path;

use crate::{DicomQuery, DicomStoreError, IndexedInstance, QueryMatch, StudySnapshot};

pub(crate) struct Index {
    pool: sqlx::SqlitePool,
}

impl Index {
    pub(crate) async fn open(path: &Path) -> Result<Index, DicomStoreError> {
        let _ = path;
        todo!()
    }

    /// The indexed instance with this SOP Instance UID.
    pub(crate) async fn instance(&self, sop_instance_uid: &str) -> Result<Option<IndexedInstance>, DicomStoreError> {
        let _ = (sop_instance_uid, &self.pool);
        todo!()
    }

    /// Inserts or replaces an instance and queues its study for the FHIR mirror, in one
    /// transaction.
    pub(crate) async fn put(&self, instance: &IndexedInstance) -> Result<(), DicomStoreError> {
        let _ = instance;
        todo!()
    }

    pub(crate) async fn query(&self, query: &DicomQuery) -> Result<Vec<QueryMatch>, DicomStoreError> {
        let _ = query;
        todo!()
    }

    pub(crate) async fn instances(
        &self,
        study_uid: &str,
        series_uid: Option<&str>,
        sop_instance_uid: Option<&str>,
    ) -> Result<Vec<IndexedInstance>, DicomStoreError> {
        let _ = (study_uid, series_uid, sop_instance_uid);
        todo!()
    }

    /// One study with all its series and instances; None if it has no instances.
    pub(crate) async fn study_snapshot(&self, study_uid: &str) -> Result<Option<StudySnapshot>, DicomStoreError> {
        let _ = study_uid;
        todo!()
    }

    /// Studies whose ImagingStudy is out of date, oldest first: (StudyInstanceUID, generation).
    /// The generation grows every time an instance of the study is indexed.
    pub(crate) async fn pending_studies(&self, limit: u32) -> Result<Vec<(String, i64)>, DicomStoreError> {
        let _ = limit;
        todo!()
    }

    /// Marks a study's ImagingStudy as written up to `generation` (a later instance keeps it
    /// pending).
    pub(crate) async fn clear_pending(&self, study_uid: &str, generation: i64) -> Result<(), DicomStoreError> {
        let _ = (study_uid, generation);
        todo!()
    }
}
