//! The search limits every backend shares: how many matches a sorted search's snapshot keeps
//! and for how long, how far `:iterate` includes go, what identifies a search for its cursors,
//! and the cursors themselves.

use fhir_model::SearchQuery;
use time::OffsetDateTime;

use crate::{HistoryEntry, StoreError};

/// Most matches a sorted search materialises; beyond it, later pages end at this many.
pub(crate) const SNAPSHOT_CAP: usize = 100_000;
/// Seconds a sorted search's snapshot stays usable.
pub(crate) const SNAPSHOT_TTL_SECS: u64 = 600;
/// Rounds of `:iterate` includes, and most resources included in one page.
pub(crate) const INCLUDE_DEPTH: usize = 4;
pub(crate) const MAX_INCLUDED: usize = 1000;

/// Where the next page of a search starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cursor<K> {
    /// Default order: after this key, which a resource keeps for life, so the boundary does not
    /// move whatever is written between pages. Encoded `<K::TAG><key>`.
    After { key: K },
    /// Sorted: at `offset` of snapshot `snapshot`. Encoded `s<snapshot>.<offset>`.
    Snapshot { snapshot: String, offset: usize },
}

/// A backend's default-order key as a cursor writes it, after a tag other than `s`.
pub(crate) trait CursorKey: Sized {
    const TAG: char;
    fn to_text(&self) -> String;
    /// None when `text` is not a key of this backend.
    fn from_text(text: &str) -> Option<Self>;
}

impl<K: CursorKey> Cursor<K> {
    pub(crate) fn encode(&self) -> String {
        match self {
            Cursor::After { key } => format!("{}{}", K::TAG, key.to_text()),
            Cursor::Snapshot { snapshot, offset } => format!("s{snapshot}.{offset}"),
        }
    }

    pub(crate) fn decode(text: &str) -> Result<Cursor<K>, StoreError> {
        let malformed = || StoreError::InvalidQuery(format!("malformed cursor {text:?}"));
        if let Some(rest) = text.strip_prefix('s') {
            let (snapshot, offset) = rest.split_once('.').ok_or_else(malformed)?;
            let offset = offset.parse().map_err(|_| malformed())?;
            if snapshot.is_empty() || !snapshot.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(malformed());
            }
            return Ok(Cursor::Snapshot { snapshot: snapshot.to_string(), offset });
        }
        let key = text.strip_prefix(K::TAG).and_then(K::from_text).ok_or_else(malformed)?;
        Ok(Cursor::After { key })
    }
}

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
