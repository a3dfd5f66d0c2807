//! The settings of an MLLP listener: where it listens, how large a frame may be, how long a
//! silent connection is kept, and whether it speaks TLS.

use std::time::Duration;

use super::tls::TlsFiles;

#[derive(Debug, Clone)]
pub struct MllpConfig {
    /// Socket address to listen on, e.g. `127.0.0.1:2575`; port 0 picks any free port.
    pub addr: String,
    /// Largest frame payload accepted; a larger frame is refused and the connection closed.
    pub max_frame_bytes: usize,
    /// A connection that sends no byte for this long is closed (time spent in the handler
    /// does not count).
    pub idle_timeout: Duration,
    /// PEM certificate and key for TLS; `None` is plain TCP.
    pub tls: Option<TlsFiles>,
}

impl MllpConfig {
    pub const DEFAULT_ADDR: &'static str = "127.0.0.1:2575";
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 1_048_576;
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
}

impl Default for MllpConfig {
    fn default() -> MllpConfig {
        MllpConfig {
            addr: MllpConfig::DEFAULT_ADDR.to_string(),
            max_frame_bytes: MllpConfig::DEFAULT_MAX_FRAME_BYTES,
            idle_timeout: MllpConfig::DEFAULT_IDLE_TIMEOUT,
            tls: None,
        }
    }
}
