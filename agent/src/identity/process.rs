//! The connecting process and its ancestors in the CI job, from `/proc` (proc(5)): command name,
//! executable, parent, cgroup and environment. Ancestors outside the runner cgroup (the runner
//! service, a login shell) are never part of the job, so a job cannot borrow a token it was not
//! given.

use jitgate_common::ProcessFacts;

/// How many ancestors are searched at most.
const MAX_ANCESTORS: usize = 64;

/// Largest environment read per process, bytes (Linux caps the whole of argv + envp at a
/// quarter of the stack limit; 1 MiB covers the usual 8 MiB limit's environments).
const MAX_ENVIRON_BYTES: u64 = 1024 * 1024;

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

/// The cgroup v2 path of `pid` (the `0::` line of `/proc/<pid>/cgroup`), e.g. `/ci-runner`.
pub fn cgroup_of(pid: u32) -> Option<String> {
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

/// The fields of `/proc/<pid>/stat` after the parenthesised comm (field 3 onwards), which
/// itself may contain spaces and parentheses.
pub fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// [`stat_fields`] of the text of a `/proc/<pid>/stat` file.
pub fn parse_stat(stat: &str) -> Option<Vec<String>> {
    let after = stat.get(stat.rfind(')')? + 1..)?;
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Parent pid (stat field 4).
fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The connecting process (`tgid`) and then its ancestors, nearest first, while they are inside
/// `runner_cgroup` (a cgroup v2 path relative to the mount, e.g. `/ci`).
pub fn job_ancestry(tgid: u32, runner_cgroup: &str) -> Vec<u32> {
    let mut chain = Vec::new();
    let mut pid = tgid;
    for _ in 0..MAX_ANCESTORS {
        if pid <= 1 {
            break;
        }
        match cgroup_of(pid) {
            Some(cg) if within(&cg, runner_cgroup) => chain.push(pid),
            _ => break,
        }
        match parent_of(pid) {
            Some(parent) => pid = parent,
            None => break,
        }
    }
    chain
}

/// The environment a process was started with (`/proc/<pid>/environ`: changes it made to its
/// own environment later are not seen, as with any process reading another's).
pub fn environ(pid: u32) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(format!("/proc/{pid}/environ")).ok()?;
    let mut env = Vec::new();
    file.take(MAX_ENVIRON_BYTES).read_to_end(&mut env).ok()?;
    Some(env)
}

/// The non-empty value of `var` in an environment block (`NAME=value` entries separated by NUL).
pub fn env_value(env: &[u8], var: &str) -> Option<String> {
    let prefix = format!("{var}=");
    env.split(|&b| b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .filter(|value| !value.is_empty())
        .map(|value| String::from_utf8_lossy(value).into_owned())
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

    #[test]
    fn stat_with_odd_comm() {
        let fields = parse_stat("42 (a) b (c)) S 7 42 42 0").expect("parses");
        assert_eq!(fields[0], "S");
        assert_eq!(fields[1], "7");
    }

    #[test]
    fn environment_values() {
        let env = b"A=1\0JITGATE_OIDC_TOKEN=x.y.z\0EMPTY=\0AB=2\0";
        assert_eq!(env_value(env, "A").as_deref(), Some("1"));
        assert_eq!(
            env_value(env, "JITGATE_OIDC_TOKEN").as_deref(),
            Some("x.y.z")
        );
        assert_eq!(env_value(env, "EMPTY"), None);
        assert_eq!(env_value(env, "B"), None);
        let mine = environ(std::process::id()).expect("own environ");
        assert!(!mine.is_empty());
    }
}
