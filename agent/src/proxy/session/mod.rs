//! One proxied session after startup: relays frames in both directions in a single task, with
//! the per-session state the decisions need — the queue of expected responses, prepared
//! statements and portals, the masking catalogue — and the session's audit trail.
//!
//! A refused statement is never sent. In its place the agent sends the server a statement that
//! fails in the parser (`<jitgate: refused>` in a Query or Parse), so the server itself applies
//! the protocol's error rules (skip to Sync, mark a transaction block failed), and the agent
//! replaces that error with its own ErrorResponse naming the rule. Client and server state stay
//! exactly in step.

mod approval;
mod fence;
mod from_client;
mod from_server;
mod masking;
mod record;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Buf as _, BytesMut};
use futures::{FutureExt as _, StreamExt as _};
use tokio::io::AsyncWriteExt as _;
use tokio_util::codec::FramedRead;

use super::negotiate::{BoxRead, BoxWrite, write_flushed};
use super::pending::{NamedFunction, Pending, Portal, PreparedStatement};
use super::{Context, ProxyError};
use crate::audit::SessionAudit;
use crate::masking::MaskCatalog;
use crate::pgwire::WireError;
use crate::pgwire::backend::TransactionStatus;
use crate::pgwire::codec::{Frame, TaggedCodec};
use crate::policy::SessionPolicy;
use crate::proxy::upstream::Upstream;

/// The text sent to the server in place of a refused statement: it cannot parse, so nothing runs.
pub const REFUSED_SQL: &str = "<jitgate: refused>";

/// The tag of a statement still waiting for the server's answer when the session ended.
const UNFINISHED: &str = "(unfinished: the session ended before the server answered)";

/// How a session ended, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client sent Terminate.
    ClientTerminated,
    /// The client closed the socket without Terminate.
    ClientDisconnected,
    /// The server closed the connection.
    UpstreamClosed,
}

impl End {
    /// Text for the SessionEnded event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientTerminated => "client terminated",
            Self::ClientDisconnected => "client disconnected",
            Self::UpstreamClosed => "upstream closed",
        }
    }
}

/// Whether to keep relaying.
enum Flow {
    Continue,
    Stop(End),
}

/// Bytes waiting to be sent to one side above which the agent stops reading the other side, so
/// a peer that does not read cannot make the agent buffer without limit.
pub const BACKPRESSURE: usize = 256 * 1024;

/// The collector's answer for a held statement (pending forever when none is awaited; the
/// select branch is disabled then).
async fn approval_outcome(future: &mut Option<approval::Resolving>) -> approval::Resolution {
    match future.as_mut() {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// One step of sending `buf`: writes some of it, or when it is empty, flushes (over TLS the
/// last records can sit in the session's buffer after a write, until flushed). Cancel-safe: a
/// write either happened (and says how much) or did not.
async fn send_some(writer: &mut BoxWrite, buf: &[u8]) -> std::io::Result<usize> {
    if buf.is_empty() {
        writer.flush().await?;
        return Ok(0);
    }
    match writer.write(buf).await? {
        0 => Err(std::io::ErrorKind::WriteZero.into()),
        n => Ok(n),
    }
}

/// Drops `sent` bytes from the front of `buf`; returns whether a flush is still owed (something
/// was written since the last one).
fn advance(buf: &mut BytesMut, sent: usize) -> bool {
    if sent == 0 {
        return false;
    }
    buf.advance(sent);
    true
}

/// State of one session.
pub struct Session<'a> {
    ctx: &'a Context,
    policy: SessionPolicy,
    catalog: MaskCatalog,
    audit: &'a mut SessionAudit,
    pending: VecDeque<Pending>,
    statements: HashMap<String, Arc<PreparedStatement>>,
    portals: HashMap<String, Arc<Portal>>,
    to_client: BytesMut,
    /// Holds client bytes that complete a statement until its audit event is committed.
    fence: fence::Fence,
    to_server: BytesMut,
    status: TransactionStatus,
    /// A FunctionCall waiting for its function's name ([`Pending::Lookup`]); nothing more is read
    /// from the client until it is decided, so the order of requests is kept.
    held: Option<Frame>,
    /// Whether the client has sent extended-query messages since its last Sync.
    batch_open: bool,
    /// CopyDone and CopyFail messages the client has sent.
    copy_ends: u64,
    /// Function names by OID, as looked up for FunctionCall (this session's catalog view).
    function_names: HashMap<u32, NamedFunction>,
    /// The server address, when clients were given agent cancel keys: NotificationResponse
    /// process ids of the agent's sessions there are then translated to the agent's ids.
    upstream_addr: Option<std::net::SocketAddr>,
    /// A statement held for approval; nothing more is read from the client meanwhile.
    approving: Option<approval::Held>,
    /// The collector's answer for it, being awaited.
    approval_future: Option<approval::Resolving>,
    /// An answer for a held statement, taken when the statement is handled again.
    resolved: Option<(Arc<crate::policy::Analysis>, approval::Resolution)>,
    /// What every approval request of this session carries (id, statement and scope aside).
    approval_base: Option<crate::approval::ApprovalRequest>,
    /// When the session must end, and why ([`Session::end_at`]).
    deadline: Option<(tokio::time::Instant, String)>,
    /// Lineage masks of this session's cursors and SQL-level prepared statements, for the rows
    /// `FETCH` and `EXECUTE` return ([`masking`]).
    named_overlays: masking::NamedOverlays,
    /// Set once a statement of this session may have read protected data (or ran code the
    /// agent cannot see into): from then on, RAISE messages and this backend's notification
    /// payloads are withheld ([`crate::masking::side`]).
    touched_protected: bool,
    /// The server's process id of this session's backend (BackendKeyData), to tell its own
    /// notifications from other sessions'.
    server_pid: Option<u32>,
    /// Masks the COPY data of the `COPY … TO` being answered ([`crate::masking::copy`]).
    copy_out: Option<crate::masking::copy::CopyMasker>,
    /// Statements decided.
    pub statements_seen: u64,
    /// Statements refused.
    pub statements_denied: u64,
}

/// The client connection after startup (plain TCP or TLS).
pub struct Client {
    /// Frames from the client.
    pub reader: FramedRead<BoxRead, TaggedCodec>,
    /// Its write half.
    pub writer: BoxWrite,
}

impl<'a> Session<'a> {
    /// A session deciding by `policy`, masking by `catalog`, recording to `audit`.
    pub fn new(
        ctx: &'a Context,
        policy: SessionPolicy,
        catalog: MaskCatalog,
        audit: &'a mut SessionAudit,
        status: TransactionStatus,
    ) -> Self {
        let durable = audit.durable();
        Self {
            ctx,
            policy,
            catalog,
            audit,
            pending: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            to_client: BytesMut::with_capacity(64 * 1024),
            fence: fence::Fence::new(durable),
            to_server: BytesMut::with_capacity(16 * 1024),
            status,
            held: None,
            batch_open: false,
            copy_ends: 0,
            function_names: HashMap::new(),
            upstream_addr: None,
            deadline: None,
            approving: None,
            approval_future: None,
            resolved: None,
            approval_base: None,
            named_overlays: masking::NamedOverlays::default(),
            copy_out: None,
            touched_protected: false,
            server_pid: None,
            statements_seen: 0,
            statements_denied: 0,
        }
    }

    /// Notes the server's process id of this session's backend (BackendKeyData `body`: Int32
    /// process id, then the secret key).
    pub fn set_server_key(&mut self, body: &[u8]) {
        self.server_pid = body.first_chunk::<4>().map(|b| u32::from_be_bytes(*b));
    }

    /// Translates the process ids of NotificationResponse from backends of the server at
    /// `upstream` to the ids the agent gave those sessions' clients (BackendKeyData), so a client
    /// can tell its own notifications from others' as it would with the server.
    pub fn translate_notifications(&mut self, upstream: std::net::SocketAddr) {
        self.upstream_addr = Some(upstream);
    }

    /// Ends the session at `at` (wall-clock time, e.g. the token's `exp`) with
    /// [`ProxyError::Expired`] carrying `what`; the earliest of several calls wins.
    pub fn end_at(&mut self, at: std::time::SystemTime, what: String) {
        let left = at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        let when = tokio::time::Instant::now() + left;
        if self.deadline.as_ref().is_none_or(|(d, _)| when < *d) {
            self.deadline = Some((when, what));
        }
    }

    /// Sets what this session's approval requests carry: session, host, identity, target,
    /// database and hold timeout.
    pub fn set_approval_base(&mut self, base: crate::approval::ApprovalRequest) {
        self.approval_base = Some(base);
    }

    /// The audit trail, to record the session's end.
    pub fn audit_mut(&mut self) -> &mut SessionAudit {
        self.audit
    }

    /// Records every statement still waiting for the server's answer when the session ended
    /// (the client disconnected mid-query, the server went away): it may have run, so the trail
    /// must show it, with what is known of it (decision, parameters, rows and bytes sent so far,
    /// the sample so far).
    /// Returns how many there were.
    pub fn record_unfinished(&mut self) -> usize {
        let pending = std::mem::take(&mut self.pending);
        let mut unfinished = 0;
        for entry in pending {
            match entry {
                Pending::Query(exec) => {
                    unfinished += exec.parts_left();
                    self.record_remaining_parts(exec, UNFINISHED);
                }
                Pending::Execute(mut exec) => {
                    exec.tags.push(UNFINISHED.into());
                    self.record_statement(&exec);
                    unfinished += 1;
                }
                _ => {}
            }
        }
        unfinished
    }

    /// Relays until either side ends the session.
    ///
    /// One loop reads and writes both sides as each is ready, so a side that is slow to read
    /// never stops the other from being read: a server blocked sending a large result while the
    /// agent sends it a large pipeline (or COPY data) is still drained. Reading a side pauses
    /// while the bytes waiting to go the other way exceed [`BACKPRESSURE`], which bounds a
    /// session's memory whatever its peers do.
    pub async fn run(
        &mut self,
        client: &mut Client,
        upstream: &mut Upstream,
    ) -> Result<End, ProxyError> {
        let mut flush_server = false;
        let mut flush_client = false;
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365);
        loop {
            let deadline = self.deadline.as_ref().map_or(far, |(at, _)| *at);
            let read_client = self.may_read_client();
            let read_server = self.may_read_server();
            let send_server = !self.to_server.is_empty() || flush_server;
            let sendable = self.fence.sendable(self.to_client.len());
            let send_client = sendable > 0 || flush_client;
            // Decided from the same reading as `sendable`: a commit landing in between must
            // not leave the loop with neither branch enabled (released() returns at once then).
            let fenced = sendable == 0 && !self.to_client.is_empty();
            tokio::select! {
                frame = client.reader.next(), if read_client => {
                    let mut flow = self.client_frame(frame)?;
                    while matches!(flow, Flow::Continue) && self.may_read_client() {
                        match client.reader.next().now_or_never() {
                            Some(frame) => flow = self.client_frame(frame)?,
                            None => break,
                        }
                    }
                    if let Flow::Stop(end) = flow {
                        self.finish(end, client, upstream).await?;
                        return Ok(end);
                    }
                }
                frame = upstream.reader.next(), if read_server => {
                    let mut flow = self.server_frame(frame)?;
                    while matches!(flow, Flow::Continue) && self.may_read_server() {
                        match upstream.reader.next().now_or_never() {
                            Some(frame) => flow = self.server_frame(frame)?,
                            None => break,
                        }
                    }
                    if let Flow::Stop(end) = flow {
                        self.finish(end, client, upstream).await?;
                        return Ok(end);
                    }
                }
                () = self.fence.released(), if fenced => {}
                resolution = approval_outcome(&mut self.approval_future), if self.approval_future.is_some() => {
                    self.approval_future = None;
                    if let Some(held) = self.approving.take() {
                        self.resolved = Some((held.analysis, resolution));
                        if let Flow::Stop(end) = self.client_frame(Some(Ok(held.frame)))? {
                            self.finish(end, client, upstream).await?;
                            return Ok(end);
                        }
                    }
                }
                () = tokio::time::sleep_until(deadline), if self.deadline.is_some() => {
                    let what = self.deadline.take().map(|(_, w)| w).unwrap_or_default();
                    return Err(ProxyError::Expired { what });
                }
                sent = send_some(&mut upstream.writer, &self.to_server), if send_server => {
                    let sent = sent.map_err(|e| ProxyError::Upstream(WireError::Io(e)))?;
                    flush_server = advance(&mut self.to_server, sent);
                }
                sent = send_some(&mut client.writer, &self.to_client[..sendable]), if send_client => {
                    let sent = sent.map_err(|e| ProxyError::Client(WireError::Io(e)))?;
                    self.fence.sent(sent);
                    flush_client = advance(&mut self.to_client, sent);
                }
            }
        }
    }

    /// Whether to read more from the client: not while a FunctionCall waits for its function's
    /// name or while [`BACKPRESSURE`] bytes wait to go to the server.
    fn may_read_client(&self) -> bool {
        self.held.is_none() && self.approving.is_none() && self.to_server.len() < BACKPRESSURE
    }

    /// Whether to read more from the server: not while [`BACKPRESSURE`] bytes wait to go to the
    /// client.
    fn may_read_server(&self) -> bool {
        self.to_client.len() < BACKPRESSURE
    }

    /// Sends what is still buffered for the side that is still there when a session ends: the
    /// server gets a Terminate passed on (the client is gone or leaving), the client gets the
    /// server's last messages (the server closed).
    async fn finish(
        &mut self,
        end: End,
        client: &mut Client,
        upstream: &mut Upstream,
    ) -> Result<(), ProxyError> {
        match end {
            End::ClientTerminated | End::ClientDisconnected => {
                write_flushed(&mut upstream.writer, &self.to_server)
                    .await
                    .map_err(|e| ProxyError::Upstream(WireError::Io(e)))?;
                self.to_server.clear();
            }
            End::UpstreamClosed => {
                // What completes a statement goes out only once its event is committed.
                self.audit.flush().await;
                write_flushed(&mut client.writer, &self.to_client)
                    .await
                    .map_err(|e| ProxyError::Client(WireError::Io(e)))?;
                self.to_client.clear();
            }
        }
        Ok(())
    }

    fn client_frame(
        &mut self,
        frame: Option<Result<Frame, WireError>>,
    ) -> Result<Flow, ProxyError> {
        match frame {
            None => Ok(Flow::Stop(End::ClientDisconnected)),
            // A TLS client that vanishes without close_notify (killed) simply disconnected.
            Some(Err(WireError::Io(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Ok(Flow::Stop(End::ClientDisconnected))
            }
            Some(Err(e)) => Err(ProxyError::Client(e)),
            Some(Ok(frame)) => self.on_client(frame),
        }
    }

    fn server_frame(
        &mut self,
        frame: Option<Result<Frame, WireError>>,
    ) -> Result<Flow, ProxyError> {
        match frame {
            None => Ok(Flow::Stop(End::UpstreamClosed)),
            Some(Err(e)) => Err(ProxyError::Upstream(e)),
            Some(Ok(frame)) => {
                self.on_server(frame)?;
                Ok(Flow::Continue)
            }
        }
    }
}
