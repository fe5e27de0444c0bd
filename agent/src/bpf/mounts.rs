//! Finding the cgroup v2 hierarchy and a bpffs from `/proc/self/mounts`, and mounting bpffs at
//! `/sys/fs/bpf` when the host has none (it is not mounted at boot on every distribution).

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::BpfError;

/// Where bpffs is conventionally mounted, and where the agent mounts it if absent.
pub const BPFFS_MOUNT: &str = "/sys/fs/bpf";

/// The mount table, as the kernel reports it for this process.
const MOUNTS: &str = "/proc/self/mounts";

/// One line of the mount table: mount point and file system type.
struct Mount {
    point: PathBuf,
    fstype: String,
}

/// The mount point of the (first) cgroup v2 hierarchy, e.g. `/sys/fs/cgroup` on unified hosts
/// or `/sys/fs/cgroup/unified` on hybrid ones.
///
/// # Errors
/// [`BpfError::ReadMounts`] if the mount table cannot be read, [`BpfError::NoCgroup2`] if no
/// cgroup2 file system is mounted.
pub fn cgroup2_mount() -> Result<PathBuf, BpfError> {
    mounts()?
        .into_iter()
        .find(|m| m.fstype == "cgroup2")
        .map(|m| m.point)
        .ok_or(BpfError::NoCgroup2)
}

/// Makes sure `pin_dir` lies on a bpffs: nothing to do if a bpffs is mounted at or above it;
/// otherwise, if it lies under [`BPFFS_MOUNT`], mounts bpffs there (mode 0700).
///
/// # Errors
/// [`BpfError::NotOnBpffs`] for a pin directory elsewhere, [`BpfError::MountBpffs`] if
/// `mount(2)` fails, [`BpfError::ReadMounts`] if the mount table cannot be read.
pub(super) fn ensure_bpffs(pin_dir: &Path) -> Result<(), BpfError> {
    let on_bpffs = mounts()?
        .iter()
        .any(|m| m.fstype == "bpf" && pin_dir.starts_with(&m.point));
    if on_bpffs {
        return Ok(());
    }
    let target = Path::new(BPFFS_MOUNT);
    if !pin_dir.starts_with(target) {
        return Err(BpfError::NotOnBpffs {
            path: pin_dir.to_path_buf(),
        });
    }
    mount_bpffs(target)
}

fn mount_bpffs(target: &Path) -> Result<(), BpfError> {
    let err = |source| BpfError::MountBpffs {
        path: target.to_path_buf(),
        source,
    };
    let c_target = CString::new(target.as_os_str().as_bytes())
        .map_err(|nul| err(io::Error::new(io::ErrorKind::InvalidInput, nul)))?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c_target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

fn mounts() -> Result<Vec<Mount>, BpfError> {
    let table = fs::read_to_string(MOUNTS).map_err(|source| BpfError::ReadMounts { source })?;
    Ok(table.lines().filter_map(parse_line).collect())
}

/// `<source> <mount point> <fstype> <options> 0 0`, with spaces, tabs, newlines and
/// backslashes in paths written as octal escapes (`\040`).
fn parse_line(line: &str) -> Option<Mount> {
    let mut fields = line.split_ascii_whitespace();
    let _source = fields.next()?;
    let point = unescape(fields.next()?);
    let fstype = fields.next()?.to_owned();
    Some(Mount { point, fstype })
}

fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hybrid_cgroup2_line() {
        let m = parse_line("cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid 0 0").expect("line");
        assert_eq!(m.point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(m.fstype, "cgroup2");
    }

    #[test]
    fn unescapes_octal_spaces() {
        let m = parse_line("bpf /mnt/my\\040bpf bpf rw 0 0").expect("line");
        assert_eq!(m.point, Path::new("/mnt/my bpf"));
    }

    #[test]
    fn short_lines_are_skipped() {
        assert!(parse_line("garbage").is_none());
    }
}
