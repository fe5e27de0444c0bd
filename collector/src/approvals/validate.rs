//! Checks an agent's `OpenRequest` and turns it into the [`NewApproval`] the store keeps.

use std::time::Duration;

use jitgate_proto::audit::v1::{ApprovalMode, ApprovalRequested, GrantScope, OpenRequest};
use tonic::Status;

/// An `OpenRequest` that cannot be stored; sent to the agent as `INVALID_ARGUMENT`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<Invalid> for Status {
    fn from(err: Invalid) -> Status {
        Status::invalid_argument(err.0)
    }
}

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

use super::micros;
use crate::storage::NewApproval;

/// Longest approval id accepted (a UUID is 36 characters).
pub const MAX_ID_LEN: usize = 64;

/// Validates `open` received at `now` (µs since the epoch). A request without a hold timeout
/// stays pending for `default_pending`.
///
/// # Errors
/// [`Invalid`] naming the first missing or malformed field.
pub fn new_approval(
    open: OpenRequest,
    now: i64,
    default_pending: Duration,
) -> Result<NewApproval, Invalid> {
    check_id("approval_id", &open.approval_id)?;
    check_id("session_id", &open.session_id)?;
    let identity = open
        .identity
        .clone()
        .ok_or_else(|| invalid("identity is required"))?;
    if identity.issuer.is_empty() || identity.subject.is_empty() {
        return Err(invalid("identity.issuer and identity.subject are required"));
    }
    let mode = open.mode();
    if mode == ApprovalMode::Unspecified {
        return Err(invalid("mode must be hold or request"));
    }
    let mut scope = open.grant_scope();
    if mode == ApprovalMode::Request {
        if open.grant_ttl_s == 0 {
            return Err(invalid("grant_ttl_s is required in request mode"));
        }
        if scope == GrantScope::Unspecified {
            scope = GrantScope::Fingerprint;
        }
        let scoped = match scope {
            GrantScope::Tables => !open.tables.is_empty() && !open.actions.is_empty(),
            _ => !open.fingerprint.is_empty(),
        };
        if !scoped {
            return Err(invalid(
                "the grant scope needs a fingerprint (scope fingerprint) or tables and actions (scope tables)",
            ));
        }
    }
    let pending = if open.hold_timeout_s == 0 {
        micros(default_pending)
    } else {
        i64::try_from(open.hold_timeout_s)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000)
    };
    let auto_approved_by = (!open.auto_approved_by.is_empty()).then_some(open.auto_approved_by);
    let request = ApprovalRequested {
        approval_id: open.approval_id,
        identity: Some(identity),
        target: open.target,
        database: open.database,
        statement: open.statement,
        fingerprint: open.fingerprint,
        tables: open.tables,
        actions: open.actions,
        policy_ids: open.policy_ids,
        reason: open.reason,
        mode: mode.into(),
        grant_scope: scope.into(),
        grant_ttl_s: open.grant_ttl_s,
        expires_unix_us: now.saturating_add(pending),
    };
    Ok(NewApproval {
        request,
        session_id: open.session_id,
        seq: open.seq,
        agent_host: open.agent_host,
        requested_unix_us: now,
        auto_approved_by,
    })
}

/// An id is required, at most [`MAX_ID_LEN`] long, of letters, digits, `-` and `_` (it is used
/// in event ids and printed in commands people copy).
fn check_id(field: &str, id: &str) -> Result<(), Invalid> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{field} must be 1-{MAX_ID_LEN} letters, digits, '-' or '_' (a UUID)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use jitgate_proto::audit::v1::Identity;

    use super::*;

    fn open() -> OpenRequest {
        OpenRequest {
            approval_id: "0190a0b0-0000-7000-8000-000000000001".into(),
            session_id: "s1".into(),
            identity: Some(Identity {
                issuer: "iss".into(),
                subject: "sub".into(),
                ..Identity::default()
            }),
            fingerprint: "fp".into(),
            mode: ApprovalMode::Request.into(),
            grant_ttl_s: 60,
            ..OpenRequest::default()
        }
    }

    #[test]
    fn fills_defaults() {
        let new = new_approval(open(), 1_000, Duration::from_secs(10)).expect("valid");
        assert_eq!(new.request.expires_unix_us, 1_000 + 10_000_000);
        assert_eq!(new.request.grant_scope(), GrantScope::Fingerprint);
        assert_eq!(new.auto_approved_by, None);
    }

    #[test]
    fn rejects_incomplete_requests() {
        let bad = [
            OpenRequest {
                approval_id: "a b".into(),
                ..open()
            },
            OpenRequest {
                identity: None,
                ..open()
            },
            OpenRequest {
                mode: ApprovalMode::Unspecified.into(),
                ..open()
            },
            OpenRequest {
                grant_ttl_s: 0,
                ..open()
            },
            OpenRequest {
                grant_scope: GrantScope::Tables.into(),
                ..open()
            },
        ];
        for request in bad {
            let err = new_approval(request, 0, Duration::from_secs(1)).expect_err("invalid");
            assert_eq!(Status::from(err).code(), tonic::Code::InvalidArgument);
        }
    }
}
