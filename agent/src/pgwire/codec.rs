//! Message framing: a `tokio_util::codec::Decoder` for each direction.
//!
//! Tagged messages are `Byte1(tag) Int32(len) Byte[len-4]` (PostgreSQL docs 55.7 "Message
//! Formats"); the startup-phase messages StartupMessage, SSLRequest, GSSENCRequest and
//! CancelRequest have no tag: `Int32(len) Int32(code) ...`. The header is parsed with `nom`;
//! bodies are handed on as zero-copy [`Bytes`].

use bytes::{Buf, Bytes, BytesMut};
use nom::number::complete::{be_u8, be_u32};
use tokio_util::codec::Decoder;

use super::WireError;

/// One complete tagged message: its tag byte and its body (without tag and length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message type byte, e.g. `b'Q'` for Query.
    pub tag: u8,
    /// Message body after the length word.
    pub body: Bytes,
}

impl Frame {
    /// Bytes this frame occupies on the wire (tag + length word + body).
    pub fn wire_len(&self) -> usize {
        self.body.len() + 5
    }

    /// Appends the frame in wire format to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        out.reserve(self.wire_len());
        out.extend_from_slice(&[self.tag]);
        // Bodies come from frames whose length fitted in u32, or from our writers.
        let len = u32::try_from(self.body.len() + 4).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.body);
    }
}

/// Parses a tagged header (`Byte1 Int32`) from the front of `buf`, if 5 bytes are there.
fn tagged_header(buf: &[u8]) -> Option<(u8, u32)> {
    let parsed: nom::IResult<&[u8], (u8, u32)> = nom::sequence::tuple((be_u8, be_u32))(buf);
    parsed.ok().map(|(_, header)| header)
}

/// Read buffer of a session's framed readers, bytes: large result sets arrive in reads of up to
/// this size rather than the 8 KiB default, so relaying costs fewer system calls per byte.
pub const READ_BUFFER: usize = 64 * 1024;

/// Decodes tagged messages (every message after the startup phase, in both directions).
#[derive(Debug, Clone)]
pub struct TaggedCodec {
    max: u32,
}

impl TaggedCodec {
    /// A codec rejecting messages whose length word exceeds `max` bytes.
    pub fn new(max: u32) -> Self {
        Self { max }
    }
}

impl Decoder for TaggedCodec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some((tag, len)) = tagged_header(src) else {
            return Ok(None);
        };
        if len < 4 {
            return Err(WireError::BadLength {
                tag: Some(char::from(tag)),
                len,
            });
        }
        if len > self.max {
            return Err(WireError::TooLarge {
                tag: Some(char::from(tag)),
                len,
                max: self.max,
            });
        }
        let total = len as usize + 1;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(total);
        frame.advance(5);
        Ok(Some(Frame {
            tag,
            body: frame.freeze(),
        }))
    }
}

/// Request codes carried by untagged startup-phase messages (PostgreSQL docs 55.7).
pub mod codes {
    /// StartupMessage protocol version 3.0.
    pub const PROTOCOL_3_0: u32 = 196_608;
    /// SSLRequest.
    pub const SSL_REQUEST: u32 = 80_877_103;
    /// GSSENCRequest.
    pub const GSSENC_REQUEST: u32 = 80_877_104;
    /// CancelRequest.
    pub const CANCEL_REQUEST: u32 = 80_877_102;
}

/// One untagged startup-phase message: its request code and the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupFrame {
    /// The Int32 after the length: a protocol version or a request code ([`codes`]).
    pub code: u32,
    /// The rest of the message.
    pub body: Bytes,
}

/// Decodes one untagged startup-phase message (StartupMessage, SSLRequest, GSSENCRequest,
/// CancelRequest). Startup packets are limited to 10 000 bytes, as the server does.
#[derive(Debug, Clone, Default)]
pub struct StartupCodec;

/// Largest StartupMessage the server accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_PACKET: u32 = 10_000;

/// Checks a startup-phase length word: at least the 8 bytes of length and code, at most
/// [`MAX_STARTUP_PACKET`].
pub fn check_startup_len(len: u32) -> Result<(), WireError> {
    if len < 8 {
        return Err(WireError::BadLength { tag: None, len });
    }
    if len > MAX_STARTUP_PACKET {
        return Err(WireError::TooLarge {
            tag: None,
            len,
            max: MAX_STARTUP_PACKET,
        });
    }
    Ok(())
}

impl Decoder for StartupCodec {
    type Item = StartupFrame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<StartupFrame>, WireError> {
        let parsed: nom::IResult<&[u8], (u32, u32)> = nom::sequence::tuple((be_u32, be_u32))(src);
        let Ok((_, (len, code))) = parsed else {
            return Ok(None);
        };
        check_startup_len(len)?;
        let total = len as usize;
        if src.len() < total {
            return Ok(None);
        }
        let mut frame = src.split_to(total);
        frame.advance(8);
        Ok(Some(StartupFrame {
            code,
            body: frame.freeze(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut TaggedCodec, bytes: &[u8]) -> Result<Vec<Frame>, WireError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(&mut buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    #[test]
    fn tagged_frames_split_and_join() {
        let mut wire = BytesMut::new();
        Frame {
            tag: b'Q',
            body: Bytes::from_static(b"select 1\0"),
        }
        .write_to(&mut wire);
        Frame {
            tag: b'S',
            body: Bytes::new(),
        }
        .write_to(&mut wire);
        let frames = decode_all(&mut TaggedCodec::new(1024), &wire).expect("valid frames");
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].tag, b'Q');
        assert_eq!(&frames[0].body[..], b"select 1\0");
        assert_eq!(frames[1].tag, b'S');
        assert!(frames[1].body.is_empty());
    }

    #[test]
    fn partial_frame_waits_for_more_bytes() {
        let mut codec = TaggedCodec::new(1024);
        let mut buf = BytesMut::from(&b"Q\0\0\0\x0dselect"[..]);
        assert_eq!(codec.decode(&mut buf).expect("no error"), None);
        buf.extend_from_slice(b" 1\0");
        let frame = codec.decode(&mut buf).expect("no error").expect("frame");
        assert_eq!(&frame.body[..], b"select 1\0");
        assert!(buf.is_empty());
    }

    #[test]
    fn length_below_four_is_rejected() {
        let err = decode_all(&mut TaggedCodec::new(1024), b"Q\0\0\0\x03").expect_err("bad len");
        assert!(matches!(err, WireError::BadLength { len: 3, .. }));
    }

    #[test]
    fn oversized_frame_is_rejected_before_buffering() {
        let err = decode_all(&mut TaggedCodec::new(100), b"Q\x7f\xff\xff\xff").expect_err("big");
        assert!(matches!(err, WireError::TooLarge { max: 100, .. }));
    }

    #[test]
    fn startup_codes_are_recognised() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&8u32.to_be_bytes());
        buf.extend_from_slice(&codes::SSL_REQUEST.to_be_bytes());
        let frame = StartupCodec.decode(&mut buf).expect("ok").expect("frame");
        assert_eq!(frame.code, codes::SSL_REQUEST);
        assert!(frame.body.is_empty());
    }

    #[test]
    fn startup_too_short_or_too_long_is_rejected() {
        let mut short = BytesMut::from(&[0u8, 0, 0, 4, 0, 0, 0, 0][..]);
        assert!(StartupCodec.decode(&mut short).is_err());
        let mut long = BytesMut::from(&[0u8, 1, 0, 0, 0, 3, 0, 0][..]);
        assert!(matches!(
            StartupCodec.decode(&mut long),
            Err(WireError::TooLarge { .. })
        ));
    }
}
