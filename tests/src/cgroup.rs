//! cgroup v2 guards: a uniquely named child cgroup under the host's cgroup2 mount (found in
//! `/proc/self/mounts`, which on hybrid hosts is `/sys/fs/cgroup/unified`), commands that start
//! inside it, and cleanup on drop: processes still inside are killed by pid (the test process
//! itself is moved back to the root cgroup instead) and the directory is removed.

use std::{
    ffi::OsStr,
    fs, io,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, anyhow};

/// How long [`Drop`] keeps retrying to empty and remove the cgroup.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Distinguishes guards created by one process.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// A child cgroup that is emptied and removed on drop.
#[derive(Debug)]
pub struct CgroupGuard {
    path: PathBuf,
    root: PathBuf,
    id: u64,
}

impl CgroupGuard {
    /// Creates `<cgroup2 mount>/<name_prefix>-<pid>-<n>`.
    ///
    /// # Errors
    /// If no cgroup2 file system is mounted or the directory cannot be created (not root).
    pub fn new(name_prefix: &str) -> anyhow::Result<Self> {
        let root = cgroup2_root()?;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("{name_prefix}-{}-{n}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => {
                    let id = fs::metadata(&path)
                        .with_context(|| format!("stat {}", path.display()))?
                        .ino();
                    return Ok(Self { path, root, id });
                }
                // A leftover of an earlier run with the same pid: take the next number.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
            }
        }
    }

    /// The cgroup's directory (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup v2 id, i.e. the inode number of its directory (what
    /// `bpf_get_current_cgroup_id()` returns for its processes).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A command that runs `program` inside this cgroup: `/bin/sh` writes its own pid to
    /// `cgroup.procs` and then `exec`s `program`, so the program keeps the pid, starts inside the
    /// cgroup and every socket it creates belongs to it. Add arguments with `.arg(..)`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(r#"echo $$ > "$0" && exec "$@""#)
            .arg(self.path.join("cgroup.procs"))
            .arg(program);
        command
    }

    /// Moves process `pid` (all its threads) into this cgroup.
    ///
    /// # Errors
    /// If writing `cgroup.procs` fails (no such process, permission).
    pub fn add_pid(&self, pid: u32) -> anyhow::Result<()> {
        move_pid(&self.path, pid)
    }

    /// The processes currently in this cgroup.
    ///
    /// # Errors
    /// If `cgroup.procs` cannot be read or holds something else than pids.
    pub fn pids(&self) -> anyhow::Result<Vec<u32>> {
        read_pids(&self.path)
    }

    /// Kills the processes inside (moving this test process back to the root instead) and
    /// removes the directory, retrying until [`CLEANUP_TIMEOUT`].
    fn cleanup(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + CLEANUP_TIMEOUT;
        loop {
            for pid in read_pids(&self.path)? {
                if pid == std::process::id() {
                    move_pid(&self.root, pid)?;
                } else if let Ok(raw) = libc::pid_t::try_from(pid) {
                    // SAFETY: plain syscall; `pid` was read from this cgroup's own process list.
                    unsafe { libc::kill(raw, libc::SIGKILL) };
                }
            }
            match fs::remove_dir(&self.path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("rmdir {}", self.path.display()));
                }
                // EBUSY until the killed processes have exited.
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            eprintln!("cgroup guard: cleaning up {}: {e:#}", self.path.display());
        }
    }
}

/// The mount point of the cgroup v2 hierarchy, from `/proc/self/mounts`.
///
/// # Errors
/// If the mount table cannot be read or has no cgroup2 entry.
pub fn cgroup2_root() -> anyhow::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    mounts
        .lines()
        .find_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let point = fields.nth(1)?;
            (fields.next()? == "cgroup2").then(|| PathBuf::from(point.replace("\\040", " ")))
        })
        .ok_or_else(|| anyhow!("no cgroup2 mount in /proc/self/mounts"))
}

/// The cgroup v2 directory (absolute) that process `pid` is in, from `/proc/<pid>/cgroup`.
///
/// # Errors
/// If the process does not exist or has no cgroup v2 entry.
pub fn cgroup_of(pid: u32) -> anyhow::Result<PathBuf> {
    let file = format!("/proc/{pid}/cgroup");
    let text = fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
    let relative = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| anyhow!("no cgroup v2 entry in {file}"))?;
    Ok(cgroup2_root()?.join(relative.trim_start_matches('/')))
}

/// Writes `pid` to `<dir>/cgroup.procs`.
///
/// # Errors
/// If the write fails.
pub fn move_pid(dir: &Path, pid: u32) -> anyhow::Result<()> {
    let procs = dir.join("cgroup.procs");
    fs::write(&procs, pid.to_string())
        .with_context(|| format!("moving pid {pid} to {}", procs.display()))
}

/// The pids in `<dir>/cgroup.procs`. Processes outside this pid namespace show as 0 there and
/// are left out (`kill(0, ..)` would signal our own process group).
fn read_pids(dir: &Path) -> anyhow::Result<Vec<u32>> {
    let procs = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&procs) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", procs.display())),
    };
    let mut pids = Vec::new();
    for line in text.lines() {
        let pid: u32 = line
            .trim()
            .parse()
            .with_context(|| format!("bad pid {line:?} in {}", procs.display()))?;
        if pid != 0 {
            pids.push(pid);
        }
    }
    Ok(pids)
}
