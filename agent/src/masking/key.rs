//! The masking key: secret bytes read from a root-only file (`mask_key_file` of a target), from
//! which the keyed strategies derive their own keys — `hash` (HMAC-SHA-256, RFC 2104) and
//! `format_preserving` (FF1 with AES-256, NIST SP 800-38G). Deterministic: the same value
//! masks the same way in every session that uses the same key, so joins and group-bys on masked
//! values still work, while the value cannot be read back without the key.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use aes::Aes256;
use fpe::ff1::{FF1, FlexibleNumeralString};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// Fewest bytes a key file must hold (256 bits).
pub const MIN_KEY_BYTES: usize = 32;
/// Most bytes read from a key file.
pub const MAX_KEY_BYTES: usize = 4096;

/// Why a masking key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("mask key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Someone other than root owns it, or group or others may read or write it.
    #[error(
        "mask key file {path} must be owned by root with no group or other access (mode 0600 or \
         stricter); it is owned by uid {uid} with mode {mode:04o}"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// Too short or too long.
    #[error("mask key file {path} holds {len} bytes; it needs {MIN_KEY_BYTES} to {MAX_KEY_BYTES}")]
    Length {
        /// The file.
        path: PathBuf,
        /// Bytes found.
        len: usize,
    },
}

/// Keys of the keyed strategies, derived from one key file.
pub struct MaskKey {
    hash: [u8; 32],
    cipher: FF1<Aes256>,
    /// Identifies the key (HMAC of a fixed label), for comparisons and logs; not secret.
    id: [u8; 32],
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskKey({:02x}{:02x}…)", self.id[0], self.id[1])
    }
}

impl PartialEq for MaskKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for MaskKey {}

impl MaskKey {
    /// Reads the key file at `path`: owned by root, no group/other permission bits, 32 to 4096
    /// bytes.
    ///
    /// # Errors
    /// [`KeyError`].
    pub fn load(path: &Path) -> Result<MaskKey, KeyError> {
        let read = |source| KeyError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let mode = meta.mode() & 0o7777;
        if meta.uid() != 0 || mode & 0o077 != 0 {
            return Err(KeyError::Exposed {
                path: path.to_owned(),
                uid: meta.uid(),
                mode,
            });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
            return Err(KeyError::Length {
                path: path.to_owned(),
                len: bytes.len(),
            });
        }
        Ok(MaskKey::from_secret(&bytes))
    }

    /// Derives the strategies' keys from `secret` (at least [`MIN_KEY_BYTES`] bytes are
    /// expected; [`MaskKey::load`] checks).
    pub fn from_secret(secret: &[u8]) -> MaskKey {
        let hash = derive(secret, b"jitgate mask hash v1");
        let fpe = derive(secret, b"jitgate mask format_preserving v1");
        let id = derive(secret, b"jitgate mask key id v1");
        // Radix 10 is within FF1's [2, 2^16].
        let cipher = FF1::<Aes256>::new(&fpe, 10).unwrap_or_else(|_| unreachable!());
        MaskKey { hash, cipher, id }
    }

    /// HMAC-SHA-256 of `value` under the hash key.
    pub fn hmac(&self, value: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.hash)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(value);
        mac.finalize().into_bytes().into()
    }

    /// `digits` (each 0–9, at least 6 of them) encrypted with FF1; `None` when FF1 refuses them.
    pub fn encrypt_digits(&self, digits: Vec<u16>) -> Option<Vec<u16>> {
        self.cipher
            .encrypt(&[], &FlexibleNumeralString::from(digits))
            .ok()
            .map(Vec::from)
    }
}

fn derive(secret: &[u8], label: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(label);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn a_key_file_must_be_private_and_long_enough() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("mask.key");
        std::fs::write(&path, [7u8; 32])?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        let exposed = MaskKey::load(&path);
        if nix_is_root() {
            assert!(matches!(
                exposed,
                Err(KeyError::Exposed { mode: 0o644, .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            let key = MaskKey::load(&path)?;
            assert_eq!(key, MaskKey::from_secret(&[7u8; 32]));
            std::fs::write(&path, [7u8; 8])?;
            assert!(matches!(
                MaskKey::load(&path),
                Err(KeyError::Length { len: 8, .. })
            ));
        } else {
            // Not root: the file is owned by this user, which is refused whatever its mode.
            assert!(matches!(exposed, Err(KeyError::Exposed { .. })));
        }
        Ok(())
    }

    fn nix_is_root() -> bool {
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    }

    #[test]
    fn derived_keys_differ_per_secret_and_per_use() {
        let a = MaskKey::from_secret(&[1u8; 32]);
        let b = MaskKey::from_secret(&[2u8; 32]);
        assert_ne!(a.hmac(b"x"), b.hmac(b"x"));
        assert_eq!(a.hmac(b"x"), MaskKey::from_secret(&[1u8; 32]).hmac(b"x"));
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains("01010101"));
    }
}
