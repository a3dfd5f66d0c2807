//! Optimistic locking under contention: concurrent read-modify-write cycles guarded by
//! `If-Match` never lose an update.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::try_join_all;

use crate::fhir::{self, Scope};
use crate::{CaseFailure, CaseResult, Ctx};

const CLIENTS: usize = 16;
const INCREMENTS: usize = 64;
/// Attempts one increment may take before the case gives up on the server.
const MAX_ATTEMPTS: usize = 500;

pub async fn concurrent_if_match_updates_lose_nothing(ctx: &Ctx) -> CaseResult {
    let mut patient = Scope::new("concurrency").patient("counter");
    patient["multipleBirthInteger"] = 0.into();
    let created = fhir::create(ctx, &patient).await?;
    let id = fhir::id_of(&created)?.to_string();
    let tickets = AtomicUsize::new(0);
    let retries = AtomicUsize::new(0);
    let client = |_| async {
        while tickets.fetch_add(1, Ordering::SeqCst) < INCREMENTS {
            increment(ctx, &id, &retries).await?;
        }
        Ok::<(), CaseFailure>(())
    };
    try_join_all((0..CLIENTS).map(client)).await?;

    let reply = ctx.get(&format!("Patient/{id}")).send().await?;
    let last = reply.expect(200)?.resource("Patient")?;
    let expected_version = (INCREMENTS + 1).to_string();
    let counter = last["multipleBirthInteger"].as_u64();
    check!(
        fhir::version_of(&last) == Some(expected_version.as_str()) && counter == Some(INCREMENTS as u64),
        "after {INCREMENTS} increments by {CLIENTS} clients ({} retries): expected version {expected_version} and counter \
         {INCREMENTS}, got version {:?} and counter {counter:?}",
        retries.load(Ordering::SeqCst),
        fhir::version_of(&last)
    );
    Ok(())
}

/// Reads the counter, adds one and writes it back with `If-Match`, starting again on a 412.
async fn increment(ctx: &Ctx, id: &str, retries: &AtomicUsize) -> CaseResult {
    for _ in 0..MAX_ATTEMPTS {
        let reply = ctx.get(&format!("Patient/{id}")).send().await?;
        let mut patient = reply.expect(200)?.resource("Patient")?;
        let etag = format!("W/\"{}\"", reply.etag_version()?);
        let counter =
            patient["multipleBirthInteger"].as_u64().ok_or_else(|| reply.failure("no multipleBirthInteger"))?;
        patient["multipleBirthInteger"] = (counter + 1).into();
        let reply = ctx.put(&format!("Patient/{id}")).if_match(&etag).json(&patient).send().await?;
        match reply.status {
            200 => return Ok(()),
            412 => {
                retries.fetch_add(1, Ordering::SeqCst);
            }
            _ => return Err(reply.failure("expected 200, or 412 when another client won")),
        }
    }
    fail!("one increment of Patient/{id} did not succeed within {MAX_ATTEMPTS} attempts")
}
