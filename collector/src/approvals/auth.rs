//! The decider credential: when the collector is started with a decider token, `Decide` calls
//! must carry `authorization: Bearer <token>`. This is one shared secret for all people who
//! decide; the person's name (`decided_by`) is what they state with `--as`. Per-person
//! credentials (OIDC for people, mTLS) are not built yet.

use tonic::Status;
use tonic::metadata::MetadataMap;

/// Metadata key of the credential.
pub const AUTHORIZATION: &str = "authorization";

/// Checks the call's bearer token against `expected` (no token configured: every call passes).
///
/// # Errors
/// `UNAUTHENTICATED` when the token is missing or wrong.
pub fn check(expected: Option<&str>, metadata: &MetadataMap) -> Result<(), Status> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let presented = metadata
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("deciding needs the decider token"))?;
    if constant_time_eq(presented.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Status::unauthenticated("wrong decider token"))
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
        let missing = check(Some("s3cret"), &MetadataMap::new()).expect_err("missing");
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(check(Some("s3cret"), &with("Bearer s3cre")).is_err());
        assert!(check(Some("s3cret"), &with("s3cret")).is_err());
    }
}
