//! MLLP (minimal lower layer protocol) transport: framing, the listener, optional TLS.
//!
//! A frame is `0x0B <payload> 0x1C 0x0D`. [`MllpServer`] accepts connections (plain TCP or
//! TLS), splits each byte stream into frames with [`FrameDecoder`], hands every message to a
//! [`MessageHandler`] in order and frames its reply. [`MllpClient`] is the other end.

mod client;
mod config;
mod connection;
mod error;
mod framing;
mod handler;
mod listener;
mod tls;

pub use client::MllpClient;
pub use config::MllpConfig;
pub use error::{MllpError, MllpErrorKind};
pub use framing::{encode_frame, Decoded, FrameDecoder, REJECT_HEAD_BYTES};
pub use handler::{FrameRejection, MessageHandler};
pub use listener::MllpServer;
pub use tls::TlsFiles;
