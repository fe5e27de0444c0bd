//! A new client connection up to the relay: the kernel's record of who connected and where to
//! (looked up by the client's address), the StartupMessage (SSLRequest and GSSENCRequest are
//! answered 'N'), the workload identity ([`crate::identity::Identifier`]; on targets accepting a
//! token as password, AuthenticationCleartextPassword and the client's PasswordMessage), the
//! upstream connection, and the handover to the client (AuthenticationOk, the server's
//! ParameterStatus, the agent's own BackendKeyData from [`super::cancel`], ReadyForQuery). A
//! CancelRequest is handed to [`super::cancel::route`].
//!
//! Every refusal before the relay is an ErrorResponse with severity FATAL and SQLSTATE 28000
//! (identity) or 08xxx (upstream), after which the connection is closed and nothing was sent
//! upstream. Each is audited as SessionRefused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use jitgate_common::ConnInfo;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;
use tracing::Instrument as _;

use super::cancel::{self, CancelTarget};
use super::negotiate::{BoxWrite, Negotiated, negotiate, write_flushed};
use super::session::{Client, Session};
use super::upstream::{self, Login};
use super::{Context, ProxyError, Target, UpstreamCredential};
use crate::audit::SessionAudit;
use crate::bpf::SockAddrExt as _;
use crate::identity::{PasswordChannel, WorkloadIdentity, ancestry, process};
use crate::pgwire::backend::BACKEND_KEY_DATA_TAG;
use crate::pgwire::codec::{READ_BUFFER, TaggedCodec, codes};
use crate::pgwire::frontend::StartupMessage;
use crate::pgwire::write::{self, Severity};
use crate::policy::{SessionFacts, SessionPolicy, integrity};
use jitgate_proto::audit::v1 as pb;

/// How long a client may take to send its StartupMessage.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A refusal before the relay starts.
struct Refusal {
    sqlstate: String,
    message: String,
    hint: Option<&'static str>,
}

/// Serves one accepted connection to its end. Errors are logged, never propagated.
pub async fn serve(ctx: Arc<Context>, stream: TcpStream, peer: SocketAddr) {
    let session_id = uuid::Uuid::now_v7().to_string();
    let span = tracing::info_span!("session", id = %session_id, %peer);
    let mut audit = SessionAudit::new(ctx.audit.clone(), session_id);
    let result = serve_inner(&ctx, stream, peer, &mut audit)
        .instrument(span)
        .await;
    if let Err(e) = result {
        tracing::info!(error = %e, %peer, "session ended with an error");
    }
}

fn process_record(info: &ConnInfo) -> pb::Process {
    let p = &info.process;
    pb::Process {
        pid: p.pid,
        tgid: p.tgid,
        uid: p.uid,
        gid: p.gid,
        cgroup_id: p.cgroup_id,
        comm: process::comm_of(p),
        exe: process::exe_of(p.tgid),
        ..pb::Process::default()
    }
}

async fn refuse(
    writer: &mut BoxWrite,
    audit: &mut SessionAudit,
    info: Option<&ConnInfo>,
    refusal: Refusal,
) {
    let mut out = BytesMut::new();
    write::error_response(
        &mut out,
        Severity::Fatal,
        &refusal.sqlstate,
        &refusal.message,
        refusal.hint,
    );
    let _ = writer.write_all(&out).await;
    let _ = writer.shutdown().await;
    tracing::info!(sqlstate = %refusal.sqlstate, reason = %refusal.message, "connection refused");
    audit.record(pb::event::Kind::SessionRefused(pb::SessionRefused {
        process: info.map(process_record),
        target: info
            .and_then(|i| i.original.to_std().ok())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        reason: refusal.message,
        sqlstate: refusal.sqlstate,
    }));
}

async fn serve_inner(
    ctx: &Context,
    stream: TcpStream,
    peer: SocketAddr,
    audit: &mut SessionAudit,
) -> Result<(), ProxyError> {
    let _ = stream.set_nodelay(true);
    // The agent's end of the connection, to find the client's end for the identity check.
    let local = stream
        .local_addr()
        .map_err(|e| ProxyError::Client(crate::pgwire::WireError::Io(e)))?;
    let info = ctx.redirector.lookup(peer).map_err(ProxyError::Lookup)?;
    let target = info
        .as_ref()
        .and_then(|i| i.original.to_std().ok())
        .and_then(|original| ctx.target_for(original));
    let client_tls = target.and_then(|t| t.client_tls.clone());
    let negotiated = tokio::time::timeout(STARTUP_TIMEOUT, negotiate(stream, client_tls))
        .await
        .map_err(|_| ProxyError::Client(crate::pgwire::WireError::Closed))??;
    let Negotiated {
        first,
        mut reader,
        mut writer,
        tls: client_tls,
        tls_info: client_tls_info,
    } = negotiated;

    let Some(info) = info else {
        let refusal = Refusal {
            sqlstate: "28000".into(),
            message: "jitgate: this connection did not come through the runner's redirect; \
                      connect to the database's own address, not to the agent"
                .into(),
            hint: None,
        };
        refuse(&mut writer, audit, None, refusal).await;
        return Ok(());
    };
    // Counted only once the kernel vouches for the connection (it came from the runner
    // cgroup), so other local processes cannot use up the sessions.
    let Ok(_permit) = ctx.connections.clone().try_acquire_owned() else {
        tracing::warn!(limit = ctx.max_connections, "max_connections reached");
        let refusal = Refusal {
            sqlstate: "53300".into(),
            message: format!(
                "jitgate: too many connections (max_connections = {})",
                ctx.max_connections
            ),
            hint: Some("Retry later, or raise max_connections in the agent's configuration."),
        };
        refuse(&mut writer, audit, Some(&info), refusal).await;
        return Ok(());
    };
    let Ok(original) = info.original.to_std() else {
        let refusal = Refusal {
            sqlstate: "08P01".into(),
            message: "jitgate: the kernel recorded an unknown address family".into(),
            hint: None,
        };
        refuse(&mut writer, audit, Some(&info), refusal).await;
        return Ok(());
    };

    if first.code == codes::CANCEL_REQUEST {
        // The key is one the agent issued: sent on to its session's server, or dropped.
        return cancel::route(ctx, target, &first.body).await;
    }
    // Fail closed while the audit spool is full: open sessions go on, new ones are refused.
    if let Some(message) = ctx.audit.full_message() {
        let refusal = Refusal {
            sqlstate: "53400".into(),
            message: format!("jitgate: {message}"),
            hint: Some(
                "Bring the audit collector back (or fix the agent's connection to it); new \
                 sessions are accepted again once the spool has drained below \
                 spool_max_bytes.",
            ),
        };
        refuse(&mut writer, audit, Some(&info), refusal).await;
        return Ok(());
    }
    if first.code >> 16 != 3 {
        let refusal = Refusal {
            sqlstate: "08P01".into(),
            message: format!(
                "jitgate: unsupported protocol version {}.{}",
                first.code >> 16,
                first.code & 0xffff
            ),
            hint: None,
        };
        refuse(&mut writer, audit, Some(&info), refusal).await;
        return Ok(());
    }
    let startup = StartupMessage::decode(&first.body).map_err(ProxyError::Client)?;
    if let Some(mode) = startup.get("replication")
        && !matches!(
            mode.to_ascii_lowercase().as_str(),
            "false" | "off" | "no" | "0"
        )
    {
        let refusal = Refusal {
            sqlstate: "0A000".into(),
            message: format!(
                "jitgate: replication connections (replication={mode}) are not supported: \
                 jitgate decides statements of regular sessions only"
            ),
            hint: None,
        };
        refuse(&mut writer, audit, Some(&info), refusal).await;
        return Ok(());
    }

    let Some(target) = target else {
        let refusal = Refusal {
            sqlstate: "08004".into(),
            message: format!("jitgate: {original} is protected but no target is configured for it"),
            hint: None,
        };
        refuse(&mut writer, audit, Some(&info), refusal).await;
        return Ok(());
    };

    let password = target
        .config
        .accept_token_password
        .then_some(PasswordChannel {
            reader: &mut reader,
            writer: &mut writer,
            tls: client_tls,
        });
    let identified = ctx.identity.identify(&info, peer, local, password).await;
    let (identity, exe) = match identified {
        Ok(identified) => (identified.identity, identified.exe),
        Err(e) => {
            let refusal = Refusal {
                sqlstate: "28000".into(),
                message: format!("jitgate: {e}"),
                hint: Some(
                    "Run the job with a workload identity token from a trusted issuer: a file \
                     named by AZURE_FEDERATED_TOKEN_FILE or JITGATE_OIDC_TOKEN_FILE, the token in \
                     JITGATE_OIDC_TOKEN, GitHub Actions' id-token permission, or (where the target \
                     allows it) the token as the password.",
                ),
            };
            refuse(&mut writer, audit, Some(&info), refusal).await;
            return Ok(());
        }
    };

    // The process chain for the audit trail, read off the runtime's threads while the upstream
    // session is set up.
    let tgid = info.process.tgid;
    let lineage = tokio::task::spawn_blocking(move || {
        let me = ancestry::read(tgid);
        let ancestors = me
            .as_ref()
            .map(|p| ancestry::ancestors(p.ppid))
            .unwrap_or_default();
        (me, ancestors)
    });

    let session_id = audit.session_id().to_owned();
    // A session policy lets outlive its token gets a role bounded by max_session alone.
    let mut role_identity = identity.clone();
    let session_outlives_token = outlives_token(ctx, target, &identity, &info, &startup);
    if session_outlives_token {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        role_identity.expires_at = i64::try_from(now + 100 * 365 * 86_400).unwrap_or(i64::MAX);
    }
    let login = connect_upstream(ctx, target, &startup, original, &role_identity, &session_id);
    let mut upstream = match login.await {
        Ok(u) => u,
        Err(e) => {
            let refusal = match &e {
                ProxyError::UpstreamRefused { fields } => Refusal {
                    sqlstate: fields.sqlstate().unwrap_or("08006").to_owned(),
                    message: format!(
                        "jitgate: the server refused the session: {}",
                        fields.message().unwrap_or("")
                    ),
                    hint: None,
                },
                other => Refusal {
                    sqlstate: "08006".into(),
                    message: format!(
                        "jitgate: cannot open the upstream session for {}: {other}",
                        target.config.name
                    ),
                    hint: None,
                },
            };
            refuse(&mut writer, audit, Some(&info), refusal).await;
            return Ok(());
        }
    };

    if let Some(bad) = pinned_violation(&upstream.startup_frames) {
        let refusal = Refusal {
            sqlstate: "08P01".into(),
            message: format!(
                "jitgate: the server reports {bad}; jitgate needs client_encoding UTF8 and \
                 standard_conforming_strings on to read SQL as the server does"
            ),
            hint: None,
        };
        refuse(&mut writer, audit, Some(&info), refusal).await;
        return Ok(());
    }

    let policy = match session_policy(ctx, target, &identity, &info, &startup, &mut upstream).await
    {
        Ok(policy) => policy,
        Err(e) => {
            let refusal = Refusal {
                sqlstate: "42501".into(),
                message: format!("jitgate: the session's policy could not be set up: {e}"),
                hint: None,
            };
            refuse(&mut writer, audit, Some(&info), refusal).await;
            return Ok(());
        }
    };

    let catalog = super::mask_catalog::build(&mut upstream, &target.config, &policy).await?;

    // The client gets a key of the agent's in place of the server's; the server's key is used
    // only by the agent (cancel::route, and the cancel below when the client goes away). The
    // registration lives until this function returns, whichever way the session ends.
    let server_key = upstream
        .startup_frames
        .iter()
        .find(|f| f.tag == BACKEND_KEY_DATA_TAG)
        .map(|f| f.body.clone());
    let registration = match &server_key {
        // A server that gave no key gets no cancels; the client is given none either.
        None => None,
        Some(server_key) => {
            let target = CancelTarget {
                upstream: original,
                server_key: server_key.clone(),
            };
            match ctx.cancels.register(target) {
                Ok(registration) => Some(registration),
                Err(e) => {
                    let refusal = Refusal {
                        sqlstate: "08006".into(),
                        message: format!("jitgate: {e}"),
                        hint: None,
                    };
                    refuse(&mut writer, audit, Some(&info), refusal).await;
                    return Ok(());
                }
            }
        }
    };

    let mut hello = BytesMut::new();
    // A client asking for a newer minor version or protocol options (`_pq_.*`) is told what is
    // spoken: 3.0, none of the options (PostgreSQL docs 55.2.1, NegotiateProtocolVersion).
    let options: Vec<&str> = startup
        .params
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("_pq_."))
        .collect();
    if first.code & 0xffff != 0 || !options.is_empty() {
        write::negotiate_protocol_version(&mut hello, 0, &options);
    }
    write::authentication_ok(&mut hello);
    for frame in &upstream.startup_frames {
        match (&registration, frame.tag) {
            (Some(registration), BACKEND_KEY_DATA_TAG) => {
                let key = registration.key();
                write::backend_key_data(&mut hello, key.pid, key.secret);
            }
            // The server's own key is never passed on.
            (None, BACKEND_KEY_DATA_TAG) => {}
            _ => frame.write_to(&mut hello),
        }
    }

    let (me, ancestry) = lineage.await.unwrap_or_default();
    let deadline = session_deadline(
        upstream.valid_until,
        (!session_outlives_token).then_some(identity.expires_at),
    );
    let started = audit.record(pb::event::Kind::SessionStarted(pb::SessionStarted {
        identity: Some(identity.to_audit()),
        // The executable as read while the process was verified (identity::liveness).
        process: Some(pb::Process {
            exe,
            ppid: me.as_ref().map_or(0, |p| p.ppid),
            cmdline: me.map(|p| p.cmdline).unwrap_or_default(),
            ..process_record(&info)
        }),
        target: original.to_string(),
        target_name: target.config.name.clone(),
        database: startup.database().unwrap_or_default().to_owned(),
        user: startup.user().unwrap_or_default().to_owned(),
        upstream_user: upstream.role.clone(),
        client_addr: peer.to_string(),
        ancestry,
        ci: identity.ci_claims(),
        client_tls: Some(client_tls_info.unwrap_or_default()),
        upstream_tls: Some(upstream.tls.clone().unwrap_or_default()),
        credential_mode: match target.credential {
            UpstreamCredential::Static { .. } => "static",
            UpstreamCredential::Dynamic(_) => "dynamic",
        }
        .to_owned(),
        valid_until_unix_us: deadline,
    }));
    // The client is told the session started only once that is on record.
    audit.committed(started).await;
    write::ready_for_query(&mut hello, upstream.status);
    write_flushed(&mut writer, &hello)
        .await
        .map_err(|e| ProxyError::Client(e.into()))?;

    tracing::info!(identity = %identity.label(), target = %target.config.name, "session started");

    let max = ctx.max_message;
    let mut client = Client {
        reader: FramedRead::with_capacity(reader, TaggedCodec::new(max), READ_BUFFER),
        writer,
    };
    let status = upstream.status;
    let approval_base = crate::approval::ApprovalRequest {
        id: String::new(),
        session_id: audit.session_id().to_owned(),
        seq: 0,
        agent_host: ctx.host_name.clone(),
        identity: identity.to_audit(),
        target: policy.facts().target.clone(),
        database: policy.facts().database.clone(),
        statement: String::new(),
        fingerprint: String::new(),
        tables: Vec::new(),
        actions: Vec::new(),
        policy_ids: Vec::new(),
        reason: String::new(),
        mode: crate::approval::Mode::Hold,
        scope: crate::approval::ScopeKind::Fingerprint,
        grant_ttl: Duration::ZERO,
        hold_timeout: ctx.approval_hold,
        auto_approved_by: None,
    };
    let token_expiry = identity.expires_at;
    let mut session = Session::new(ctx, policy, catalog, audit, status);
    if registration.is_some() {
        session.translate_notifications(original);
    }
    if let Some(key) = &server_key {
        session.set_server_key(key);
    }
    session.set_approval_base(approval_base);
    if let Some(valid_until) = upstream.valid_until {
        session.end_at(
            valid_until,
            format!(
                "jitgate: the session's grant (upstream role {}) expired at {}",
                upstream.role,
                humane_time(valid_until)
            ),
        );
    }
    if !session_outlives_token {
        let exp =
            std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(token_expiry).unwrap_or(0));
        session.end_at(
            exp,
            format!(
                "jitgate: the workload token expired at {} (exp {token_expiry})",
                humane_time(exp)
            ),
        );
    }
    let result = session.run(&mut client, &mut upstream).await;
    if let Err(e) = &result {
        // Tell the client why its session ends; it may already be gone.
        let sqlstate = match e {
            ProxyError::Client(_) => "08P01",
            ProxyError::PinnedSetting { .. } => "42501",
            ProxyError::Expired { .. } => "28000",
            _ => "08006",
        };
        let mut out = BytesMut::new();
        write::error_response(
            &mut out,
            Severity::Fatal,
            sqlstate,
            &format!("jitgate: {e}"),
            None,
        );
        let _ = client.writer.write_all(&out).await;
        let _ = client.writer.shutdown().await;
    }
    let reason = match &result {
        Ok(end) => end.as_str().to_owned(),
        Err(e) => e.to_string(),
    };
    if session.record_unfinished() > 0 {
        // The client is gone mid-query: stop the server's work (PostgreSQL docs 55.2.7) rather
        // than let it run to the end unobserved.
        if let Some(key) = &server_key
            && let Err(e) = upstream::forward_cancel(original, key).await
        {
            tracing::warn!(error = %e, "could not cancel the unfinished query upstream");
        }
    }
    let (seen, denied) = (session.statements_seen, session.statements_denied);
    session
        .audit_mut()
        .record(pb::event::Kind::SessionEnded(pb::SessionEnded {
            reason,
            statements: seen,
            denied,
        }));
    drop(registration);
    result.map(|_| ())
}

/// When the session must end, microseconds since the Unix epoch, as [`Session::end_at`] is
/// told: the earlier of the upstream role's `VALID UNTIL` and the token's `exp` (`None` when the
/// session may outlive its token); 0 when neither bounds it.
fn session_deadline(valid_until: Option<std::time::SystemTime>, token_exp: Option<i64>) -> i64 {
    let role = valid_until.map(|t| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    });
    let token = token_exp.map(|exp| exp.max(0).saturating_mul(1_000_000));
    match (role, token) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 0,
    }
}

/// Whether a policy permits this session to outlive its workload token (`outlive_token` on the
/// database the client asked for), decided once, before the upstream role is made: it bounds
/// both the role's `VALID UNTIL` and the session's deadline.
fn outlives_token(
    ctx: &Context,
    target: &Target,
    identity: &WorkloadIdentity,
    info: &ConnInfo,
    startup: &StartupMessage,
) -> bool {
    let facts = SessionFacts {
        target: target.config.name.clone(),
        database: startup.database().unwrap_or("postgres").to_owned(),
        upstream_user: String::new(),
        process: process_facts(info),
    };
    SessionPolicy::new(ctx.policy.current(), identity, facts, &[])
        .map(|p| p.may_outlive_token())
        .unwrap_or(false)
}

/// The connecting process as the schema's `Process` record, from the kernel's record.
fn process_facts(info: &ConnInfo) -> serde_json::Value {
    let p = &info.process;
    serde_json::json!({
        "pid": p.tgid,
        "uid": p.uid,
        "gid": p.gid,
        "comm": process::comm_of(p),
        "exe": process::exe_of(p.tgid),
        "cgroup_id": p.cgroup_id.to_string(),
    })
}

/// The policy state of a new session: who, from which process, to which database, and the
/// server's `search_path` at the start (unqualified names are authorized under each schema in it).
async fn session_policy(
    ctx: &Context,
    target: &Target,
    identity: &WorkloadIdentity,
    info: &ConnInfo,
    startup: &StartupMessage,
    upstream: &mut upstream::Upstream,
) -> Result<SessionPolicy, ProxyError> {
    let rows = upstream::simple_query(
        upstream,
        "SELECT pg_catalog.current_setting('search_path'), pg_catalog.current_database()",
    )
    .await?;
    let row = rows.first();
    let value = |i: usize| {
        row.and_then(|r| r.get(i).cloned().flatten())
            .unwrap_or_default()
    };
    let search_path = crate::policy::access::split_search_path(&value(0));
    let facts = SessionFacts {
        target: target.config.name.clone(),
        database: match value(1) {
            db if db.is_empty() => startup.database().unwrap_or("postgres").to_owned(),
            db => db,
        },
        upstream_user: upstream.role.clone(),
        process: process_facts(info),
    };
    SessionPolicy::new(ctx.policy.current(), identity, facts, &search_path).map_err(|e| {
        ProxyError::UpstreamAuth {
            detail: e.to_string(),
        }
    })
}

/// The first pinned setting a ParameterStatus among `frames` reports with another value.
fn pinned_violation(frames: &[crate::pgwire::codec::Frame]) -> Option<String> {
    frames
        .iter()
        .filter(|f| f.tag == crate::pgwire::backend::PARAMETER_STATUS_TAG)
        .filter_map(|f| crate::pgwire::backend::parse_parameter_status(&f.body).ok())
        .find(|(name, value)| integrity::violates(name, value) == Some(true))
        .map(|(name, value)| format!("{name} = {value}"))
}

/// `time` as RFC 3339 UTC, for messages.
fn humane_time(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    ::time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0))
        .ok()
        .and_then(|t| {
            t.format(&::time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{secs} s after the epoch"))
}

/// Logs in upstream for the session: as the target's static role, or as a role made for this
/// session (`session_id`, until `identity`'s token expires at the latest) whose [`RoleLease`]
/// rides on the returned connection, so the role is dropped whichever way the session ends.
///
/// [`RoleLease`]: crate::credentials::RoleLease
async fn connect_upstream(
    ctx: &Context,
    target: &Target,
    startup: &StartupMessage,
    addr: SocketAddr,
    identity: &WorkloadIdentity,
    session_id: &str,
) -> Result<upstream::Upstream, ProxyError> {
    // Parameters the client chose are kept, except who it is (the role is the agent's) and the
    // settings the agent's SQL analysis depends on, which it pins (policy::integrity).
    let mut params: Vec<(&str, &str)> = startup
        .params
        .iter()
        .filter(|(k, _)| {
            k != "user" && k != "replication" && !k.starts_with("_pq_.") && !integrity::is_pinned(k)
        })
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let database = startup.database().unwrap_or("postgres");
    if startup.get("database").is_none() {
        params.push(("database", database));
    }
    // Startup-packet settings are applied after `options`, so these win over `-c` switches.
    params.extend(integrity::PINNED_SETTINGS);
    match &target.credential {
        UpstreamCredential::Static { user, password } => {
            let login = Login {
                addr,
                user,
                password,
                params,
                tls: target.upstream_tls.clone(),
            };
            upstream::connect(login, ctx.max_message).await
        }
        UpstreamCredential::Dynamic(broker) => {
            let lease = broker
                .issue(addr, database, session_id, identity.expires_at)
                .await?;
            let login = Login {
                addr,
                user: lease.role(),
                password: lease.password(),
                params,
                tls: target.upstream_tls.clone(),
            };
            // On failure the lease is dropped here, and the role with it.
            let mut upstream = upstream::connect(login, ctx.max_message).await?;
            upstream.valid_until = Some(lease.valid_until());
            upstream.lease = Some(lease);
            Ok(upstream)
        }
    }
}
