//! Transactional writes: every `ResourceStore::write` is one multi-document transaction
//! (read concern `snapshot`, write concern `majority` + journal), retried as the driver's
//! transaction specification says, and the change-feed counter bumped inside it.
//!
//! Per version the transaction bumps the counter document (`counters/changes`) with one
//! pipeline update that returns the new `seq` and the write's time — `max(clock, last time)`,
//! so `lastUpdated` never goes backwards along `seq` whatever the clocks of several Tessera
//! processes say — inserts the `versions` document (`_id` = seq) and replaces the `resources`
//! document, conditioned on the version it read.
//!
//! Why that is gap-free and ordered across processes: two transactions that both bump the
//! counter write the same document, so the second one to write gets a write conflict
//! (`TransientTransactionError`) and runs again after the first has committed; a seq is
//! therefore handed out only on top of the last committed one, and an aborted transaction
//! takes its increment with it. The same conflict protects every `resources` document: an
//! `If-Match` update that read version 3 cannot commit over a version 4 committed meanwhile
//! (it conflicts, runs again, reads 4 and fails with `VersionConflict`).

use std::time::{Duration, Instant};

use fhir_model::TotalMode;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson};
use mongodb::options::{ReadConcern, ReadPreference, ReturnDocument, SelectionCriteria};
use mongodb::{Client, ClientSession};

use super::errors::{classify, store_error, to_store_error, Class, Facts};
use super::layout::{self, resource_key, CHANGE_COUNTER};
use super::{durable, execute, field_i64, field_u64, Collections};
use crate::versioning::{check_expected, extract_index, next_version, now_ms, stamp, Timestamp};
use crate::{ChangeKind, StoreError, StoreErrorKind, StoredResource, WriteOp, WriteOutcome};

/// How long a write keeps retrying transient transaction errors (the driver's
/// `withTransaction` uses 120 s; a FHIR client should hear back sooner).
const RETRY_FOR: Duration = Duration::from_secs(30);

/// Why one attempt of a transaction failed.
enum Failure {
    /// The write itself is refused (version conflict, existing id…): abort, report it.
    Refused(StoreError),
    /// The driver failed; `classify` decides whether to run the transaction again.
    Driver(&'static str, mongodb::error::Error),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Refused(error)
    }
}

fn driver(context: &'static str) -> impl Fn(mongodb::error::Error) -> Failure {
    move |error| Failure::Driver(context, error)
}

/// Applies `ops` atomically in one transaction, retrying transient failures.
pub(super) async fn write(
    client: &Client,
    collections: &Collections,
    ops: Vec<WriteOp>,
) -> Result<Vec<WriteOutcome>, StoreError> {
    let mut session = client.start_session().await.map_err(store_error("start a session"))?;
    let mut retry = Retry { started: Instant::now(), delay: Duration::from_millis(5) };
    'transaction: loop {
        session
            .start_transaction()
            .read_concern(ReadConcern::snapshot())
            .write_concern(durable())
            .selection_criteria(SelectionCriteria::ReadPreference(ReadPreference::Primary))
            .await
            .map_err(store_error("start a transaction"))?;
        let attempt = {
            let mut tx = Transaction { session: &mut session, collections, now: None };
            tx.apply_all(&ops).await
        };
        let outcomes = match attempt {
            Ok(outcomes) => outcomes,
            Err(failure) => {
                // An abort can fail too (the server may already have aborted); the outcome is
                // the same: nothing of this attempt is committed.
                let _ = session.abort_transaction().await;
                let transient = match &failure {
                    // A duplicate key: a concurrent write of the same resource committed after
                    // this attempt's snapshot; the next attempt reads it.
                    Failure::Driver(_, error) => {
                        matches!(classify(&Facts::of(error)), Class::RetryTransaction | Class::DuplicateKey)
                    }
                    // A search inside the transaction lost its connection: as transient.
                    Failure::Refused(error) => error.kind() == StoreErrorKind::Unavailable,
                };
                if transient && retry.wait().await {
                    continue 'transaction;
                }
                return Err(match failure {
                    Failure::Refused(error) => error,
                    Failure::Driver(context, error) => to_store_error(context, error),
                });
            }
        };
        loop {
            match session.commit_transaction().await {
                Ok(()) => return Ok(outcomes),
                Err(error) => {
                    let class = classify(&Facts::of(&error));
                    if class == Class::RetryCommit && retry.in_time() {
                        continue;
                    }
                    if class == Class::RetryTransaction && retry.wait().await {
                        continue 'transaction;
                    }
                    return Err(to_store_error("commit the transaction", error));
                }
            }
        }
    }
}

/// How long and how often a write retries: within `RETRY_FOR` of its start, with a doubling
/// pause (5 ms up to 500 ms) before each new attempt of the transaction.
struct Retry {
    started: Instant,
    delay: Duration,
}

impl Retry {
    fn in_time(&self) -> bool {
        self.started.elapsed() < RETRY_FOR
    }

    /// Pauses before another attempt; false (without pausing) once the time is up.
    async fn wait(&mut self) -> bool {
        if !self.in_time() {
            return false;
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_millis(500));
        true
    }
}

/// One attempt of one write, inside an open transaction.
struct Transaction<'a> {
    session: &'a mut ClientSession,
    collections: &'a Collections,
    /// The write's time, fixed by its first counter bump (every version of one write shares it).
    now: Option<Timestamp>,
}

/// The current version of a resource as far as writing is concerned.
#[derive(Clone, Copy)]
struct Current {
    version: u64,
    deleted: bool,
}

fn live(current: Option<Current>) -> bool {
    current.is_some_and(|c| !c.deleted)
}

impl Transaction<'_> {
    async fn apply_all(&mut self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, Failure> {
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(self.apply(op.clone()).await?);
        }
        Ok(outcomes)
    }

    async fn apply(&mut self, op: WriteOp) -> Result<WriteOutcome, Failure> {
        match op {
            WriteOp::Create { resource_type, id, body, if_none_exist } => {
                if let Some(mut query) = if_none_exist {
                    // Searched inside the transaction: earlier ops of this write count, and a
                    // concurrent create of a match conflicts with this one's snapshot.
                    query.count = 1;
                    query.cursor = None;
                    query.sort.clear();
                    query.includes.clear();
                    query.revincludes.clear();
                    query.total = TotalMode::Accurate;
                    let page = execute::search(self.collections, Some(&mut *self.session), &query, false).await?;
                    match (page.total.unwrap_or(0), page.resources.into_iter().next()) {
                        (0, _) => {}
                        (1, Some(existing)) => return Ok(WriteOutcome::Existing(existing)),
                        (total, _) => {
                            let count = usize::try_from(total).unwrap_or(usize::MAX);
                            return Err(StoreError::MultipleMatches { operation: "create", count }.into());
                        }
                    }
                }
                let current = self.current(&resource_type, &id).await?;
                if live(current) {
                    return Err(StoreError::AlreadyExists { resource_type, id }.into());
                }
                let stored = self.write_version(&resource_type, &id, current, ChangeKind::Create, Some(body)).await?;
                Ok(WriteOutcome::Created(stored))
            }
            WriteOp::Update { resource_type, id, body, expected_version } => {
                let current = self.current(&resource_type, &id).await?;
                check_expected(&resource_type, &id, expected_version, current.map(|c| c.version))?;
                let kind = if live(current) { ChangeKind::Update } else { ChangeKind::Create };
                let stored = self.write_version(&resource_type, &id, current, kind, Some(body)).await?;
                Ok(if kind == ChangeKind::Update { WriteOutcome::Updated(stored) } else { WriteOutcome::Created(stored) })
            }
            WriteOp::Delete { resource_type, id, expected_version } => {
                let current = self.current(&resource_type, &id).await?;
                check_expected(&resource_type, &id, expected_version, current.map(|c| c.version))?;
                if !live(current) {
                    return Ok(WriteOutcome::Deleted(None));
                }
                let stored = self.write_version(&resource_type, &id, current, ChangeKind::Delete, None).await?;
                Ok(WriteOutcome::Deleted(Some(stored)))
            }
        }
    }

    async fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<Current>, Failure> {
        let doc = self
            .collections
            .resources
            .find_one(doc! { "_id": resource_key(resource_type, id) })
            .projection(doc! { "version": 1, "deleted": 1 })
            .session(&mut *self.session)
            .await
            .map_err(driver("read current version"))?;
        let Some(doc) = doc else { return Ok(None) };
        Ok(Some(Current {
            version: field_u64(&doc, "version")?,
            deleted: doc.get_bool("deleted").map_err(|_| super::corrupt(format!("{resource_type}/{id} has no deleted flag")))?,
        }))
    }

    /// Bumps the change-feed counter: the new seq, and the write's time on the first bump.
    async fn next_seq(&mut self) -> Result<(i64, i64), Failure> {
        let clock = self.now.as_ref().map_or_else(now_ms, |now| now.ms);
        let update = vec![doc! { "$set": {
            "seq": { "$add": ["$seq", 1_i64] },
            "lastUpdated": { "$max": ["$lastUpdated", clock] },
        } }];
        let counter = self
            .collections
            .counters
            .find_one_and_update(doc! { "_id": CHANGE_COUNTER }, update)
            .return_document(ReturnDocument::After)
            .session(&mut *self.session)
            .await
            .map_err(driver("advance the change feed"))?
            .ok_or_else(|| super::corrupt("the change-feed counter vanished".into()))?;
        Ok((field_i64(&counter, "seq")?, field_i64(&counter, "lastUpdated")?))
    }

    /// Writes the next version of a resource: the `versions` document and the `resources`
    /// document with its search fields. A tombstone when `body` is None.
    async fn write_version(
        &mut self,
        resource_type: &str,
        id: &str,
        current: Option<Current>,
        kind: ChangeKind,
        body: Option<serde_json::Value>,
    ) -> Result<StoredResource, Failure> {
        let version = next_version(resource_type, id, current.map(|c| c.version))?;
        let (seq, time) = self.next_seq().await?;
        let now = match self.now.take() {
            Some(now) => now,
            None => Timestamp::new(time)?,
        };
        let (bytes, index) = match body {
            Some(body) => {
                let body = stamp(body, id, version, &now)?;
                let entries = extract_index(resource_type, &body)?;
                let bytes = serde_json::to_vec(&body).map_err(|e| StoreError::backend("serialise resource", e))?;
                (Some(bytes), Some(layout::index_fields(&entries)))
            }
            None => (None, None),
        };
        let version_i64 = i64::try_from(version).map_err(|_| super::corrupt(format!("version {version} out of range")))?;
        let body_bson = || match &bytes {
            Some(bytes) => Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: bytes.clone() }),
            None => Bson::Null,
        };
        let method = match kind {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        };
        self.collections
            .versions
            .insert_one(doc! {
                "_id": seq,
                "type": resource_type,
                "id": id,
                "version": version_i64,
                "lastUpdated": now.ms,
                "method": method,
                "body": body_bson(),
            })
            .session(&mut *self.session)
            .await
            .map_err(driver("insert version"))?;

        let key = resource_key(resource_type, id);
        let mut document = doc! {
            "_id": &key,
            "type": resource_type,
            "id": id,
            "version": version_i64,
            "lastUpdated": now.ms,
            "deleted": bytes.is_none(),
            "seq": seq,
            "body": body_bson(),
        };
        if let Some(index) = index {
            document.extend(index);
        }
        // Conditioned on what was read: a mismatch means another writer got in between, which
        // the transaction's conflict detection normally reports first.
        let filter = match current {
            Some(current) => doc! { "_id": &key, "version": i64::try_from(current.version).unwrap_or(i64::MAX) },
            None => doc! { "_id": &key },
        };
        let replaced = self
            .collections
            .resources
            .replace_one(filter, document)
            .upsert(current.is_none())
            .session(&mut *self.session)
            .await
            .map_err(driver("write current version"))?;
        if current.is_some() && replaced.matched_count == 0 {
            return Err(StoreError::VersionConflict {
                resource_type: resource_type.into(),
                id: id.into(),
                expected: current.map_or(0, |c| c.version),
                current: None,
            }
            .into());
        }
        let stored = StoredResource {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version,
            last_updated: now.instant,
            deleted: bytes.is_none(),
            body: bytes,
            seq: u64::try_from(seq).unwrap_or_default(),
        };
        self.now = Some(now);
        Ok(stored)
    }
}
