//! The connecting process, from the kernel's record and `/proc` (proc(5)): its executable, and
//! its OIDC token found through the environment of the process and its ancestors that are in the
//! CI runner's cgroup. Ancestors outside the runner cgroup (the runner service, a login shell)
//! are never searched, so a job cannot borrow a token it was not given.

use std::io::Read;
use std::path::{Path, PathBuf};

use jitgate_common::ProcessFacts;

use super::IdentityError;
use super::creds::{FsCreds, open_as};

/// Environment variables naming a token file, tried in this order in each process.
pub const TOKEN_FILE_VARS: [&str; 2] = ["AZURE_FEDERATED_TOKEN_FILE", "JITGATE_OIDC_TOKEN_FILE"];

/// Largest token file read, bytes.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// How many ancestors are searched at most.
const MAX_ANCESTORS: usize = 64;

/// A token found for a process.
#[derive(Debug, Clone)]
pub struct FoundToken {
    /// The JWT text.
    pub token: String,
    /// The process whose environment named the file.
    pub pid: u32,
    /// The variable that named it.
    pub var: &'static str,
    /// The file, as named.
    pub path: PathBuf,
}

/// The text of `comm`, lossy.
pub fn comm_of(facts: &ProcessFacts) -> String {
    String::from_utf8_lossy(facts.comm_bytes()).into_owned()
}

/// `/proc/<tgid>/exe`, or empty when unreadable.
pub fn exe_of(tgid: u32) -> String {
    std::fs::read_link(format!("/proc/{tgid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Checks the process recorded by the kernel still exists and is the same one (comm matches).
pub fn check_alive(facts: &ProcessFacts) -> Result<(), IdentityError> {
    let gone = |detail: String| IdentityError::ProcessGone {
        pid: facts.tgid,
        detail,
    };
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", facts.tgid))
        .map_err(|e| gone(format!("/proc/{}/comm: {e}", facts.tgid)))?;
    let kernel = comm_of(facts);
    if comm.trim_end_matches('\n') != kernel {
        return Err(gone(format!(
            "comm is {:?}, kernel recorded {kernel:?}",
            comm.trim_end()
        )));
    }
    Ok(())
}

/// The cgroup v2 path of `pid` (the `0::` line of `/proc/<pid>/cgroup`), e.g. `/ci-runner`.
fn cgroup_of(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// Whether cgroup path `path` is `root` or below it.
fn within(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path == root || path.starts_with(&format!("{root}/"))
}

/// Parent pid from `/proc/<pid>/stat` (field 4, after the parenthesised comm).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Looks for a token file variable in `/proc/<pid>/environ`.
fn token_var(pid: u32) -> Option<(&'static str, String)> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    for var in TOKEN_FILE_VARS {
        let prefix = format!("{var}=");
        for entry in env.split(|&b| b == 0) {
            if let Some(value) = entry.strip_prefix(prefix.as_bytes())
                && !value.is_empty()
            {
                return Some((var, String::from_utf8_lossy(value).into_owned()));
            }
        }
    }
    None
}

/// Finds the token of the process `facts` names: its own environment first, then its ancestors'
/// while they stay inside `runner_cgroup` (a cgroup v2 path relative to the mount, e.g. `/ci`).
pub fn find_token(facts: &ProcessFacts, runner_cgroup: &str) -> Result<FoundToken, IdentityError> {
    let mut pid = facts.tgid;
    for _ in 0..MAX_ANCESTORS {
        if pid <= 1 {
            break;
        }
        match cgroup_of(pid) {
            Some(cg) if within(&cg, runner_cgroup) => {}
            _ => break,
        }
        if let Some((var, value)) = token_var(pid) {
            let token = read_token_file(facts.tgid, pid, var, Path::new(&value))?;
            return Ok(FoundToken {
                token,
                pid,
                var,
                path: PathBuf::from(value),
            });
        }
        match parent_of(pid) {
            Some(parent) => pid = parent,
            None => break,
        }
    }
    Err(IdentityError::NoToken {
        pid: facts.tgid,
        comm: comm_of(facts),
        vars: TOKEN_FILE_VARS.join(", "),
    })
}

/// Reads the token file as the connecting process sees it: through its root directory (or the
/// naming process's working directory for a relative path), opened with the connecting
/// process's filesystem credentials ([`super::creds`]), so the agent — root — reads only what
/// the job's own user could, directories included. A token named by an ancestor is checked
/// against the connecting process's user as well. Only regular files are read.
fn read_token_file(
    connecting: u32,
    namer: u32,
    var: &'static str,
    named: &Path,
) -> Result<String, IdentityError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_containment() {
        assert!(within("/ci", "/ci"));
        assert!(within("/ci/job1", "/ci/"));
        assert!(!within("/ci2", "/ci"));
        assert!(!within("/", "/ci"));
    }

    #[test]
    fn own_parent_is_found() {
        let me = std::process::id();
        let parent = parent_of(me).expect("parent");
        assert_eq!(parent, std::os::unix::process::parent_id());
    }
}
