//! Start-up wiring: opens the configured store (MongoDB when `mongodb_uri` is set, else the
//! embedded SQLite store in the data dir), binds the HTTP listener (and the MLLP listener when
//! configured) and builds the actix application.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use fhir_store::{MongoStore, MongoStoreOptions, ResourceStore, SqliteStore, SqliteStoreOptions, StoreError};
use hl7_bridge::mllp::{MllpConfig, MllpError, MllpServer, TlsFiles};
use hl7_bridge::{Receiver, ReceiverOptions};

use crate::projections::Projections;
use crate::routes::{self, AppState};
use crate::Settings;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `store` says what was tried: "MongoDB database `tessera` at mongodb://…" or "the data
    /// dir ./data" (connection strings redacted).
    #[error("cannot open {store}: {source}")]
    Store { store: String, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot start the MLLP listener: {0}")]
    Mllp(#[from] MllpError),
    #[error("cannot set up the projections: {0}")]
    Projections(#[from] projections::ProjectionError),
}

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    mllp: Option<MllpServer>,
}

impl Application {
    /// Opens the configured store ([`Application::open_store`]) and binds `settings.http_addr`
    /// (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let store = Application::open_store(&settings).await?;
        Application::build_with_store(settings, store).await
    }

    /// Opens the store the settings name: MongoDB when `mongodb_uri` is set, else the embedded
    /// SQLite store in `data_dir`. The server and `tessera projections` both open theirs here,
    /// so they always work on the same data.
    pub async fn open_store(settings: &Settings) -> Result<Arc<dyn ResourceStore>, StartupError> {
        let failed = |source| StartupError::Store { store: settings.store_description(), source };
        match &settings.mongodb_uri {
            Some(uri) => {
                let options =
                    MongoStoreOptions { database: settings.mongodb_database.clone(), ..MongoStoreOptions::new(uri.clone()) };
                let store = MongoStore::open(options).await.map_err(failed)?;
                Ok(Arc::new(store))
            }
            None => {
                let options = SqliteStoreOptions::new(settings.data_dir.clone());
                let store = SqliteStore::open(options).await.map_err(failed)?;
                Ok(Arc::new(store))
            }
        }
    }

    /// As `build`, with a store chosen by the caller (any backend).
    pub async fn build_with_store(settings: Settings, store: Arc<dyn ResourceStore>) -> Result<Application, StartupError> {
        let receiver = Arc::new(Receiver::new(
            store.clone(),
            ReceiverOptions {
                unmapped: settings.hl7_unmapped,
                local_offset: settings.hl7_local_offset_minutes(),
                ..ReceiverOptions::default()
            },
        ));
        let mllp = match settings.mllp_listen_addr() {
            Some(addr) => {
                let config = MllpConfig {
                    addr,
                    max_frame_bytes: settings.mllp_max_frame_bytes,
                    idle_timeout: Duration::from_secs(settings.mllp_idle_timeout_secs),
                    tls: match (&settings.mllp_tls_cert, &settings.mllp_tls_key) {
                        (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
                        _ => None,
                    },
                };
                Some(MllpServer::bind(config, receiver.clone()).await?)
            }
            None => None,
        };

        let bind_error = |source| StartupError::Bind { addr: settings.http_addr.clone(), source };
        let listener = TcpListener::bind(&settings.http_addr).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let mut projections = Projections::from_settings(&settings, &store)?;
        projections.start_followers(&store, settings.projection_batch_size);
        let state = web::Data::new(AppState::new(store, receiver, settings.max_body_bytes, projections));
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes::configure))
            .listen(listener)
            .map_err(bind_error)?
            .run();
        Ok(Application { port, server, mllp })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The FHIR base URL, e.g. `http://127.0.0.1:8080/fhir`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/fhir", self.port)
    }

    /// Where the MLLP listener accepts connections, when it is enabled.
    pub fn mllp_addr(&self) -> Option<SocketAddr> {
        self.mllp.as_ref().map(MllpServer::local_addr)
    }

    /// Serves until the process is told to stop (SIGINT/SIGTERM) or the future is dropped.
    /// The MLLP listener stops with the HTTP server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let mllp = self.mllp.map(|server| tokio::spawn(server.run()));
        let result = self.server.await;
        if let Some(task) = mllp {
            task.abort();
        }
        result
    }
}
