//! MLLP framing: wrapping a payload in `0x0B … 0x1C 0x0D` and an incremental decoder that
//! splits a byte stream into frames while bounding how much of one frame it buffers.

/// Start block: the byte that opens a frame.
pub const START_BLOCK: u8 = 0x0B;
/// End block: the first of the two bytes that close a frame.
pub const END_BLOCK: u8 = 0x1C;
/// Carriage return: the second of the two bytes that close a frame.
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// How much of a refused frame is kept for the handler to build a reject ACK from.
pub const REJECT_HEAD_BYTES: usize = 4096;

/// Wraps `payload` in an MLLP frame.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(payload.len() + 3);
    framed.push(START_BLOCK);
    framed.extend_from_slice(payload);
    framed.push(END_BLOCK);
    framed.push(CARRIAGE_RETURN);
    framed
}

/// What the decoder found in the bytes it was given, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete frame's payload, unmodified.
    Frame(Vec<u8>),
    /// Bytes outside any frame were thrown away (noise before a start block, between frames,
    /// or left when the stream ended).
    Discarded { bytes: usize },
    /// An unfinished frame was thrown away: a start block arrived inside it, or the stream
    /// ended before its end block.
    PartialDropped { bytes: usize },
    /// The frame in progress grew beyond the limit. `head` is its first bytes (up to
    /// [`REJECT_HEAD_BYTES`]); the decoder ignores everything after this.
    TooLarge { head: Vec<u8> },
}

#[derive(Debug)]
enum State {
    /// Between frames, waiting for a start block.
    Outside,
    /// Inside a frame. `end_pending` is true when the last byte seen was an end block that
    /// may be followed by the closing carriage return; that byte is not yet in `payload`.
    Inside { payload: Vec<u8>, end_pending: bool },
    /// A frame was refused; the rest of the stream is not framing anymore.
    Refused,
}

/// Splits a byte stream into MLLP frames, whatever the chunking of the input.
///
/// A frame's payload is never allowed to grow beyond `max_frame_bytes`, so the memory one
/// connection holds is bounded by the limit plus the chunk being decoded.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
    state: State,
    discarded: usize,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> FrameDecoder {
        FrameDecoder { max_frame_bytes, state: State::Outside, discarded: 0 }
    }

    /// The limit this decoder enforces on a frame's payload.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// True once a frame was refused as too large; later input is ignored.
    pub fn is_refused(&self) -> bool {
        matches!(self.state, State::Refused)
    }

    /// Bytes of an unfinished frame held right now (0 between frames).
    pub fn pending_bytes(&self) -> usize {
        match &self.state {
            State::Inside { payload, end_pending } => payload.len() + usize::from(*end_pending),
            State::Outside | State::Refused => 0,
        }
    }

    /// Decodes `input`, appending what it completes to `out` in stream order.
    pub fn decode(&mut self, mut input: &[u8], out: &mut Vec<Decoded>) {
        while !input.is_empty() {
            input = match self.state {
                State::Refused => return,
                State::Outside => self.skip_outside(input, out),
                State::Inside { .. } => self.take_inside(input, out),
            };
        }
    }

    /// Ends the stream: reports what was left unfinished. The decoder starts over afterwards.
    pub fn finish(&mut self, out: &mut Vec<Decoded>) {
        let pending = self.pending_bytes();
        if pending > 0 {
            out.push(Decoded::PartialDropped { bytes: pending });
        }
        self.flush_discarded(out);
        self.state = State::Outside;
    }

    /// Outside a frame: everything up to the next start block is noise.
    fn skip_outside<'a>(&mut self, input: &'a [u8], out: &mut Vec<Decoded>) -> &'a [u8] {
        match input.iter().position(|&b| b == START_BLOCK) {
            Some(start) => {
                self.discarded += start;
                self.flush_discarded(out);
                self.state = State::Inside { payload: Vec::new(), end_pending: false };
                &input[start + 1..]
            }
            None => {
                self.discarded += input.len();
                &[]
            }
        }
    }

    /// Inside a frame: copy payload up to the next byte that matters for framing.
    fn take_inside<'a>(&mut self, input: &'a [u8], out: &mut Vec<Decoded>) -> &'a [u8] {
        let State::Inside { payload, end_pending } = &mut self.state else {
            return &[];
        };
        if *end_pending {
            *end_pending = false;
            if input[0] == CARRIAGE_RETURN {
                let frame = std::mem::take(payload);
                self.state = State::Outside;
                out.push(Decoded::Frame(frame));
                return &input[1..];
            }
            // An end block not followed by a carriage return is payload, not framing.
            if !push_bounded(payload, &[END_BLOCK], self.max_frame_bytes) {
                self.refuse(out);
                return &[];
            }
        }
        let run_end = input
            .iter()
            .position(|&b| b == START_BLOCK || b == END_BLOCK)
            .unwrap_or(input.len());
        if !push_bounded(payload, &input[..run_end], self.max_frame_bytes) {
            self.refuse(out);
            return &[];
        }
        match input.get(run_end) {
            Some(&END_BLOCK) => {
                *end_pending = true;
                &input[run_end + 1..]
            }
            Some(_) => {
                // A start block inside a frame: the sender gave up on the old one.
                let bytes = payload.len();
                *payload = Vec::new();
                out.push(Decoded::PartialDropped { bytes });
                &input[run_end + 1..]
            }
            None => &[],
        }
    }

    fn refuse(&mut self, out: &mut Vec<Decoded>) {
        if let State::Inside { payload, .. } = &mut self.state {
            payload.truncate(REJECT_HEAD_BYTES);
            let head = std::mem::take(payload);
            out.push(Decoded::TooLarge { head });
        }
        self.state = State::Refused;
    }

    fn flush_discarded(&mut self, out: &mut Vec<Decoded>) {
        if self.discarded > 0 {
            out.push(Decoded::Discarded { bytes: self.discarded });
            self.discarded = 0;
        }
    }
}

/// Appends `bytes` to `payload` up to `limit`; false when they did not all fit (the payload is
/// then filled to the limit, so that the head of a refused frame is complete). Capacity grows
/// by doubling but is capped at the limit, so a frame never reserves more than it may use.
fn push_bounded(payload: &mut Vec<u8>, bytes: &[u8], limit: usize) -> bool {
    let room = limit.saturating_sub(payload.len());
    let (fitting, fits) = match bytes.get(..room) {
        Some(part) if part.len() < bytes.len() => (part, false),
        Some(_) | None => (bytes, bytes.len() <= room),
    };
    let needed = payload.len() + fitting.len();
    if needed > payload.capacity() {
        let target = needed.max(payload.capacity().saturating_mul(2)).max(256).min(limit);
        payload.reserve_exact(target.max(needed) - payload.len());
    }
    payload.extend_from_slice(fitting);
    fits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(limit: usize, chunks: &[&[u8]]) -> Vec<Decoded> {
        let mut decoder = FrameDecoder::new(limit);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.decode(chunk, &mut out);
        }
        decoder.finish(&mut out);
        out
    }

    #[test]
    fn splits_pipelined_frames() {
        let mut stream = encode_frame(b"one");
        stream.extend(encode_frame(b"two"));
        assert_eq!(
            decode_all(100, &[&stream]),
            vec![Decoded::Frame(b"one".to_vec()), Decoded::Frame(b"two".to_vec())]
        );
    }

    #[test]
    fn byte_by_byte_gives_the_same_frames() {
        let mut stream = encode_frame(b"MSH|a\x1cb\rPID|");
        stream.extend(encode_frame(b""));
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(
            decode_all(100, &chunks),
            vec![Decoded::Frame(b"MSH|a\x1cb\rPID|".to_vec()), Decoded::Frame(Vec::new())]
        );
    }

    #[test]
    fn end_block_then_end_block_then_cr_keeps_the_first_as_payload() {
        assert_eq!(
            decode_all(100, &[b"\x0bab\x1c", b"\x1c\r"]),
            vec![Decoded::Frame(b"ab\x1c".to_vec())]
        );
    }

    #[test]
    fn noise_is_counted_and_reported() {
        assert_eq!(
            decode_all(100, &[b"xx\x1c\r", b"\x0bok\x1c\r\r\n", b"zz"]),
            vec![
                Decoded::Discarded { bytes: 4 },
                Decoded::Frame(b"ok".to_vec()),
                Decoded::Discarded { bytes: 4 },
            ]
        );
    }

    #[test]
    fn start_block_inside_a_frame_drops_the_partial_one() {
        assert_eq!(
            decode_all(100, &[b"\x0bold", b"\x0bnew\x1c\r"]),
            vec![Decoded::PartialDropped { bytes: 3 }, Decoded::Frame(b"new".to_vec())]
        );
    }

    #[test]
    fn unfinished_frame_at_end_is_dropped() {
        assert_eq!(decode_all(100, &[b"\x0babc\x1c"]), vec![Decoded::PartialDropped { bytes: 4 }]);
    }

    #[test]
    fn frame_of_exactly_the_limit_is_accepted() {
        let payload = vec![b'x'; 10];
        assert_eq!(decode_all(10, &[&encode_frame(&payload)]), vec![Decoded::Frame(payload)]);
    }

    #[test]
    fn frame_over_the_limit_is_refused_with_its_head() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let framed = encode_frame(&payload);
        let chunks: Vec<&[u8]> = framed.chunks(7).collect();
        let mut decoder = FrameDecoder::new(5_000);
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.decode(chunk, &mut out);
            assert!(decoder.pending_bytes() <= 5_000);
        }
        assert_eq!(out, vec![Decoded::TooLarge { head: payload[..REJECT_HEAD_BYTES].to_vec() }]);
        assert!(decoder.is_refused());
        decoder.decode(&encode_frame(b"later"), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn head_of_a_frame_refused_in_one_chunk_is_kept() {
        let payload: Vec<u8> = (0..300u32).map(|i| b'a' + (i % 26) as u8).collect();
        assert_eq!(
            decode_all(100, &[&encode_frame(&payload)]),
            vec![Decoded::TooLarge { head: payload[..100].to_vec() }]
        );
    }

    #[test]
    fn capacity_never_exceeds_the_limit() {
        let mut payload = Vec::new();
        for _ in 0..1000 {
            assert!(push_bounded(&mut payload, &[0; 7], 7000));
            assert!(payload.capacity() <= 7000);
        }
        assert!(!push_bounded(&mut payload, &[0], 7000));
    }
}
