//! The agent's own connection to the protected server: StartupMessage with the client's
//! parameters but the agent's role (the target's static role or the session's own role from
//! [`crate::credentials`], whose broker connects through here too), authentication (SCRAM-SHA-256
//! via `postgres-protocol`'s SASL implementation, md5, cleartext; PostgreSQL docs 55.2.1 and
//! 55.3 "SASL Authentication"), then the server's ParameterStatus/BackendKeyData up to the first
//! ReadyForQuery. The client never sees or sends a database password.

use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::BytesMut;
use futures::StreamExt as _;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::pgwire::WireError;
use crate::pgwire::backend::{self, ErrorFields, TransactionStatus};
use crate::pgwire::codec::{Frame, READ_BUFFER, TaggedCodec};
use crate::pgwire::read::Reader;

use super::ProxyError;
use super::negotiate::{BoxRead, BoxWrite, write_flushed};

/// Frames read from the upstream connection (plain TCP or TLS).
pub type UpstreamRead = FramedRead<BoxRead, TaggedCodec>;

/// An authenticated upstream connection, ready for queries.
pub struct Upstream {
    /// Frames from the server.
    pub reader: UpstreamRead,
    /// The connection's write half.
    pub writer: BoxWrite,
    /// ParameterStatus, BackendKeyData and NoticeResponse frames received during startup, in
    /// order, for the client.
    pub startup_frames: Vec<Frame>,
    /// Transaction status of the first ReadyForQuery.
    pub status: TransactionStatus,
    /// The role logged in as: `upstream_user`, or the session's own role (dynamic credentials).
    pub role: String,
    /// When that role's login expires (`VALID UNTIL`) for a dynamic credential: the session must
    /// be over by then. `None` for a static credential.
    pub valid_until: Option<SystemTime>,
    /// What TLS to the server negotiated; `None` in clear.
    pub tls: Option<jitgate_proto::audit::v1::Tls>,
    /// The session's own role, dropped (in the background, bounded) when this connection is
    /// dropped — after the connection itself, which is declared first.
    pub lease: Option<crate::credentials::RoleLease>,
}

/// What to connect as.
pub struct Login<'a> {
    /// Server address.
    pub addr: SocketAddr,
    /// Role to authenticate as.
    pub user: &'a str,
    /// Its password.
    pub password: &'a str,
    /// Other StartupMessage parameters (database, application_name, options, …).
    pub params: Vec<(&'a str, &'a str)>,
    /// TLS to the server, when the target wants it.
    pub tls: Option<UpstreamTls>,
}

/// How to encrypt the upstream connection.
#[derive(Clone)]
pub struct UpstreamTls {
    /// rustls client configuration (verification per the target's mode).
    pub config: Arc<rustls::ClientConfig>,
    /// The name the server's certificate must carry (`verify-full`).
    pub server_name: ServerName<'static>,
    /// Whether a server that refuses TLS may be used in clear (`prefer`).
    pub optional: bool,
}

/// The connection's halves, the `tls-server-end-point` channel binding data and what TLS
/// negotiated (both `None` in clear).
type Halves = (
    BoxRead,
    BoxWrite,
    Option<Vec<u8>>,
    Option<jitgate_proto::audit::v1::Tls>,
);

/// Authentication request codes (PostgreSQL docs 55.7, Authentication*).
mod auth {
    pub const OK: u32 = 0;
    pub const CLEARTEXT: u32 = 3;
    pub const MD5: u32 = 5;
    pub const SASL: u32 = 10;
    pub const SASL_CONTINUE: u32 = 11;
    pub const SASL_FINAL: u32 = 12;
}

async fn next(reader: &mut UpstreamRead) -> Result<Frame, ProxyError> {
    match reader.next().await {
        Some(Ok(frame)) => Ok(frame),
        Some(Err(e)) => Err(ProxyError::Upstream(e)),
        None => Err(ProxyError::Upstream(WireError::Closed)),
    }
}

async fn send(writer: &mut BoxWrite, buf: BytesMut) -> Result<(), ProxyError> {
    write_flushed(writer, &buf)
        .await
        .map_err(|e| ProxyError::Upstream(WireError::Io(e)))
}

fn io_err(e: std::io::Error) -> ProxyError {
    ProxyError::Upstream(WireError::Io(e))
}

/// Connects and authenticates; on a server ErrorResponse returns [`ProxyError::UpstreamRefused`].
pub async fn connect(login: Login<'_>, max_message: u32) -> Result<Upstream, ProxyError> {
    let stream =
        TcpStream::connect(login.addr)
            .await
            .map_err(|source| ProxyError::UpstreamConnect {
                addr: login.addr,
                source,
            })?;
    stream.set_nodelay(true).map_err(io_err)?;
    let (reader, mut writer, binding, tls_info) = match &login.tls {
        None => {
            let (r, w) = stream.into_split();
            let halves: Halves = (Box::new(r), Box::new(w), None, None);
            halves
        }
        Some(tls) => start_tls(stream, tls).await?,
    };
    let mut reader = FramedRead::with_capacity(reader, TaggedCodec::new(max_message), READ_BUFFER);

    let mut buf = BytesMut::new();
    let mut params = vec![("user", login.user)];
    params.extend(login.params.iter().copied().filter(|(k, _)| *k != "user"));
    frontend::startup_message(params, &mut buf).map_err(io_err)?;
    send(&mut writer, buf).await?;

    let mut scram: Option<ScramSha256> = None;
    loop {
        let frame = next(&mut reader).await?;
        match frame.tag {
            backend::AUTHENTICATION_TAG => {
                let mut r = Reader::new(&frame.body, "Authentication");
                let code = r.u32().map_err(ProxyError::Upstream)?;
                let mut out = BytesMut::new();
                match code {
                    auth::OK => break,
                    auth::CLEARTEXT => {
                        frontend::password_message(login.password.as_bytes(), &mut out)
                            .map_err(io_err)?;
                    }
                    auth::MD5 => {
                        let salt = r.bytes(4).map_err(ProxyError::Upstream)?;
                        let salt = [salt[0], salt[1], salt[2], salt[3]];
                        let hash = postgres_protocol::authentication::md5_hash(
                            login.user.as_bytes(),
                            login.password.as_bytes(),
                            salt,
                        );
                        frontend::password_message(hash.as_bytes(), &mut out).map_err(io_err)?;
                    }
                    auth::SASL => {
                        let mut offered = Vec::new();
                        loop {
                            let m = r.cstr().map_err(ProxyError::Upstream)?;
                            if m.is_empty() {
                                break;
                            }
                            offered.push(m.to_owned());
                        }
                        let plus = offered.iter().any(|m| m == sasl::SCRAM_SHA_256_PLUS);
                        let (mechanism, channel_binding) = match (&binding, plus) {
                            // Over TLS with a server that can bind: tie the SCRAM exchange to
                            // this TLS session (RFC 5802 §6, PostgreSQL docs 55.3.1).
                            (Some(hash), true) => (
                                sasl::SCRAM_SHA_256_PLUS,
                                ChannelBinding::tls_server_end_point(hash.clone()),
                            ),
                            (Some(_), false) => {
                                (sasl::SCRAM_SHA_256, ChannelBinding::unrequested())
                            }
                            (None, _) => (sasl::SCRAM_SHA_256, ChannelBinding::unsupported()),
                        };
                        if !offered.iter().any(|m| m == mechanism) {
                            return Err(ProxyError::UpstreamAuth {
                                detail: format!(
                                    "server offers SASL {offered:?}, need SCRAM-SHA-256"
                                ),
                            });
                        }
                        let s = ScramSha256::new(login.password.as_bytes(), channel_binding);
                        frontend::sasl_initial_response(mechanism, s.message(), &mut out)
                            .map_err(io_err)?;
                        scram = Some(s);
                    }
                    auth::SASL_CONTINUE => {
                        let s = scram.as_mut().ok_or_else(|| ProxyError::UpstreamAuth {
                            detail: "SASLContinue before SASL".into(),
                        })?;
                        let data = r.bytes(r.remaining()).map_err(ProxyError::Upstream)?;
                        s.update(data).map_err(|e| ProxyError::UpstreamAuth {
                            detail: format!("SCRAM: {e}"),
                        })?;
                        frontend::sasl_response(s.message(), &mut out).map_err(io_err)?;
                    }
                    auth::SASL_FINAL => {
                        let s = scram.as_mut().ok_or_else(|| ProxyError::UpstreamAuth {
                            detail: "SASLFinal before SASL".into(),
                        })?;
                        let data = r.bytes(r.remaining()).map_err(ProxyError::Upstream)?;
                        s.finish(data).map_err(|e| ProxyError::UpstreamAuth {
                            detail: format!("SCRAM server signature: {e}"),
                        })?;
                        continue;
                    }
                    other => {
                        return Err(ProxyError::UpstreamAuth {
                            detail: format!("unsupported authentication request {other}"),
                        });
                    }
                }
                send(&mut writer, out).await?;
            }
            backend::ERROR_RESPONSE_TAG => {
                return Err(refused(&frame));
            }
            backend::NEGOTIATE_PROTOCOL_VERSION_TAG | backend::NOTICE_RESPONSE_TAG => {}
            other => {
                return Err(ProxyError::UpstreamAuth {
                    detail: format!(
                        "unexpected message {:?} during authentication",
                        char::from(other)
                    ),
                });
            }
        }
    }

    let mut startup_frames = Vec::new();
    loop {
        let frame = next(&mut reader).await?;
        match frame.tag {
            backend::READY_FOR_QUERY_TAG => {
                let status = TransactionStatus::parse(&frame.body).map_err(ProxyError::Upstream)?;
                return Ok(Upstream {
                    reader,
                    writer,
                    startup_frames,
                    status,
                    role: login.user.to_owned(),
                    valid_until: None,
                    tls: tls_info,
                    lease: None,
                });
            }
            backend::ERROR_RESPONSE_TAG => return Err(refused(&frame)),
            _ => startup_frames.push(frame),
        }
    }
}

fn refused(frame: &Frame) -> ProxyError {
    match ErrorFields::parse(&frame.body, "ErrorResponse") {
        Ok(fields) => ProxyError::UpstreamRefused { fields },
        Err(e) => ProxyError::Upstream(e),
    }
}

/// Asks the server for TLS (SSLRequest) and performs the handshake; returns the halves and the
/// `tls-server-end-point` channel binding data. A server answering 'N' is used in clear only
/// when TLS is optional.
async fn start_tls(mut stream: TcpStream, tls: &UpstreamTls) -> Result<Halves, ProxyError> {
    let mut request = BytesMut::new();
    frontend::ssl_request(&mut request);
    stream.write_all(&request).await.map_err(io_err)?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await.map_err(io_err)?;
    match answer[0] {
        b'S' => {}
        b'N' if tls.optional => {
            let (r, w) = stream.into_split();
            return Ok((Box::new(r), Box::new(w), None, None));
        }
        b'N' => {
            return Err(ProxyError::UpstreamAuth {
                detail: "the server does not accept TLS, which this target requires".into(),
            });
        }
        other => {
            return Err(ProxyError::UpstreamAuth {
                detail: format!("unexpected answer {other:#04x} to SSLRequest"),
            });
        }
    }
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    let stream = connector
        .connect(tls.server_name.clone(), stream)
        .await
        .map_err(|e| ProxyError::UpstreamAuth {
            detail: format!("TLS handshake with the server failed: {e}"),
        })?;
    let binding = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(crate::tls::upstream::server_end_point);
    let info = crate::tls::info::of_client(stream.get_ref().1, &tls.server_name.to_str());
    let (r, w) = tokio::io::split(stream);
    Ok((Box::new(r), Box::new(w), binding, Some(info)))
}

/// Runs one simple query on the upstream connection before the client is attached, returning
/// its rows as text. Used for the masking catalogue lookup.
pub async fn simple_query(
    upstream: &mut Upstream,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, ProxyError> {
    let mut buf = BytesMut::new();
    frontend::query(sql, &mut buf).map_err(io_err)?;
    send(&mut upstream.writer, buf).await?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        let frame = next(&mut upstream.reader).await?;
        match frame.tag {
            backend::DATA_ROW_TAG => {
                let values = backend::parse_data_row(&frame.body).map_err(ProxyError::Upstream)?;
                rows.push(
                    values
                        .into_iter()
                        .map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned()))
                        .collect(),
                );
            }
            backend::ERROR_RESPONSE_TAG => error = Some(refused(&frame)),
            backend::READY_FOR_QUERY_TAG => {
                upstream.status =
                    TransactionStatus::parse(&frame.body).map_err(ProxyError::Upstream)?;
                return match error {
                    Some(e) => Err(e),
                    None => Ok(rows),
                };
            }
            _ => {}
        }
    }
}

/// Forwards a raw CancelRequest (PostgreSQL docs 55.2.7) to the server at `addr`.
pub async fn forward_cancel(addr: SocketAddr, body: &[u8]) -> Result<(), ProxyError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ProxyError::UpstreamConnect { addr, source })?;
    let mut buf = BytesMut::new();
    let len = u32::try_from(body.len() + 8).unwrap_or(u32::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&crate::pgwire::codec::codes::CANCEL_REQUEST.to_be_bytes());
    buf.extend_from_slice(body);
    stream.write_all(&buf).await.map_err(io_err)?;
    stream.shutdown().await.map_err(io_err)?;
    Ok(())
}
