//! Running a translated search: (placeholder while being written).
use fhir_model::SearchQuery;
use mongodb::ClientSession;

use super::Collections;
use crate::{SearchPage, StoreError};

pub(super) async fn search(
    _collections: &Collections,
    _session: Option<&mut ClientSession>,
    _query: &SearchQuery,
    _snapshots: bool,
) -> Result<SearchPage, StoreError> {
    Err(StoreError::InvalidQuery("not yet".into()))
}
