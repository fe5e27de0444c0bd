//! A workload token sent as the password in the client's startup, as Azure Database for
//! PostgreSQL accepts Entra tokens: the agent answers the StartupMessage with
//! AuthenticationCleartextPassword and reads the client's PasswordMessage (PostgreSQL docs
//! 55.2.2 "Start-up", 55.7 "Message Formats"). Only targets configured with
//! `accept_token_password` ask, and by default only over TLS ([`crate::config`]).
//!
//! Bytes are read exactly (header, then body): nothing after the PasswordMessage is consumed.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::IdentityError;
use crate::pgwire::frontend::PASSWORD_TAG;
use crate::pgwire::write;

/// Largest PasswordMessage accepted, bytes (Entra access tokens are a few KiB).
pub const MAX_PASSWORD_BYTES: u32 = 64 * 1024;

/// How long the client may take to answer.
pub const PASSWORD_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks the client for its password and returns it.
///
/// # Errors
/// [`IdentityError::StartupPassword`] when the client closes, times out, or sends anything but
/// a well-formed PasswordMessage of at most [`MAX_PASSWORD_BYTES`].
pub async fn ask<R, W>(reader: &mut R, writer: &mut W) -> Result<String, IdentityError>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let fail = |detail: String| IdentityError::StartupPassword { detail };
    let mut out = BytesMut::new();
    write::authentication_cleartext_password(&mut out);
    writer
        .write_all(&out)
        .await
        .map_err(|e| fail(format!("cannot ask for the password: {e}")))?;
    writer
        .flush()
        .await
        .map_err(|e| fail(format!("cannot ask for the password: {e}")))?;
    tokio::time::timeout(PASSWORD_TIMEOUT, read_password(reader))
        .await
        .map_err(|_| fail(format!("no password within {PASSWORD_TIMEOUT:?}")))?
}

async fn read_password<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
) -> Result<String, IdentityError> {
    let fail = |detail: String| IdentityError::StartupPassword { detail };
    let mut header = [0u8; 5];
    reader.read_exact(&mut header).await.map_err(|_| {
        fail("the client closed the connection instead of sending a password".into())
    })?;
    let [tag, l0, l1, l2, l3] = header;
    if tag != PASSWORD_TAG {
        return Err(fail(format!(
            "expected a PasswordMessage, got message type {:?}",
            char::from(tag)
        )));
    }
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    if !(5..=MAX_PASSWORD_BYTES + 4).contains(&len) {
        return Err(fail(format!(
            "PasswordMessage length {len} is out of range"
        )));
    }
    let mut body = vec![0u8; len as usize - 4];
    reader
        .read_exact(&mut body)
        .await
        .map_err(|_| fail("the client closed the connection mid-message".into()))?;
    parse(&body).map_err(fail)
}

/// The password of a PasswordMessage body: a NUL-terminated string.
fn parse(body: &[u8]) -> Result<String, String> {
    let Some((&0, text)) = body.split_last() else {
        return Err("the password is not NUL-terminated".into());
    };
    if text.contains(&0) {
        return Err("the password contains a NUL byte".into());
    }
    let text = std::str::from_utf8(text).map_err(|_| "the password is not UTF-8".to_owned())?;
    if text.trim().is_empty() {
        return Err("the password is empty".into());
    }
    Ok(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn asks_and_reads_exactly_one_message() {
        let mut client_says: &[u8] = b"p\0\0\0\x0aa.b.c\0Q...";
        let mut sent = Vec::new();
        let password = ask(&mut client_says, &mut sent).await.expect("password");
        assert_eq!(password, "a.b.c");
        assert_eq!(sent, b"R\0\0\0\x08\0\0\0\x03");
        assert_eq!(client_says, b"Q...", "nothing after the message is read");
    }

    #[tokio::test]
    async fn bad_messages_are_refused() {
        for bad in [
            &b""[..],
            b"Q\0\0\0\x05\0",
            b"p\0\0\0\x04",
            b"p\xff\0\0\0",
            b"p\0\0\0\x06ab",
            b"p\0\0\0\x05\0",
        ] {
            let mut input = bad;
            let mut sent = Vec::new();
            let err = ask(&mut input, &mut sent).await.expect_err("refused");
            assert!(
                matches!(err, IdentityError::StartupPassword { .. }),
                "{err}"
            );
        }
    }
}
