//! Start-up wiring: opens the store, binds the listener and builds the actix application.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use fhir_store::{ResourceStore, SqliteStore, SqliteStoreOptions, StoreError};

use crate::routes::{self, AppState};
use crate::Settings;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store in {dir}: {source}")]
    Store { dir: String, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Opens the embedded store in `settings.data_dir` and binds `settings.http_addr`
    /// (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let options = SqliteStoreOptions::new(settings.data_dir.clone());
        let store = SqliteStore::open(options)
            .await
            .map_err(|source| StartupError::Store { dir: settings.data_dir.display().to_string(), source })?;
        Application::build_with_store(settings, Arc::new(store))
    }

    /// As `build`, with a store chosen by the caller (any backend).
    pub fn build_with_store(settings: Settings, store: Arc<dyn ResourceStore>) -> Result<Application, StartupError> {
        let bind_error = |source| StartupError::Bind { addr: settings.http_addr.clone(), source };
        let listener = TcpListener::bind(&settings.http_addr).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let state = web::Data::new(AppState::new(store, settings.max_body_bytes));
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes::configure))
            .listen(listener)
            .map_err(bind_error)?
            .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The FHIR base URL, e.g. `http://127.0.0.1:8080/fhir`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }

    /// Serves until the process is told to stop (SIGINT/SIGTERM) or the future is dropped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
