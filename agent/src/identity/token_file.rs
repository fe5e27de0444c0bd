//! Reading a token file a job named, as the connecting process sees it: through its root
//! directory (or the naming process's working directory for a relative path), opened with the
//! connecting process's filesystem credentials ([`super::creds`]), so the agent — root — reads
//! only what the job's own user could, directories included. A token named by an ancestor is
//! checked against the connecting process's user as well. Only regular files are read.

use std::io::Read as _;
use std::path::Path;

use super::IdentityError;
use super::creds::{FsCreds, open_as};

/// Default environment variables naming a token file: Entra workload identity's, then
/// jitgate's own.
pub const DEFAULT_VARS: [&str; 2] = ["AZURE_FEDERATED_TOKEN_FILE", "JITGATE_OIDC_TOKEN_FILE"];

/// Largest token file read, bytes.
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// Reads the token file `named` (from `$var` of process `namer`) as process `connecting` would.
///
/// # Errors
/// [`IdentityError::TokenFile`] saying why the file cannot be used.
pub fn read(connecting: u32, namer: u32, var: &str, named: &Path) -> Result<String, IdentityError> {
    let fail = |detail: String| IdentityError::TokenFile {
        path: named.to_owned(),
        var: var.to_owned(),
        pid: namer,
        detail,
    };
    let seen = if named.is_absolute() {
        Path::new(&format!("/proc/{connecting}/root"))
            .join(named.strip_prefix("/").unwrap_or(named))
    } else {
        Path::new(&format!("/proc/{namer}/cwd")).join(named)
    };
    let creds = FsCreds::of(connecting).map_err(|e| fail(format!("process is gone: {e}")))?;
    let file = open_as(&creds, &seen).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => fail(format!(
            "not readable by the connecting process's user (uid {})",
            creds.uid
        )),
        _ => fail(e.to_string()),
    })?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_TOKEN_BYTES {
        return Err(fail(format!("larger than {MAX_TOKEN_BYTES} bytes")));
    }
    let mut text = String::new();
    file.take(MAX_TOKEN_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Err(fail("file is empty".into()));
    }
    Ok(token)
}
