//! The search limits every backend shares: how many matches a sorted search's snapshot keeps
//! and for how long, how far `:iterate` includes go, and what identifies a search for its
//! cursors.

use fhir_model::SearchQuery;
use time::OffsetDateTime;

use crate::HistoryEntry;

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

/// History's `since` as the epoch millisecond it starts at: stored times are whole
/// milliseconds, so `>= since` means `>=` its ceiling.
pub(crate) fn since_ms(since: OffsetDateTime) -> i64 {
    let nanos = since.unix_timestamp_nanos();
    let ceiling = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) > 0);
    i64::try_from(ceiling).unwrap_or(if ceiling < 0 { i64::MIN } else { i64::MAX })
}

/// Cuts a history page read with one entry more than `count` back to `count`, and returns the
/// cursor of the next (older) page when that extra entry was there.
pub(crate) fn history_page_end(entries: &mut Vec<HistoryEntry>, count: usize) -> Option<u64> {
    if entries.len() <= count {
        return None;
    }
    entries.truncate(count);
    entries.last().map(|entry| entry.resource.seq)
}
