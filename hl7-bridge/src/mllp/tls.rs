//! TLS for MLLP: rustls configurations (ring provider) built from PEM files, for the listener
//! and for the client; every error names the file it came from.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::error::MllpError;

/// The PEM files of a TLS listener: its certificate chain (leaf first) and its private key
/// (PKCS#8, PKCS#1 or SEC1).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the listener's TLS configuration from its PEM files.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, MllpError> {
    let certs = read_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| pem_error(&files.key, "private key", e))?;
    let config_error = |source| MllpError::TlsConfig {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// Builds a client TLS configuration that trusts the certificates in `ca_file`.
pub(crate) fn client_config(ca_file: &Path) -> Result<Arc<ClientConfig>, MllpError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(ca_file)? {
        roots.add(cert).map_err(|source| MllpError::TlsCertificate {
            path: ca_file.to_path_buf(),
            source,
        })?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| MllpError::TlsCertificate { path: ca_file.to_path_buf(), source })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, MllpError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "certificate", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "certificate", e))?;
    if certs.is_empty() {
        return Err(MllpError::TlsFileEmpty { path: path.to_path_buf(), what: "certificate" });
    }
    Ok(certs)
}

fn pem_error(path: &Path, what: &'static str, error: pem::Error) -> MllpError {
    match error {
        pem::Error::NoItemsFound => MllpError::TlsFileEmpty { path: path.to_path_buf(), what },
        source => MllpError::TlsFile { path: path.to_path_buf(), source },
    }
}
