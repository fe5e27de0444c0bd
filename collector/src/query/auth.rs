//! The query credential: every `AuditQuery` call must carry `authorization: Bearer <token>`
//! matching the collector's query token (`jitgate-collector --query-token-file`). It is
//! separate from the agents' credential (agents only ever call `AuditIngest`; their
//! certificates grant no query access) and from the decider token (`--decider-token-file`,
//! which lets people approve or deny). A collector started without a query token refuses every
//! query call unless it was started with `--allow-unauthenticated-query` (local development).

use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Metadata key of the credential.
pub const AUTHORIZATION: &str = "authorization";

/// How the collector authenticates query calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum QueryAuth {
    /// No query token configured: every query call is refused (the safe default).
    #[default]
    Refuse,
    /// Calls must present this bearer token (compared in constant time).
    Token(String),
    /// Every call passes: `--allow-unauthenticated-query`, for local development only.
    Open,
}

/// Why a query call was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryAuthError {
    /// The collector has no query token and was not told to allow unauthenticated queries.
    #[error(
        "the collector's query API is disabled: start jitgate-collector with --query-token-file \
         (or --allow-unauthenticated-query for local development)"
    )]
    Disabled,
    /// The call carried no `authorization: Bearer ...` metadata.
    #[error(
        "querying needs the query token: set JITGATE_QUERY_TOKEN_FILE (or JITGATE_QUERY_TOKEN) \
         or pass --query-token-file"
    )]
    Missing,
    /// The token does not match the collector's.
    #[error("wrong query token")]
    Wrong,
}

impl From<QueryAuthError> for Status {
    fn from(err: QueryAuthError) -> Status {
        Status::unauthenticated(err.to_string())
    }
}

impl QueryAuth {
    /// Checks the call's metadata.
    ///
    /// # Errors
    /// [`QueryAuthError`] when the call may not query.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), QueryAuthError> {
        let expected = match self {
            QueryAuth::Open => return Ok(()),
            QueryAuth::Refuse => return Err(QueryAuthError::Disabled),
            QueryAuth::Token(token) => token,
        };
        let presented = metadata
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or(QueryAuthError::Missing)?;
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(QueryAuthError::Wrong)
        }
    }
}

impl Interceptor for QueryAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request.metadata())?;
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(AUTHORIZATION, value.parse().expect("ascii"));
        map
    }

    #[test]
    fn token_refuse_and_open() {
        let auth = QueryAuth::Token("s3cret".into());
        assert_eq!(auth.check(&with("Bearer s3cret")), Ok(()));
        assert_eq!(
            auth.check(&MetadataMap::new()),
            Err(QueryAuthError::Missing)
        );
        assert_eq!(
            auth.check(&with("Bearer s3cre")),
            Err(QueryAuthError::Wrong)
        );
        assert_eq!(auth.check(&with("s3cret")), Err(QueryAuthError::Missing));
        assert_eq!(
            QueryAuth::Refuse.check(&with("Bearer s3cret")),
            Err(QueryAuthError::Disabled)
        );
        assert_eq!(QueryAuth::Open.check(&MetadataMap::new()), Ok(()));
        let status = Status::from(QueryAuthError::Wrong);
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}
