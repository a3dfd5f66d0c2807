//! The projections as the server runs them: followers started from the settings, and their
//! HTTP view — `/admin/projections` (status, consistency check, rebuild) and `/admin/alerts`
//! (list, acknowledge).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use fhir_store::ResourceStore;
use projections::postgres::{AlertFilter, PostgresConfig, PostgresProjection};
use projections::tsdb::{TsdbConfig, TsdbProjection};
use projections::{ConsistencyReport, Follower, FollowerOptions, Projection, ProjectionError, Severity, StatusHandle};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::fhir_http::{query_params, respond};
use crate::routes::AppState;
use crate::Settings;

type State = web::Data<AppState>;

/// The configured projections and their running followers.
#[derive(Default)]
pub struct Projections {
    postgres: Option<Arc<PostgresProjection>>,
    tsdb: Option<Arc<TsdbProjection>>,
    statuses: Vec<StatusHandle>,
    tasks: Vec<JoinHandle<()>>,
}

impl Projections {
    /// Builds the projections the settings turn on. Nothing here contacts the databases: a
    /// database that is down delays its projection, never the server.
    pub fn from_settings(settings: &Settings, store: &Arc<dyn ResourceStore>) -> Result<Projections, ProjectionError> {
        let mut projections = Projections::default();
        if let Some(url) = &settings.postgres_url {
            let alert_rules = settings.alert_rules().map_err(|e| ProjectionError::Config(e.to_string()))?;
            let config = PostgresConfig { url: url.clone(), alert_rules, months_ahead: settings.postgres_partition_months_ahead };
            projections.postgres = Some(Arc::new(PostgresProjection::new(config)?));
        }
        if let Some(url) = &settings.tsdb_url {
            let config = TsdbConfig {
                url: url.clone(),
                database: settings.tsdb_database.clone(),
                org: settings.tsdb_org.clone(),
                bucket: settings.tsdb_bucket.clone(),
                token: settings.tsdb_token.clone(),
            };
            projections.tsdb = Some(Arc::new(TsdbProjection::new(config, store.clone())?));
        }
        Ok(projections)
    }

    /// Every configured projection, by its name.
    pub fn all(&self) -> Vec<Arc<dyn Projection>> {
        let mut all: Vec<Arc<dyn Projection>> = Vec::new();
        if let Some(p) = &self.postgres {
            all.push(p.clone());
        }
        if let Some(p) = &self.tsdb {
            all.push(p.clone());
        }
        all
    }

    /// Starts one follower per projection on the current runtime.
    pub fn start_followers(&mut self, store: &Arc<dyn ResourceStore>, batch_size: usize) {
        for projection in self.all() {
            let options = FollowerOptions { batch_size, ..FollowerOptions::default() };
            let follower = Follower::new(projection, store.clone(), options);
            self.statuses.push(follower.status());
            self.tasks.push(tokio::spawn(follower.run()));
        }
    }

    /// Stops the followers (their checkpoints are durable; nothing is lost).
    pub fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }

    pub fn postgres(&self) -> Option<&Arc<PostgresProjection>> {
        self.postgres.as_ref()
    }

    pub fn tsdb(&self) -> Option<&Arc<TsdbProjection>> {
        self.tsdb.as_ref()
    }

    /// The configured projection called `name`, or an error naming the configured ones.
    pub fn named(&self, name: &str) -> Result<Arc<dyn Projection>, ProjectionError> {
        self.all().into_iter().find(|p| p.name() == name).ok_or_else(|| {
            let known: Vec<_> = self.all().iter().map(|p| p.name()).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            ProjectionError::Config(format!("no projection {name:?} is configured (configured: {known})"))
        })
    }

    /// Compares the projection called `name` with the store.
    pub async fn check(&self, name: &str, store: &dyn ResourceStore) -> Result<ConsistencyReport, ProjectionError> {
        self.named(name)?;
        match (name, &self.postgres, &self.tsdb) {
            ("postgres", Some(postgres), _) => postgres.check_consistency(store).await,
            (_, _, Some(tsdb)) => tsdb.check_consistency(store).await,
            _ => unreachable!("named() found a configured projection"),
        }
    }
}

impl Drop for Projections {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /admin/projections`: each projection's checkpoint, the feed head, lag and last error.
pub async fn list(req: HttpRequest, state: State) -> HttpResponse {
    let mut statuses = Vec::new();
    for status in &state.projections.statuses {
        statuses.push(status.snapshot(state.store.as_ref()).await);
    }
    let head = state.store.last_seq().await;
    respond(&req, head.map_err(ApiError::from).map(|head| HttpResponse::Ok().json(json!({ "head": head, "projections": statuses }))))
}

/// `GET /admin/projections/{name}/check`: compares the projection with the store.
pub async fn check(req: HttpRequest, state: State, path: web::Path<String>) -> HttpResponse {
    let result = async {
        let name = path.into_inner();
        state.projections.named(&name).map_err(not_configured)?;
        let report = state.projections.check(&name, state.store.as_ref()).await?;
        Ok(HttpResponse::Ok().json(report))
    }
    .await;
    respond(&req, result)
}

/// `POST /admin/projections/{name}/rebuild`: empties the projection and moves its checkpoint
/// to 0; the running follower notices and rebuilds it from the whole feed.
pub async fn rebuild(req: HttpRequest, state: State, path: web::Path<String>) -> HttpResponse {
    let result = async {
        let projection = state.projections.named(&path.into_inner()).map_err(not_configured)?;
        projection.reset().await?;
        Ok(HttpResponse::Accepted().json(json!({ "projection": projection.name(), "checkpoint": 0, "status": "rebuilding" })))
    }
    .await;
    respond(&req, result)
}

fn not_configured(error: ProjectionError) -> ApiError {
    ApiError::NotFound(error.to_string())
}

fn postgres(state: &AppState) -> Result<&Arc<PostgresProjection>, ApiError> {
    state.projections.postgres().ok_or_else(|| ApiError::NotFound("alerts need the PostgreSQL projection (TESSERA_POSTGRES_URL)".into()))
}

/// `GET /admin/alerts?acknowledged=false&severity=critical&patient=…&_count=…`
pub async fn alerts(req: HttpRequest, state: State) -> HttpResponse {
    let result = async {
        let mut filter = AlertFilter { limit: 100, ..AlertFilter::default() };
        for (name, value) in query_params(&req) {
            match name.as_str() {
                "acknowledged" => {
                    filter.acknowledged = Some(value.parse().map_err(|_| ApiError::BadRequest(format!("acknowledged must be true or false, not {value:?}")))?)
                }
                "severity" => {
                    filter.severity = Some(Severity::parse(&value).ok_or_else(|| {
                        ApiError::BadRequest(format!("severity {value:?} is not one of low, medium, high, critical"))
                    })?)
                }
                "patient" => filter.patient_fhir_id = Some(value.trim_start_matches("Patient/").to_string()),
                "_count" => {
                    filter.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| ApiError::BadRequest(format!("_count must be 1..1000, not {value:?}")))?
                }
                other => return Err(ApiError::BadRequest(format!("unknown parameter {other:?} (known: acknowledged, severity, patient, _count)"))),
            }
        }
        let alerts = postgres(&state)?.list_alerts(&filter).await?;
        Ok(HttpResponse::Ok().json(json!({ "alerts": alerts })))
    }
    .await;
    respond(&req, result)
}

/// `POST /admin/alerts/{id}/acknowledge` with `{"by": "nurse id"}`.
pub async fn acknowledge(req: HttpRequest, state: State, path: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let result = async {
        let id_text = path.into_inner();
        let id = id_text.parse::<i64>().map_err(|_| ApiError::NotFound(format!("no alert {id_text:?}")))?;
        let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("body must be JSON like {{\"by\": \"…\"}}: {e}")))?;
        let by = body["by"].as_str().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| ApiError::BadRequest("\"by\" (who acknowledges) is required".into()))?;
        match postgres(&state)?.acknowledge_alert(id, by).await? {
            Some(alert) => Ok(HttpResponse::Ok().json(alert)),
            None => Err(ApiError::NotFound(format!("no alert {id}"))),
        }
    }
    .await;
    respond(&req, result)
}
