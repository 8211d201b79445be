//! Frames: how bytes travel between two nodes.
//!
//! Every frame is `length: u32 (big endian) | kind: u8 | payload`, where `length` counts the kind
//! byte and the payload. A frame longer than the codec's limit is refused before any of it is
//! buffered, so a peer cannot make a node allocate without bound. Unknown kinds are refused with
//! an error naming the kind (a newer peer must negotiate new kinds in the handshake first).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The kinds of frame this protocol version knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A handshake message.
    Handshake = 1,
    /// Keep-alive; no payload.
    Tick = 2,
    /// A message for a process (used by later layers).
    Message = 3,
    /// One chunk of a large message (see `connection`).
    Fragment = 4,
}

impl FrameKind {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(FrameKind::Handshake),
            2 => Some(FrameKind::Tick),
            3 => Some(FrameKind::Message),
            4 => Some(FrameKind::Fragment),
            _ => None,
        }
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it carries.
    pub kind: FrameKind,
    /// The bytes it carries.
    pub payload: Bytes,
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced (or we tried to send) a frame over the limit.
    #[error("frame of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// The announced size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A frame with no kind byte.
    #[error("empty frame")]
    Empty,
    /// A kind this protocol version does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The connection ended in the middle of a frame.
    #[error("connection closed in the middle of a frame ({0} bytes buffered)")]
    Truncated(usize),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// The default frame limit: 8 MiB.
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

/// Encodes and decodes [`Frame`]s with a size limit.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use girder_dist::{Frame, FrameCodec, FrameKind};
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = FrameCodec::new(1024);
/// let mut buf = BytesMut::new();
/// codec.encode(Frame { kind: FrameKind::Tick, payload: Bytes::new() }, &mut buf).unwrap();
/// assert_eq!(&buf[..], &[0, 0, 0, 1, 2]);
/// let frame = codec.decode(&mut buf).unwrap().unwrap();
/// assert_eq!(frame.kind, FrameKind::Tick);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max: usize,
}

impl FrameCodec {
    /// A codec refusing frames over `max` bytes (kind byte included).
    pub fn new(max: usize) -> Self {
        FrameCodec { max: max.max(1) }
    }

    /// The limit.
    pub fn max_frame(&self) -> usize {
        self.max
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if size > self.max {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max,
            });
        }
        if size == 0 {
            return Err(FrameError::Empty);
        }
        if src.len() < 4 + size {
            src.reserve(4 + size - src.len());
            return Ok(None);
        }
        src.advance(4);
        let kind_byte = src.get_u8();
        let payload = src.split_to(size - 1).freeze();
        let kind = FrameKind::from_byte(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
        Ok(Some(Frame { kind, payload }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated(src.len())),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let size = frame.payload.len() + 1;
        if size > self.max {
            return Err(FrameError::TooLarge {
                size,
                limit: self.max,
            });
        }
        dst.reserve(4 + size);
        dst.put_u32(size as u32);
        dst.put_u8(frame.kind as u8);
        dst.extend_from_slice(&frame.payload);
        Ok(())
    }
}
