//! Translation of a `SearchQuery` into MongoDB aggregation stages over `resources`.
//! (Placeholder signatures; the translation is being written.)

use fhir_model::{Filter, SearchQuery, SortKey};
use mongodb::bson::{doc, Document};

/// Resource types a (sub)query covers; None = every type.
pub(crate) type Types = Option<Vec<String>>;

/// The types `query` covers.
pub(crate) fn scope_of(query: &SearchQuery) -> Types {
    match (&query.resource_type, query.types.as_slice()) {
        (Some(resource_type), _) => Some(vec![resource_type.clone()]),
        (None, []) => None,
        (None, types) => Some(types.to_vec()),
    }
}

/// The stages selecting the live resources of `types` that satisfy every filter.
pub(crate) fn match_stages(_filters: &[Filter], types: &Types, after: Option<&str>) -> Vec<Document> {
    let mut first = doc! { "deleted": false };
    if let Some(types) = types {
        first.insert("type", doc! { "$in": types.clone() });
    }
    if let Some(after) = after {
        first.insert("_id", doc! { "$gt": after });
    }
    vec![doc! { "$match": first }]
}

/// The stages ordering the matches by `sort` (then `_id`).
pub(crate) fn sort_stages(_sort: &[SortKey], _types: &Types) -> Vec<Document> {
    vec![doc! { "$sort": { "_id": 1 } }]
}
