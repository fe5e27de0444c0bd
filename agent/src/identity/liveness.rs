//! Whether `/proc/<tgid>` still is the process the kernel recorded at `connect`, so that a pid
//! reused by another process cannot lend that process's token (or environment) to a connection
//! it did not open.
//!
//! Checked against the kernel record ([`jitgate_common::ConnInfo`]): the process must have
//! started no later than the connect, have the recorded uid as its real, effective and
//! filesystem uid (a set-user-ID program exec'd on the connection would otherwise read the
//! job's token file with its own rights), and the recorded cgroup v2 id and `comm`.
//!
//! Start time: `/proc/<pid>/stat` field 22 is the start in clock ticks (`sysconf(_SC_CLK_TCK)`,
//! 100 per second) since boot on `CLOCK_BOOTTIME` (which counts suspend), truncated to the tick;
//! the kernel record's `connect_ns` is `bpf_ktime_get_ns()`, `CLOCK_MONOTONIC` (which does not).
//! The connect time on the boottime clock is `connect_ns` plus the time the host spent suspended
//! before the connect, which is at most the `CLOCK_BOOTTIME − CLOCK_MONOTONIC` difference now.
//! A process that existed at the connect started before it, so
//! `start_ticks × tick ≤ connect_ns + (boottime − monotonic now) + START_TOLERANCE`. A process
//! that took the pid later started after the connect; it passes only if it started within the
//! same clock tick (≤ 10 ms) as the connect, plus the tolerance, plus any suspend between the
//! connect and the check — and then it must still match uid, cgroup and `comm`, and hold the
//! connection's socket ([`super::socket`]), which a process that is not the attacker's does not.
//! (What remains is a successor the attacker launched itself and gave the socket: its token,
//! environment and credentials are the attacker's own, so it gains nothing.) On the runner VMs,
//! which do not suspend, the two clocks agree to the microsecond.
//!
//! The checks run once before the token is looked for and again after it was read: a process
//! that is the recorded one after the read was the recorded one during it (a pid is not reused
//! while its process exists).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use jitgate_common::ProcessFacts;

use super::IdentityError;
use super::process::{cgroup_of, comm_of, stat_fields};

/// Slack added to the connect time for clock reads (well under one clock tick).
pub const START_TOLERANCE: Duration = Duration::from_millis(1);

/// `start_time` is stat field 22; [`stat_fields`] starts at field 3.
const START_TIME_INDEX: usize = 22 - 3;

/// Checks that the process the kernel recorded (`facts`, connect at `connect_ns` on
/// `CLOCK_MONOTONIC`) still is `/proc/<tgid>`. `cgroup_mount` is the cgroup2 mount point, to
/// find the inode of the process's cgroup directory.
///
/// # Errors
/// [`IdentityError::ProcessGone`] naming what does not match.
pub fn check(
    facts: &ProcessFacts,
    connect_ns: u64,
    cgroup_mount: &Path,
) -> Result<(), IdentityError> {
    let tgid = facts.tgid;
    let gone = |detail: String| IdentityError::ProcessGone { pid: tgid, detail };

    let fields = stat_fields(tgid).ok_or_else(|| gone(format!("/proc/{tgid} no longer exists")))?;
    let start_ticks: u64 = fields
        .get(START_TIME_INDEX)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| gone(format!("/proc/{tgid}/stat has no start time")))?;
    let started_ns = start_ticks.saturating_mul(tick_ns());
    let latest_ns = connect_ns
        .saturating_add(boot_minus_monotonic_ns())
        .saturating_add(START_TOLERANCE.as_nanos() as u64);
    if started_ns > latest_ns {
        return Err(gone(format!(
            "pid {tgid} now belongs to a process started {:.3} s after the connection was opened \
             (start {:.3} s after boot, connect {:.3} s): the pid was reused",
            (started_ns - latest_ns) as f64 / 1e9,
            started_ns as f64 / 1e9,
            connect_ns as f64 / 1e9
        )));
    }

    let uids = uids(tgid).ok_or_else(|| gone(format!("/proc/{tgid}/status is unreadable")))?;
    if uids.real != facts.uid {
        return Err(gone(format!(
            "its real uid is {}, the kernel recorded {} at connect",
            uids.real, facts.uid
        )));
    }
    if uids.effective != facts.uid || uids.filesystem != facts.uid {
        // A set-user-ID program would read the job's token file with its own rights.
        return Err(gone(format!(
            "its effective and filesystem uids are {} and {}, not the uid {} the kernel \
             recorded at connect",
            uids.effective, uids.filesystem, facts.uid
        )));
    }

    let cgroup =
        cgroup_of(tgid).ok_or_else(|| gone(format!("/proc/{tgid}/cgroup is unreadable")))?;
    let dir = cgroup_mount.join(cgroup.trim_start_matches('/'));
    let cgroup_id = std::fs::metadata(&dir)
        .map(|m| m.ino())
        .map_err(|e| gone(format!("its cgroup {cgroup}: {e}")))?;
    if cgroup_id != facts.cgroup_id {
        return Err(gone(format!(
            "it is in cgroup {cgroup} (id {cgroup_id}), the kernel recorded cgroup id {} at connect",
            facts.cgroup_id
        )));
    }

    let recorded = comm_of(facts);
    // `comm` is per thread: the kernel recorded the connecting thread's (a runtime's worker
    // thread may carry its own name), so that thread's is compared while it exists.
    let thread = read_comm(&format!("/proc/{tgid}/task/{}/comm", facts.pid));
    let main = read_comm(&format!("/proc/{tgid}/comm"));
    if thread.as_deref() != Some(recorded.as_str()) && main.as_deref() != Some(recorded.as_str()) {
        return Err(gone(format!(
            "comm is {:?}, the kernel recorded {recorded:?}",
            main.unwrap_or_default()
        )));
    }
    Ok(())
}

fn read_comm(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|c| c.trim_end_matches('\n').to_owned())
}

/// A process's user ids (`Uid:` of `/proc/<pid>/status`: real, effective, saved, filesystem).
#[derive(Debug, PartialEq, Eq)]
struct Uids {
    real: u32,
    effective: u32,
    filesystem: u32,
}

fn uids(pid: u32) -> Option<Uids> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_uids(&status)
}

fn parse_uids(status: &str) -> Option<Uids> {
    let ids: Vec<u32> = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match ids[..] {
        [real, effective, _saved, filesystem] => Some(Uids {
            real,
            effective,
            filesystem,
        }),
        _ => None,
    }
}

/// Nanoseconds per clock tick (`sysconf(_SC_CLK_TCK)`, 100 Hz when unknown).
fn tick_ns() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|&h| h > 0).unwrap_or(100);
    1_000_000_000 / hz
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

/// `CLOCK_BOOTTIME − CLOCK_MONOTONIC` now: the time spent suspended since boot. Monotonic is
/// read first, so the difference never comes out smaller than the true one.
fn boot_minus_monotonic_ns() -> u64 {
    let monotonic = clock_ns(libc::CLOCK_MONOTONIC);
    let boot = clock_ns(libc::CLOCK_BOOTTIME);
    boot.saturating_sub(monotonic)
}

/// This process as the kernel would have recorded a connect by the calling thread now: its
/// facts, the connect time and the cgroup2 mount. For tests.
#[cfg(test)]
pub(crate) fn own_facts() -> (ProcessFacts, u64, std::path::PathBuf) {
    tests::own_facts()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process, as the kernel would have recorded it now.
    pub(super) fn own_facts() -> (ProcessFacts, u64, std::path::PathBuf) {
        let me = std::process::id();
        let mut comm = [0u8; jitgate_common::COMM_LEN];
        let name = read_comm(&format!("/proc/{me}/task/{}/comm", gettid())).unwrap_or_default();
        for (slot, b) in comm.iter_mut().zip(name.bytes()) {
            *slot = b;
        }
        let mount = crate::bpf::cgroup2_mount().unwrap_or_else(|_| "/sys/fs/cgroup".into());
        let cgroup = cgroup_of(me).unwrap_or_default();
        let cgroup_id = std::fs::metadata(mount.join(cgroup.trim_start_matches('/')))
            .map(|m| m.ino())
            .unwrap_or_default();
        let facts = ProcessFacts {
            pid: gettid(),
            tgid: me,
            // SAFETY: getuid cannot fail.
            uid: unsafe { libc::getuid() },
            // SAFETY: getgid cannot fail.
            gid: unsafe { libc::getgid() },
            cgroup_id,
            comm,
        };
        (facts, clock_ns(libc::CLOCK_MONOTONIC), mount)
    }

    fn gettid() -> u32 {
        // SAFETY: gettid cannot fail.
        u32::try_from(unsafe { libc::gettid() }).unwrap_or(0)
    }

    #[test]
    fn the_process_itself_passes() {
        let (facts, now, mount) = own_facts();
        check(&facts, now, &mount).expect("this process is itself");
    }

    #[test]
    fn a_connect_before_the_process_started_is_a_reused_pid() {
        let (facts, _, mount) = own_facts();
        // A connect recorded at 1 ms after boot: long before this process started.
        let err = check(&facts, 1_000_000, &mount).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("the pid was reused"), "{text}");
    }

    #[test]
    fn other_uid_cgroup_or_comm_is_refused() {
        let (facts, now, mount) = own_facts();
        let other_uid = ProcessFacts {
            uid: facts.uid.wrapping_add(1),
            ..facts
        };
        assert!(check(&other_uid, now, &mount).is_err_and(|e| e.to_string().contains("uid")));
        let other_cgroup = ProcessFacts {
            cgroup_id: facts.cgroup_id.wrapping_add(1),
            ..facts
        };
        assert!(check(&other_cgroup, now, &mount).is_err_and(|e| e.to_string().contains("cgroup")));
        let mut comm = [0u8; jitgate_common::COMM_LEN];
        comm[..5].copy_from_slice(b"other");
        let other_comm = ProcessFacts { comm, ..facts };
        assert!(check(&other_comm, now, &mount).is_err_and(|e| e.to_string().contains("comm")));
        let gone = ProcessFacts {
            tgid: u32::MAX - 1,
            ..facts
        };
        assert!(
            check(&gone, now, &mount).is_err_and(|e| e.to_string().contains("no longer exists"))
        );
    }

    #[test]
    fn status_uids_parse() {
        assert_eq!(
            parse_uids("Name:\tx\nUid:\t1000\t0\t5\t0\n"),
            Some(Uids {
                real: 1000,
                effective: 0,
                filesystem: 0
            })
        );
        assert_eq!(parse_uids("Uid:\t1\t2\n"), None);
    }
}
