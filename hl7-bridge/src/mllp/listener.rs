//! The MLLP listener: binds, accepts connections (plain TCP or TLS) and serves each on its own
//! task, so that a slow or failing connection, even a panicking handler, touches no other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{Id, JoinError, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::config::MllpConfig;
use super::connection::{serve, CloseReason, ConnectionContext};
use super::error::MllpError;
use super::handler::MessageHandler;
use super::tls;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound MLLP listener; [`MllpServer::run`] serves it.
pub struct MllpServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    handler: Arc<dyn MessageHandler>,
    max_frame_bytes: usize,
    idle_timeout: Duration,
}

impl MllpServer {
    /// Loads the TLS files (if any) and binds the socket; nothing is accepted until `run`.
    pub async fn bind(
        config: MllpConfig,
        handler: Arc<dyn MessageHandler>,
    ) -> Result<MllpServer, MllpError> {
        let tls = match &config.tls {
            Some(files) => Some(TlsAcceptor::from(tls::server_config(files)?)),
            None => None,
        };
        let bind_error = |source| MllpError::Bind { addr: config.addr.clone(), source };
        let listener = TcpListener::bind(&config.addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(MllpServer {
            listener,
            local_addr,
            tls,
            handler,
            max_frame_bytes: config.max_frame_bytes,
            idle_timeout: config.idle_timeout,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts connections until the future is dropped; each connection runs on its own task.
    /// Dropping the future also ends the connections it started.
    pub async fn run(self) {
        tracing::info!(addr = %self.local_addr, tls = self.tls.is_some(), "mllp listener started");
        let mut connections = JoinSet::new();
        let mut peers: HashMap<Id, SocketAddr> = HashMap::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracing::debug!(peer = %peer, "mllp connection accepted");
                        let task = connections.spawn(self.connection(stream, peer));
                        peers.insert(task.id(), peer);
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "mllp accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(ended) = connections.join_next_with_id(), if !connections.is_empty() => {
                    match ended {
                        Ok((id, ())) => {
                            peers.remove(&id);
                        }
                        Err(error) => {
                            let peer = peers.remove(&error.id());
                            report_task_failure(&error, peer);
                        }
                    }
                }
            }
        }
    }

    /// The task body of one connection: TLS handshake if configured, then the MLLP exchange.
    fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tls = self.tls.clone();
        let cx = ConnectionContext {
            peer,
            handler: Arc::clone(&self.handler),
            max_frame_bytes: self.max_frame_bytes,
            idle_timeout: self.idle_timeout,
        };
        async move {
            // Replies are small and answer a request; do not hold them back.
            let _ = stream.set_nodelay(true);
            let reason = match tls {
                None => serve(stream, &cx).await,
                Some(acceptor) => {
                    match tokio::time::timeout(cx.idle_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve(stream, &cx).await,
                        Ok(Err(error)) => {
                            tracing::warn!(peer = %peer, error = %error, "mllp tls handshake failed");
                            CloseReason::HandshakeFailed
                        }
                        Err(_) => {
                            tracing::warn!(peer = %peer, "mllp tls handshake timed out");
                            CloseReason::HandshakeFailed
                        }
                    }
                }
            };
            tracing::debug!(peer = %peer, reason = reason.as_str(), "mllp connection closed");
        }
    }
}

fn report_task_failure(error: &JoinError, peer: Option<SocketAddr>) {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    if error.is_panic() {
        tracing::error!(peer = %peer, "mllp connection task panicked; connection closed");
    } else {
        tracing::debug!(peer = %peer, "mllp connection task cancelled");
    }
}
