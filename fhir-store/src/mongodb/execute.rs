//! Runs a search on MongoDB: the stages of `search.rs`, then paging, `_total`, sorted-search
//! snapshots and `_include`/`_revinclude`.
//!
//! Default order is `_id` (`Type/id`), paged by a keyset cursor `k<Type/id>`: a resource keeps
//! its key for life, so a page boundary does not move under concurrent writes. A `_sort`
//! search takes its ordered match keys (at most `SNAPSHOT_CAP`) on the first page and keeps
//! them in `search_snapshots` — in the database, not in the process, because the next page may
//! be served by another Tessera process behind the load balancer — in chunks of
//! `SNAPSHOT_CHUNK` keys with a TTL; later pages (cursor `s<id>.<offset>`) load the current
//! bodies of their slice (a resource deleted since is left out). `_total` counts the same
//! stages (`$count`). Includes follow `refk.<param>` keys of the page (and what was included,
//! for `:iterate`); revincludes look up `refk.<param>` of other resources (the wildcard index).

use std::collections::{HashMap, HashSet};

use fhir_model::{Include, ParamType, SearchQuery, TotalMode};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::{ClientSession, Collection};

use super::errors::store_error;
use super::search::{match_stages, scope_of, sort_stages};
use super::{current_from_doc, field_i64, resource_projection, Collections};
use crate::paging::{fingerprint, CursorKey, INCLUDE_DEPTH, MAX_INCLUDED, SNAPSHOT_CAP};
use crate::{SearchPage, StoreError, StoredResource};

/// Keys per `search_snapshots` document (well below BSON's 16 MB document limit).
const SNAPSHOT_CHUNK: usize = 10_000;

/// Where the next page starts: after a `Type/id` key (encoded `k<Type/id>`), or in a snapshot.
pub(crate) type Cursor = crate::paging::Cursor<String>;

impl CursorKey for String {
    const TAG: char = 'k';

    fn to_text(&self) -> String {
        self.clone()
    }

    fn from_text(text: &str) -> Option<String> {
        let (resource_type, id) = text.split_once('/')?;
        (fhir_model::is_resource_type(resource_type) && fhir_model::is_valid_id(id)).then(|| text.to_string())
    }
}

/// A loaded match: the resource and the reference keys its includes follow.
struct Loaded {
    key: String,
    resource: StoredResource,
    refk: Document,
}

/// Runs `query`. Inside a transaction (`session`) nothing is written, so `snapshots` must
/// be false there (a conditional write's search ignores `_sort`).
pub(super) async fn search(
    collections: &Collections,
    mut session: Option<&mut ClientSession>,
    query: &SearchQuery,
    snapshots: bool,
) -> Result<SearchPage, StoreError> {
    let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
    let types = scope_of(query);
    let sorted = !query.sort.is_empty() && snapshots;
    let count = query.count;
    let with_refk = !query.includes.is_empty() || !query.revincludes.is_empty();
    let resources = &collections.resources;

    if let Some(Cursor::Snapshot { snapshot, offset }) = &cursor {
        if !snapshots {
            return Err(StoreError::InvalidQuery("the cursor does not fit this search".into()));
        }
        let slice = snapshot_slice(&collections.snapshots, snapshot, *offset, count, query).await?;
        let page = load(resources, &mut session, &slice.keys, with_refk).await?;
        let next_cursor = (slice.end < slice.size)
            .then(|| Cursor::Snapshot { snapshot: snapshot.clone(), offset: slice.end }.encode());
        let total = if query.total == TotalMode::None { None } else { slice.total };
        return finish(collections, &mut session, query, page, next_cursor, total).await;
    }
    if sorted && cursor.is_some() {
        return Err(StoreError::InvalidQuery("the cursor does not fit this search".into()));
    }

    let counted = match query.total {
        TotalMode::None => None,
        TotalMode::Accurate | TotalMode::Estimate => {
            let mut pipeline = match_stages(&query.filters, &types, None);
            pipeline.push(doc! { "$count": "n" });
            let docs = aggregate(resources, &mut session, pipeline, "count search matches").await?;
            Some(match docs.first() {
                Some(doc) => u64::try_from(field_i64(doc, "n")?).unwrap_or(0),
                None => 0,
            })
        }
    };

    if sorted && count > 0 {
        let mut pipeline = match_stages(&query.filters, &types, None);
        pipeline.extend(sort_stages(&query.sort, &types));
        pipeline.push(doc! { "$limit": i64::try_from(SNAPSHOT_CAP).unwrap_or(i64::MAX) });
        pipeline.push(doc! { "$project": { "_id": 1 } });
        let keys = keys_of(&aggregate(resources, &mut session, pipeline, "run sorted search").await?)?;
        let page = load(resources, &mut session, &keys[..count.min(keys.len())], with_refk).await?;
        let mut next_cursor = None;
        if keys.len() > count {
            // A capped list's total is the true count, which may be larger than the list.
            let total = match counted {
                Some(total) => Some(total),
                None if keys.len() < SNAPSHOT_CAP => u64::try_from(keys.len()).ok(),
                None => None,
            };
            let id = uuid::Uuid::new_v4().simple().to_string();
            save_snapshot(&collections.snapshots, &id, query, &keys, total).await?;
            next_cursor = Some(Cursor::Snapshot { snapshot: id, offset: count }.encode());
        }
        return finish(collections, &mut session, query, page, next_cursor, counted).await;
    }

    let mut page = Vec::new();
    let mut next_cursor = None;
    if count > 0 {
        let after = match &cursor {
            Some(Cursor::After { key }) => Some(key.as_str()),
            _ => None,
        };
        let mut pipeline = match_stages(&query.filters, &types, after);
        pipeline.push(doc! { "$sort": { "_id": 1 } });
        // One more than the page tells whether another page follows.
        pipeline.push(doc! { "$limit": i64::try_from(count.saturating_add(1)).unwrap_or(i64::MAX) });
        pipeline.push(doc! { "$project": projection(with_refk) });
        let docs = aggregate(resources, &mut session, pipeline, "run search").await?;
        let more = docs.len() > count;
        page = docs.iter().take(count).map(loaded).collect::<Result<_, _>>()?;
        if more {
            next_cursor = page.last().map(|last| Cursor::After { key: last.key.clone() }.encode());
        }
    }
    finish(collections, &mut session, query, page, next_cursor, counted).await
}

fn projection(with_refk: bool) -> Document {
    let mut projection = resource_projection();
    if with_refk {
        projection.insert("refk", 1);
    }
    projection
}

fn loaded(doc: &Document) -> Result<Loaded, StoreError> {
    Ok(Loaded {
        key: doc.get_str("_id").map_err(|_| super::corrupt("a resource document without a key".into()))?.to_string(),
        resource: current_from_doc(doc)?,
        refk: doc.get_document("refk").cloned().unwrap_or_default(),
    })
}

fn keys_of(docs: &[Document]) -> Result<Vec<String>, StoreError> {
    docs.iter()
        .map(|doc| {
            doc.get_str("_id").map(str::to_string).map_err(|_| super::corrupt("a resource document without a key".into()))
        })
        .collect()
}

/// Runs an aggregation, inside the transaction when there is one.
async fn aggregate(
    collection: &Collection<Document>,
    session: &mut Option<&mut ClientSession>,
    pipeline: Vec<Document>,
    context: &'static str,
) -> Result<Vec<Document>, StoreError> {
    match session {
        Some(session) => {
            let mut cursor =
                collection.aggregate(pipeline).session(&mut **session).await.map_err(store_error(context))?;
            let mut docs = Vec::new();
            while let Some(doc) = cursor.next(&mut **session).await {
                docs.push(doc.map_err(store_error(context))?);
            }
            Ok(docs)
        }
        None => collection
            .aggregate(pipeline)
            .allow_disk_use(true)
            .await
            .map_err(store_error(context))?
            .try_collect()
            .await
            .map_err(store_error(context)),
    }
}

/// The current, live versions of `keys`, in the order given (missing or deleted ones left out).
async fn load(
    resources: &Collection<Document>,
    session: &mut Option<&mut ClientSession>,
    keys: &[String],
    with_refk: bool,
) -> Result<Vec<Loaded>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut by_key: HashMap<String, Loaded> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(SNAPSHOT_CHUNK) {
        let pipeline = vec![
            doc! { "$match": { "_id": { "$in": chunk.to_vec() }, "deleted": false } },
            doc! { "$project": projection(with_refk) },
        ];
        for doc in aggregate(resources, session, pipeline, "load search results").await? {
            let loaded = loaded(&doc)?;
            by_key.insert(loaded.key.clone(), loaded);
        }
    }
    Ok(keys.iter().filter_map(|key| by_key.remove(key)).collect())
}

// ----- sorted-search snapshots -----------------------------------------------------------------

async fn save_snapshot(
    snapshots: &Collection<Document>,
    id: &str,
    query: &SearchQuery,
    keys: &[String],
    total: Option<u64>,
) -> Result<(), StoreError> {
    let created = DateTime::now();
    let size = i64::try_from(keys.len()).unwrap_or(i64::MAX);
    let total = total.and_then(|t| i64::try_from(t).ok()).map_or(Bson::Null, Bson::Int64);
    let fingerprint = fingerprint(query);
    let docs: Vec<Document> = keys
        .chunks(SNAPSHOT_CHUNK)
        .enumerate()
        .map(|(n, chunk)| {
            doc! {
                "_id": format!("{id}.{n}"),
                "fingerprint": &fingerprint,
                "size": size,
                "total": total.clone(),
                "keys": chunk.to_vec(),
                "created": created,
            }
        })
        .collect();
    snapshots.insert_many(docs).await.map_err(store_error("save the search snapshot"))?;
    Ok(())
}

/// The keys of one page of a snapshot.
struct Slice {
    keys: Vec<String>,
    /// Where the page ends in the snapshot, and how many keys it has.
    end: usize,
    size: usize,
    total: Option<u64>,
}

async fn snapshot_slice(
    snapshots: &Collection<Document>,
    id: &str,
    offset: usize,
    count: usize,
    query: &SearchQuery,
) -> Result<Slice, StoreError> {
    let expired = || StoreError::InvalidQuery("the search snapshot of this cursor has expired; repeat the search".into());
    let first = offset / SNAPSHOT_CHUNK;
    let last = offset.saturating_add(count.max(1)).saturating_sub(1) / SNAPSHOT_CHUNK;
    let ids: Vec<String> = (first..=last).map(|n| format!("{id}.{n}")).collect();
    let mut chunks: Vec<Document> = snapshots
        .find(doc! { "_id": { "$in": ids } })
        .await
        .map_err(store_error("read the search snapshot"))?
        .try_collect()
        .await
        .map_err(store_error("read the search snapshot"))?;
    let head = chunks.first().ok_or_else(expired)?;
    if head.get_str("fingerprint").ok() != Some(fingerprint(query).as_str()) {
        return Err(StoreError::InvalidQuery("the cursor belongs to another search".into()));
    }
    let size = usize::try_from(field_i64(head, "size")?).unwrap_or(0);
    let total = match head.get("total") {
        Some(Bson::Int64(total)) => u64::try_from(*total).ok(),
        _ => None,
    };
    // Numerically: `<id>.10` sorts before `<id>.9` as text.
    let number = |chunk: &Document| chunk.get_str("_id").map(chunk_number).unwrap_or(0);
    chunks.sort_by_key(number);
    let mut keys = Vec::new();
    let end = offset.saturating_add(count).min(size);
    for chunk in &chunks {
        let base = number(chunk) * SNAPSHOT_CHUNK;
        let Ok(chunk_keys) = chunk.get_array("keys") else { continue };
        for (i, key) in chunk_keys.iter().enumerate() {
            let at = base + i;
            if (offset..end).contains(&at) {
                if let Bson::String(key) = key {
                    keys.push(key.clone());
                }
            }
        }
    }
    Ok(Slice { keys, end, size, total })
}

fn chunk_number(id: &str) -> usize {
    id.rsplit_once('.').and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

// ----- includes --------------------------------------------------------------------------------

async fn finish(
    collections: &Collections,
    session: &mut Option<&mut ClientSession>,
    query: &SearchQuery,
    page: Vec<Loaded>,
    next_cursor: Option<String>,
    total: Option<u64>,
) -> Result<SearchPage, StoreError> {
    let included = if query.includes.is_empty() && query.revincludes.is_empty() {
        Vec::new()
    } else {
        includes(&collections.resources, session, query, &page).await?
    };
    Ok(SearchPage { resources: page.into_iter().map(|l| l.resource).collect(), included, next_cursor, total })
}

fn applies(include: &Include, resource_type: &str) -> bool {
    include.source_type == "*" || include.source_type == resource_type
}

/// The keys an `_include` follows from one resource.
fn include_keys(include: &Include, refk: &Document) -> Vec<String> {
    let arrays: Vec<&Bson> = if include.param == "*" {
        refk.values().collect()
    } else {
        refk.get(&include.param).into_iter().collect()
    };
    arrays
        .into_iter()
        .filter_map(Bson::as_array)
        .flatten()
        .filter_map(Bson::as_str)
        .filter(|key| {
            include.target_type.as_ref().is_none_or(|target| key.split_once('/').is_some_and(|(t, _)| t == target))
        })
        .map(str::to_string)
        .collect()
}

/// The reference parameters a `_revinclude` looks at: its own, or every reference parameter
/// of the source type (of every type, for `*`).
fn revinclude_params(include: &Include) -> Vec<String> {
    if include.param != "*" {
        return vec![include.param.clone()];
    }
    let defs: Vec<&fhir_model::SearchParamDef> = if include.source_type == "*" {
        fhir_model::search_parameters().iter().collect()
    } else {
        fhir_model::parameters_of(&include.source_type).collect()
    };
    let mut names: Vec<String> =
        defs.into_iter().filter(|def| def.kind == ParamType::Reference).map(|def| def.name.to_string()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// `_include` and `_revinclude` of one page, then `:iterate` rounds over what they brought.
async fn includes(
    resources: &Collection<Document>,
    session: &mut Option<&mut ClientSession>,
    query: &SearchQuery,
    page: &[Loaded],
) -> Result<Vec<StoredResource>, StoreError> {
    let mut seen: HashSet<String> = page.iter().map(|l| l.key.clone()).collect();
    let mut frontier: Vec<(String, String, Document)> =
        page.iter().map(|l| (l.key.clone(), l.resource.resource_type.clone(), l.refk.clone())).collect();
    let mut included = Vec::new();
    for round in 0..INCLUDE_DEPTH {
        let mut found: Vec<String> = Vec::new();
        for include in query.includes.iter().filter(|i| round == 0 || i.iterate) {
            for (_, _, refk) in frontier.iter().filter(|(_, t, _)| applies(include, t)) {
                found.extend(include_keys(include, refk));
            }
        }
        for include in query.revincludes.iter().filter(|i| round == 0 || i.iterate) {
            let targets: Vec<String> = frontier
                .iter()
                .filter(|(_, t, _)| include.target_type.as_ref().is_none_or(|target| target == t))
                .map(|(key, _, _)| key.clone())
                .collect();
            if targets.is_empty() {
                continue;
            }
            let referrers: Vec<Document> = revinclude_params(include)
                .into_iter()
                .map(|param| doc! { format!("refk.{param}"): { "$in": targets.clone() } })
                .collect();
            if referrers.is_empty() {
                continue;
            }
            let mut filter = doc! { "deleted": false, "$or": referrers };
            if include.source_type != "*" {
                filter.insert("type", &include.source_type);
            }
            let pipeline = vec![doc! { "$match": filter }, doc! { "$project": { "_id": 1 } }];
            let docs = aggregate(resources, session, pipeline, "find revincluded resources").await?;
            found.extend(keys_of(&docs)?);
        }
        let mut new: Vec<String> = Vec::new();
        for key in found {
            if included.len() + new.len() >= MAX_INCLUDED {
                break;
            }
            if seen.insert(key.clone()) {
                new.push(key);
            }
        }
        if new.is_empty() {
            break;
        }
        let loaded = load(resources, session, &new, true).await?;
        frontier = loaded.iter().map(|l| (l.key.clone(), l.resource.resource_type.clone(), l.refk.clone())).collect();
        included.extend(loaded.into_iter().map(|l| l.resource));
    }
    Ok(included)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for cursor in [
            Cursor::After { key: "Patient/p-1.a".into() },
            Cursor::Snapshot { snapshot: "0a1b2c".into(), offset: 40 },
        ] {
            assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        }
        for bad in ["not a cursor", "%%%", "zz", "k", "kPatient", "kNoSuchType/1", "kPatient/bad id", "s.1", "sxyz.1", "s0a.x"] {
            assert!(Cursor::decode(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn include_keys_follow_one_parameter_or_all_and_filter_the_target_type() {
        let refk = doc! { "subject": ["Patient/p1", "Group/g1"], "performer": ["Practitioner/d1"] };
        let include = |param: &str, target: Option<&str>| Include {
            source_type: "Observation".into(),
            param: param.into(),
            target_type: target.map(str::to_string),
            iterate: false,
        };
        assert_eq!(include_keys(&include("subject", None), &refk), vec!["Patient/p1", "Group/g1"]);
        assert_eq!(include_keys(&include("subject", Some("Patient")), &refk), vec!["Patient/p1"]);
        assert_eq!(include_keys(&include("*", None), &refk).len(), 3);
        assert!(include_keys(&include("encounter", None), &refk).is_empty());
        let all = Include { source_type: "Observation".into(), param: "*".into(), target_type: None, iterate: false };
        let params = revinclude_params(&all);
        assert!(params.contains(&"subject".to_string()) && params.contains(&"performer".to_string()));
        assert!(!params.contains(&"code".to_string()));
    }
}
