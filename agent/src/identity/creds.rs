//! Opening a file with another process's filesystem credentials (credentials(7)): the agent runs
//! as root, but must read a job's token file only if the job's own user could. The calling thread
//! switches its fsuid, fsgid and supplementary groups (all per-thread in the kernel; the raw
//! `setgroups` syscall is used because glibc's wrapper changes every thread), opens the file
//! non-blocking (a FIFO cannot stall the agent), and switches back before returning.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::FromRawFd as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// A process's filesystem identity, from `/proc/<pid>/status` (`Uid:`/`Gid:` fourth field,
/// `Groups:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsCreds {
    /// Filesystem user id.
    pub uid: u32,
    /// Filesystem group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

impl FsCreds {
    /// Reads the credentials of process `pid`.
    pub fn of(pid: u32) -> std::io::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Self::parse(&status).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "unexpected /proc status format",
            )
        })
    }

    fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name));
        let fourth = |line: &str| line.split_whitespace().nth(3)?.parse().ok();
        let groups = field("Groups:")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<Vec<u32>, _>>()
            .ok()?;
        Some(Self {
            uid: fourth(field("Uid:")?)?,
            gid: fourth(field("Gid:")?)?,
            groups,
        })
    }
}

/// Restores the thread's own filesystem credentials when dropped.
struct Restore {
    groups: Vec<libc::gid_t>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        // SAFETY: plain syscalls on this thread's credentials with values it had before.
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
            libc::syscall(libc::SYS_setgroups, self.groups.len(), self.groups.as_ptr());
        }
    }
}

/// Opens `path` read-only and non-blocking as `creds` would.
///
/// # Errors
/// The `open(2)` error as `creds` would get it (e.g. `PermissionDenied`), or a failure to switch
/// credentials.
pub fn open_as(creds: &FsCreds, path: &Path) -> std::io::Result<File> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    // SAFETY: getgroups with a zero-length buffer only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let mut own = vec![0; usize::try_from(n).unwrap_or(0)];
    // SAFETY: the buffer holds `n` entries.
    let got = unsafe { libc::getgroups(n, own.as_mut_ptr()) };
    own.truncate(usize::try_from(got).unwrap_or(0));
    let _restore = Restore { groups: own };
    // SAFETY: per-thread credential syscalls; `_restore` switches back on every path.
    let switched = unsafe {
        libc::syscall(
            libc::SYS_setgroups,
            creds.groups.len(),
            creds.groups.as_ptr(),
        ) == 0
    };
    if !switched {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above. setfsgid/setfsuid return the previous id and cannot fail visibly;
    // success is checked by reading the value back.
    unsafe {
        libc::setfsgid(creds.gid);
        libc::setfsuid(creds.uid);
        if libc::setfsuid(u32::MAX) != creds.uid as i32 && creds.uid != u32::MAX {
            return Err(std::io::Error::other("could not switch fsuid"));
        }
    }
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: a valid NUL-terminated path; the returned fd is owned by the File below.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor this function owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parses() {
        let status =
            "Name:\tx\nUid:\t1000\t1000\t1000\t1001\nGid:\t100\t100\t100\t101\nGroups:\t4 27 \n";
        let c = FsCreds::parse(status).expect("parses");
        assert_eq!(
            c,
            FsCreds {
                uid: 1001,
                gid: 101,
                groups: vec![4, 27]
            }
        );
    }

    #[test]
    fn own_creds_are_readable() {
        let c = FsCreds::of(std::process::id()).expect("own status");
        // SAFETY: getuid cannot fail.
        assert_eq!(c.uid, unsafe { libc::getuid() });
    }
}
