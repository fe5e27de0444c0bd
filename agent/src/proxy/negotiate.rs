//! The startup phase's first messages, before any message has a type byte: SSLRequest (answered
//! 'S' and followed by a TLS handshake when the target has a certificate, else 'N'),
//! GSSENCRequest ('N'), direct TLS (PostgreSQL 17: the first bytes are a TLS ClientHello), then
//! StartupMessage or CancelRequest (PostgreSQL docs 55.2.1, 55.2.10).
//!
//! Bytes are read exactly, one message at a time, straight from the socket: nothing sent before
//! the TLS handshake can be buffered and later taken as if it came over TLS.

use std::sync::Arc;

use bytes::Bytes;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::ProxyError;
use crate::pgwire::WireError;
use crate::pgwire::codec::{StartupFrame, check_startup_len, codes};
use crate::pgwire::write::ENCRYPTION_REFUSED;

/// A boxed read half (plain TCP or TLS).
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// A boxed write half (plain TCP or TLS).
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Writes all of `buf` and flushes: over TLS, `write_all` can return while the last records
/// still sit in the TLS session's buffer (the socket was full), and nothing else would push them
/// out.
pub async fn write_flushed(writer: &mut BoxWrite, buf: &[u8]) -> std::io::Result<()> {
    writer.write_all(buf).await?;
    writer.flush().await
}

/// The client connection once its first real message is known.
pub struct Negotiated {
    /// StartupMessage or CancelRequest.
    pub first: StartupFrame,
    /// Read half, positioned right after `first`.
    pub reader: BoxRead,
    /// Write half.
    pub writer: BoxWrite,
    /// Whether the connection is TLS (SSLRequest answered 'S', or direct TLS).
    pub tls: bool,
    /// What the TLS handshake negotiated, when `tls`.
    pub tls_info: Option<jitgate_proto::audit::v1::Tls>,
}

/// TLS record type of a handshake, the first byte of a ClientHello.
const TLS_HANDSHAKE: u8 = 0x16;

fn client(e: std::io::Error) -> ProxyError {
    ProxyError::Client(WireError::Io(e))
}

/// Reads one untagged startup-phase message exactly.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<StartupFrame, ProxyError> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.map_err(client)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let code = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    check_startup_len(len).map_err(ProxyError::Client)?;
    let mut body = vec![0u8; len as usize - 8];
    stream.read_exact(&mut body).await.map_err(client)?;
    Ok(StartupFrame {
        code,
        body: Bytes::from(body),
    })
}

/// Reads frames until StartupMessage/CancelRequest, answering encryption requests. `tls` is
/// `None` when encryption is not offered (already encrypted, or no certificate).
async fn until_startup<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    encryption_offered: bool,
) -> Result<Option<StartupFrame>, ProxyError> {
    loop {
        let frame = read_frame(stream).await?;
        match frame.code {
            codes::SSL_REQUEST if encryption_offered => {
                stream.write_all(b"S").await.map_err(client)?;
                return Ok(None);
            }
            codes::SSL_REQUEST | codes::GSSENC_REQUEST => {
                stream
                    .write_all(&[ENCRYPTION_REFUSED])
                    .await
                    .map_err(client)?;
            }
            _ => return Ok(Some(frame)),
        }
    }
}

fn plain(stream: TcpStream, first: StartupFrame) -> Negotiated {
    let (reader, writer) = stream.into_split();
    Negotiated {
        first,
        reader: Box::new(reader),
        writer: Box::new(writer),
        tls: false,
        tls_info: None,
    }
}

/// Negotiates encryption with the client and reads its first real message.
pub async fn negotiate(
    mut stream: TcpStream,
    tls: Option<Arc<ServerConfig>>,
) -> Result<Negotiated, ProxyError> {
    let mut peek = [0u8; 1];
    let direct = stream.peek(&mut peek).await.map_err(client)? == 1 && peek[0] == TLS_HANDSHAKE;
    let Some(config) = tls else {
        return match until_startup(&mut stream, false).await? {
            Some(first) => Ok(plain(stream, first)),
            None => Err(ProxyError::Client(WireError::Closed)),
        };
    };
    if !direct && let Some(first) = until_startup(&mut stream, true).await? {
        return Ok(plain(stream, first));
    }
    let mut tls_stream = TlsAcceptor::from(config)
        .accept(stream)
        .await
        .map_err(client)?;
    // Inside TLS, further encryption requests are answered 'N', as the server does.
    let Some(first) = until_startup(&mut tls_stream, false).await? else {
        return Err(ProxyError::Client(WireError::Closed));
    };
    let tls_info = crate::tls::info::of_server(tls_stream.get_ref().1);
    let (reader, writer) = tokio::io::split(tls_stream);
    Ok(Negotiated {
        first,
        reader: Box::new(reader),
        writer: Box::new(writer),
        tls: true,
        tls_info: Some(tls_info),
    })
}
