//! Messages the agent writes itself: its own ErrorResponse and ReadyForQuery after a policy
//! decision, AuthenticationCleartextPassword (a workload token taken as the password),
//! AuthenticationOk and the agent's own BackendKeyData to the client, rebuilt DataRows after
//! masking, and the one-byte SSLRequest answer. Each writer appends a whole message to a
//! buffer, back-patching the length.

use bytes::{BufMut, BytesMut};

use super::backend::{
    AUTHENTICATION_TAG, BACKEND_KEY_DATA_TAG, DATA_ROW_TAG, ERROR_RESPONSE_TAG,
    NEGOTIATE_PROTOCOL_VERSION_TAG, READY_FOR_QUERY_TAG, TransactionStatus,
};

/// Starts a tagged message; returns the offset of its length word for [`finish`].
fn start(out: &mut BytesMut, tag: u8) -> usize {
    out.put_u8(tag);
    let at = out.len();
    out.put_u32(0);
    at
}

/// Back-patches the length word written by [`start`].
fn finish(out: &mut BytesMut, at: usize) {
    let len = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Severity of an ErrorResponse (field `S` and non-localized `V`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends after this message.
    Fatal,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }
}

/// ErrorResponse with severity, SQLSTATE, message and an optional hint (field `H`).
pub fn error_response(
    out: &mut BytesMut,
    severity: Severity,
    sqlstate: &str,
    message: &str,
    hint: Option<&str>,
) {
    fields_message(
        out,
        ERROR_RESPONSE_TAG,
        severity.as_str(),
        sqlstate,
        message,
        hint,
    );
}

/// NoticeResponse (tag `N`, PostgreSQL docs 55.7) with severity NOTICE, SQLSTATE 00000, a
/// message and an optional hint.
pub fn notice_response(out: &mut BytesMut, message: &str, hint: Option<&str>) {
    fields_message(out, b'N', "NOTICE", "00000", message, hint);
}

/// An ErrorResponse or NoticeResponse body: fields S, V, C, M and optionally H (55.8).
fn fields_message(
    out: &mut BytesMut,
    tag: u8,
    severity: &str,
    sqlstate: &str,
    message: &str,
    hint: Option<&str>,
) {
    let at = start(out, tag);
    for (code, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', sqlstate),
        (b'M', message),
    ] {
        put_field(out, code, value);
    }
    if let Some(hint) = hint {
        put_field(out, b'H', hint);
    }
    out.put_u8(0);
    finish(out, at);
}

/// An ErrorResponse or NoticeResponse (`tag`) with exactly `fields`, in order (55.8).
pub fn fields(out: &mut BytesMut, tag: u8, fields: &[(u8, String)]) {
    let at = start(out, tag);
    for (code, value) in fields {
        put_field(out, *code, value);
    }
    out.put_u8(0);
    finish(out, at);
}

/// NotificationResponse (tag `A`, 55.7): process id, channel and payload.
pub fn notification(out: &mut BytesMut, pid: u32, channel: &str, payload: &str) {
    let at = start(out, b'A');
    out.put_u32(pid);
    for text in [channel, payload] {
        out.extend(text.bytes().filter(|&b| b != 0));
        out.put_u8(0);
    }
    finish(out, at);
}

fn put_field(out: &mut BytesMut, code: u8, value: &str) {
    out.put_u8(code);
    // A NUL inside a field would end it early; none of our texts contain one, but be safe.
    out.extend(value.bytes().filter(|&b| b != 0));
    out.put_u8(0);
}

/// ReadyForQuery with the given transaction status.
pub fn ready_for_query(out: &mut BytesMut, status: TransactionStatus) {
    let at = start(out, READY_FOR_QUERY_TAG);
    out.put_u8(status.byte());
    finish(out, at);
}

/// NegotiateProtocolVersion: the newest minor version of protocol 3 supported and the protocol
/// options (`_pq_.*`) not recognised.
pub fn negotiate_protocol_version(out: &mut BytesMut, minor: u32, unrecognized: &[&str]) {
    let at = start(out, NEGOTIATE_PROTOCOL_VERSION_TAG);
    out.put_u32((3 << 16) | minor);
    out.put_u32(u32::try_from(unrecognized.len()).unwrap_or(u32::MAX));
    for option in unrecognized {
        out.extend(option.bytes().filter(|&b| b != 0));
        out.put_u8(0);
    }
    finish(out, at);
}

/// AuthenticationOk.
pub fn authentication_ok(out: &mut BytesMut) {
    let at = start(out, AUTHENTICATION_TAG);
    out.put_u32(0);
    finish(out, at);
}

/// AuthenticationCleartextPassword: the client is to send its password in a PasswordMessage
/// (PostgreSQL docs 55.2.2; the agent asks for it only to receive a workload token).
pub fn authentication_cleartext_password(out: &mut BytesMut) {
    let at = start(out, AUTHENTICATION_TAG);
    out.put_u32(3);
    finish(out, at);
}

/// BackendKeyData in the protocol 3.0 shape: the process id and secret key a CancelRequest must
/// carry (PostgreSQL docs 55.2.7).
pub fn backend_key_data(out: &mut BytesMut, pid: u32, secret: u32) {
    let at = start(out, BACKEND_KEY_DATA_TAG);
    out.put_u32(pid);
    out.put_u32(secret);
    finish(out, at);
}

/// DataRow with the given values (`None` = NULL).
pub fn data_row(out: &mut BytesMut, values: &[Option<&[u8]>]) {
    let at = start(out, DATA_ROW_TAG);
    out.put_u16(u16::try_from(values.len()).unwrap_or(u16::MAX));
    for value in values {
        match value {
            None => out.put_i32(-1),
            Some(v) => {
                out.put_i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
                out.extend_from_slice(v);
            }
        }
    }
    finish(out, at);
}

/// The single byte answering SSLRequest / GSSENCRequest with "not supported".
pub const ENCRYPTION_REFUSED: u8 = b'N';
