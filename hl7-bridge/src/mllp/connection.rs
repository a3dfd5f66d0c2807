//! One MLLP connection on the listener side: read, split into frames, hand each message to
//! the handler in order, write the replies back, and decide when the connection ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

use super::framing::{encode_frame, Decoded, FrameDecoder};
use super::handler::{FrameRejection, MessageHandler};

/// Bytes asked of the socket per read; one frame never holds more than the frame limit plus
/// this.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// After refusing a frame, how long incoming bytes are still read (and dropped) so that the
/// reject reply is not destroyed by a reset when the socket closes with unread data.
const LINGER: Duration = Duration::from_secs(2);

/// What a connection needs to know besides its stream.
pub(crate) struct ConnectionContext {
    pub peer: SocketAddr,
    pub handler: Arc<dyn MessageHandler>,
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
}

/// Why a connection ended, for the closing log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    PeerClosed,
    Idle,
    FrameTooLarge,
    ReadFailed,
    WriteFailed,
    HandshakeFailed,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer closed",
            CloseReason::Idle => "idle timeout",
            CloseReason::FrameTooLarge => "frame too large",
            CloseReason::ReadFailed => "read failed",
            CloseReason::WriteFailed => "write failed",
            CloseReason::HandshakeFailed => "tls handshake failed",
        }
    }
}

/// Serves one connection until it ends.
pub(crate) async fn serve<S>(mut stream: S, cx: &ConnectionContext) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let peer = cx.peer;
    let mut decoder = FrameDecoder::new(cx.max_frame_bytes);
    let mut buffer = vec![0u8; READ_BUFFER_BYTES];
    let mut decoded = Vec::new();
    loop {
        let read = match timeout(cx.idle_timeout, stream.read(&mut buffer)).await {
            Err(_) => {
                report_unfinished(&mut decoder, peer);
                return CloseReason::Idle;
            }
            Ok(Err(error)) => {
                tracing::debug!(peer = %peer, error = %error, "mllp read failed");
                report_unfinished(&mut decoder, peer);
                return CloseReason::ReadFailed;
            }
            Ok(Ok(0)) => {
                report_unfinished(&mut decoder, peer);
                return CloseReason::PeerClosed;
            }
            Ok(Ok(read)) => read,
        };
        decoder.decode(&buffer[..read], &mut decoded);
        for item in decoded.drain(..) {
            match item {
                Decoded::Frame(message) => {
                    if let Some(reply) = cx.handler.handle(message, peer).await {
                        if !write_frame(&mut stream, &reply, cx).await {
                            return CloseReason::WriteFailed;
                        }
                    }
                }
                Decoded::Discarded { bytes } => {
                    tracing::warn!(peer = %peer, bytes, "discarded bytes outside an mllp frame");
                }
                Decoded::PartialDropped { bytes } => {
                    tracing::warn!(peer = %peer, bytes, "dropped unfinished mllp frame at a new start block");
                }
                Decoded::TooLarge { head } => {
                    let limit = decoder.max_frame_bytes();
                    tracing::warn!(peer = %peer, limit, "refused mllp frame larger than the limit");
                    let reason = FrameRejection::TooLarge { limit };
                    if let Some(reply) = cx.handler.reject(head, reason, peer).await {
                        if !write_frame(&mut stream, &reply, cx).await {
                            return CloseReason::WriteFailed;
                        }
                    }
                    close_after_refusal(&mut stream, &mut buffer, cx.idle_timeout).await;
                    return CloseReason::FrameTooLarge;
                }
            }
        }
    }
}

/// Logs what the decoder still held when the connection ended.
fn report_unfinished(decoder: &mut FrameDecoder, peer: SocketAddr) {
    let mut left = Vec::new();
    decoder.finish(&mut left);
    for item in left {
        match item {
            Decoded::PartialDropped { bytes } => {
                tracing::warn!(peer = %peer, bytes, "dropped unfinished mllp frame at connection end");
            }
            Decoded::Discarded { bytes } => {
                tracing::warn!(peer = %peer, bytes, "discarded bytes outside an mllp frame");
            }
            Decoded::Frame(_) | Decoded::TooLarge { .. } => {}
        }
    }
}

/// Frames and sends one reply. A peer that does not take it within the idle timeout counts
/// as gone.
async fn write_frame<S>(stream: &mut S, payload: &[u8], cx: &ConnectionContext) -> bool
where
    S: AsyncWrite + Unpin,
{
    let framed = encode_frame(payload);
    let write = async {
        stream.write_all(&framed).await?;
        stream.flush().await
    };
    match timeout(cx.idle_timeout, write).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(peer = %cx.peer, error = %error, "mllp write failed");
            false
        }
        Err(_) => {
            tracing::debug!(peer = %cx.peer, "mllp write timed out");
            false
        }
    }
}

/// Ends the connection after a refused frame: shut the sending side down, then read and drop
/// what the peer is still sending for a little while, so that closing with unread data does
/// not reset the connection before the peer has read the reply.
async fn close_after_refusal<S>(stream: &mut S, buffer: &mut [u8], idle_timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + LINGER.min(idle_timeout);
    let drain = async {
        // Best effort: the peer may already be gone.
        let _ = stream.shutdown().await;
        while let Ok(read) = stream.read(buffer).await {
            if read == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, drain).await;
}
