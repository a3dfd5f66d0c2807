//! A small MLLP client (for tests, tools and the benchmark): connect over TCP or TLS, send
//! framed payloads, receive the next frame's payload.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::error::MllpError;
use super::framing::{encode_frame, Decoded, FrameDecoder};
use super::tls;

/// Largest reply the client accepts unless told otherwise.
const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

const READ_BUFFER_BYTES: usize = 8 * 1024;

/// One MLLP connection seen from the sending side.
pub struct MllpClient {
    stream: ClientStream,
    decoder: FrameDecoder,
    /// Frames already decoded but not yet returned, oldest first.
    ready: std::collections::VecDeque<Vec<u8>>,
    buffer: Vec<u8>,
}

impl MllpClient {
    /// Connects over plain TCP.
    pub async fn connect(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<MllpClient, MllpError> {
        let stream = tcp_connect(&addr).await?;
        Ok(MllpClient::new(ClientStream::Plain(stream)))
    }

    /// Connects over TLS, trusting only the certificates in the PEM file `ca_cert`, and
    /// checking the server's certificate against `server_name` (a DNS name or an IP address).
    pub async fn connect_tls(
        addr: impl ToSocketAddrs + std::fmt::Display,
        server_name: &str,
        ca_cert: &Path,
    ) -> Result<MllpClient, MllpError> {
        let config = tls::client_config(ca_cert)?;
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| MllpError::TlsServerName { name: server_name.to_string() })?;
        let stream = tcp_connect(&addr).await?;
        let stream = TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|source| MllpError::TlsHandshake { addr: addr.to_string(), source })?;
        Ok(MllpClient::new(ClientStream::Tls(Box::new(stream))))
    }

    /// Sets the largest reply payload accepted (default 16 MiB).
    pub fn with_max_frame_bytes(mut self, max_frame_bytes: usize) -> MllpClient {
        self.decoder = FrameDecoder::new(max_frame_bytes);
        self
    }

    fn new(stream: ClientStream) -> MllpClient {
        MllpClient {
            stream,
            decoder: FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES),
            ready: std::collections::VecDeque::new(),
            buffer: vec![0; READ_BUFFER_BYTES],
        }
    }

    /// Frames `payload` and sends it.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), MllpError> {
        self.stream.write_all(&encode_frame(payload)).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// The next frame's payload; `None` when the server closed the connection cleanly between
    /// frames. Bytes outside frames are skipped.
    pub async fn receive(&mut self) -> Result<Option<Vec<u8>>, MllpError> {
        let mut decoded = Vec::new();
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(Some(frame));
            }
            let read = self.stream.read(&mut self.buffer).await?;
            if read == 0 {
                let mut left = Vec::new();
                self.decoder.finish(&mut left);
                for item in left {
                    if let Decoded::PartialDropped { bytes } = item {
                        return Err(MllpError::Truncated { bytes });
                    }
                }
                return Ok(None);
            }
            self.decoder.decode(&self.buffer[..read], &mut decoded);
            for item in decoded.drain(..) {
                match item {
                    Decoded::Frame(frame) => self.ready.push_back(frame),
                    Decoded::TooLarge { .. } => {
                        return Err(MllpError::FrameTooLarge { limit: self.decoder.max_frame_bytes() })
                    }
                    Decoded::Discarded { .. } | Decoded::PartialDropped { .. } => {}
                }
            }
        }
    }

    /// Sends `payload` and waits for the next frame (its reply).
    pub async fn request(&mut self, payload: &[u8]) -> Result<Vec<u8>, MllpError> {
        self.send(payload).await?;
        self.receive().await?.ok_or(MllpError::Closed)
    }

    /// Closes the sending side (the server sees end of stream); replies can still be received.
    pub async fn shutdown(&mut self) -> Result<(), MllpError> {
        self.stream.shutdown().await?;
        Ok(())
    }
}

async fn tcp_connect(addr: &(impl ToSocketAddrs + std::fmt::Display)) -> Result<TcpStream, MllpError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| MllpError::Connect { addr: addr.to_string(), source })?;
    // Messages are request/response; send each as soon as it is written.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The client's byte stream: plain TCP or TLS over it.
enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
