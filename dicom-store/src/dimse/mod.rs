//! The DIMSE service class provider: associations over TCP (dicom-ul PDUs), C-ECHO, C-STORE
//! for every storage SOP class in the standard dictionary, and Study Root C-FIND.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod association;
mod command;
mod negotiation;

use crate::{Archive, DicomStoreError};

/// How the SCP presents itself.
#[derive(Clone, Debug)]
pub struct DimseConfig {
    pub bind: SocketAddr,
    /// Our AE title; associations calling another title are rejected.
    pub ae_title: String,
    /// Calling AE titles allowed to associate; empty means any.
    pub accepted_calling_ae_titles: Vec<String>,
    /// Largest PDU we accept.
    pub max_pdu_length: u32,
    /// An association idle this long is aborted.
    pub idle_timeout: Duration,
}

impl DimseConfig {
    /// Our defaults on `bind`: AE title TESSERA, any calling AE, 256 KiB PDUs, 5 min idle.
    pub fn new(bind: SocketAddr) -> DimseConfig {
        DimseConfig {
            bind,
            ae_title: "TESSERA".into(),
            accepted_calling_ae_titles: Vec::new(),
            max_pdu_length: 256 * 1024,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A bound DIMSE listener.
pub struct DimseServer {
    listener: tokio::net::TcpListener,
    config: Arc<DimseConfig>,
    archive: Arc<Archive>,
}

impl DimseServer {
    pub async fn bind(config: DimseConfig, archive: Arc<Archive>) -> Result<DimseServer, DicomStoreError> {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        Ok(DimseServer { listener, config: Arc::new(config), archive })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Accepts associations until the future is dropped; each runs on its own task.
    pub async fn run(self) {
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "DIMSE accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (config, archive) = (self.config.clone(), self.archive.clone());
            tokio::spawn(async move {
                match association::serve(socket, config, archive).await {
                    Ok(()) => tracing::debug!(%peer, "association released"),
                    Err(end) => tracing::info!(%peer, %end, "association ended"),
                }
            });
        }
    }
}
