//! PostgreSQL frontend/backend protocol v3 (PostgreSQL docs, chapter 55 "Frontend/Backend
//! Protocol"): framing ([`codec`]), the message bodies jitgate inspects ([`frontend`],
//! [`backend`]) and the messages the agent writes itself ([`write`]).
//!
//! Framing is separate from parsing: codecs yield whole frames, parsers work on complete bodies
//! only, and a frame over the configured maximum is rejected before it is buffered.

pub mod backend;
pub mod codec;
pub mod frontend;
pub(crate) mod read;
pub mod write;

use thiserror::Error;

/// Errors of the wire layer.
#[derive(Debug, Error)]
pub enum WireError {
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    /// A length word below 4 (tagged) or 8 (startup), which no valid message has.
    #[error("invalid message length {len} for message {tag:?}")]
    BadLength {
        /// The message tag, `None` for untagged startup-phase messages.
        tag: Option<char>,
        /// The declared length.
        len: u32,
    },
    /// A message larger than the configured maximum; never buffered.
    #[error("message {tag:?} of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The message tag, `None` for startup-phase messages.
        tag: Option<char>,
        /// The declared length.
        len: u32,
        /// The configured limit.
        max: u32,
    },
    /// A message body that does not follow its documented format.
    #[error("malformed {message} message: {detail}")]
    Malformed {
        /// Protocol name of the message, e.g. "Bind".
        message: &'static str,
        /// What was wrong.
        detail: &'static str,
    },
    /// The peer closed the connection in the middle of a message or handshake.
    #[error("connection closed by peer")]
    Closed,
}

/// Default largest accepted message, bytes (PostgreSQL's own limit for most messages is 1 GiB;
/// the agent keeps a smaller default so a bad peer cannot make it allocate that much).
pub const DEFAULT_MAX_MESSAGE: u32 = 64 * 1024 * 1024;
