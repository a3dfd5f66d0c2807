//! Runs cases one after another and reports each as it finishes.

use std::time::{Duration, Instant};

use crate::{cases, CaseFailure, CaseResult, Ctx};

/// Longest a single case may run before it counts as failed.
const CASE_TIMEOUT: Duration = Duration::from_secs(600);

/// How one case went.
#[derive(Debug)]
pub struct Outcome {
    pub name: &'static str,
    pub result: CaseResult,
    pub elapsed: Duration,
}

impl Outcome {
    /// One line: `ok      module::case (12 ms)` or `FAILED  module::case: reason`, with a
    /// multi-line reason folded onto the line.
    pub fn line(&self) -> String {
        match &self.result {
            Ok(()) => format!("ok      {} ({} ms)", self.name, self.elapsed.as_millis()),
            Err(e) => format!("FAILED  {}: {}", self.name, e.message().lines().collect::<Vec<_>>().join(" ¶ ")),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs every case whose name contains `filter` (all when None), calling `report` after each.
pub async fn run(ctx: &Ctx, filter: Option<&str>, mut report: impl FnMut(&Outcome)) -> Summary {
    let mut summary = Summary::default();
    for case in cases().into_iter().filter(|c| filter.is_none_or(|f| c.name.contains(f))) {
        let started = Instant::now();
        let result = timed((case.run)(ctx)).await;
        let outcome = Outcome { name: case.name, result, elapsed: started.elapsed() };
        if outcome.result.is_ok() {
            summary.passed += 1;
        } else {
            summary.failed += 1;
        }
        report(&outcome);
    }
    summary
}

/// Runs the case called exactly `name`.
pub async fn run_case(ctx: &Ctx, name: &str) -> CaseResult {
    match cases().into_iter().find(|c| c.name == name) {
        Some(case) => timed((case.run)(ctx)).await,
        None => Err(CaseFailure::new(format!("no case is called {name}"))),
    }
}

async fn timed(case: impl std::future::Future<Output = CaseResult>) -> CaseResult {
    tokio::time::timeout(CASE_TIMEOUT, case)
        .await
        .unwrap_or_else(|_| Err(CaseFailure::new(format!("did not finish within {} s", CASE_TIMEOUT.as_secs()))))
}
