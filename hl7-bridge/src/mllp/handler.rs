//! The contract between the MLLP listener and whatever processes messages: one call per
//! complete frame, one call for a frame the listener refuses.

use std::net::SocketAddr;

/// Why the listener refused a frame without reading it all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameRejection {
    /// The frame's payload grew beyond `limit` bytes.
    TooLarge { limit: usize },
}

/// Processes the messages of every connection. Calls for one connection come one at a time,
/// in the order the frames arrived; connections are served concurrently.
#[async_trait::async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// One complete message: the bytes between 0x0B and 0x1C 0x0D, unmodified. Returns the
    /// reply payload to frame and send (None: send nothing, the connection stays open).
    async fn handle(&self, message: Vec<u8>, peer: SocketAddr) -> Option<Vec<u8>>;

    /// A frame the listener refuses before reading it all. `head` is its first bytes (up to
    /// 4 KiB) so that a reject ACK can be built from the MSH. The listener sends the reply
    /// (if any) and then closes the connection.
    async fn reject(&self, head: Vec<u8>, reason: FrameRejection, peer: SocketAddr) -> Option<Vec<u8>>;
}
