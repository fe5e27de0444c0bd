//! Backend messages: match each response to the request it answers (the pending queue), mask
//! DataRows by the current result's plan, swap the parser error of a substituted statement for
//! the agent's own ErrorResponse, and record each finished statement in the audit trail.

use crate::masking::{MaskPlan, side};
use crate::pgwire::backend::{
    self as be, ErrorFields, FieldDescription, TransactionStatus, parse_row_description,
};
use crate::pgwire::codec::Frame;
use crate::pgwire::write::{self, Severity};
use crate::policy::integrity;
use crate::proxy::ProxyError;
use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::access::QualifiedName;
use crate::proxy::pending::{Execution, NamedFunction, Pending, Rejection, Undo};
use crate::proxy::sample::Sampler;

use super::Session;

impl Session<'_> {
    pub(super) fn on_server(&mut self, frame: Frame) -> Result<(), ProxyError> {
        let upstream = ProxyError::Upstream;
        if matches!(self.pending.front(), Some(Pending::Lookup { .. }))
            && matches!(
                frame.tag,
                be::ROW_DESCRIPTION_TAG
                    | be::DATA_ROW_TAG
                    | be::COMMAND_COMPLETE_TAG
                    | be::ERROR_RESPONSE_TAG
                    | be::READY_FOR_QUERY_TAG
            )
        {
            return self.on_lookup(frame);
        }
        match frame.tag {
            be::DATA_ROW_TAG => self.on_data_row(frame)?,
            be::ROW_DESCRIPTION_TAG => {
                let fields = parse_row_description(&frame.body).map_err(upstream)?;
                let plan = MaskPlan::with(&self.catalog, &fields, &self.overlay_for_result());
                let sample_rows = self.ctx.sample_rows;
                match self.pending.front_mut() {
                    Some(Pending::Query(exec)) => {
                        exec.plan = Some(plan);
                        sampler(exec, sample_rows).describe(&fields);
                        frame.write_to(&mut self.to_client);
                    }
                    Some(Pending::Describe { .. }) => {
                        self.finish_describe(frame, plan, Some(&fields));
                    }
                    _ => frame.write_to(&mut self.to_client),
                }
            }
            be::NO_DATA_TAG => match self.pending.front() {
                Some(Pending::Describe { .. }) => {
                    self.finish_describe(frame, MaskPlan::default(), None);
                }
                _ => frame.write_to(&mut self.to_client),
            },
            be::PARSE_COMPLETE_TAG | be::BIND_COMPLETE_TAG | be::CLOSE_COMPLETE_TAG => {
                if matches!(
                    self.pending.front(),
                    Some(Pending::Parse { .. } | Pending::Bind { .. } | Pending::Close)
                ) {
                    self.pending.pop_front();
                }
                frame.write_to(&mut self.to_client);
            }
            be::COMMAND_COMPLETE_TAG | be::EMPTY_QUERY_RESPONSE_TAG | be::PORTAL_SUSPENDED_TAG => {
                let tag = if frame.tag == be::COMMAND_COMPLETE_TAG {
                    be::parse_command_complete(&frame.body)
                        .map_err(upstream)?
                        .to_owned()
                } else {
                    String::new()
                };
                match self.pending.front_mut() {
                    Some(Pending::Query(exec)) => {
                        exec.plan = None;
                        if !tag.is_empty() {
                            exec.tags.push(tag);
                        }
                        self.record_completed_part();
                    }
                    Some(Pending::Execute(execution)) => {
                        if !tag.is_empty() {
                            execution.tags.push(tag);
                        }
                        if let Some(Pending::Execute(execution)) = self.pending.pop_front() {
                            self.record_statement(&execution);
                        }
                    }
                    _ => {}
                }
                frame.write_to(&mut self.to_client);
            }
            be::COPY_OUT_RESPONSE_TAG => {
                self.copy_out = self.copy_masker();
                frame.write_to(&mut self.to_client);
            }
            be::COPY_DATA_TAG if self.copy_out.is_some() => self.on_copy_data(&frame)?,
            be::COPY_DONE_TAG => {
                self.copy_out = None;
                frame.write_to(&mut self.to_client);
            }
            be::ERROR_RESPONSE_TAG => {
                self.copy_out = None;
                self.on_error(frame)?;
            }
            be::NOTICE_RESPONSE_TAG if !self.catalog.is_empty() => {
                let fields = ErrorFields::parse(&frame.body, "NoticeResponse").map_err(upstream)?;
                self.forward_scrubbed(frame, fields);
            }
            be::NOTIFICATION_RESPONSE_TAG => self.on_notification(frame),
            be::COPY_IN_RESPONSE_TAG => {
                self.drop_syncs_sent_during_copy_in();
                frame.write_to(&mut self.to_client);
            }
            be::PARAMETER_STATUS_TAG => {
                let (name, value) = be::parse_parameter_status(&frame.body).map_err(upstream)?;
                if integrity::violates(name, value) == Some(true) {
                    // Analysis of anything sent from now on could differ from the server's
                    // reading: end the session rather than guess.
                    return Err(ProxyError::PinnedSetting {
                        setting: format!("{name} = {value}"),
                    });
                }
                frame.write_to(&mut self.to_client);
            }
            be::READY_FOR_QUERY_TAG => {
                self.status = TransactionStatus::parse(&frame.body).map_err(upstream)?;
                match self.pending.pop_front() {
                    Some(Pending::Query(exec)) => self.record_remaining_parts(
                        exec,
                        "(not run: the server ended the Query before it, after an error)",
                    ),
                    Some(Pending::Sync { .. }) | None => {}
                    Some(other) => {
                        // The server ended a request the queue thought still open: the queue
                        // is out of step, which is a bug; drop everything up to this point.
                        tracing::warn!(?other, "ReadyForQuery while a response was pending");
                        self.pending.clear();
                    }
                }
                frame.write_to(&mut self.to_client);
            }
            // ParameterDescription, NoticeResponse, NotificationResponse, ParameterStatus,
            // Copy*Response, CopyData, CopyDone: passed through.
            _ => frame.write_to(&mut self.to_client),
        }
        Ok(())
    }

    /// A row of `COPY … TO` data, masked ([`crate::masking::copy`]).
    fn on_copy_data(&mut self, frame: &Frame) -> Result<(), ProxyError> {
        let Some(masker) = self.copy_out.as_mut() else {
            frame.write_to(&mut self.to_client);
            return Ok(());
        };
        let masked = masker
            .apply(&frame.body, &mut self.to_client)
            .map_err(ProxyError::Upstream)?;
        if let Some(Pending::Query(exec) | Pending::Execute(exec)) = self.pending.front_mut() {
            exec.masked += masked;
        }
        Ok(())
    }

    fn on_data_row(&mut self, frame: Frame) -> Result<(), ProxyError> {
        let start = self.to_client.len();
        let exec = match self.pending.front_mut() {
            Some(Pending::Query(exec) | Pending::Execute(exec)) => Some(exec),
            _ => None,
        };
        let plan = exec.as_ref().and_then(|e| e.plan.as_ref());
        let masked = match plan {
            Some(plan) if !plan.is_empty() => plan
                .apply_into(&frame.body, &mut self.to_client)
                .map_err(ProxyError::Upstream)?,
            None if !self.catalog.is_empty() => {
                // Rows of a shape never described while masking is on: fail closed.
                tracing::warn!("DataRow with unknown row shape on a masked database; nulling it");
                let values = be::parse_data_row(&frame.body).map_err(ProxyError::Upstream)?;
                let n = values.iter().filter(|v| v.is_some()).count() as u64;
                write::data_row(&mut self.to_client, &vec![None; values.len()]);
                n
            }
            _ => {
                frame.write_to(&mut self.to_client);
                0
            }
        };
        if let Some(exec) = exec {
            exec.rows += 1;
            exec.masked += masked;
            let sent = &self.to_client[start..];
            exec.bytes += sent.len() as u64;
            // Once the sample is full, a row costs this comparison.
            if self.ctx.sample_rows > 0 {
                sampler(exec, self.ctx.sample_rows).row(sent);
            }
        }
        Ok(())
    }

    /// After an error in an extended-protocol message the server discards every message up to
    /// Sync (PostgreSQL docs 55.2.3), Query and FunctionCall included: their queue entries go,
    /// statement and portal table updates they made are undone (latest first), and a call held
    /// for a lookup the server discarded is passed on to be discarded too.
    fn skip_to_sync(&mut self) {
        let sync = self
            .pending
            .iter()
            .position(|p| matches!(p, Pending::Sync { .. }))
            .unwrap_or(self.pending.len());
        let skipped: Vec<Pending> = self.pending.drain(..sync).collect();
        for entry in skipped.into_iter().rev() {
            match entry {
                Pending::Parse { undo, .. } => {
                    undo_update(&mut self.statements, undo, Rejected::Skipped)
                }
                Pending::Bind { undo, .. } => {
                    undo_update(&mut self.portals, undo, Rejected::Skipped)
                }
                Pending::Query(exec) => self.record_remaining_parts(
                    exec,
                    "(not run: the server skipped it after an earlier error)",
                ),
                Pending::Lookup { oid, .. } => self.release_skipped_call(oid),
                _ => {}
            }
        }
    }

    /// NotificationResponse: `Int32` process id of the notifying backend, channel, payload
    /// (PostgreSQL docs 55.7). A backend of one of the agent's sessions is named by the id that
    /// session's client was given; any other is passed on as it is.
    fn on_notification(&mut self, frame: Frame) {
        let sender = frame
            .body
            .first_chunk::<4>()
            .map(|b| u32::from_be_bytes(*b));
        let translated = self.upstream_addr.and_then(|addr| {
            let pid = u32::from_be_bytes(*frame.body.first_chunk::<4>()?);
            self.ctx.cancels.agent_pid(addr, pid)
        });
        let frame = match translated {
            Some(pid) => {
                let mut body = bytes::BytesMut::from(&frame.body[..]);
                body[..4].copy_from_slice(&pid.to_be_bytes());
                Frame {
                    tag: frame.tag,
                    body: body.freeze(),
                }
            }
            None => frame,
        };
        if !self.catalog.is_empty() && sender.is_none_or(|pid| self.notification_may_carry(pid)) {
            // The payload may be any value a trigger or function read ([`side`]).
            let channel = frame
                .body
                .get(4..)
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .map(String::from_utf8_lossy);
            if let (Some(pid), Some(channel)) = (frame.body.first_chunk::<4>(), channel) {
                write::notification(
                    &mut self.to_client,
                    u32::from_be_bytes(*pid),
                    &channel,
                    side::WITHHELD,
                );
                return;
            }
        }
        frame.write_to(&mut self.to_client);
    }

    /// The server entered COPY-in for the request at the front of the queue. Until the client's
    /// next CopyDone or CopyFail it ignores Sync (PostgreSQL docs 55.2.6), so the Syncs the
    /// client sent before that one will never be answered: their queue entries go, or every
    /// later ReadyForQuery would be matched to the wrong request.
    fn drop_syncs_sent_during_copy_in(&mut self) {
        let copy_ends = match self.pending.front() {
            Some(Pending::Query(exec) | Pending::Execute(exec)) => exec.copy_ends,
            _ => return,
        };
        let mut first = true;
        self.pending.retain(|p| {
            let keep = first || !matches!(p, Pending::Sync { copy_ends: c } if *c == copy_ends);
            first = false;
            keep
        });
    }

    /// A FunctionCall held for a lookup the server skipped (an error earlier in the batch): the
    /// server would skip the call as well, so it is dropped, undecided and never sent, and
    /// gets no queue entry.
    fn release_skipped_call(&mut self, oid: u32) {
        if self.held.take().is_none() {
            return;
        }
        tracing::debug!(
            oid,
            "FunctionCall skipped by the server after an earlier error"
        );
    }

    /// A response to the agent's own function-name lookup: read, never forwarded. Its
    /// ReadyForQuery releases the held FunctionCall.
    fn on_lookup(&mut self, frame: Frame) -> Result<(), ProxyError> {
        match frame.tag {
            be::DATA_ROW_TAG => {
                let values = be::parse_data_row(&frame.body).map_err(ProxyError::Upstream)?;
                let text = |i: usize| {
                    values
                        .get(i)
                        .and_then(|v| v.as_ref())
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                };
                if let (
                    Some(Pending::Lookup { name, .. }),
                    Some(schema),
                    Some(function),
                    Some(signature),
                ) = (self.pending.front_mut(), text(0), text(1), text(2))
                {
                    *name = Some(NamedFunction {
                        name: QualifiedName {
                            schema: Some(schema),
                            name: function,
                        },
                        signature,
                    });
                }
            }
            be::ERROR_RESPONSE_TAG => {
                // In a failed transaction block, for one: the call will fail there too.
                tracing::debug!("function name lookup failed");
            }
            be::READY_FOR_QUERY_TAG => {
                let Some(Pending::Lookup { oid, name }) = self.pending.pop_front() else {
                    return Ok(());
                };
                let name = match name {
                    Some(name) => {
                        self.function_names.insert(oid, name.clone());
                        name
                    }
                    // The server fails the call itself ("function … does not exist").
                    None => NamedFunction {
                        name: QualifiedName {
                            schema: None,
                            name: format!("oid {oid}"),
                        },
                        signature: format!("function with OID {oid} (not found)"),
                    },
                };
                if let Some(call) = self.held.take() {
                    self.forward_function_call(&call, &name);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn finish_describe(
        &mut self,
        frame: Frame,
        plan: MaskPlan,
        fields: Option<&[FieldDescription]>,
    ) {
        if let Some(Pending::Describe { injected: true }) = self.pending.pop_front() {
            // Our own Describe: its answer is the plan of the Execute queued right after it.
            if let Some(Pending::Execute(execution)) = self.pending.front_mut() {
                execution.plan = Some(plan);
                if let Some(fields) = fields {
                    sampler(execution, self.ctx.sample_rows).describe(fields);
                }
            }
            return;
        }
        frame.write_to(&mut self.to_client);
    }

    fn on_error(&mut self, frame: Frame) -> Result<(), ProxyError> {
        let fields =
            ErrorFields::parse(&frame.body, "ErrorResponse").map_err(ProxyError::Upstream)?;
        let sqlstate = fields.sqlstate().unwrap_or_default().to_owned();
        let mut rejection: Option<Rejection> = None;
        match self.pending.front_mut() {
            Some(Pending::Query(exec)) => {
                rejection = exec.rejection.clone();
                exec.sqlstate = Some(match &rejection {
                    Some(r) => r.sqlstate.to_owned(),
                    None => sqlstate,
                });
                self.record_completed_part();
            }
            Some(_) => {
                // Extended protocol: this request failed; the server skips to Sync.
                match self.pending.pop_front() {
                    Some(Pending::Parse { rejection: r, undo }) => {
                        rejection = r;
                        undo_update(&mut self.statements, undo, Rejected::Failed);
                    }
                    Some(Pending::Bind { rejection: r, undo }) => {
                        rejection = r;
                        undo_update(&mut self.portals, undo, Rejected::Failed)
                    }
                    Some(Pending::Execute(mut execution)) => {
                        execution.sqlstate = Some(sqlstate);
                        self.record_statement(&execution);
                    }
                    _ => {}
                }
                self.skip_to_sync();
            }
            None => {}
        }
        match rejection {
            Some(r) => write::error_response(
                &mut self.to_client,
                Severity::Error,
                r.sqlstate,
                &r.message,
                r.hint.as_deref(),
            ),
            None => self.forward_scrubbed(frame, fields),
        }
        Ok(())
    }

    /// Forwards an ErrorResponse or NoticeResponse, without the fields and messages that may
    /// quote values on a masked database ([`side`]).
    fn forward_scrubbed(&mut self, frame: Frame, fields: ErrorFields) {
        let scrubbed = self
            .side_channels_open()
            .then(|| side::scrub_fields(&fields.fields))
            .flatten();
        match scrubbed {
            Some(scrubbed) => write::fields(&mut self.to_client, frame.tag, &scrubbed),
            None => frame.write_to(&mut self.to_client),
        }
    }
}

/// The result sampler of `exec`, made on first use with room for `limit` rows.
fn sampler(exec: &mut Execution, limit: usize) -> &mut Sampler {
    exec.sample
        .get_or_insert_with(|| Box::new(Sampler::new(limit)))
}

/// Why the server did not take a Parse or Bind the agent already recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rejected {
    /// It failed: the server dropped the unnamed statement or portal first; a named one keeps
    /// what it was.
    Failed,
    /// It was skipped after an earlier error: the server never saw it, so the name keeps what it
    /// had, unnamed or not.
    Skipped,
}

/// Restores a statement or portal table entry changed by a message the server did not take.
fn undo_update<T>(table: &mut HashMap<String, Arc<T>>, undo: Undo<T>, why: Rejected) {
    let Undo { name, previous } = undo;
    match previous {
        Some(previous) if why == Rejected::Skipped || !name.is_empty() => {
            table.insert(name, previous);
        }
        _ => {
            table.remove(&name);
        }
    }
}
