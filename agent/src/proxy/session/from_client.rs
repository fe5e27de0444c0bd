//! Frontend messages: decide each statement (simple Query and Parse), track statements and
//! portals (Parse, Bind, Describe, Close), make sure every Execute's result shape is known before
//! its rows arrive when masking is on, and queue the expected responses.

use std::sync::Arc;

use postgres_protocol::message::frontend as write_fe;

use super::{End, Flow, REFUSED_SQL, Session, approval};
use crate::pgwire::codec::Frame;
use crate::pgwire::frontend::{self as fe, Bind, Execute, FunctionCall, Parse, Target};
use crate::policy::{Analysis, Decision};
use crate::proxy::ProxyError;
use crate::proxy::pending::{
    Execution, NamedFunction, Pending, Portal, PreparedStatement, Rejection, Undo, Verdict,
};

/// The catalog query naming the function with `oid`: `schema.name(argument types)`, quoted where
/// needed. Schema-qualified names only, so the result does not depend on `search_path`.
fn function_lookup_sql(oid: u32) -> String {
    format!(
        "SELECT n.nspname, p.proname, pg_catalog.format('%I.%I(%s)', n.nspname, p.proname, \
         pg_catalog.pg_get_function_identity_arguments(p.oid)) \
         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
         WHERE p.oid = {oid}"
    )
}

/// A Bind of `portal` to a statement name no client can create (it holds NUL-free text the
/// agent reserves), with no parameters: the server answers 26000 and skips to Sync.
fn write_refused_bind(portal: &str, out: &mut bytes::BytesMut) {
    use bytes::BufMut as _;
    let statement = "<jitgate: refused>";
    let len = 4 + portal.len() + 1 + statement.len() + 1 + 2 + 2 + 2;
    out.put_u8(b'B');
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    out.put_slice(portal.as_bytes());
    out.put_u8(0);
    out.put_slice(statement.as_bytes());
    out.put_u8(0);
    out.put_i16(0);
    out.put_i16(0);
    out.put_i16(0);
}

/// Hint sent with policy denials.
const DENIAL_HINT: &str = "This CI identity may not run this statement. Ask the database's \
     owners to change the jitgate policy named above if the job needs it.";

/// The hint of a denial by `rule`: the agent's masking rules are the target's `masks`
/// settings, not Cedar policies.
fn denial_hint(rule: &str) -> String {
    if matches!(rule, "masking-catalog" | "masking-dynamic-sql") {
        format!(
            "Refused by jitgate rule {rule}: this database has masked columns, and what this \
             statement reads could not be masked. Query the tables themselves instead."
        )
    } else if rule.starts_with("masking-") {
        format!(
            "Refused by jitgate rule {rule}: this database masks the columns named above. Ask its \
             owners to change the target's masks (expressions, predicates) if the job needs it."
        )
    } else {
        DENIAL_HINT.to_owned()
    }
}

/// Hint sent when a statement needs an approval the agent could not obtain.
const APPROVAL_HINT: &str = "A person (or an approval policy) must approve this statement; \
     see `jitgate approvals list` on the collector.";

impl Session<'_> {
    pub(super) fn on_client(&mut self, frame: Frame) -> Result<Flow, ProxyError> {
        let client = ProxyError::Client;
        let Some(frame) = self.hold_for_approval(frame)? else {
            return Ok(Flow::Continue);
        };
        match frame.tag {
            fe::QUERY_TAG => {
                let sql = fe::parse_query(&frame.body).map_err(client)?;
                let (analysis, rejection, verdict) = self.judge(sql);
                let mut exec = Execution::new(sql.into(), "simple", analysis, rejection);
                exec.verdict = verdict;
                self.queue_simple(&frame, exec);
            }
            fe::PARSE_TAG => {
                self.batch_open = true;
                let parse = Parse::decode(&frame.body).map_err(client)?;
                let (analysis, rejection, verdict) = self.judge(parse.query);
                let statement = Arc::new(PreparedStatement {
                    sql: parse.query.into(),
                    analysis: analysis.clone(),
                    verdict: verdict.clone(),
                });
                let previous = self.statements.insert(parse.name.to_owned(), statement);
                let undo = Undo {
                    name: parse.name.to_owned(),
                    previous,
                };
                if let Some(r) = &rejection {
                    let mut exec =
                        Execution::new(parse.query.into(), "extended", analysis, Some(r.clone()));
                    exec.sqlstate = Some(r.sqlstate.to_owned());
                    exec.verdict = verdict;
                    self.record_statement(&exec);
                    // Same name, a body that cannot parse: the server fails this Parse itself.
                    write_fe::parse(parse.name, REFUSED_SQL, [], &mut self.to_server)
                        .map_err(|e| client(e.into()))?;
                } else {
                    frame.write_to(&mut self.to_server);
                }
                self.pending.push_back(Pending::Parse { rejection, undo });
            }
            fe::BIND_TAG => {
                self.batch_open = true;
                let bind = Bind::decode(&frame.body).map_err(client)?;
                let statement = self.statement(bind.statement);
                let (rejection, policies) = self.bind_rejection(bind.statement, &statement);
                let parameters: Arc<[_]> = crate::proxy::params::of_bind(
                    &bind,
                    statement.analysis.as_deref(),
                    &self.catalog,
                )
                .into();
                let portal = Portal {
                    statement,
                    parameters: parameters.clone(),
                };
                let previous = self
                    .portals
                    .insert(bind.portal.to_owned(), Arc::new(portal));
                if let Some(r) = &rejection {
                    let mut exec = Execution::new(
                        format!("Bind of statement {:?}", bind.statement).into(),
                        "extended",
                        None,
                        Some(r.clone()),
                    );
                    exec.sqlstate = Some(r.sqlstate.to_owned());
                    exec.parameters = parameters;
                    exec.verdict = Verdict {
                        policies,
                        approval_id: r.approval_id.clone(),
                    };
                    self.record_statement(&exec);
                    // A statement name that cannot exist: the server fails this Bind itself.
                    write_refused_bind(bind.portal, &mut self.to_server);
                } else {
                    frame.write_to(&mut self.to_server);
                }
                self.pending.push_back(Pending::Bind {
                    rejection,
                    undo: Undo {
                        name: bind.portal.to_owned(),
                        previous,
                    },
                });
            }
            fe::DESCRIBE_TAG => {
                self.batch_open = true;
                Target::decode(&frame.body, "Describe").map_err(client)?;
                frame.write_to(&mut self.to_server);
                self.pending
                    .push_back(Pending::Describe { injected: false });
            }
            fe::EXECUTE_TAG => {
                self.batch_open = true;
                let execute = Execute::decode(&frame.body).map_err(client)?;
                let portal = self.portal(execute.portal);
                if !self.catalog.is_empty() {
                    // Ask for the row shape right before every Execute and keep the answer: the
                    // portal the server runs is then exactly the one described, whatever the
                    // client described earlier or renamed since (SQL-level PREPARE, DECLARE).
                    write_fe::describe(b'P', execute.portal, &mut self.to_server)
                        .map_err(|e| client(e.into()))?;
                    self.pending.push_back(Pending::Describe { injected: true });
                }
                let s = &portal.statement;
                let mut execution =
                    Execution::new(s.sql.clone(), "extended", s.analysis.clone(), None);
                execution.copy_ends = self.copy_ends;
                execution.verdict = s.verdict.clone();
                execution.parameters = portal.parameters.clone();
                frame.write_to(&mut self.to_server);
                self.pending.push_back(Pending::Execute(execution));
            }
            fe::SYNC_TAG => {
                frame.write_to(&mut self.to_server);
                self.batch_open = false;
                self.pending.push_back(Pending::Sync {
                    copy_ends: self.copy_ends,
                });
            }
            fe::COPY_DONE_TAG | fe::COPY_FAIL_TAG => {
                frame.write_to(&mut self.to_server);
                self.copy_ends += 1;
            }
            fe::CLOSE_TAG => {
                self.batch_open = true;
                let t = Target::decode(&frame.body, "Close").map_err(client)?;
                if t.kind == b'S' {
                    self.statements.remove(t.name);
                } else {
                    self.portals.remove(t.name);
                }
                frame.write_to(&mut self.to_server);
                self.pending.push_back(Pending::Close);
            }
            fe::TERMINATE_TAG => {
                frame.write_to(&mut self.to_server);
                return Ok(Flow::Stop(End::ClientTerminated));
            }
            fe::FUNCTION_CALL_TAG => {
                let call = FunctionCall::decode(&frame.body).map_err(client)?;
                match self.function_names.get(&call.oid).cloned() {
                    Some(name) => self.forward_function_call(&frame, &name),
                    None if self.batch_open => {
                        // A lookup Query here would end the batch's implicit transaction and
                        // its unnamed statement; refusing behaves as a failing call would.
                        self.refuse_function_call(&frame, call.oid);
                    }
                    None => {
                        // The message names the function by OID only: ask the server which
                        // function that is, and hold the call (and everything after it) until
                        // the answer is in.
                        write_fe::query(&function_lookup_sql(call.oid), &mut self.to_server)
                            .map_err(|e| client(e.into()))?;
                        self.pending.push_back(Pending::Lookup {
                            oid: call.oid,
                            name: None,
                        });
                        self.held = Some(frame);
                    }
                }
            }
            // Flush, CopyData, CopyDone, CopyFail and anything else: the server decides.
            _ => frame.write_to(&mut self.to_server),
        }
        Ok(Flow::Continue)
    }

    /// Sends a request answered up to ReadyForQuery (Query, FunctionCall) and queues its
    /// execution: `frame` itself when allowed; when refused, a Query that fails in the server's
    /// parser instead.
    fn queue_simple(&mut self, frame: &Frame, mut exec: Execution) {
        exec.copy_ends = self.copy_ends;
        if exec.rejection.is_some() {
            self.substitute_query();
        } else {
            frame.write_to(&mut self.to_server);
        }
        self.pending.push_back(Pending::Query(exec));
    }

    /// Sends the server a Query that fails in its parser, in place of a refused one.
    fn substitute_query(&mut self) {
        // REFUSED_SQL has no NUL byte, so writing cannot fail.
        let _ = write_fe::query(REFUSED_SQL, &mut self.to_server);
    }

    /// Decides a FunctionCall of the function `name` and forwards it, or a refused stand-in.
    pub(super) fn forward_function_call(&mut self, frame: &Frame, function: &NamedFunction) {
        self.statements_seen += 1;
        let analysis = Arc::new(Analysis::function_call(function.name.clone()));
        let (rejection, verdict) = match self.integrity_rejection(&analysis) {
            Some(r) => (Some(r), Verdict::default()),
            None => self.decide(&analysis),
        };
        let text: Arc<str> = format!("FunctionCall {}", function.signature).into();
        let mut exec = Execution::new(text, "fastpath", Some(analysis), rejection);
        exec.verdict = verdict;
        self.queue_simple(frame, exec);
    }

    /// Refuses a FunctionCall of a function not yet named in this session, sent inside an
    /// extended-query batch (before Sync), where the agent cannot look the name up.
    fn refuse_function_call(&mut self, frame: &Frame, oid: u32) {
        self.statements_seen += 1;
        self.statements_denied += 1;
        let rejection = Rejection {
            sqlstate: "0A000",
            approval_id: None,
            rule: "fastpath-in-batch".into(),
            message: format!(
                "jitgate: a FunctionCall (function OID {oid}) inside an extended-query batch is \
                 not supported; send Sync before it"
            ),
            hint: None,
        };
        let text: Arc<str> = format!("FunctionCall function with OID {oid}").into();
        self.queue_simple(
            frame,
            Execution::new(text, "fastpath", None, Some(rejection)),
        );
    }

    /// Analyses and decides a query string.
    fn judge(&mut self, sql: &str) -> (Option<Arc<Analysis>>, Option<Rejection>, Verdict) {
        self.statements_seen += 1;
        let analysis = match self.ctx.analyzer.analyze(sql) {
            Ok(a) => a,
            Err(failure) => {
                self.statements_denied += 1;
                let rejection = Rejection {
                    sqlstate: "42601",
                    approval_id: None,
                    rule: "unparseable".into(),
                    message: format!(
                        "jitgate: {} — statements PostgreSQL cannot parse are not forwarded",
                        failure.message
                    ),
                    hint: None,
                };
                return (None, Some(rejection), Verdict::default());
            }
        };
        let (rejection, verdict) = match self.integrity_rejection(&analysis) {
            Some(r) => (Some(r), Verdict::default()),
            None => self.decide(&analysis),
        };
        (Some(analysis), rejection, verdict)
    }

    /// Decides a Bind again: the statement was decided at Parse, but the session's search_path
    /// may have gained schemas since (PostgreSQL re-analyses cached statements then); a statement
    /// the agent did not Parse (SQL-level PREPARE shares the namespace) is decided as
    /// `EXECUTE name` would be.
    fn bind_rejection(
        &mut self,
        name: &str,
        statement: &PreparedStatement,
    ) -> (Option<Rejection>, Vec<String>) {
        let analysis = match &statement.analysis {
            Some(a) => a.clone(),
            None if self.statements.contains_key(name) => return (None, Vec::new()),
            None if name.is_empty() => return (None, Vec::new()),
            None => {
                let sql = format!("EXECUTE \"{}\"", name.replace('"', "\"\""));
                match self.ctx.analyzer.analyze(&sql) {
                    Ok(a) => a,
                    Err(_) => return (None, Vec::new()),
                }
            }
        };
        let decision = self.policy.decide(&analysis);
        match self.with_masking(&analysis, decision) {
            Decision::Allow { .. } => (None, Vec::new()),
            Decision::Deny(d) => {
                self.statements_denied += 1;
                let policies = d.policies.clone();
                (
                    Some(Rejection {
                        sqlstate: "42501",
                        approval_id: None,
                        hint: Some(denial_hint(&d.rule)),
                        rule: d.rule,
                        message: d.reason,
                    }),
                    policies,
                )
            }
            Decision::Approval(needed) => {
                self.statements_denied += 1;
                let rejection = Rejection {
                    sqlstate: "42501",
                    approval_id: None,
                    rule: needed.policies.join(","),
                    message: format!(
                        "jitgate: {}; approval is asked for at Parse or Query, not at Bind",
                        needed.reason
                    ),
                    hint: Some(APPROVAL_HINT.into()),
                };
                (Some(rejection), needed.policies)
            }
        }
    }

    /// The refusal of a statement that would change what the agent's analysis depends on.
    fn integrity_rejection(&mut self, analysis: &Analysis) -> Option<Rejection> {
        let reason = analysis.integrity.as_ref()?;
        self.statements_denied += 1;
        Some(Rejection {
            sqlstate: "42501",
            approval_id: None,
            rule: "pinned-settings".into(),
            message: format!("jitgate: {reason}"),
            hint: Some(
                "jitgate keeps client_encoding = UTF8 and standard_conforming_strings = on, \
                 and search_path to constant schema names."
                    .into(),
            ),
        })
    }

    /// The policy's decision on an analysed statement (`None` to forward it), and what decided
    /// it for the audit trail.
    pub(super) fn decide(&mut self, analysis: &Arc<Analysis>) -> (Option<Rejection>, Verdict) {
        let decision = self.policy.decide(analysis);
        let decision = self.with_masking(analysis, decision);
        let mut verdict = Verdict {
            policies: match &decision {
                Decision::Allow { policies } => policies.clone(),
                Decision::Deny(d) => d.policies.clone(),
                Decision::Approval(needed) => needed.policies.clone(),
            },
            approval_id: None,
        };
        let rejection = match decision {
            Decision::Deny(d) => Some(Rejection {
                sqlstate: "42501",
                approval_id: None,
                hint: Some(denial_hint(&d.rule)),
                rule: d.rule,
                message: d.reason,
            }),
            Decision::Approval(needed) => match self.resolved.take() {
                Some((held, resolution)) if Arc::ptr_eq(&held, analysis) || *held == **analysis => {
                    match resolution {
                        Ok((id, by)) => {
                            tracing::info!(approval = %id, %by, "statement approved");
                            self.policy.allowed(analysis);
                            verdict.approval_id = Some(id);
                            None
                        }
                        Err(rejection) => {
                            verdict.approval_id.clone_from(&rejection.approval_id);
                            Some(rejection)
                        }
                    }
                }
                other => {
                    self.resolved = other;
                    Some(Rejection {
                        sqlstate: "42501",
                        approval_id: None,
                        rule: needed.policies.join(","),
                        message: format!(
                            "jitgate: {}; this agent has no collector to ask for approval",
                            needed.reason
                        ),
                        hint: Some(APPROVAL_HINT.into()),
                    })
                }
            },
            Decision::Allow { .. } => None,
        };
        if rejection.is_some() {
            self.statements_denied += 1;
        }
        (rejection, verdict)
    }

    /// Holds a Query or Parse whose statement needs approval that the collector can give:
    /// returns `None` when held (the frame comes back through the run loop once resolved),
    /// else the frame to handle now.
    fn hold_for_approval(&mut self, frame: Frame) -> Result<Option<Frame>, ProxyError> {
        let sql = match frame.tag {
            fe::QUERY_TAG => fe::parse_query(&frame.body).map_err(ProxyError::Client)?,
            fe::PARSE_TAG => {
                Parse::decode(&frame.body)
                    .map_err(ProxyError::Client)?
                    .query
            }
            _ => return Ok(Some(frame)),
        };
        let (Some(client), Some(base)) = (self.ctx.approvals.clone(), self.approval_base.clone())
        else {
            return Ok(Some(frame));
        };
        let Ok(analysis) = self.ctx.analyzer.analyze(sql) else {
            return Ok(Some(frame));
        };
        if analysis.integrity.is_some()
            || self
                .resolved
                .as_ref()
                .is_some_and(|(held, _)| Arc::ptr_eq(held, &analysis) || **held == *analysis)
        {
            return Ok(Some(frame));
        }
        let decision = self.policy.decide(&analysis);
        let Decision::Approval(needed) = self.with_masking(&analysis, decision) else {
            return Ok(Some(frame));
        };
        let base = crate::approval::ApprovalRequest {
            id: approval::new_id(),
            seq: self.audit.next_seq(),
            ..base
        };
        let request = approval::request(&needed, &analysis, sql, base);
        let hold = self.ctx.approval_hold;
        if needed.mode == crate::policy::ApprovalMode::Hold && needed.auto_approved_by.is_none() {
            approval::hold_notice(&mut self.to_client, &request.id, hold);
        }
        self.approval_future = Some(approval::resolve(client, request, hold));
        self.approving = Some(approval::Held { frame, analysis });
        Ok(None)
    }

    fn statement(&self, name: &str) -> Arc<PreparedStatement> {
        self.statements.get(name).cloned().unwrap_or_else(|| {
            Arc::new(PreparedStatement {
                sql: "<unknown prepared statement>".into(),
                analysis: None,
                verdict: Verdict::default(),
            })
        })
    }

    fn portal(&self, name: &str) -> Arc<Portal> {
        self.portals.get(name).cloned().unwrap_or_else(|| {
            Arc::new(Portal {
                statement: self.statement(""),
                parameters: Arc::from([]),
            })
        })
    }
}
