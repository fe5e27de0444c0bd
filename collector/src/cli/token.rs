//! The query token the CLI sends as `authorization: Bearer <token>` on every `AuditQuery`
//! call: read from `--query-token-file` / `JITGATE_QUERY_TOKEN_FILE`, else taken from
//! `JITGATE_QUERY_TOKEN`. Without either, calls go without a token and a collector that
//! requires one answers `UNAUTHENTICATED`.

use std::path::{Path, PathBuf};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Environment variable naming the query token file.
pub const FILE_ENV: &str = "JITGATE_QUERY_TOKEN_FILE";
/// Environment variable holding the query token itself.
pub const TOKEN_ENV: &str = "JITGATE_QUERY_TOKEN";

/// Why the query token could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("cannot read the query token file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("the query token file {0} is empty")]
    Empty(PathBuf),
    /// The token holds characters that cannot go in a header.
    #[error("the query token holds characters that cannot be sent")]
    Invalid,
}

/// Adds the query token (if any) to each call.
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    /// The token from `file` (the flag or [`FILE_ENV`]), else from [`TOKEN_ENV`], else none.
    ///
    /// # Errors
    /// [`TokenError`] when the file cannot be read, is empty, or the token cannot be sent.
    pub fn load(file: Option<&Path>) -> Result<Bearer, TokenError> {
        let token = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                let token = text.trim().to_owned();
                if token.is_empty() {
                    return Err(TokenError::Empty(path.to_owned()));
                }
                Some(token)
            }
            None => std::env::var(TOKEN_ENV)
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty()),
        };
        Bearer::new(token.as_deref())
    }

    /// A bearer for `token` (`None`: calls go without one).
    ///
    /// # Errors
    /// [`TokenError::Invalid`] for a token that is not a valid header value.
    pub fn new(token: Option<&str>) -> Result<Bearer, TokenError> {
        token
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| TokenError::Invalid)
            })
            .transpose()
            .map(Bearer)
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert(crate::query::auth::AUTHORIZATION, value.clone());
        }
        Ok(request)
    }
}
