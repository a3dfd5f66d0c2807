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

/// The differences a consistency check found: the first `Problems::MAX_LISTED` word for
/// word, the rest counted.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    listed: Vec<String>,
    more: usize,
}

impl Problems {
    pub(crate) const MAX_LISTED: usize = 1000;

    pub(crate) fn push(&mut self, problem: String) {
        if self.listed.len() < Self::MAX_LISTED {
            self.listed.push(problem);
        } else {
            self.more += 1;
        }
    }

    /// Compares one value; `what` is e.g. `Patient/p1`.
    pub(crate) fn column<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, column: &str, row: T, store: T) {
        if row != store {
            self.push(format!("{what}: {column} is {row:?} in the row, {store:?} in the store"));
        }
    }

    pub(crate) fn finish(mut self) -> Vec<String> {
        if self.more > 0 {
            self.listed.push(format!("… and {} more problems", self.more));
        }
        self.listed
    }
}
