//! The errors of the MLLP transport: binding, TLS set-up (naming the file at fault), and the
//! client side of an exchange.

use std::path::PathBuf;

/// What went wrong, without the details, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MllpErrorKind {
    Bind,
    Connect,
    Tls,
    Protocol,
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    #[error("cannot bind mllp listener to {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to mllp peer {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read tls file {}", path.display())]
    TlsFile {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("no {what} found in tls file {}", path.display())]
    TlsFileEmpty { path: PathBuf, what: &'static str },
    #[error("tls configuration rejected: certificate {}, key {}", cert.display(), key.display())]
    TlsConfig {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("invalid certificate in tls file {}", path.display())]
    TlsCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("invalid tls server name {name}")]
    TlsServerName { name: String },
    #[error("tls handshake with {addr} failed")]
    TlsHandshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mllp frame larger than {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("mllp connection closed before a reply")]
    Closed,
    #[error("mllp connection closed inside a frame after {bytes} bytes")]
    Truncated { bytes: usize },
    #[error("mllp i/o error")]
    Io(#[from] std::io::Error),
}

impl MllpError {
    pub fn kind(&self) -> MllpErrorKind {
        match self {
            MllpError::Bind { .. } => MllpErrorKind::Bind,
            MllpError::Connect { .. } => MllpErrorKind::Connect,
            MllpError::TlsFile { .. }
            | MllpError::TlsFileEmpty { .. }
            | MllpError::TlsConfig { .. }
            | MllpError::TlsCertificate { .. }
            | MllpError::TlsServerName { .. }
            | MllpError::TlsHandshake { .. } => MllpErrorKind::Tls,
            MllpError::FrameTooLarge { .. } | MllpError::Closed | MllpError::Truncated { .. } => {
                MllpErrorKind::Protocol
            }
            MllpError::Io(_) => MllpErrorKind::Io,
        }
    }
}
