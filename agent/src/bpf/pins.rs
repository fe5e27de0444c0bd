//! The pin directory: links and maps pinned on bpffs so the redirect outlives the agent.
//!
//! Layout under `pin_dir`: `<program>_link` for each program's cgroup link (see
//! `jitgate_common::PROG_*`) and `<MAP>_map` for each map (`jitgate_common::MAP_*`); bpffs
//! reserves names with dots. A new instance pins under `<name>_new` and renames over the old pin, so the old instance's link is
//! released (and detached) only after the new one is attached: protected connects never find
//! the cgroup without a redirect.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use aya::{maps::Map, programs::links::FdLink};

use super::BpfError;

/// Suffix of link pins.
const LINK_SUFFIX: &str = "_link";
/// Suffix of map pins.
const MAP_SUFFIX: &str = "_map";
/// Suffix of pins being staged before the rename.
const STAGING_SUFFIX: &str = "_new";

/// Pins `link` as `<pin_dir>/<name>_link`, replacing (and so detaching) a previous pin.
/// The link's file descriptor is closed: from here on the pin alone keeps it attached.
pub(super) fn pin_link(pin_dir: &Path, name: &'static str, link: FdLink) -> Result<(), BpfError> {
    let path = pin_dir.join(format!("{name}{LINK_SUFFIX}"));
    let staging = staging_path(&path);
    remove_if_present(&staging)?;
    let pinned = link.pin(&staging).map_err(|source| BpfError::Pin {
        path: staging.clone(),
        source,
    })?;
    drop(pinned);
    replace(&staging, &path)
}

/// Pins `map` as `<pin_dir>/<name>_map`, replacing a previous pin (programs of a previous
/// instance keep their own map until they are detached).
pub(super) fn pin_map(pin_dir: &Path, name: &'static str, map: &Map) -> Result<(), BpfError> {
    let path = pin_dir.join(format!("{name}{MAP_SUFFIX}"));
    let staging = staging_path(&path);
    remove_if_present(&staging)?;
    map.pin(&staging).map_err(|source| BpfError::Pin {
        path: staging.clone(),
        source,
    })?;
    replace(&staging, &path)
}

/// Detaches the redirect and removes its pins: every `*_link`, `*_map` and `*_new` file in
/// `pin_dir`, then the directory itself. Removing a link pin releases the link, which detaches
/// its program from the cgroup (the agent keeps no link file descriptors open). A missing
/// `pin_dir` is not an error.
///
/// This is an operator action: afterwards protected destinations are reachable directly.
///
/// # Errors
/// [`BpfError::Io`] if the directory cannot be read or a pin or the directory cannot be removed
/// (e.g. it holds files that are not ours).
pub fn unload(pin_dir: &Path) -> Result<(), BpfError> {
    let entries = match fs::read_dir(pin_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(io_error("reading pin directory", pin_dir, source)),
    };
    for entry in entries {
        let path = entry
            .map_err(|source| io_error("reading pin directory", pin_dir, source))?
            .path();
        let ours = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| {
                [LINK_SUFFIX, MAP_SUFFIX, STAGING_SUFFIX]
                    .iter()
                    .any(|suffix| name.ends_with(suffix))
            });
        if ours {
            remove_if_present(&path)?;
        }
    }
    fs::remove_dir(pin_dir).map_err(|source| io_error("removing pin directory", pin_dir, source))
}

fn staging_path(path: &Path) -> PathBuf {
    let mut staging = path.as_os_str().to_owned();
    staging.push(STAGING_SUFFIX);
    PathBuf::from(staging)
}

fn replace(staging: &Path, path: &Path) -> Result<(), BpfError> {
    fs::rename(staging, path).map_err(|source| io_error("replacing pin", path, source))
}

fn remove_if_present(path: &Path) -> Result<(), BpfError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(io_error("removing pin", path, source)),
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> BpfError {
    BpfError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}
