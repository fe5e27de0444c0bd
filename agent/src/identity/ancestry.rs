//! The connecting process's ancestors for the audit trail (`SessionStarted.ancestry`), read
//! once per session from `/proc` (proc(5)): for each process its parent (`stat` field 4), `comm`,
//! `exe`, `cmdline` and real uid (`status` `Uid:`). Unlike [`super::process::job_ancestry`],
//! which stops at the runner cgroup for token lookup, this follows the chain to pid 1 so an
//! auditor sees who started the job too.

use jitgate_proto::audit::v1 as pb;

use super::process;

/// Most ancestors recorded.
pub const MAX_ANCESTORS: usize = 16;

/// Longest `cmdline` recorded, bytes (cut on a character boundary).
pub const MAX_CMDLINE_BYTES: usize = 4096;

/// What `/proc/<pid>` says about one process, or `None` when it is gone (or unreadable).
pub fn read(pid: u32) -> Option<pb::Process> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid = process::parse_stat(&stat)?.get(1)?.parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end_matches('\n').to_owned())
        .unwrap_or_default();
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| real_uid(&s))
        .unwrap_or(0);
    Some(pb::Process {
        pid,
        tgid: pid,
        uid,
        comm,
        exe: process::exe_of(pid),
        ppid,
        cmdline: cmdline_of(pid),
        ..pb::Process::default()
    })
}

/// Most of `/proc/<pid>/cmdline` read, bytes: enough to see whole arguments before scrubbing.
const MAX_RAW_CMDLINE_BYTES: usize = 64 * 1024;

/// `/proc/<pid>/cmdline` as [`render_cmdline`] gives it; empty when unreadable (or for a kernel
/// thread).
pub fn cmdline_of(pid: u32) -> String {
    use std::io::Read as _;
    let Ok(file) = std::fs::File::open(format!("/proc/{pid}/cmdline")) else {
        return String::new();
    };
    let mut raw = Vec::new();
    if file
        .take(MAX_RAW_CMDLINE_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .is_err()
    {
        return String::new();
    }
    if raw.len() > MAX_RAW_CMDLINE_BYTES {
        // The last argument read may be cut inside a secret: drop it.
        let whole = raw.iter().rposition(|b| *b == 0).unwrap_or(0);
        raw.truncate(whole);
    }
    render_cmdline(&raw)
}

/// A raw `cmdline` (NUL-separated arguments) as text: secrets replaced
/// ([`super::scrub::scrub_args`]), arguments joined by spaces, cut at [`MAX_CMDLINE_BYTES`] on
/// a character boundary.
pub fn render_cmdline(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    let text = String::from_utf8_lossy(raw);
    let args: Vec<&str> = text.split('\0').collect();
    let line = super::scrub::scrub_args(&args).join(" ");
    crate::render::cut(&line, MAX_CMDLINE_BYTES).to_owned()
}

/// The real uid from the `Uid:` line of `/proc/<pid>/status`.
fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The ancestors of a process whose parent is `ppid`: parent first, up to and including pid 1,
/// at most [`MAX_ANCESTORS`]. A process that has exited ends the list (its parent can no longer
/// be known).
pub fn ancestors(ppid: u32) -> Vec<pb::Process> {
    let mut chain = Vec::new();
    let mut pid = ppid;
    while pid != 0 && chain.len() < MAX_ANCESTORS {
        let Some(p) = read(pid) else {
            break;
        };
        let next = p.ppid;
        chain.push(p);
        if pid == 1 {
            break;
        }
        pid = next;
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_child_has_this_process_as_first_ancestor() -> Result<(), Box<dyn std::error::Error>>
    {
        // `sleep 30` alone: an extra argument makes sleep fail at once, and a zombie's cmdline
        // reads empty. spawn (vfork) can return while execve is still setting up the new image,
        // whose cmdline then reads empty too: wait until it is there.
        let mut child = std::process::Command::new("sleep").arg("30").spawn()?;
        let me = std::process::id();
        for _ in 0..500 {
            if !cmdline_of(child.id()).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let result = read(child.id());
        let chain = result.as_ref().map(|c| ancestors(c.ppid));
        child.kill()?;
        child.wait()?;
        let record = result.ok_or("child not readable")?;
        assert_eq!(record.comm, "sleep");
        assert_eq!(record.ppid, me);
        assert_eq!(record.cmdline, "sleep 30");
        assert!(record.exe.ends_with("/sleep"), "{}", record.exe);
        let chain = chain.ok_or("no chain")?;
        assert_eq!(chain[0].pid, me);
        assert_eq!(chain[0].ppid, std::os::unix::process::parent_id());
        // SAFETY: getuid has no preconditions.
        assert_eq!(chain[0].uid, unsafe { libc::getuid() });
        assert!(chain.len() <= MAX_ANCESTORS);
        let last = chain.last().ok_or("empty chain")?;
        assert!(last.pid == 1 || chain.len() == MAX_ANCESTORS || last.ppid == 0);
        for pair in chain.windows(2) {
            assert_eq!(pair[0].ppid, pair[1].pid);
        }
        Ok(())
    }

    #[test]
    fn an_exited_process_ends_the_list() -> Result<(), Box<dyn std::error::Error>> {
        let mut child = std::process::Command::new("true").spawn()?;
        let pid = child.id();
        child.wait()?;
        assert!(read(pid).is_none());
        assert!(ancestors(pid).is_empty());
        Ok(())
    }

    #[test]
    fn cmdline_rendering() {
        assert_eq!(render_cmdline(b"psql\0-c\0select 1\0"), "psql -c select 1");
        assert_eq!(
            render_cmdline(b"tool\0--password\0pw\0postgres://u:pw@h/db\0"),
            "tool --password [redacted] postgres://u:[redacted]@h/db"
        );
        let long = vec![b'x'; MAX_CMDLINE_BYTES + 10];
        assert_eq!(render_cmdline(&long).len(), MAX_CMDLINE_BYTES);
        assert_eq!(
            real_uid("Name:\tx\nUid:\t1000\t1000\t1000\t1000\n"),
            Some(1000)
        );
    }
}
