//! The storage test suite every `ResourceStore` backend runs, so all backends keep one contract.
//!
//! Each case is a public async function taking a fresh, empty store. A backend's test file
//! instantiates every case as its own `#[tokio::test]` with [`store_test_suite!`], passing an
//! async function that returns the store plus a guard kept alive for the test (a temporary
//! directory, a database to drop):
//!
//! ```ignore
//! async fn fresh() -> (Arc<dyn ResourceStore>, tempfile::TempDir) { ... }
//! fhir_store::store_test_suite!(fresh);
//! ```
//!
//! A backend that needs a server the machine may not have (MongoDB) uses the `optional` form:
//! its function returns `None` when there is nothing to test against, after printing
//! `skipped: <why>`, and every case then passes without running.
//!
//! ```ignore
//! async fn fresh() -> Option<(Arc<dyn ResourceStore>, TestDatabase)> { ... }
//! fhir_store::store_test_suite!(fresh, optional);
//! ```
//!
//! The basic cases build `SearchQuery` values directly, so a failure there points at the store
//! and not at the parser; they rely on the standard R4 parameters `Patient.family`,
//! `Patient.name`, `Patient.identifier`, `Observation.code`, `Observation.date`,
//! `Observation.subject` and the common `_id`. The cases of the full contract (every value
//! kind, `:not`, `:missing`, chains, `_has`, `_sort`, includes, `_total`) go through
//! `fhir_model::parse_search`, the real path, over resources indexed by
//! `fhir_model::extract_index`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use fhir_model::{Prefix, Filter, Predicate, SearchQuery, TokenSystem};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::{
    ChangeKind, HistoryEntry, HistoryPage, HistoryRequest, HistoryScope, ResourceStore, StoreErrorKind,
    StoredResource, WriteOp, WriteOutcome,
};

/// The store under test, shared with the tasks of the concurrency cases.
pub type Store = Arc<dyn ResourceStore>;

/// Instantiates every case of the suite as a `#[tokio::test]` in the calling test file.
/// `$fresh` is an async function returning `(Arc<dyn ResourceStore>, guard)`; with `optional`,
/// one returning `Option<(Arc<dyn ResourceStore>, guard)>`, where `None` (the function prints
/// `skipped: <why>`) makes every case return at once.
#[macro_export]
macro_rules! store_test_suite {
    ($fresh:path) => {
        $crate::store_test_suite!(@list $fresh, required);
    };
    ($fresh:path, optional) => {
        $crate::store_test_suite!(@list $fresh, optional);
    };
    (@list $fresh:path, $mode:ident) => {
        $crate::store_test_suite!(@cases $fresh, $mode;
            create_read_vread,
            create_keeps_other_meta,
            create_existing_id_fails,
            version_conflict,
            update_as_create,
            delete_tombstone_vread_and_recreate,
            history_order_and_paging,
            history_since,
            write_outcomes_in_op_order,
            transaction_atomicity_stale_version,
            transaction_atomicity_duplicate_create,
            failing_request_does_not_affect_concurrent_ones,
            change_feed_order_and_kinds,
            change_feed_concurrent_writers,
            concurrent_updaters_no_lost_update,
            conditional_create,
            search_string,
            search_token,
            search_date,
            search_reference,
            search_and_or,
            search_follows_updates_and_deletes,
            search_paging_stable_under_concurrent_creates,
            search_system_level,
            search_rejects_malformed_cursor,
            search_value_kinds,
            search_composite_reference_and_string_modifiers,
            search_negation_and_missing,
            search_chain_and_has,
            search_sort,
            search_sorted_paging_stable_under_writes,
            search_default_paging_stable_under_updates_and_deletes,
            search_includes,
            search_total_modes,
            search_system_level_parsed,
            checkpoints,
        );
    };
    (@cases $fresh:path, required; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, guard) = $fresh().await;
                $crate::test_suite::$case(store).await;
                // The store goes first (moved into the case); the guard outlives it.
                drop(guard);
            }
        )*
    };
    (@cases $fresh:path, optional; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                // `None`: the backend is not available here and `$fresh` said why.
                let Some((store, guard)) = $fresh().await else { return };
                $crate::test_suite::$case(store).await;
                // The store goes first (moved into the case); the guard outlives it, and is
                // dropped during unwinding too when the case fails.
                drop(guard);
            }
        )*
    };
}

// ----- fixtures -------------------------------------------------------------------------------

fn patient(family: &str, given: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}]})
}

fn patient_with_identifier(family: &str, system: &str, value: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": value}],
        "name": [{"family": family}]
    })
}

fn observation(system: &str, code: &str, effective: &str, subject: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": subject},
        "effectiveDateTime": effective
    })
}

const LOINC: &str = "http://loinc.org";

fn create(resource_type: &str, id: &str, body: Value) -> WriteOp {
    WriteOp::Create { resource_type: resource_type.into(), id: id.into(), body, if_none_exist: None }
}

fn update(resource_type: &str, id: &str, body: Value, expected_version: Option<u64>) -> WriteOp {
    WriteOp::Update { resource_type: resource_type.into(), id: id.into(), body, expected_version }
}

fn query(resource_type: &str, filters: Vec<Filter>) -> SearchQuery {
    let mut query = SearchQuery::all(Some(resource_type));
    query.filters = filters;
    query
}

fn filter(param: &str, any_of: Vec<Predicate>) -> Filter {
    Filter::Match { param: param.into(), any_of, negate: false }
}

/// Default string search: the prefix is given already normalised (lowercase ASCII).
fn starts(prefix: &str) -> Predicate {
    Predicate::StringStartsWith(prefix.into())
}

fn token(system: TokenSystem, code: Option<&str>) -> Predicate {
    Predicate::Token { system, code: code.map(str::to_string) }
}

fn id_is(id: &str) -> Predicate {
    token(TokenSystem::Any, Some(id))
}

/// A date predicate over one whole UTC day.
fn day(prefix: Prefix, year: i32, month: u8, date: u8) -> Predicate {
    let month = time::Month::try_from(month).expect("valid month");
    let start = time::Date::from_calendar_date(year, month, date).expect("valid date").midnight().assume_utc();
    let lo = (start.unix_timestamp_nanos() / 1_000_000) as i64;
    Predicate::Date { prefix, lo, hi: lo + 86_400_000 }
}

fn reference(target_type: Option<&str>, target_id: &str) -> Predicate {
    Predicate::Reference { target_type: target_type.map(str::to_string), target_id: target_id.into() }
}

fn json_body(resource: &StoredResource) -> Value {
    let bytes = resource.body.as_deref().expect("a live version has a body");
    serde_json::from_slice(bytes).expect("stored body is json")
}

fn created(outcome: &WriteOutcome) -> &StoredResource {
    match outcome {
        WriteOutcome::Created(resource) => resource,
        other => panic!("expected Created, got {other:?}"),
    }
}

/// Every id matching `query`, following cursors with small pages; checks each page's total.
async fn search_ids(store: &Store, mut query: SearchQuery) -> Vec<String> {
    query.count = 2;
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.search(&query).await.expect("search");
        pages += 1;
        assert!(page.resources.len() <= 2, "page larger than count");
        assert!(page.resources.iter().all(|r| !r.deleted && r.body.is_some()), "search returned a tombstone");
        ids.extend(page.resources.iter().map(|r| format!("{}/{}", r.resource_type, r.id)));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => {
                assert_eq!(page.total, Some(ids.len() as u64), "total disagrees with the pages");
                break;
            }
        }
        assert!(pages < 1000, "search paging does not end");
    }
    ids
}

fn refs(resource_type: &str, ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| format!("{resource_type}/{id}")).collect()
}

/// Every entry of a history, following cursors; checks order, totals and uniqueness.
async fn full_history(store: &Store, scope: HistoryScope, count: usize, since: Option<OffsetDateTime>) -> Vec<HistoryEntry> {
    let mut request = HistoryRequest { scope, since, count, before_seq: None };
    let mut entries: Vec<HistoryEntry> = Vec::new();
    let mut total = None;
    loop {
        let HistoryPage { entries: page, next_cursor, total: page_total } = store.history(&request).await.expect("history");
        assert!(page.len() <= count, "history page larger than count");
        assert_eq!(*total.get_or_insert(page_total), page_total, "history total changed between pages");
        entries.extend(page);
        match next_cursor {
            Some(cursor) => request.before_seq = Some(cursor),
            None => break,
        }
    }
    let seqs: Vec<u64> = entries.iter().map(|e| e.resource.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "history not newest first or repeated: {seqs:?}");
    assert_eq!(total.unwrap_or(0) as usize, entries.len(), "history total disagrees with the pages");
    entries
}

// ----- basic reads and writes -----------------------------------------------------------------

/// Create sets id and meta; read and vread return exactly what the write returned.
pub async fn create_read_vread(store: Store) {
    let stored = store.create("Patient", "p1", patient("Smith", "John")).await.expect("create");
    assert_eq!((stored.resource_type.as_str(), stored.id.as_str()), ("Patient", "p1"));
    assert_eq!(stored.version, 1);
    assert!(!stored.deleted);
    assert!(stored.seq > 0);
    assert_eq!(stored.last_updated.nanosecond() % 1_000_000, 0, "last_updated has millisecond precision");
    let body = json_body(&stored);
    assert_eq!(body["id"], "p1");
    assert_eq!(body["resourceType"], "Patient");
    assert_eq!(body["meta"]["versionId"], "1");
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    assert_eq!(body["meta"]["lastUpdated"], stored.last_updated.format(format).expect("format"));
    assert_eq!(body["name"][0]["family"], "Smith");

    assert_eq!(store.read("Patient", "p1").await.expect("read"), Some(stored.clone()));
    assert_eq!(store.vread("Patient", "p1", 1).await.expect("vread"), Some(stored.clone()));
    assert_eq!(store.vread("Patient", "p1", 2).await.expect("vread"), None);
    assert_eq!(store.read("Patient", "nope").await.expect("read"), None);
    assert_eq!(store.read("Observation", "p1").await.expect("read"), None);

    let second = store.update("Patient", "p1", patient("Smith", "Johnny"), None).await.expect("update");
    assert_eq!(second.version, 2);
    assert!(second.seq > stored.seq);
    assert!(second.last_updated >= stored.last_updated);
    assert_eq!(json_body(&second)["meta"]["versionId"], "2");
    assert_eq!(store.vread("Patient", "p1", 1).await.expect("vread"), Some(stored));
    assert_eq!(store.read("Patient", "p1").await.expect("read"), Some(second));
}

/// The store overwrites id, versionId and lastUpdated but keeps the rest of meta.
pub async fn create_keeps_other_meta(store: Store) {
    let mut body = patient("Meta", "Mia");
    body["id"] = json!("client-chosen");
    body["meta"] = json!({
        "versionId": "77",
        "profile": ["http://example.org/StructureDefinition/p"],
        "tag": [{"system": "http://example.org/tags", "code": "vip"}]
    });
    let stored = store.create("Patient", "m1", body).await.expect("create");
    let body = json_body(&stored);
    assert_eq!(body["id"], "m1");
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(body["meta"]["profile"][0], "http://example.org/StructureDefinition/p");
    assert_eq!(body["meta"]["tag"][0]["code"], "vip");
    assert!(body["meta"]["lastUpdated"].is_string());
}

pub async fn create_existing_id_fails(store: Store) {
    let first = store.create("Patient", "dup", patient("First", "Fay")).await.expect("create");
    let error = store.create("Patient", "dup", patient("Second", "Sam")).await.expect_err("duplicate create");
    assert_eq!(error.kind(), StoreErrorKind::AlreadyExists);
    assert_eq!(store.read("Patient", "dup").await.expect("read"), Some(first));
    // The same id under another type is another resource.
    store.create("Observation", "dup", observation(LOINC, "1-1", "2020-01-01T00:00:00Z", "Patient/dup")).await.expect("create");
}

/// A stale `expected_version` fails with VersionConflict and changes nothing.
pub async fn version_conflict(store: Store) {
    store.create("Patient", "vc", patient("Conflict", "Cy")).await.expect("create");
    let v2 = store.update("Patient", "vc", patient("Conflict", "Cyd"), Some(1)).await.expect("update at v1");
    assert_eq!(v2.version, 2);
    let last_seq = store.last_seq().await.expect("last seq");

    let error = store.update("Patient", "vc", patient("Stale", "Sy"), Some(1)).await.expect_err("stale update");
    assert_eq!(error.kind(), StoreErrorKind::VersionConflict);
    match error {
        crate::StoreError::VersionConflict { expected, current, .. } => assert_eq!((expected, current), (1, Some(2))),
        other => panic!("unexpected error {other:?}"),
    }
    let error = store.delete("Patient", "vc", Some(3)).await.expect_err("stale delete");
    assert_eq!(error.kind(), StoreErrorKind::VersionConflict);
    let error = store.update("Patient", "absent", patient("A", "B"), Some(1)).await.expect_err("update of absent at v1");
    assert_eq!(error.kind(), StoreErrorKind::VersionConflict);

    assert_eq!(store.read("Patient", "vc").await.expect("read"), Some(v2));
    assert_eq!(store.read("Patient", "absent").await.expect("read"), None);
    assert_eq!(store.last_seq().await.expect("last seq"), last_seq);
}

/// Update of an absent resource creates it (version 1, kind Create).
pub async fn update_as_create(store: Store) {
    let outcome = store.write(vec![update("Patient", "u1", patient("Upsert", "Una"), None)]).await.expect("write");
    let stored = created(&outcome[0]).clone();
    assert_eq!(stored.version, 1);
    let next = store.write(vec![update("Patient", "u1", patient("Upsert", "Ulla"), Some(1))]).await.expect("write");
    match &next[0] {
        WriteOutcome::Updated(resource) => assert_eq!(resource.version, 2),
        other => panic!("expected Updated, got {other:?}"),
    }
    let history = full_history(&store, HistoryScope::Instance { resource_type: "Patient".into(), id: "u1".into() }, 10, None).await;
    let kinds: Vec<ChangeKind> = history.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![ChangeKind::Update, ChangeKind::Create]);
}

/// Delete writes a tombstone; old versions stay readable; a re-create continues the numbering.
pub async fn delete_tombstone_vread_and_recreate(store: Store) {
    store.create("Patient", "d1", patient("Doomed", "Dan")).await.expect("create");
    let v2 = store.update("Patient", "d1", patient("Doomed", "Danny"), None).await.expect("update");
    let tombstone = store.delete("Patient", "d1", Some(2)).await.expect("delete").expect("a tombstone");
    assert_eq!(tombstone.version, 3);
    assert!(tombstone.deleted);
    assert_eq!(tombstone.body, None);

    let current = store.read("Patient", "d1").await.expect("read").expect("tombstone is current");
    assert_eq!(current, tombstone);
    assert_eq!(store.vread("Patient", "d1", 3).await.expect("vread"), Some(tombstone.clone()));
    assert_eq!(store.vread("Patient", "d1", 2).await.expect("vread"), Some(v2));
    assert!(search_ids(&store, query("Patient", vec![filter("family", vec![starts("doomed")])])).await.is_empty());

    // Deleting again, or deleting what never existed, writes nothing.
    let last_seq = store.last_seq().await.expect("last seq");
    assert_eq!(store.write(vec![WriteOp::Delete { resource_type: "Patient".into(), id: "d1".into(), expected_version: None }]).await.expect("delete"), vec![WriteOutcome::Deleted(None)]);
    assert_eq!(store.delete("Patient", "never", None).await.expect("delete"), None);
    assert_eq!(store.last_seq().await.expect("last seq"), last_seq);

    let outcome = store.write(vec![update("Patient", "d1", patient("Reborn", "Dana"), None)]).await.expect("recreate");
    let reborn = created(&outcome[0]).clone();
    assert_eq!(reborn.version, 4);
    assert_eq!(json_body(&reborn)["meta"]["versionId"], "4");
    assert_eq!(search_ids(&store, query("Patient", vec![filter("family", vec![starts("reborn")])])).await, refs("Patient", &["d1"]));

    // A plain create over a tombstone is allowed too and also continues the numbering.
    store.create("Patient", "d2", patient("Twice", "Tia")).await.expect("create");
    store.delete("Patient", "d2", None).await.expect("delete");
    assert_eq!(store.create("Patient", "d2", patient("Twice", "Tia")).await.expect("create over tombstone").version, 3);

    let history = full_history(&store, HistoryScope::Instance { resource_type: "Patient".into(), id: "d1".into() }, 10, None).await;
    let summary: Vec<(u64, ChangeKind, bool)> = history.iter().map(|e| (e.resource.version, e.kind, e.resource.deleted)).collect();
    assert_eq!(
        summary,
        vec![
            (4, ChangeKind::Create, false),
            (3, ChangeKind::Delete, true),
            (2, ChangeKind::Update, false),
            (1, ChangeKind::Create, false),
        ]
    );
}

// ----- history ---------------------------------------------------------------------------------

/// Instance, type and system history: newest first, paged without repeats or gaps, totals right.
pub async fn history_order_and_paging(store: Store) {
    let mut written: Vec<StoredResource> = Vec::new();
    for i in 0..4 {
        written.push(store.create("Patient", &format!("h{i}"), patient("History", "Hal")).await.expect("create"));
    }
    for round in 0..3 {
        written.push(store.update("Patient", "h1", patient("History", &format!("Hal{round}")), None).await.expect("update"));
        written.push(
            store
                .create("Observation", &format!("ho{round}"), observation(LOINC, "1-1", "2020-01-01T00:00:00Z", "Patient/h1"))
                .await
                .expect("create"),
        );
    }
    written.push(store.delete("Patient", "h2", None).await.expect("delete").expect("tombstone"));

    let expect = |keep: &dyn Fn(&StoredResource) -> bool| -> Vec<u64> {
        let mut seqs: Vec<u64> = written.iter().filter(|r| keep(r)).map(|r| r.seq).collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs
    };
    for count in [1, 2, 3, 50] {
        let instance = full_history(&store, HistoryScope::Instance { resource_type: "Patient".into(), id: "h1".into() }, count, None).await;
        assert_eq!(instance.iter().map(|e| e.resource.seq).collect::<Vec<_>>(), expect(&|r| r.resource_type == "Patient" && r.id == "h1"));
        let versions: Vec<u64> = instance.iter().map(|e| e.resource.version).collect();
        assert_eq!(versions, vec![4, 3, 2, 1]);

        let of_type = full_history(&store, HistoryScope::Type("Patient".into()), count, None).await;
        assert_eq!(of_type.iter().map(|e| e.resource.seq).collect::<Vec<_>>(), expect(&|r| r.resource_type == "Patient"));

        let system = full_history(&store, HistoryScope::System, count, None).await;
        assert_eq!(system.iter().map(|e| e.resource.seq).collect::<Vec<_>>(), expect(&|_| true));
        // Every entry is exactly the version that was written.
        let by_seq: BTreeMap<u64, &StoredResource> = written.iter().map(|r| (r.seq, r)).collect();
        for entry in &system {
            assert_eq!(Some(&&entry.resource), by_seq.get(&entry.resource.seq));
        }
    }
    let empty = store
        .history(&HistoryRequest { scope: HistoryScope::Type("Encounter".into()), since: None, count: 10, before_seq: None })
        .await
        .expect("history");
    assert_eq!((empty.entries.len(), empty.next_cursor, empty.total), (0, None, 0));
}

/// `since` keeps the versions written at or after that instant.
pub async fn history_since(store: Store) {
    let mut written = Vec::new();
    for i in 0..3 {
        written.push(store.create("Patient", &format!("s{i}"), patient("Since", "Sid")).await.expect("create"));
        // Distinct milliseconds, so `since` falls between writes.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 0..3 {
        written.push(store.update("Patient", &format!("s{i}"), patient("Since", "Sue"), None).await.expect("update"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A `since` between two milliseconds must not include the earlier one.
    let between = |r: &StoredResource| r.last_updated + time::Duration::microseconds(1);
    let pivots = [1, 3, 5].map(|i| written[i].last_updated).into_iter().chain([1, 4].map(|i| between(&written[i])));
    for since in pivots {
        let expected: Vec<u64> = written.iter().rev().filter(|r| r.last_updated >= since).map(|r| r.seq).collect();
        for scope in [HistoryScope::System, HistoryScope::Type("Patient".into())] {
            let entries = full_history(&store, scope, 2, Some(since)).await;
            assert_eq!(entries.iter().map(|e| e.resource.seq).collect::<Vec<_>>(), expected);
        }
        let instance = full_history(&store, HistoryScope::Instance { resource_type: "Patient".into(), id: "s2".into() }, 2, Some(since)).await;
        assert!(instance.iter().all(|e| e.resource.last_updated >= since && e.resource.id == "s2"));
    }
    let future = written[5].last_updated + time::Duration::hours(1);
    assert!(full_history(&store, HistoryScope::System, 5, Some(future)).await.is_empty());
}

// ----- atomic writes ---------------------------------------------------------------------------

/// A multi-op write returns one outcome per op, in op order, with consecutive seqs.
pub async fn write_outcomes_in_op_order(store: Store) {
    store.create("Patient", "w0", patient("Order", "Olga")).await.expect("create");
    let outcomes = store
        .write(vec![
            create("Patient", "w1", patient("Order", "Oscar")),
            update("Patient", "w0", patient("Order", "Olive"), Some(1)),
            WriteOp::Delete { resource_type: "Patient".into(), id: "w1".into(), expected_version: Some(1) },
            WriteOp::Delete { resource_type: "Patient".into(), id: "w-none".into(), expected_version: None },
        ])
        .await
        .expect("write");
    assert_eq!(outcomes.len(), 4);
    let first = created(&outcomes[0]);
    let WriteOutcome::Updated(second) = &outcomes[1] else { panic!("expected Updated, got {:?}", outcomes[1]) };
    let WriteOutcome::Deleted(Some(third)) = &outcomes[2] else { panic!("expected a tombstone, got {:?}", outcomes[2]) };
    assert_eq!(outcomes[3], WriteOutcome::Deleted(None));
    assert_eq!((first.id.as_str(), first.version), ("w1", 1));
    assert_eq!((second.id.as_str(), second.version), ("w0", 2));
    assert_eq!((third.id.as_str(), third.version), ("w1", 2));
    assert_eq!((second.seq, third.seq), (first.seq + 1, first.seq + 2));
    assert_eq!(store.last_seq().await.expect("last seq"), third.seq);
}

/// Everything a failed write would have touched, recorded before it.
struct Snapshot {
    last_seq: u64,
    anchor: Option<StoredResource>,
    system_history: u64,
    anchor_history: u64,
    anchor_search: Vec<String>,
}

async fn snapshot(store: &Store) -> Snapshot {
    let history = |scope| HistoryRequest { scope, since: None, count: 1, before_seq: None };
    Snapshot {
        last_seq: store.last_seq().await.expect("last seq"),
        anchor: store.read("Patient", "anchor").await.expect("read"),
        system_history: store.history(&history(HistoryScope::System)).await.expect("history").total,
        anchor_history: store
            .history(&history(HistoryScope::Instance { resource_type: "Patient".into(), id: "anchor".into() }))
            .await
            .expect("history")
            .total,
        anchor_search: search_ids(store, query("Patient", vec![filter("family", vec![starts("anchor")])])).await,
    }
}

async fn assert_nothing_left_behind(store: &Store, before: &Snapshot) {
    let after = snapshot(store).await;
    assert_eq!(after.last_seq, before.last_seq, "the change feed moved");
    assert_eq!(after.anchor, before.anchor, "the current version changed");
    assert_eq!(after.system_history, before.system_history, "history grew");
    assert_eq!(after.anchor_history, before.anchor_history, "instance history grew");
    assert_eq!(after.anchor_search, before.anchor_search, "search index changed");
    assert!(store.changes(before.last_seq, 10).await.expect("changes").is_empty());
    assert_eq!(store.read("Patient", "ghost").await.expect("read"), None);
    assert_eq!(store.vread("Patient", "anchor", 2).await.expect("vread"), None);
    assert!(search_ids(store, query("Patient", vec![filter("family", vec![starts("ghost")])])).await.is_empty());
    assert!(search_ids(store, query("Patient", vec![filter("family", vec![starts("changed")])])).await.is_empty());
    // The next write takes the very next seq: the rollback left no gap in the feed.
    let next = store.create("Patient", "after", patient("After", "Abe")).await.expect("create");
    assert_eq!(next.seq, before.last_seq + 1);
}

/// Three ops where the last one has a stale version: nothing of the write remains.
pub async fn transaction_atomicity_stale_version(store: Store) {
    store.create("Patient", "anchor", patient("Anchor", "Ann")).await.expect("create");
    let before = snapshot(&store).await;
    let error = store
        .write(vec![
            create("Patient", "ghost", patient("Ghost", "Gary")),
            update("Patient", "anchor", patient("Changed", "Carl"), Some(1)),
            // The op before made it version 2 inside this write, so 1 is stale now.
            update("Patient", "anchor", patient("Changed", "Cleo"), Some(1)),
        ])
        .await
        .expect_err("stale version");
    assert_eq!(error.kind(), StoreErrorKind::VersionConflict);
    assert_nothing_left_behind(&store, &before).await;
}

/// Three ops where the last one creates an existing id: nothing of the write remains.
pub async fn transaction_atomicity_duplicate_create(store: Store) {
    store.create("Patient", "anchor", patient("Anchor", "Ann")).await.expect("create");
    let before = snapshot(&store).await;
    let error = store
        .write(vec![
            create("Patient", "ghost", patient("Ghost", "Gary")),
            update("Patient", "anchor", patient("Changed", "Carl"), None),
            create("Patient", "anchor", patient("Changed", "Cleo")),
        ])
        .await
        .expect_err("duplicate create");
    assert_eq!(error.kind(), StoreErrorKind::AlreadyExists);
    assert_nothing_left_behind(&store, &before).await;
}

/// Failing writes running alongside successful ones (and likely sharing their commit) fail
/// alone.
pub async fn failing_request_does_not_affect_concurrent_ones(store: Store) {
    for i in 0..10 {
        store.create("Patient", &format!("taken{i}"), patient("Taken", "Tom")).await.expect("create");
    }
    let mut tasks = Vec::new();
    for i in 0..10 {
        let free = store.clone();
        tasks.push(tokio::spawn(async move { free.create("Patient", &format!("free{i}"), patient("Free", "Fred")).await }));
        let taken = store.clone();
        tasks.push(tokio::spawn(async move { taken.create("Patient", &format!("taken{i}"), patient("Taken", "Tim")).await }));
    }
    let mut failures = 0;
    for task in futures::future::join_all(tasks).await {
        match task.expect("task") {
            Ok(resource) => assert!(resource.id.starts_with("free")),
            Err(error) => {
                assert_eq!(error.kind(), StoreErrorKind::AlreadyExists);
                failures += 1;
            }
        }
    }
    assert_eq!(failures, 10);
    let free = search_ids(&store, query("Patient", vec![filter("family", vec![starts("free")])])).await;
    assert_eq!(free.len(), 10);
    let taken = search_ids(&store, query("Patient", vec![filter("name", vec![starts("tim")])])).await;
    assert!(taken.is_empty(), "a failed create was indexed: {taken:?}");
    let changes = store.changes(0, 100).await.expect("changes");
    assert_eq!(changes.len(), 20);
}

// ----- change feed -----------------------------------------------------------------------------

/// One change per version, oldest first, seq gap-free, kinds right, paged by `after_seq`.
pub async fn change_feed_order_and_kinds(store: Store) {
    assert_eq!(store.last_seq().await.expect("last seq"), 0);
    assert!(store.changes(0, 10).await.expect("changes").is_empty());
    let a = store.create("Patient", "c1", patient("Feed", "Fia")).await.expect("create");
    let b = store.update("Patient", "c1", patient("Feed", "Fin"), None).await.expect("update");
    let c = store.create("Observation", "c2", observation(LOINC, "1-1", "2020-01-01T00:00:00Z", "Patient/c1")).await.expect("create");
    let d = store.delete("Patient", "c1", None).await.expect("delete").expect("tombstone");
    let e = store.write(vec![update("Patient", "c1", patient("Feed", "Flo"), None)]).await.expect("recreate");
    let e = created(&e[0]).clone();

    let changes = store.changes(0, 100).await.expect("changes");
    let expected = [(&a, ChangeKind::Create), (&b, ChangeKind::Update), (&c, ChangeKind::Create), (&d, ChangeKind::Delete), (&e, ChangeKind::Create)];
    assert_eq!(changes.len(), expected.len());
    for (change, (resource, kind)) in changes.iter().zip(expected) {
        assert_eq!(change.seq, resource.seq);
        assert_eq!(change.kind, kind);
        assert_eq!(&change.resource, resource);
    }
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seq has gaps: {seqs:?}");
    assert_eq!(store.last_seq().await.expect("last seq"), e.seq);

    // Paging by position yields the same sequence.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.changes(after, 2).await.expect("changes");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|c| c.seq).unwrap_or(after);
        paged.extend(page);
    }
    assert_eq!(paged, changes);
    assert!(store.changes(e.seq, 10).await.expect("changes").is_empty());
    assert!(store.changes(0, 0).await.expect("changes").is_empty());
}

/// Many concurrent writers: every version appears exactly once, seq strictly increasing
/// without gaps.
pub async fn change_feed_concurrent_writers(store: Store) {
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..8 {
                let id = format!("cw{writer}-{i}");
                written.push(store.create("Patient", &id, patient("Crowd", "Cal")).await.expect("create"));
                if i % 2 == 0 {
                    written.push(store.update("Patient", &id, patient("Crowd", "Cat"), Some(1)).await.expect("update"));
                }
            }
            written
        }));
    }
    let mut written = Vec::new();
    for task in futures::future::join_all(tasks).await {
        written.extend(task.expect("task"));
    }
    let changes = store.changes(0, 10_000).await.expect("changes");
    assert_eq!(changes.len(), written.len());
    let seqs: Vec<u64> = changes.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "seq not gap-free: {seqs:?}");
    assert_eq!(store.last_seq().await.expect("last seq"), *seqs.last().expect("changes"));
    let versions: HashSet<(String, u64)> = changes.iter().map(|c| (c.resource.id.clone(), c.resource.version)).collect();
    assert_eq!(versions.len(), changes.len(), "a version appears twice");
    for resource in &written {
        let change = changes.iter().find(|c| c.seq == resource.seq).expect("every write is in the feed");
        assert_eq!(&change.resource, resource);
        let kind = if resource.version == 1 { ChangeKind::Create } else { ChangeKind::Update };
        assert_eq!(change.kind, kind);
    }
}

/// 16 tasks doing read → update(expected_version) with retries: one winner per version and no
/// lost update.
pub async fn concurrent_updaters_no_lost_update(store: Store) {
    const UPDATERS: u64 = 16;
    const INCREMENTS: u64 = 5;
    let mut body = patient("Counter", "Cora");
    body["multipleBirthInteger"] = json!(0);
    store.create("Patient", "counter", body).await.expect("create");

    let mut tasks = Vec::new();
    for _ in 0..UPDATERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            while (won.len() as u64) < INCREMENTS {
                let current = store.read("Patient", "counter").await.expect("read").expect("exists");
                let mut body = json_body(&current);
                let count = body["multipleBirthInteger"].as_u64().expect("counter");
                body["multipleBirthInteger"] = json!(count + 1);
                match store.update("Patient", "counter", body, Some(current.version)).await {
                    Ok(stored) => {
                        assert_eq!(stored.version, current.version + 1);
                        won.push(stored.version);
                    }
                    Err(error) => assert_eq!(error.kind(), StoreErrorKind::VersionConflict, "{error}"),
                }
            }
            won
        }));
    }
    let mut won: Vec<u64> = Vec::new();
    for task in futures::future::join_all(tasks).await {
        won.extend(task.expect("task"));
    }
    let total = UPDATERS * INCREMENTS;
    won.sort_unstable();
    assert_eq!(won, (2..=total + 1).collect::<Vec<_>>(), "each version has exactly one winner");

    let last = store.read("Patient", "counter").await.expect("read").expect("exists");
    assert_eq!(last.version, total + 1);
    assert_eq!(json_body(&last)["multipleBirthInteger"], json!(total), "an update was lost");
    let history = full_history(&store, HistoryScope::Instance { resource_type: "Patient".into(), id: "counter".into() }, 7, None).await;
    let versions: Vec<u64> = history.iter().map(|e| e.resource.version).collect();
    assert_eq!(versions, (1..=total + 1).rev().collect::<Vec<_>>());
    for entry in &history {
        assert_eq!(json_body(&entry.resource)["multipleBirthInteger"], json!(entry.resource.version - 1));
    }
}

/// Conditional create: no match creates, one match returns it, several fail.
pub async fn conditional_create(store: Store) {
    const SYSTEM: &str = "http://example.org/mrn";
    let condition = |value: &str| {
        Some(query("Patient", vec![filter("identifier", vec![token(TokenSystem::Is(SYSTEM.into()), Some(value))])]))
    };
    let conditional = |id: &str, value: &str| WriteOp::Create {
        resource_type: "Patient".into(),
        id: id.into(),
        body: patient_with_identifier("Cond", SYSTEM, value),
        if_none_exist: condition(value),
    };

    let first = store.write(vec![conditional("k1", "111")]).await.expect("no match creates");
    let first = created(&first[0]).clone();
    let last_seq = store.last_seq().await.expect("last seq");

    let again = store.write(vec![conditional("k2", "111")]).await.expect("one match");
    assert_eq!(again, vec![WriteOutcome::Existing(first.clone())]);
    assert_eq!(store.read("Patient", "k2").await.expect("read"), None);
    assert_eq!(store.last_seq().await.expect("last seq"), last_seq, "a matched conditional create wrote");

    // Inside one write, an earlier op's resource counts as a match for a later condition.
    let batch = store.write(vec![conditional("k3", "333"), conditional("k4", "333")]).await.expect("write");
    let k3 = created(&batch[0]).clone();
    assert_eq!(batch[1], WriteOutcome::Existing(k3));

    store.create("Patient", "k5", patient_with_identifier("Cond", SYSTEM, "111")).await.expect("plain create");
    let last_seq = store.last_seq().await.expect("last seq");
    let error = store.write(vec![conditional("k6", "111")]).await.expect_err("two matches");
    assert_eq!(error.kind(), StoreErrorKind::MultipleMatches);
    assert_eq!(store.read("Patient", "k6").await.expect("read"), None);
    assert_eq!(store.last_seq().await.expect("last seq"), last_seq);
}

// ----- search ----------------------------------------------------------------------------------

async fn seed_patients(store: &Store) {
    for (id, family, given) in [
        ("pa", "Smith", "John"),
        ("pb", "Smithers", "Wayland"),
        ("pc", "Jones", "Jessica"),
        ("pd", "Smyth", "Jonah"),
        ("pe", "Brown", "Smitty"),
    ] {
        store.create("Patient", id, patient(family, given)).await.expect("create");
    }
}

async fn seed_observations(store: &Store) {
    for (id, system, code, effective, subject) in [
        ("oa", LOINC, "8867-4", "2021-03-15T10:00:00Z", "Patient/pa"),
        ("ob", LOINC, "8867-4", "2021-03-20T10:00:00Z", "Patient/pb"),
        ("oc", LOINC, "9279-1", "2021-03-15T23:30:00Z", "Patient/pa"),
        ("od", "http://snomed.info/sct", "8867-4", "2022-01-01T00:00:00Z", "Patient/pc"),
        ("oe", LOINC, "2708-6", "2020-12-31T12:00:00Z", "Group/pa"),
    ] {
        store.create("Observation", id, observation(system, code, effective, subject)).await.expect("create");
    }
}

pub async fn search_string(store: Store) {
    seed_patients(&store).await;
    let family = |predicates| query("Patient", vec![filter("family", predicates)]);
    assert_eq!(search_ids(&store, family(vec![starts("smi")])).await, refs("Patient", &["pa", "pb"]));
    assert_eq!(search_ids(&store, family(vec![starts("smith")])).await, refs("Patient", &["pa", "pb"]));
    assert_eq!(search_ids(&store, family(vec![starts("smithers")])).await, refs("Patient", &["pb"]));
    assert!(search_ids(&store, family(vec![starts("smithersons")])).await.is_empty());
    assert_eq!(search_ids(&store, family(vec![Predicate::StringExact("Smith".into())])).await, refs("Patient", &["pa"]));
    assert!(search_ids(&store, family(vec![Predicate::StringExact("smith".into())])).await.is_empty());
    // `name` covers given names too.
    let name = query("Patient", vec![filter("name", vec![starts("smi")])]);
    assert_eq!(search_ids(&store, name).await, refs("Patient", &["pa", "pb", "pe"]));
    // The same values under another type do not match.
    store.create("Observation", "ox", observation(LOINC, "smith", "2020-01-01T00:00:00Z", "Patient/pa")).await.expect("create");
    assert!(search_ids(&store, query("Observation", vec![filter("family", vec![starts("smi")])])).await.is_empty());
    // No filters: every live resource of the type, in id order.
    assert_eq!(search_ids(&store, SearchQuery::all(Some("Patient"))).await, refs("Patient", &["pa", "pb", "pc", "pd", "pe"]));
}

pub async fn search_token(store: Store) {
    seed_observations(&store).await;
    let code = |predicates| query("Observation", vec![filter("code", predicates)]);
    let loinc = || TokenSystem::Is(LOINC.into());
    assert_eq!(search_ids(&store, code(vec![token(TokenSystem::Any, Some("8867-4"))])).await, refs("Observation", &["oa", "ob", "od"]));
    assert_eq!(search_ids(&store, code(vec![token(loinc(), Some("8867-4"))])).await, refs("Observation", &["oa", "ob"]));
    assert_eq!(search_ids(&store, code(vec![token(loinc(), None)])).await, refs("Observation", &["oa", "ob", "oc", "oe"]));
    assert!(search_ids(&store, code(vec![token(TokenSystem::None, Some("8867-4"))])).await.is_empty());
    assert!(search_ids(&store, code(vec![token(loinc(), Some("0000-0"))])).await.is_empty());
    assert_eq!(search_ids(&store, query("Observation", vec![filter("_id", vec![id_is("oc")])])).await, refs("Observation", &["oc"]));

    let mut body = json!({"resourceType": "Observation", "status": "final", "code": {"coding": [{"code": "local-1"}]}});
    body["effectiveDateTime"] = json!("2021-01-01T00:00:00Z");
    store.create("Observation", "of", body).await.expect("create");
    assert_eq!(search_ids(&store, code(vec![token(TokenSystem::None, Some("local-1"))])).await, refs("Observation", &["of"]));
    assert_eq!(search_ids(&store, code(vec![token(TokenSystem::Any, Some("local-1"))])).await, refs("Observation", &["of"]));
}

pub async fn search_date(store: Store) {
    seed_observations(&store).await;
    let date = |predicate| query("Observation", vec![filter("date", vec![predicate])]);
    let cases = [
        (day(Prefix::Eq, 2021, 3, 15), vec!["oa", "oc"]),
        (day(Prefix::Ne, 2021, 3, 15), vec!["ob", "od", "oe"]),
        (day(Prefix::Lt, 2021, 3, 16), vec!["oa", "oc", "oe"]),
        (day(Prefix::Gt, 2021, 3, 15), vec!["ob", "od"]),
        (day(Prefix::Ge, 2021, 3, 20), vec!["ob", "od"]),
        (day(Prefix::Le, 2021, 3, 15), vec!["oa", "oc", "oe"]),
        (day(Prefix::Sa, 2021, 3, 15), vec!["ob", "od"]),
        (day(Prefix::Eb, 2021, 3, 15), vec!["oe"]),
        (day(Prefix::Ap, 2021, 3, 20), vec!["ob"]),
    ];
    for (predicate, expected) in cases {
        let found = search_ids(&store, date(predicate.clone())).await;
        assert_eq!(found, refs("Observation", &expected), "date search {predicate:?}");
    }
}

pub async fn search_reference(store: Store) {
    seed_observations(&store).await;
    let subject = |predicates| query("Observation", vec![filter("subject", predicates)]);
    assert_eq!(search_ids(&store, subject(vec![reference(Some("Patient"), "pa")])).await, refs("Observation", &["oa", "oc"]));
    assert_eq!(search_ids(&store, subject(vec![reference(None, "pa")])).await, refs("Observation", &["oa", "oc", "oe"]));
    assert_eq!(search_ids(&store, subject(vec![reference(Some("Group"), "pa")])).await, refs("Observation", &["oe"]));
    assert!(search_ids(&store, subject(vec![reference(Some("Patient"), "nobody")])).await.is_empty());
}

/// Comma-separated values are OR, repeated parameters are AND.
pub async fn search_and_or(store: Store) {
    seed_patients(&store).await;
    seed_observations(&store).await;
    let or = query("Patient", vec![filter("family", vec![starts("jon"), starts("smy"), starts("nobody")])]);
    assert_eq!(search_ids(&store, or).await, refs("Patient", &["pc", "pd"]));
    let and = query("Patient", vec![filter("family", vec![starts("smi")]), filter("name", vec![starts("jo")])]);
    assert_eq!(search_ids(&store, and).await, refs("Patient", &["pa"]));
    let and_or = query(
        "Observation",
        vec![
            filter("code", vec![token(TokenSystem::Is(LOINC.into()), Some("8867-4")), token(TokenSystem::Any, Some("9279-1"))]),
            filter("date", vec![day(Prefix::Eq, 2021, 3, 15), day(Prefix::Eq, 2022, 1, 1)]),
            filter("subject", vec![reference(Some("Patient"), "pa"), reference(Some("Patient"), "pc")]),
        ],
    );
    assert_eq!(search_ids(&store, and_or).await, refs("Observation", &["oa", "oc"]));
    // The same parameter twice (a date range).
    let range = query("Observation", vec![filter("date", vec![day(Prefix::Ge, 2021, 3, 15)]), filter("date", vec![day(Prefix::Lt, 2021, 3, 20)])]);
    assert_eq!(search_ids(&store, range).await, refs("Observation", &["oa", "oc"]));
    let none = query("Patient", vec![filter("family", vec![starts("smi")]), filter("family", vec![starts("jon")])]);
    assert!(search_ids(&store, none).await.is_empty());
    let empty_or = query("Patient", vec![filter("family", Vec::new())]);
    assert!(search_ids(&store, empty_or).await.is_empty());
}

/// The index always describes the current version only.
pub async fn search_follows_updates_and_deletes(store: Store) {
    store.create("Patient", "r1", patient("Before", "Bea")).await.expect("create");
    store.create("Patient", "r2", patient("Before", "Bob")).await.expect("create");
    store.update("Patient", "r1", patient("After", "Bea"), None).await.expect("update");
    let family = |prefix: &str| query("Patient", vec![filter("family", vec![starts(prefix)])]);
    assert_eq!(search_ids(&store, family("before")).await, refs("Patient", &["r2"]));
    assert_eq!(search_ids(&store, family("after")).await, refs("Patient", &["r1"]));
    store.delete("Patient", "r2", None).await.expect("delete");
    assert!(search_ids(&store, family("before")).await.is_empty());
    assert_eq!(search_ids(&store, SearchQuery::all(Some("Patient"))).await, refs("Patient", &["r1"]));
    store.write(vec![update("Patient", "r2", patient("Again", "Bob"), None)]).await.expect("recreate");
    assert_eq!(search_ids(&store, family("again")).await, refs("Patient", &["r2"]));
    assert!(search_ids(&store, family("before")).await.is_empty());
}

/// Paging by cursor while other writers create matching resources: every resource that existed
/// before paging began is returned exactly once, and nothing is returned twice.
pub async fn search_paging_stable_under_concurrent_creates(store: Store) {
    let mut existing = BTreeSet::new();
    for i in 0..30 {
        let id = format!("st{:02}", i * 2);
        store.create("Patient", &id, patient("Stable", "Stan")).await.expect("create");
        existing.insert(format!("Patient/{id}"));
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                // Ids that sort between, before and after the existing ones.
                let id = if i == 0 { "st".to_string() } else { format!("st{:02}x", i * 2 - 1) };
                store.create("Patient", &id, patient("Stable", "Stu")).await.expect("create");
                tokio::task::yield_now().await;
            }
            store.create("Patient", "zz-last", patient("Stable", "Stu")).await.expect("create");
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut q = query("Patient", vec![filter("family", vec![starts("stable")])]);
    q.count = 3;
    loop {
        let page = store.search(&q).await.expect("search");
        seen.extend(page.resources.iter().map(|r| format!("Patient/{}", r.id)));
        match page.next_cursor {
            Some(cursor) => q.cursor = Some(cursor),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry was repeated: {seen:?}");
    let missing: Vec<&String> = existing.difference(&unique).collect();
    assert!(missing.is_empty(), "pre-existing resources skipped: {missing:?}");
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// System-level search covers all types, or those in `types` (in an order the backend
/// chooses, so compared as sorted lists).
pub async fn search_system_level(store: Store) {
    seed_patients(&store).await;
    seed_observations(&store).await;
    store.create("Encounter", "pa", json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}})).await.expect("create");

    let mut by_id = SearchQuery::all(None);
    by_id.filters = vec![filter("_id", vec![id_is("pa"), id_is("oa")])];
    let all = vec!["Encounter/pa".to_string(), "Observation/oa".to_string(), "Patient/pa".to_string()];
    assert_eq!(sorted(search_ids(&store, by_id.clone()).await), all);
    by_id.types = vec!["Patient".into(), "Encounter".into()];
    assert_eq!(sorted(search_ids(&store, by_id.clone()).await), vec!["Encounter/pa".to_string(), "Patient/pa".to_string()]);
    by_id.types = vec!["Observation".into()];
    assert_eq!(sorted(search_ids(&store, by_id).await), vec!["Observation/oa".to_string()]);

    let everything = sorted(search_ids(&store, SearchQuery::all(None)).await);
    assert_eq!(everything.len(), 11);
    assert!(everything.windows(2).all(|w| w[0] < w[1]), "not in (type, id) order: {everything:?}");
    let mut some_types = SearchQuery::all(None);
    some_types.types = vec!["Observation".into(), "Encounter".into()];
    assert_eq!(sorted(search_ids(&store, some_types).await).len(), 6);
}

pub async fn search_rejects_malformed_cursor(store: Store) {
    seed_patients(&store).await;
    for cursor in ["not a cursor", "%%%", "zz"] {
        let mut q = SearchQuery::all(Some("Patient"));
        q.cursor = Some(cursor.into());
        let error = store.search(&q).await.expect_err("malformed cursor");
        assert_eq!(error.kind(), StoreErrorKind::InvalidQuery, "cursor {cursor:?}");
    }
    // A page of zero still reports the total.
    let mut q = SearchQuery::all(Some("Patient"));
    q.count = 0;
    let page = store.search(&q).await.expect("search");
    assert_eq!((page.resources.len(), page.total), (0, Some(5)));
}

pub async fn checkpoints(store: Store) {
    assert_eq!(store.checkpoint("projections").await.expect("checkpoint"), None);
    store.save_checkpoint("projections", 42).await.expect("save");
    store.save_checkpoint("backup", 7).await.expect("save");
    assert_eq!(store.checkpoint("projections").await.expect("checkpoint"), Some(42));
    store.save_checkpoint("projections", 43).await.expect("save");
    assert_eq!(store.checkpoint("projections").await.expect("checkpoint"), Some(43));
    assert_eq!(store.checkpoint("backup").await.expect("checkpoint"), Some(7));
    store.ping().await.expect("ping");
}

// ----- search: the full contract, through the real parser ---------------------------------------

/// `query` (`a=b&c=d`, values already decoded) parsed by `fhir_model::parse_search`, strictly.
fn parsed(resource_type: Option<&str>, query: &str) -> SearchQuery {
    let params: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (name.to_string(), value.to_string())
        })
        .collect();
    fhir_model::parse_search(resource_type, &params, true).unwrap_or_else(|e| panic!("parse {query:?}: {e}"))
}

/// Ids matching `query` for `resource_type`, every page followed.
async fn found(store: &Store, resource_type: &str, query: &str) -> Vec<String> {
    search_ids(store, parsed(Some(resource_type), query)).await
}

/// Every id matching, sorted, for cases where order is not the point.
async fn found_set(store: &Store, resource_type: &str, query: &str) -> Vec<String> {
    let mut ids = found(store, resource_type, query).await;
    ids.sort();
    ids
}

const UCUM: &str = "http://unitsofmeasure.org";

fn quantity(value: f64, unit: &str, code: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": code})
}

/// Patients with organisations, identifiers, genders and birth dates, and observations with
/// quantities, components, texts and every shape of subject reference.
async fn seed_clinical(store: &Store) {
    let writes = vec![
        create("Organization", "org1", json!({"resourceType": "Organization", "name": "Acme Health"})),
        create("Organization", "org2", json!({"resourceType": "Organization", "name": "Beta Clinic"})),
        create(
            "Patient",
            "p1",
            json!({
                "resourceType": "Patient",
                "identifier": [{
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                    "system": "http://hospital.example/mrn",
                    "value": "111"
                }],
                "name": [{"family": "Smith", "given": ["John"]}],
                "gender": "male",
                "birthDate": "1970-01-01",
                "managingOrganization": {"reference": "Organization/org1"}
            }),
        ),
        create(
            "Patient",
            "p2",
            json!({
                "resourceType": "Patient",
                "name": [{"family": "Jones", "given": ["Ann"]}],
                "gender": "female",
                "birthDate": "1980-05-05",
                "managingOrganization": {"reference": "Organization/org2"}
            }),
        ),
        create("Patient", "p3", json!({"resourceType": "Patient", "name": [{"family": "Brown"}]})),
        create(
            "Observation",
            "o1",
            json!({
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}], "text": "Heart rate"},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2021-01-01",
                "valueQuantity": quantity(72.0, "beats/minute", "/min")
            }),
        ),
        create(
            "Observation",
            "o2",
            json!({
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": "Blood pressure panel"},
                "subject": {"reference": "Patient/p2"},
                "effectiveDateTime": "2021-02-01",
                "component": [
                    {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity(120.0, "mmHg", "mm[Hg]")},
                    {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": quantity(80.0, "mmHg", "mm[Hg]")}
                ]
            }),
        ),
        create(
            "Observation",
            "o3",
            json!({
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "29463-7"}], "text": "Body weight"},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2021-03-01",
                "valueQuantity": quantity(70.0, "kg", "kg")
            }),
        ),
        create(
            "Observation",
            "o4",
            json!({
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
                "subject": {"reference": "http://other.example/fhir/Patient/9"},
                "effectiveDateTime": "2021-04-01",
                "valueQuantity": quantity(70000.0, "g", "g")
            }),
        ),
        create(
            "Observation",
            "o5",
            json!({
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
                "subject": {"identifier": {"system": "http://ids.example", "value": "abc"}}
            }),
        ),
    ];
    store.write(writes).await.expect("seed");
}

/// Number, quantity (with canonical units), uri above/below, token text and of-type.
pub async fn search_value_kinds(store: Store) {
    seed_clinical(&store).await;
    for (id, probability) in [("ra1", 0.3), ("ra2", 0.8)] {
        let body = json!({
            "resourceType": "RiskAssessment", "status": "final", "subject": {"reference": "Patient/p1"},
            "prediction": [{"probabilityDecimal": probability}]
        });
        store.create("RiskAssessment", id, body).await.expect("create");
    }
    assert_eq!(found(&store, "RiskAssessment", "probability=gt0.5").await, refs("RiskAssessment", &["ra2"]));
    assert_eq!(found(&store, "RiskAssessment", "probability=0.3").await, refs("RiskAssessment", &["ra1"]));
    assert_eq!(found(&store, "RiskAssessment", "probability=le0.8").await, refs("RiskAssessment", &["ra1", "ra2"]));
    assert_eq!(found(&store, "RiskAssessment", "probability=ne0.3").await, refs("RiskAssessment", &["ra2"]));

    let obs = |q: &'static str| {
        let store = store.clone();
        async move { found_set(&store, "Observation", q).await }
    };
    assert_eq!(obs("value-quantity=72").await, refs("Observation", &["o1"]));
    assert_eq!(obs("value-quantity=gt71|http://unitsofmeasure.org|/min").await, refs("Observation", &["o1"]));
    assert!(obs("value-quantity=lt69||kg").await.is_empty());
    // A convertible unit is compared canonically even without a system.
    assert_eq!(obs("value-quantity=lt71||kg").await, refs("Observation", &["o3", "o4"]));
    // 70 kg and 70000 g are the same mass: compared in the canonical unit.
    assert_eq!(obs("value-quantity=70|http://unitsofmeasure.org|kg").await, refs("Observation", &["o3", "o4"]));
    // At the precision of "70000 g" (±0.5 g) the 70 kg of o3 (±0.5 kg) is not equal.
    assert_eq!(obs("value-quantity=70000|http://unitsofmeasure.org|g").await, refs("Observation", &["o4"]));
    assert_eq!(obs("value-quantity=ge60||kg").await, refs("Observation", &["o3", "o4"]));
    assert_eq!(obs("value-quantity=gt100|http://unitsofmeasure.org|g").await, refs("Observation", &["o3", "o4"]));

    for (id, url) in [
        ("vsa", "http://example.org/fhir/ValueSet/a"),
        ("vsb", "http://example.org/fhir/ValueSet/b"),
        ("vso", "http://other.example/vs"),
    ] {
        store.create("ValueSet", id, json!({"resourceType": "ValueSet", "status": "active", "url": url})).await.expect("create");
    }
    assert_eq!(found(&store, "ValueSet", "url=http://example.org/fhir/ValueSet/a").await, refs("ValueSet", &["vsa"]));
    assert_eq!(found(&store, "ValueSet", "url:below=http://example.org/fhir/").await, refs("ValueSet", &["vsa", "vsb"]));
    assert_eq!(found(&store, "ValueSet", "url:above=http://example.org/fhir/ValueSet/a/extra").await, refs("ValueSet", &["vsa"]));
    assert!(found(&store, "ValueSet", "url=http://example.org/fhir/").await.is_empty());

    assert_eq!(obs("code:text=heart").await, refs("Observation", &["o1"]));
    assert_eq!(obs("code:text=b").await, refs("Observation", &["o2", "o3"]));
    let of_type = "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|111";
    assert_eq!(found(&store, "Patient", of_type).await, refs("Patient", &["p1"]));
    assert!(found(&store, "Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|222").await.is_empty());
    assert_eq!(found(&store, "Patient", "identifier=http://hospital.example/mrn|111").await, refs("Patient", &["p1"]));
}

/// Composite tuples keep their components together; references by url and identifier;
/// string `:exact` and `:contains`.
pub async fn search_composite_reference_and_string_modifiers(store: Store) {
    seed_clinical(&store).await;
    let obs = |q: &'static str| {
        let store = store.clone();
        async move { found_set(&store, "Observation", q).await }
    };
    assert_eq!(obs("component-code-value-quantity=http://loinc.org|8480-6$gt100").await, refs("Observation", &["o2"]));
    // 80 belongs to the diastolic component, not the systolic one.
    assert!(obs("component-code-value-quantity=http://loinc.org|8480-6$80").await.is_empty());
    assert_eq!(obs("component-code-value-quantity=http://loinc.org|8462-4$80").await, refs("Observation", &["o2"]));
    assert_eq!(obs("code-value-quantity=http://loinc.org|29463-7$70|http://unitsofmeasure.org|kg").await, refs("Observation", &["o3", "o4"]));
    assert!(obs("code-value-quantity=http://loinc.org|8867-4$70|http://unitsofmeasure.org|kg").await.is_empty());

    assert_eq!(obs("subject=http://other.example/fhir/Patient/9").await, refs("Observation", &["o4"]));
    assert_eq!(obs("subject:identifier=http://ids.example|abc").await, refs("Observation", &["o5"]));
    assert!(obs("subject:identifier=http://ids.example|abd").await.is_empty());
    assert_eq!(obs("subject=Patient/p1").await, refs("Observation", &["o1", "o3"]));

    assert_eq!(found(&store, "Patient", "name:exact=Smith").await, refs("Patient", &["p1"]));
    assert!(found(&store, "Patient", "name:exact=smith").await.is_empty());
    assert_eq!(found(&store, "Patient", "name:contains=ONE").await, refs("Patient", &["p2"]));
    assert_eq!(found(&store, "Patient", "family:contains=o").await, refs("Patient", &["p2", "p3"]));
}

/// `:not` matches resources without the element too; `:missing` both ways.
pub async fn search_negation_and_missing(store: Store) {
    seed_clinical(&store).await;
    assert_eq!(found(&store, "Patient", "gender:not=male").await, refs("Patient", &["p2", "p3"]));
    assert_eq!(found(&store, "Patient", "gender:not=male,female").await, refs("Patient", &["p3"]));
    assert_eq!(found(&store, "Patient", "gender:missing=true").await, refs("Patient", &["p3"]));
    assert_eq!(found(&store, "Patient", "gender:missing=false").await, refs("Patient", &["p1", "p2"]));
    assert_eq!(found(&store, "Patient", "birthdate:missing=true").await, refs("Patient", &["p3"]));
    assert_eq!(found(&store, "Patient", "organization:missing=false&gender:not=female").await, refs("Patient", &["p1"]));
    assert_eq!(found_set(&store, "Observation", "value-quantity:missing=true").await, refs("Observation", &["o2", "o5"]));
    assert_eq!(found_set(&store, "Observation", "code:not=8867-4").await, refs("Observation", &["o2", "o3", "o4"]));
}

/// Chains of depth 1 and 2, `_has` and nested `_has`.
pub async fn search_chain_and_has(store: Store) {
    seed_clinical(&store).await;
    assert_eq!(found(&store, "Observation", "subject:Patient.name=smith").await, refs("Observation", &["o1", "o3"]));
    assert_eq!(found(&store, "Observation", "patient.name=jones").await, refs("Observation", &["o2"]));
    assert!(found(&store, "Observation", "patient.name=nobody").await.is_empty());
    assert_eq!(
        found(&store, "Observation", "subject:Patient.organization.name=acme").await,
        refs("Observation", &["o1", "o3"])
    );
    assert_eq!(
        found(&store, "Observation", "subject:Patient.organization.name=beta&code=85354-9").await,
        refs("Observation", &["o2"])
    );
    assert_eq!(found(&store, "Patient", "_has:Observation:patient:code=8867-4").await, refs("Patient", &["p1"]));
    assert_eq!(found(&store, "Patient", "_has:Observation:subject:code=http://loinc.org|85354-9").await, refs("Patient", &["p2"]));
    assert!(found(&store, "Patient", "_has:Observation:patient:code=0000-0").await.is_empty());
    assert_eq!(
        found(&store, "Organization", "_has:Patient:organization:_has:Observation:patient:code=85354-9").await,
        refs("Organization", &["org2"])
    );
    // A chain's target that is deleted no longer matches.
    store.delete("Organization", "org1", None).await.expect("delete");
    assert!(found(&store, "Observation", "subject:Patient.organization.name=acme").await.is_empty());
}

/// `_sort`: single, multiple and descending keys, resources without a value last.
pub async fn search_sort(store: Store) {
    seed_clinical(&store).await;
    assert_eq!(found(&store, "Patient", "_sort=family").await, refs("Patient", &["p3", "p2", "p1"]));
    assert_eq!(found(&store, "Patient", "_sort=-family").await, refs("Patient", &["p1", "p2", "p3"]));
    assert_eq!(found(&store, "Patient", "_sort=birthdate").await, refs("Patient", &["p1", "p2", "p3"]));
    assert_eq!(found(&store, "Patient", "_sort=-birthdate").await, refs("Patient", &["p2", "p1", "p3"]));
    assert_eq!(found(&store, "Patient", "_sort=gender,-family").await, refs("Patient", &["p2", "p1", "p3"]));
    assert_eq!(found(&store, "Patient", "_sort=-_id").await, refs("Patient", &["p3", "p2", "p1"]));
    assert_eq!(
        found(&store, "Observation", "_sort=-date").await,
        refs("Observation", &["o4", "o3", "o2", "o1", "o5"])
    );
    assert_eq!(
        found(&store, "Observation", "code=29463-7,8867-4&_sort=date").await,
        refs("Observation", &["o1", "o3", "o4", "o5"])
    );
    store.update("Patient", "p3", json!({"resourceType": "Patient", "name": [{"family": "Adams"}]}), None).await.expect("update");
    let mut last = SearchQuery::all(Some("Patient"));
    last.sort = vec![fhir_model::SortKey { param: "_lastUpdated".into(), descending: true }];
    assert_eq!(search_ids(&store, last).await.first().map(String::as_str), Some("Patient/p3"));
}

/// Paging a sorted search while resources are updated, created and deleted between pages:
/// nothing is repeated, and every resource that existed throughout comes exactly once, in the
/// order of the first page's moment.
pub async fn search_sorted_paging_stable_under_writes(store: Store) {
    for i in 0..30 {
        let body = json!({"resourceType": "Patient", "name": [{"family": format!("Page{:02}", 29 - i)}]});
        store.create("Patient", &format!("sp{i:02}"), body).await.expect("create");
    }
    let mut q = parsed(Some("Patient"), "family=page&_sort=family&_count=4");
    let expected: Vec<String> = (0..30).rev().map(|i| format!("Patient/sp{i:02}")).collect();
    let mut seen: Vec<String> = Vec::new();
    let mut deleted: BTreeSet<String> = BTreeSet::new();
    let mut round = 0;
    loop {
        let page = store.search(&q).await.expect("search");
        assert_eq!(page.total, Some(30), "the total is the first page's");
        seen.extend(page.resources.iter().map(|r| format!("Patient/{}", r.id)));
        let Some(cursor) = page.next_cursor else { break };
        q.cursor = Some(cursor);
        // Between pages: move one resource to the front of the order, add one that sorts first,
        // delete one not yet seen.
        round += 1;
        let moved = format!("sp{:02}", round);
        store.update("Patient", &moved, json!({"resourceType": "Patient", "name": [{"family": "Page00a"}]}), None).await.expect("update");
        store.create("Patient", &format!("new{round}"), json!({"resourceType": "Patient", "name": [{"family": "Page"}]})).await.expect("create");
        let victim = format!("sp{:02}", 30 - 2 * round);
        if round < 5 && !seen.contains(&format!("Patient/{victim}")) {
            store.delete("Patient", &victim, None).await.expect("delete");
            deleted.insert(format!("Patient/{victim}"));
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an entry was repeated: {seen:?}");
    let survivors: Vec<String> = expected.iter().filter(|id| !deleted.contains(*id)).cloned().collect();
    assert_eq!(seen, survivors, "sorted pages skipped or reordered entries");
    // A cursor from another search, or a forged snapshot, is refused.
    let mut other = parsed(Some("Patient"), "_sort=-family&_count=4");
    let first = store.search(&other).await.expect("search");
    other.cursor = Some("s0123456789abcdef.4".into());
    assert_eq!(store.search(&other).await.expect_err("unknown snapshot").kind(), StoreErrorKind::InvalidQuery);
    let mut mismatched = parsed(Some("Patient"), "_sort=family&_count=4");
    mismatched.cursor = first.next_cursor;
    assert_eq!(store.search(&mismatched).await.expect_err("cursor of another search").kind(), StoreErrorKind::InvalidQuery);
}

/// Default-order paging while resources are updated and deleted between pages: no repeats,
/// and every resource that existed throughout (and still matches) is returned.
pub async fn search_default_paging_stable_under_updates_and_deletes(store: Store) {
    for i in 0..20 {
        store.create("Patient", &format!("dp{i:02}"), patient("Steady", "Sal")).await.expect("create");
    }
    let mut q = parsed(Some("Patient"), "family=steady&_count=3");
    let mut seen: Vec<String> = Vec::new();
    let mut round = 0;
    loop {
        let page = store.search(&q).await.expect("search");
        seen.extend(page.resources.iter().map(|r| r.id.clone()));
        let Some(cursor) = page.next_cursor else { break };
        q.cursor = Some(cursor);
        round += 1;
        // Update one already seen and one not yet seen (both still match), delete a later one.
        store.update("Patient", "dp00", patient("Steady", &format!("Sal{round}")), None).await.expect("update");
        store.update("Patient", "dp19", patient("Steady", &format!("Sal{round}")), None).await.expect("update");
        if round == 1 {
            store.delete("Patient", "dp15", None).await.expect("delete");
        }
    }
    let expected: Vec<String> = (0..20).filter(|i| *i != 15).map(|i| format!("dp{i:02}")).collect();
    assert_eq!(seen, expected);
}

/// `_include` and `_revinclude`: by parameter, `*`, target type, and `:iterate`; included
/// resources are current, live, distinct and not among the matches.
pub async fn search_includes(store: Store) {
    seed_clinical(&store).await;
    let ids = |resources: &[StoredResource]| {
        let mut ids: Vec<String> = resources.iter().map(|r| format!("{}/{}", r.resource_type, r.id)).collect();
        ids.sort();
        ids
    };
    let page = store.search(&parsed(Some("Observation"), "_id=o1,o3&_include=Observation:subject")).await.expect("search");
    assert_eq!(ids(&page.resources), refs("Observation", &["o1", "o3"]));
    assert_eq!(ids(&page.included), refs("Patient", &["p1"]));
    let page = store.search(&parsed(Some("Observation"), "_id=o1&_include=Observation:*")).await.expect("search");
    assert_eq!(ids(&page.included), refs("Patient", &["p1"]));
    let page = store.search(&parsed(Some("Observation"), "_id=o1&_include=Observation:subject:Group")).await.expect("search");
    assert!(page.included.is_empty());
    let page = store
        .search(&parsed(Some("Observation"), "_id=o1,o2&_include=Observation:subject&_include:iterate=Patient:organization"))
        .await
        .expect("search");
    assert_eq!(ids(&page.included), vec!["Organization/org1", "Organization/org2", "Patient/p1", "Patient/p2"]);
    // Without :iterate the second hop is not taken.
    let page = store
        .search(&parsed(Some("Observation"), "_id=o1&_include=Observation:subject&_include=Patient:organization"))
        .await
        .expect("search");
    assert_eq!(ids(&page.included), vec!["Patient/p1"]);

    let page = store.search(&parsed(Some("Patient"), "_id=p1&_revinclude=Observation:subject")).await.expect("search");
    assert_eq!(ids(&page.included), refs("Observation", &["o1", "o3"]));
    let page = store.search(&parsed(Some("Patient"), "_id=p1,p2&_revinclude=Observation:*")).await.expect("search");
    assert_eq!(ids(&page.included), refs("Observation", &["o1", "o2", "o3"]));
    let page = store
        .search(&parsed(Some("Organization"), "_id=org1&_revinclude=Patient:organization&_revinclude:iterate=Observation:subject"))
        .await
        .expect("search");
    assert_eq!(ids(&page.included), vec!["Observation/o1", "Observation/o3", "Patient/p1"]);
    // A match is never also included, and a deleted target is not included.
    let page = store.search(&parsed(Some("Patient"), "_id=p1,p2&_include=Patient:organization&_revinclude=Patient:organization")).await.expect("search");
    assert_eq!(ids(&page.included), refs("Organization", &["org1", "org2"]));
    store.delete("Patient", "p1", None).await.expect("delete");
    let page = store.search(&parsed(Some("Observation"), "_id=o1&_include=Observation:subject")).await.expect("search");
    assert!(page.included.is_empty());
}

/// `_total`: accurate and estimate count, none does not; a page of 0 still counts.
pub async fn search_total_modes(store: Store) {
    seed_clinical(&store).await;
    let page = store.search(&parsed(Some("Observation"), "code=8867-4,29463-7&_count=1")).await.expect("search");
    assert_eq!((page.resources.len(), page.total), (1, Some(4)));
    let page = store.search(&parsed(Some("Observation"), "code=8867-4,29463-7&_count=1&_total=accurate")).await.expect("search");
    assert_eq!(page.total, Some(4));
    let page = store.search(&parsed(Some("Observation"), "code=8867-4,29463-7&_count=1&_total=estimate")).await.expect("search");
    assert!(page.total.is_some_and(|t| t >= 1));
    let page = store.search(&parsed(Some("Observation"), "code=8867-4,29463-7&_count=1&_total=none")).await.expect("search");
    assert_eq!((page.resources.len(), page.total), (1, None));
    assert!(page.next_cursor.is_some());
    let page = store.search(&parsed(Some("Observation"), "code=8867-4&_count=0")).await.expect("search");
    assert_eq!((page.resources.len(), page.total, page.next_cursor), (0, Some(2), None));
    let page = store.search(&parsed(Some("Patient"), "_sort=family&_count=1&_total=none")).await.expect("search");
    assert_eq!((page.resources.len(), page.total), (1, None));
}

/// System-level search through the parser: every type, or those of `_type`.
pub async fn search_system_level_parsed(store: Store) {
    seed_clinical(&store).await;
    let all = sorted(search_ids(&store, parsed(None, "_id=p1,o1,org1")).await);
    assert_eq!(all, vec!["Observation/o1", "Organization/org1", "Patient/p1"]);
    let some = sorted(search_ids(&store, parsed(None, "_type=Patient,Organization&_id=p1,o1,org1")).await);
    assert_eq!(some, vec!["Organization/org1", "Patient/p1"]);
    let everything = sorted(search_ids(&store, parsed(None, "_type=Patient,Organization")).await);
    assert_eq!(everything, vec!["Organization/org1", "Organization/org2", "Patient/p1", "Patient/p2", "Patient/p3"]);
    let by_id_descending = search_ids(&store, parsed(None, "_type=Patient,Organization&_sort=-_id")).await;
    assert_eq!(by_id_descending, vec!["Patient/p3", "Patient/p2", "Patient/p1", "Organization/org2", "Organization/org1"]);
}
