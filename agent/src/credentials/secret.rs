//! The broker's password file: read only when it is owned by root and no one else may read or
//! write it, so the credential that can create roles is the agent's alone.

use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use super::CredentialError;

/// Permission bits that must be clear: any access by the group or others.
const GROUP_OTHER: u32 = 0o077;

/// Reads the first line of `path`, which must be a regular file owned by root (uid 0) with no
/// group or other permissions (mode 0600 or 0400). The checks are made on the opened file.
///
/// Errors: [`CredentialError::SecretFile`] when it cannot be read, is not a regular file, or is
/// empty; [`CredentialError::SecretPermissions`] when its owner or mode is wrong.
pub fn read_root_only(path: &Path) -> Result<String, CredentialError> {
    let unreadable = |detail: String| CredentialError::SecretFile {
        path: path.to_owned(),
        detail,
    };
    let file = std::fs::File::open(path).map_err(|e| unreadable(e.to_string()))?;
    let meta = file.metadata().map_err(|e| unreadable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    if let Some((uid, mode)) = not_root_only(&meta) {
        return Err(CredentialError::SecretPermissions {
            path: path.to_owned(),
            uid,
            mode,
        });
    }
    let mut text = String::new();
    file.take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| unreadable(e.to_string()))?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.is_empty() {
        return Err(unreadable("the first line is empty".into()));
    }
    Ok(password)
}

/// The owner and permission bits of a file (`meta`) that is not root's alone — not owned by
/// uid 0, or with any group or other permission —; `None` when it is. Also used for the
/// collector client key ([`crate::collector_tls`]).
pub fn not_root_only(meta: &std::fs::Metadata) -> Option<(u32, u32)> {
    let mode = meta.mode() & 0o7777;
    (meta.uid() != 0 || mode & GROUP_OTHER != 0).then_some((meta.uid(), mode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn group_or_world_readable_files_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("broker.password");
        std::fs::write(&path, "secret\nignored\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read_root_only(&path).expect_err("0644 is refused");
        assert!(
            matches!(err, CredentialError::SecretPermissions { mode: 0o644, .. }),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        // Owned by root only when the tests run as root.
        if running_as_root() {
            assert_eq!(read_root_only(&path).expect("0600 root file"), "secret");
        } else {
            assert!(read_root_only(&path).is_err());
        }
    }

    fn running_as_root() -> bool {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }
}
