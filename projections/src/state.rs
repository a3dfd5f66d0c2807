//! The store's current state as the projections see it, read from the change feed: what
//! consistency checks compare a projection against.

use std::collections::BTreeMap;

use fhir_store::{Change, ResourceStore, StoreError};

use crate::mapping::{project, Projected};

/// The current (latest, not deleted) version of one resource a projection keeps.
#[derive(Debug, Clone)]
pub struct CurrentResource {
    pub change: Change,
    pub projected: Projected,
}

/// Every Patient, Device and Observation as of feed position `up_to`, keyed by
/// (resource type, id), read by replaying the feed.
pub async fn current_resources(store: &dyn ResourceStore, up_to: u64) -> Result<BTreeMap<(String, String), CurrentResource>, StoreError> {
    let mut current = BTreeMap::new();
    let mut after = 0;
    while after < up_to {
        let batch = store.changes(after, 5000).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for change in batch.into_iter().filter(|c| c.seq <= up_to) {
            let key = (change.resource.resource_type.clone(), change.resource.id.clone());
            match project(&change) {
                Projected::Ignored => {}
                Projected::Deleted { .. } => {
                    current.remove(&key);
                }
                projected => {
                    current.insert(key, CurrentResource { change, projected });
                }
            }
        }
    }
    Ok(current)
}

/// What a consistency check found: how many store resources it compared, and every
/// difference between the projection and the store (empty when they agree).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ConsistencyReport {
    pub projection: String,
    /// The feed position the store was read at.
    pub at_seq: u64,
    pub resources_checked: usize,
    pub rows_checked: usize,
    pub problems: Vec<String>,
}

impl ConsistencyReport {
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}
