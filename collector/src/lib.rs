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
        // tonic and hyper sometimes repeat the inner message at the end of the outer one.
        if message != text && !message.ends_with(&format!(": {text}")) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(String, #[source] Option<Box<Layer>>);

    #[test]
    fn report_keeps_each_cause_once() {
        let inner = Layer("empty".into(), None);
        let outer = Layer("cannot read /tmp/empty".into(), Some(Box::new(inner)));
        assert_eq!(super::report(&outer), "cannot read /tmp/empty: empty");
        let inner = Layer("connection refused".into(), None);
        let outer = Layer(
            "transport error: connection refused".into(),
            Some(Box::new(inner)),
        );
        assert_eq!(super::report(&outer), "transport error: connection refused");
    }
}
