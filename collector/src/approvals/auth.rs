//! The decider credential: when the collector is started with a decider token, `Decide` calls
//! must carry `authorization: Bearer <token>`. This is one shared secret for all people who
//! decide; the person's name (`decided_by`) is what they state with `--as`. Per-person
//! credentials (OIDC for people, mTLS) are not built yet.

use tonic::Status;
use tonic::metadata::MetadataMap;

/// Metadata key of the credential.
pub const AUTHORIZATION: &str = "authorization";

/// Why a `Decide` call was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The call carried no `authorization: Bearer ...` metadata.
    #[error("deciding needs the decider token (JITGATE_DECIDER_TOKEN)")]
    Missing,
    /// The token does not match the collector's.
    #[error("wrong decider token")]
    Wrong,
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Status {
        Status::unauthenticated(err.to_string())
    }
}

/// Checks the call's bearer token against `expected` (no token configured: every call passes).
///
/// # Errors
/// [`AuthError`] when the token is missing or wrong.
pub fn check(expected: Option<&str>, metadata: &MetadataMap) -> Result<(), AuthError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let presented = metadata
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(AuthError::Missing)?;
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(AuthError::Wrong)
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn token_is_checked_only_when_configured() {
        assert!(check(None, &MetadataMap::new()).is_ok());
        assert!(check(Some("s3cret"), &with("Bearer s3cret")).is_ok());
        assert_eq!(
            check(Some("s3cret"), &MetadataMap::new()),
            Err(AuthError::Missing)
        );
        assert_eq!(
            check(Some("s3cret"), &with("Bearer s3cre")),
            Err(AuthError::Wrong)
        );
        assert_eq!(
            check(Some("s3cret"), &with("s3cret")),
            Err(AuthError::Missing)
        );
        let status = Status::from(AuthError::Wrong);
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}
