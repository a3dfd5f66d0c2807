//! `MongoStore`'s start-up and `ping` through the real MongoDB driver, against a fake server that
//! speaks the wire protocol (`support/fake_mongod.rs`): what the store refuses, what it sends
//! to a replica-set primary (indexes, the change-feed counter, write concerns, the database),
//! and how an unreachable deployment surfaces.
#![cfg(feature = "mongodb")]

#[path = "support/fake_mongod.rs"]
mod fake_mongod;

use std::time::{Duration, Instant};

use fake_mongod::{FakeMongod, Script};
use fhir_store::{Deployment, MongoStore, MongoStoreOptions, ResourceStore, StoreError, StoreErrorKind};
use mongodb::bson::{doc, Bson, Document};

/// Talk to the one fake server only, as to a single member of a replica set.
const DIRECT: &str = "/?directConnection=true";

/// An upper bound on any one step, so a broken fake fails a test instead of hanging it.
const STEP: Duration = Duration::from_secs(30);

fn primary() -> Script {
    Script::Primary { max_wire_version: 21 }
}

fn quick(uri: String) -> MongoStoreOptions {
    MongoStoreOptions { server_selection_timeout: Duration::from_secs(1), ..MongoStoreOptions::new(uri) }
}

async fn open(options: MongoStoreOptions) -> Result<MongoStore, StoreError> {
    tokio::time::timeout(STEP, MongoStore::open(options)).await.expect("MongoStore::open did not finish")
}

/// The commands the store sent to its database (not the driver's own handshakes and
/// heartbeats, which go to `admin`).
fn sent_to(fake: &FakeMongod, database: &str) -> Vec<(String, Document)> {
    fake.received()
        .into_iter()
        .filter(|r| r.body.get_str("$db").is_ok_and(|db| db == database))
        .map(|r| (r.name, r.body))
        .collect()
}

/// A document's fields in order, as an index key must be compared (BSON `Document` equality
/// ignores field order, which is the whole meaning of a compound index).
fn ordered(doc: &Document) -> Vec<(String, Bson)> {
    doc.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn integer(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) if v.fract() == 0.0 => Some(*v as i64),
        _ => None,
    }
}

/// The lead's index layout (`fhir-store/src/mongodb/layout.rs`, `index_specs()`), written out
/// here on purpose: these tests check what the real driver puts on the wire, not the spec list.
fn expected_indexes() -> Vec<(&'static str, Vec<(&'static str, Document)>)> {
    vec![
        (
            "resources",
            vec![
                ("type_id", doc! { "type": 1, "_id": 1 }),
                ("params", doc! { "type": 1, "params": 1 }),
                ("str_normalized", doc! { "type": 1, "str.p": 1, "str.n": 1 }),
                ("str_exact", doc! { "type": 1, "str.p": 1, "str.e": 1 }),
                ("str_suffix", doc! { "type": 1, "sfx.p": 1, "sfx.s": 1 }),
                ("tok_code", doc! { "type": 1, "tok.p": 1, "tok.c": 1, "tok.s": 1 }),
                ("tok_system", doc! { "type": 1, "tok.p": 1, "tok.s": 1 }),
                ("ttx_normalized", doc! { "type": 1, "ttx.p": 1, "ttx.n": 1 }),
                ("oft_value", doc! { "type": 1, "oft.p": 1, "oft.v": 1, "oft.tc": 1 }),
                ("date_lo", doc! { "type": 1, "date.p": 1, "date.lo": 1, "date.hi": 1 }),
                ("date_hi", doc! { "type": 1, "date.p": 1, "date.hi": 1 }),
                ("num_lo", doc! { "type": 1, "num.p": 1, "num.lo": 1, "num.hi": 1 }),
                ("num_hi", doc! { "type": 1, "num.p": 1, "num.hi": 1 }),
                ("qty_code_lo", doc! { "type": 1, "qty.p": 1, "qty.c": 1, "qty.lo": 1, "qty.hi": 1 }),
                ("qty_code_hi", doc! { "type": 1, "qty.p": 1, "qty.c": 1, "qty.hi": 1 }),
                ("qty_unit_lo", doc! { "type": 1, "qty.p": 1, "qty.u": 1, "qty.lo": 1 }),
                ("ref_target", doc! { "type": 1, "ref.p": 1, "ref.i": 1, "ref.t": 1 }),
                ("ref_url", doc! { "type": 1, "ref.p": 1, "ref.u": 1 }),
                ("rid_value", doc! { "type": 1, "rid.p": 1, "rid.v": 1, "rid.s": 1 }),
                ("uri_value", doc! { "type": 1, "uri.p": 1, "uri.v": 1 }),
                ("cmp_first", doc! { "type": 1, "cmp.p": 1, "cmp.c1.b": 1, "cmp.c1.a": 1 }),
                ("refk", doc! { "refk.$**": 1 }),
            ],
        ),
        (
            "versions",
            vec![
                ("type_id_version", doc! { "type": 1, "id": 1, "version": 1 }),
                ("instance_history", doc! { "type": 1, "id": 1, "_id": -1 }),
                ("type_history", doc! { "type": 1, "_id": -1 }),
                ("since", doc! { "lastUpdated": 1, "_id": 1 }),
            ],
        ),
        ("search_snapshots", vec![("expiry", doc! { "created": 1 })]),
    ]
}

/// The `createIndexes` commands received, as (collection, index documents) in arrival order.
fn created_indexes(fake: &FakeMongod) -> Vec<(String, Vec<Document>)> {
    fake.commands("createIndexes")
        .into_iter()
        .map(|command| {
            let collection = command.get_str("createIndexes").expect("createIndexes names its collection").to_string();
            let indexes = command
                .get_array("indexes")
                .expect("createIndexes has indexes")
                .iter()
                .map(|index| index.as_document().expect("an index is a document").clone())
                .collect();
            (collection, indexes)
        })
        .collect()
}

fn durable() -> Document {
    doc! { "w": "majority", "j": true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_server_is_refused_with_the_replica_set_recipe_and_nothing_written() {
    let fake = FakeMongod::start(Script::Standalone).await;
    let error = open(quick(fake.uri(DIRECT))).await.err().expect("a standalone mongod must be refused");

    let message = error.to_string();
    assert!(message.contains("standalone"), "{message}");
    assert!(message.contains("--replSet rs0") && message.contains("rs.initiate()"), "{message}");
    // Retrying will not help: this is a configuration error, not an outage.
    assert_eq!(error.kind(), StoreErrorKind::Backend, "{message}");
    // The refusal is the answer to the store's own `hello`, which did go over the wire.
    let sent = sent_to(&fake, "tessera");
    assert!(sent.iter().any(|(name, _)| name == "hello"), "{sent:?}");
    assert!(fake.commands("createIndexes").is_empty(), "indexes created on a refused deployment");
    assert!(fake.commands("update").is_empty(), "counter written on a refused deployment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_older_than_6_0_is_refused() {
    let fake = FakeMongod::start(Script::Primary { max_wire_version: 13 }).await;
    let error = open(quick(fake.uri(DIRECT))).await.err().expect("MongoDB 5.0 must be refused");

    let message = error.to_string();
    assert!(message.contains("6.0") && message.contains("wire version 13"), "{message}");
    assert_eq!(error.kind(), StoreErrorKind::Backend, "{message}");
    assert!(fake.commands("createIndexes").is_empty());
    assert!(fake.commands("update").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_primary_gets_the_indexes_and_the_counter_with_durable_writes() {
    let fake = FakeMongod::start(primary()).await;
    let store = open(quick(fake.uri(DIRECT))).await.expect("open against a primary");

    // `directConnection` does not hide `setName` from the store's own `hello`.
    assert_eq!(store.deployment(), &Deployment::ReplicaSet { name: "rs0".into() });
    assert_eq!(store.database_name(), "tessera");
    let handshakes = fake.commands("isMaster");
    assert!(!handshakes.is_empty(), "the driver hand-shakes with isMaster");
    let application = |handshake: &Document| {
        let client = handshake.get_document("client").ok()?;
        client.get_document("application").ok()?.get_str("name").ok().map(str::to_string)
    };
    assert!(
        handshakes.iter().all(|h| application(h).as_deref() == Some("tessera")),
        "the application name is not tessera: {handshakes:?}"
    );
    assert!(fake.received().iter().all(|r| !r.name.starts_with('<')), "{:?}", fake.received());

    // Exactly the layout's indexes, one createIndexes per collection, in the layout's order.
    let created = created_indexes(&fake);
    let expected = expected_indexes();
    assert_eq!(
        created.iter().map(|(collection, _)| collection.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(collection, _)| *collection).collect::<Vec<_>>()
    );
    for ((collection, indexes), (_, expected)) in created.iter().zip(&expected) {
        let names: Vec<&str> = indexes.iter().map(|i| i.get_str("name").expect("every index is named")).collect();
        let expected_names: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, expected_names, "index names of {collection}");
        for (index, (name, keys)) in indexes.iter().zip(expected) {
            let key = index.get_document("key").expect("an index has a key");
            assert_eq!(ordered(key), ordered(keys), "keys of {collection}.{name}");
            let unique = index.get_bool("unique").unwrap_or(false);
            assert_eq!(
                unique,
                (collection.as_str(), *name) == ("versions", "type_id_version"),
                "unique of {collection}.{name}"
            );
            let ttl = integer(index.get("expireAfterSeconds"));
            let expected_ttl = (collection == "search_snapshots").then_some(600);
            assert_eq!(ttl, expected_ttl, "expireAfterSeconds of {collection}.{name}");
            assert!(
                index.keys().all(|k| ["key", "name", "unique", "expireAfterSeconds"].contains(&k.as_str())),
                "{index}"
            );
        }
    }
    for command in fake.commands("createIndexes") {
        assert_eq!(command.get_document("writeConcern").ok(), Some(&durable()), "{command}");
    }

    // The change-feed counter of an empty database: one durable upsert that raises it to 0.
    assert_counter_raised_to(&fake, 0);

    // Opening again (another process, a restart) sends the very same index definitions: same
    // names and keys are a no-op on a real server, so start-up is idempotent.
    let first: Vec<Vec<u8>> = fake.commands("createIndexes").iter().map(index_bytes).collect();
    fake.clear();
    let again = open(quick(fake.uri(DIRECT))).await.expect("open a second time");
    let second: Vec<Vec<u8>> = fake.commands("createIndexes").iter().map(index_bytes).collect();
    assert_eq!(second.len(), 3);
    assert_eq!(first, second, "the second open sent different index definitions");
    assert_eq!(fake.commands("update").len(), 1);
    drop((store, again));
}

/// Checks the one counter upsert the fake received: it raises `counters.changes` to `seq` (the
/// newest version the store found in `versions`) and never lowers it, durably.
fn assert_counter_raised_to(fake: &FakeMongod, seq: i64) {
    let finds = fake.commands("find");
    assert!(
        finds.iter().any(|find| find.get_str("find") == Ok("versions")),
        "the feed's end is read from versions: {finds:?}"
    );
    let updates = fake.commands("update");
    assert_eq!(updates.len(), 1, "{updates:?}");
    let update = &updates[0];
    assert_eq!(update.get_str("update"), Ok("counters"));
    let statements = update.get_array("updates").expect("update statements");
    assert_eq!(statements.len(), 1);
    let statement = statements[0].as_document().expect("an update statement");
    assert_eq!(statement.get_document("q"), Ok(&doc! { "_id": "changes" }));
    let change = statement.get_document("u").expect("an update document");
    assert_eq!(ordered(change), ordered(&doc! { "$max": { "seq": seq, "lastUpdated": 0_i64 } }));
    assert_eq!(statement.get_bool("upsert"), Ok(true));
    let write_concern = update.get_document("writeConcern").expect("the counter upsert carries a write concern");
    assert_eq!(write_concern, &durable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_is_raised_to_the_newest_version_found() {
    let fake = FakeMongod::start(primary()).await;
    // A restored database: versions up to seq 42, whatever the counter says.
    fake.answer_find_with(vec![doc! { "_id": 42_i64 }]);
    let store = open(quick(fake.uri(DIRECT))).await.expect("open against a primary");
    assert_counter_raised_to(&fake, 42);
    drop(store);
}

/// The collection and index definitions of a `createIndexes` command, byte for byte (field
/// order and BSON types included), without the per-call session fields.
fn index_bytes(command: &Document) -> Vec<u8> {
    let mut definition = Document::new();
    for field in ["createIndexes", "indexes", "writeConcern", "$db"] {
        if let Some(value) = command.get(field) {
            definition.insert(field, value.clone());
        }
    }
    let mut bytes = Vec::new();
    definition.to_writer(&mut bytes).expect("encode the index definitions");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_comes_from_the_options_then_the_uri_then_the_default() {
    let fake = FakeMongod::start(primary()).await;
    let cases = [
        (Some("from_options"), "/from_uri?directConnection=true", "from_options"),
        (None, "/from_uri?directConnection=true", "from_uri"),
        (None, DIRECT, "tessera"),
    ];
    for (database, path, expected) in cases {
        fake.clear();
        let options = MongoStoreOptions { database: database.map(str::to_string), ..quick(fake.uri(path)) };
        let store = open(options).await.expect("open against a primary");
        assert_eq!(store.database_name(), expected);
        let sent = sent_to(&fake, expected);
        let names: Vec<&str> = sent.iter().map(|(name, _)| name.as_str()).collect();
        assert!(names.contains(&"hello"), "{expected}: {names:?}");
        assert_eq!(names.iter().filter(|n| **n == "createIndexes").count(), 3, "{expected}: {names:?}");
        assert_eq!(names.iter().filter(|n| **n == "update").count(), 1, "{expected}: {names:?}");
        // Nothing of the store went to another database.
        let elsewhere: Vec<(String, String)> = fake
            .received()
            .into_iter()
            .filter(|r| ["hello", "createIndexes", "update"].contains(&r.name.as_str()))
            .filter_map(|r| r.body.get_str("$db").ok().map(|db| (r.name.clone(), db.to_string())))
            .filter(|(_, db)| db != expected && db != "admin")
            .collect();
        assert!(elsewhere.is_empty(), "{expected}: {elsewhere:?}");
    }
}

async fn assert_unavailable_within_seconds(fake: &FakeMongod, options: MongoStoreOptions) {
    let started = Instant::now();
    let error = open(options).await.err().expect("a server that never answers must fail the open");
    let elapsed = started.elapsed();
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
    assert!(elapsed >= Duration::from_millis(900), "gave up before the selection timeout: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    // The driver did reach the server: the timeout is the missing answer, not a refused port.
    assert!(!fake.commands("isMaster").is_empty(), "{:?}", fake.received());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_unavailable_after_the_uri_selection_timeout() {
    let fake = FakeMongod::start(Script::Silent).await;
    // The URI's timeout wins over the options' (10 s by default).
    let options = MongoStoreOptions::new(fake.uri("/?directConnection=true&serverSelectionTimeoutMS=1000"));
    assert_unavailable_within_seconds(&fake, options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_unavailable_after_the_options_selection_timeout() {
    let fake = FakeMongod::start(Script::Silent).await;
    assert_unavailable_within_seconds(&fake, quick(fake.uri(DIRECT))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_while_the_server_is_up_and_is_unavailable_once_it_stops() {
    let mut fake = FakeMongod::start(primary()).await;
    let store = open(quick(fake.uri(DIRECT))).await.expect("open against a primary");
    tokio::time::timeout(STEP, store.ping()).await.expect("ping finished").expect("ping a live server");
    let pings = fake.commands("ping");
    assert_eq!(pings.len(), 1, "{pings:?}");
    assert_eq!(pings[0].get_str("$db"), Ok("tessera"));

    fake.stop().await;
    let started = Instant::now();
    let error =
        tokio::time::timeout(STEP, store.ping()).await.expect("ping finished").expect_err("ping a stopped server");
    assert_eq!(error.kind(), StoreErrorKind::Unavailable, "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}
