//! jitgate-collector: receives audit events from jitgate agents over gRPC
//! (`jitgate.audit.v1.AuditIngest`), stores them in SQLite ([`storage`]), answers the read API
//! (`AuditQuery`, [`query`]), holds approval requests and grants (`Approvals`, [`approvals`])
//! and provides the security team's `jitgate` CLI ([`cli`]).
//!
//! The `jitgate-collector` binary is [`daemon::run`]; tests and embedders start a server with
//! [`server::Running::start`].

pub mod approvals;
pub mod cli;
pub mod daemon;
pub mod fixtures;
pub mod ingest;
pub mod load;
pub mod pki;
pub mod query;
pub mod retention;
pub mod server;
pub mod storage;
pub mod tls;

/// Formats an error with its chain of sources, `outer: inner: innermost`, for logs and the
/// command line (thiserror messages name only their own layer).
pub fn report(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // tonic and hyper sometimes repeat the inner message in the outer one.
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
