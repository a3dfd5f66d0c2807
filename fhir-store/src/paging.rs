//! The search limits every backend shares: how many matches a sorted search's snapshot keeps
//! and for how long, how far `:iterate` includes go, and what identifies a search for its
//! cursors.

use fhir_model::SearchQuery;

/// Most matches a sorted search materialises; beyond it, later pages end at this many.
pub(crate) const SNAPSHOT_CAP: usize = 100_000;
/// Seconds a sorted search's snapshot stays usable.
pub(crate) const SNAPSHOT_TTL_SECS: u64 = 600;
/// Rounds of `:iterate` includes, and most resources included in one page.
pub(crate) const INCLUDE_DEPTH: usize = 4;
pub(crate) const MAX_INCLUDED: usize = 1000;

/// What a cursor of a sorted search is bound to (filters, types, sort), so it cannot be
/// replayed with another search.
pub(crate) fn fingerprint(query: &SearchQuery) -> String {
    format!("{:?}|{:?}|{:?}|{:?}", query.resource_type, query.types, query.filters, query.sort)
}
