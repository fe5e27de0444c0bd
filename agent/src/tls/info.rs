//! What TLS one leg of a session negotiated, for the audit trail (`SessionStarted.client_tls`,
//! `upstream_tls`): protocol version and cipher suite as rustls names them (`TLSv1_3`,
//! `TLS13_AES_256_GCM_SHA384`) and the SNI name.

use jitgate_proto::audit::v1 as pb;
use rustls::{CipherSuite, ProtocolVersion};

fn version_name(v: Option<ProtocolVersion>) -> String {
    v.map(|v| v.as_str().map_or_else(|| format!("{v:?}"), str::to_owned))
        .unwrap_or_default()
}

fn suite_name(s: Option<CipherSuite>) -> String {
    s.map(|s| s.as_str().map_or_else(|| format!("{s:?}"), str::to_owned))
        .unwrap_or_default()
}

/// The client leg, from the agent's side of the handshake: the SNI is what the client sent.
pub fn of_server(conn: &rustls::ServerConnection) -> pb::Tls {
    pb::Tls {
        enabled: true,
        version: version_name(conn.protocol_version()),
        cipher_suite: suite_name(conn.negotiated_cipher_suite().map(|s| s.suite())),
        server_name: conn.server_name().unwrap_or_default().to_owned(),
    }
}

/// The upstream leg: `server_name` is the SNI the agent sent (the name verified against the
/// server's certificate).
pub fn of_client(conn: &rustls::ClientConnection, server_name: &str) -> pb::Tls {
    pb::Tls {
        enabled: true,
        version: version_name(conn.protocol_version()),
        cipher_suite: suite_name(conn.negotiated_cipher_suite().map(|s| s.suite())),
        server_name: server_name.to_owned(),
    }
}
