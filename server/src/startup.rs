//! Start-up wiring: opens the configured store (MongoDB when `mongodb_uri` is set, else the
//! embedded SQLite store in the data dir) and the DICOM archive (objects in S3 when
//! `s3_bucket` is set, else in the data dir), binds the HTTP listener (and the MLLP and DIMSE
//! listeners when configured) and builds the actix application.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use dicom_store::object_store::{LocalObjectStore, ObjectStore, S3ObjectStore};
use dicom_store::{Archive, ArchiveConfig, DicomStoreError, DimseConfig, DimseServer};
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
    /// `objects` says where the DICOM objects were to be kept ("s3://bucket" or a directory).
    #[error("cannot open the DICOM archive ({objects}): {source}")]
    Dicom { objects: String, source: DicomStoreError },
    #[error("cannot start the DICOM listener on {addr}: {source}")]
    Dimse { addr: String, source: DicomStoreError },
}

/// The identifier system of Patients the DICOM archive creates for a PatientID it finds no
/// Patient for.
pub const DICOM_PATIENT_ID_SYSTEM: &str = "urn:tessera:dicom:patient-id";

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    mllp: Option<MllpServer>,
    dimse: Option<DimseServer>,
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
        let archive = Application::open_archive(&settings, port, store.clone()).await?;
        let dimse = match settings.dicom_listen_addr() {
            Some(addr) => {
                let dimse_error = |source| StartupError::Dimse { addr: addr.clone(), source };
                let bind = addr.parse().map_err(|e: std::net::AddrParseError| dimse_error(DicomStoreError::InvalidQuery(e.to_string())))?;
                let config = DimseConfig {
                    ae_title: settings.dicom_ae_title.clone(),
                    accepted_calling_ae_titles: settings.dicom_accepted_ae_titles(),
                    ..DimseConfig::new(bind)
                };
                Some(DimseServer::bind(config, archive.clone()).await.map_err(dimse_error)?)
            }
            None => None,
        };
        let mut projections = Projections::from_settings(&settings, &store)?;
        projections.start_followers(&store, settings.projection_batch_size);
        let dicomweb = crate::dicomweb::DicomWeb { archive, presign_expiry: Duration::from_secs(settings.dicom_presign_expiry_secs) };
        let state = web::Data::new(AppState::new(store, receiver, settings.max_body_bytes, projections, dicomweb));
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes::configure))
            .listen(listener)
            .map_err(bind_error)?
            .run();
        Ok(Application { port, server, mllp, dimse })
    }

    /// Opens the DICOM archive: its index and staging area in `data_dir`, its objects in S3
    /// when `s3_bucket` is set, else in `{data_dir}/dicom-objects`; every study is mirrored as
    /// an ImagingStudy into `store`. `http_port` makes the default public DICOMweb URL.
    pub async fn open_archive(settings: &Settings, http_port: u16, store: Arc<dyn ResourceStore>) -> Result<Arc<Archive>, StartupError> {
        let (objects, described): (Arc<dyn ObjectStore>, String) = match settings.s3_settings() {
            Some(s3) => {
                let described = format!("s3://{}", s3.bucket);
                let failed = |e: dicom_store::object_store::ObjectStoreError| StartupError::Dicom { objects: described.clone(), source: e.into() };
                (Arc::new(S3ObjectStore::connect(s3).await.map_err(failed)?), described)
            }
            None => {
                let dir = settings.data_dir.join("dicom-objects");
                let described = dir.display().to_string();
                let failed = |e: dicom_store::object_store::ObjectStoreError| StartupError::Dicom { objects: described.clone(), source: e.into() };
                (Arc::new(LocalObjectStore::open(dir.clone()).map_err(failed)?), described)
            }
        };
        let config = ArchiveConfig {
            data_dir: settings.data_dir.clone(),
            on_conflict: settings.dicom_on_conflict.policy(),
            dicomweb_base_url: settings.dicomweb_base_url(http_port),
            patient_identifier_system: DICOM_PATIENT_ID_SYSTEM.to_string(),
        };
        Archive::open(config, objects, Some(store)).await.map_err(|source| StartupError::Dicom { objects: described, source })
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

    /// Where the DIMSE listener accepts associations, when it is enabled.
    pub fn dicom_addr(&self) -> Option<SocketAddr> {
        self.dimse.as_ref().map(DimseServer::local_addr)
    }

    /// Serves until the process is told to stop (SIGINT/SIGTERM) or the future is dropped.
    /// The MLLP and DIMSE listeners stop with the HTTP server.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let mllp = self.mllp.map(|server| tokio::spawn(server.run()));
        let dimse = self.dimse.map(|server| tokio::spawn(server.run()));
        let result = self.server.await;
        for task in [mllp, dimse].into_iter().flatten() {
            task.abort();
        }
        result
    }
}
