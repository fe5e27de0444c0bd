//! Who may call what: a tower layer in front of every service that classifies each gRPC method
//! as an agent's or a person's ([`caller`]) and checks the TLS peer ([`admit`]).
//!
//! With mutual TLS ([`PeerPolicy::Mtls`]):
//! - agent calls (`AuditIngest.Stream`, `Approvals.Open`, `Approvals.Wait`,
//!   `Approvals.FindGrant`) need a verified agent certificate (see [`crate::pki::identity`]):
//!   none is `UNAUTHENTICATED`, another kind of certificate `PERMISSION_DENIED`;
//! - people's calls (`AuditQuery.*`, `Approvals.List`, `Approvals.Decide`) are refused
//!   (`PERMISSION_DENIED`) to a caller presenting an agent certificate: an agent's credential is
//!   never a query or decider credential; people authenticate with the query and decider tokens;
//! - any other method is refused (`PERMISSION_DENIED`), so a new RPC is closed until it is
//!   classified here.
//!
//! Without TLS ([`PeerPolicy::Plaintext`], loopback listeners only) every call passes the gate.
//! Refusals are logged at warn level with the peer address and the method.

use std::net::SocketAddr;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use jitgate_proto::audit::v1::{approvals_server, audit_ingest_server, audit_query_server};
use tonic::Status;
use tonic::body::BoxBody;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tracing::{debug, warn};

use crate::pki::identity::{NotAgent, agent_name};

/// Who a gRPC method is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Agents, with their client certificate.
    Agent,
    /// People (the CLI), with the query or decider token.
    Person,
}

/// Agent methods of the `Approvals` service.
const AGENT_APPROVAL_METHODS: [&str; 3] = ["Open", "Wait", "FindGrant"];
/// People's methods of the `Approvals` service.
const PERSON_APPROVAL_METHODS: [&str; 2] = ["List", "Decide"];

/// Who the method at the HTTP/2 `path` (`/<package>.<Service>/<Method>`) is for; `None` for a
/// method not classified.
pub fn caller(path: &str) -> Option<Caller> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    match service {
        audit_ingest_server::SERVICE_NAME if method == "Stream" => Some(Caller::Agent),
        audit_query_server::SERVICE_NAME => Some(Caller::Person),
        approvals_server::SERVICE_NAME if AGENT_APPROVAL_METHODS.contains(&method) => {
            Some(Caller::Agent)
        }
        approvals_server::SERVICE_NAME if PERSON_APPROVAL_METHODS.contains(&method) => {
            Some(Caller::Person)
        }
        _ => None,
    }
}

/// What the gate asks of peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerPolicy {
    /// No TLS: every call passes (loopback listeners only).
    Plaintext,
    /// Mutual TLS: agent calls need an agent certificate; agent certificates get nothing else.
    Mtls,
}

/// The peer's verified certificate chain (leaf first) and address, from the connection.
fn peer(extensions: &http::Extensions) -> (Option<Vec<Vec<u8>>>, Option<SocketAddr>) {
    let Some(info) = extensions.get::<TlsConnectInfo<TcpConnectInfo>>() else {
        return (
            None,
            extensions
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr),
        );
    };
    let certs = info
        .peer_certs()
        .map(|certs| certs.iter().map(|c| c.to_vec()).collect());
    (certs, info.get_ref().remote_addr())
}

/// Why the gate refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An agent call without a client certificate (`UNAUTHENTICATED`).
    #[error(
        "{path} is for agents: present an agent client certificate issued by the collector's CA \
         (--client-ca)"
    )]
    NoCertificate {
        /// The method.
        path: String,
    },
    /// An agent call with a certificate that is not an agent's (`PERMISSION_DENIED`).
    #[error("{path} is for agents and the client certificate is not an agent's: {why}")]
    NotAgent {
        /// The method.
        path: String,
        /// What the certificate lacks.
        why: NotAgent,
    },
    /// A people's call with an agent certificate (`PERMISSION_DENIED`).
    #[error(
        "{path} is not for agents: agent {agent}'s certificate is no query or decider credential"
    )]
    AgentCertificate {
        /// The method.
        path: String,
        /// The agent the certificate names.
        agent: String,
    },
    /// A client certificate that does not parse (`PERMISSION_DENIED`).
    #[error("the client certificate does not parse")]
    Unparsable,
    /// A method the gate does not classify (`PERMISSION_DENIED`).
    #[error("{path} is not a method this collector serves to anyone")]
    Unclassified {
        /// The method.
        path: String,
    },
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Status {
        match refusal {
            Refusal::NoCertificate { .. } => Status::unauthenticated(refusal.to_string()),
            _ => Status::permission_denied(refusal.to_string()),
        }
    }
}

/// Decides whether the call to `path` from the peer of `extensions` may proceed under `policy`;
/// returns the agent's name for an admitted agent call with TLS. Refusals are logged.
///
/// # Errors
/// The [`Refusal`] (see the module docs).
pub fn admit(
    policy: PeerPolicy,
    path: &str,
    extensions: &http::Extensions,
) -> Result<Option<String>, Refusal> {
    if policy == PeerPolicy::Plaintext {
        return Ok(None);
    }
    let (certs, addr) = peer(extensions);
    let leaf = certs.as_ref().and_then(|chain| chain.first());
    let agent = leaf.map(|der| agent_name(der));
    let path_owned = || path.to_owned();
    let decision = match (caller(path), agent) {
        (Some(Caller::Agent), Some(Ok(name))) => {
            debug!(peer = ?addr, method = path, agent = %name, "agent call");
            return Ok(Some(name));
        }
        (Some(Caller::Agent), None) => Refusal::NoCertificate { path: path_owned() },
        (Some(Caller::Agent), Some(Err(why))) => Refusal::NotAgent {
            path: path_owned(),
            why,
        },
        (Some(Caller::Person), Some(Ok(agent))) => Refusal::AgentCertificate {
            path: path_owned(),
            agent,
        },
        (Some(Caller::Person), None | Some(Err(NotAgent::NoClientAuth | NotAgent::NoAgentUri))) => {
            return Ok(None);
        }
        (Some(Caller::Person), Some(Err(NotAgent::Unparsable))) => Refusal::Unparsable,
        (None, _) => Refusal::Unclassified { path: path_owned() },
    };
    warn!(peer = ?addr, method = path, reason = %decision, "call refused");
    Err(decision)
}

/// The layer putting a [`Gate`] in front of the collector's services.
#[derive(Debug, Clone, Copy)]
pub struct GateLayer {
    policy: PeerPolicy,
}

impl GateLayer {
    /// A layer enforcing `policy`.
    pub fn new(policy: PeerPolicy) -> GateLayer {
        GateLayer { policy }
    }
}

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = Gate<S>;

    fn layer(&self, inner: S) -> Gate<S> {
        Gate {
            inner,
            policy: self.policy,
        }
    }
}

/// Answers a call [`admit`] refuses with its status; passes the others to the inner service.
#[derive(Debug, Clone)]
pub struct Gate<S> {
    inner: S,
    policy: PeerPolicy,
}

impl<S, B> tower_service::Service<http::Request<B>> for Gate<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<BoxBody>>,
{
    type Response = http::Response<BoxBody>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<http::Response<BoxBody>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match admit(self.policy, request.uri().path(), request.extensions()) {
            Ok(_) => Either::Left(self.inner.call(request)),
            Err(refusal) => Either::Right(ready(Ok(Status::from(refusal).into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_is_classified() {
        use Caller::{Agent, Person};
        for (path, who) in [
            ("/jitgate.audit.v1.AuditIngest/Stream", Agent),
            ("/jitgate.audit.v1.Approvals/Open", Agent),
            ("/jitgate.audit.v1.Approvals/Wait", Agent),
            ("/jitgate.audit.v1.Approvals/FindGrant", Agent),
            ("/jitgate.audit.v1.AuditQuery/ListSessions", Person),
            ("/jitgate.audit.v1.AuditQuery/ListEvents", Person),
            ("/jitgate.audit.v1.Approvals/List", Person),
            ("/jitgate.audit.v1.Approvals/Decide", Person),
        ] {
            assert_eq!(caller(path), Some(who), "{path}");
        }
        assert_eq!(caller("/jitgate.audit.v1.AuditIngest/Other"), None);
        assert_eq!(caller("/grpc.health.v1.Health/Check"), None);
        assert_eq!(caller("nonsense"), None);
    }

    #[test]
    fn without_tls_every_call_passes_and_with_it_agents_need_a_certificate() {
        let none = http::Extensions::new();
        assert!(
            admit(
                PeerPolicy::Plaintext,
                "/jitgate.audit.v1.AuditIngest/Stream",
                &none
            )
            .is_ok()
        );
        let status = Status::from(
            admit(
                PeerPolicy::Mtls,
                "/jitgate.audit.v1.AuditIngest/Stream",
                &none,
            )
            .expect_err("no certificate"),
        );
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            admit(
                PeerPolicy::Mtls,
                "/jitgate.audit.v1.AuditQuery/ListSessions",
                &none
            )
            .is_ok()
        );
        let status =
            Status::from(admit(PeerPolicy::Mtls, "/x.Y/Z", &none).expect_err("unclassified"));
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }
}
