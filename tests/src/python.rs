//! The Python virtual environment the conformance suite runs its real Python drivers from:
//! psycopg 3 (with its binary libpq build) and asyncpg, installed from PyPI with pip into
//! `<target dir>/python-venv` (`JITGATE_PYTHON_VENV` overrides the place).
//!
//! [`ensure_venv`] is idempotent and quick when the environment is already complete (one
//! `python -c "import psycopg, asyncpg"`); `cargo xtask setup` calls it, and the conformance
//! tests call it again so a plain `cargo test` works on a machine set up before it existed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};

/// Environment variable naming the venv directory instead of `<target dir>/python-venv`.
pub const VENV_ENV: &str = "JITGATE_PYTHON_VENV";

/// The PyPI requirements installed into the venv.
pub const REQUIREMENTS: [&str; 2] = ["psycopg[binary]", "asyncpg"];

/// The modules that must import for the venv to count as complete.
const IMPORT_CHECK: &str = "import psycopg, asyncpg";

/// The venv directory: `JITGATE_PYTHON_VENV`, else `<target dir>/python-venv`.
pub fn venv_dir() -> PathBuf {
    std::env::var_os(VENV_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("python-venv"))
}

/// `CARGO_TARGET_DIR`, else the workspace's `target/` (as [`crate::process::bins`] resolves it).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::process::workspace_root().join("target"))
}

/// The venv's interpreter (`<venv>/bin/python`).
pub fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// The directory of the suite's Python scripts (`tests/python/`).
pub fn scripts_dir() -> PathBuf {
    crate::process::workspace_root()
        .join("tests")
        .join("python")
}

/// What [`ensure_venv`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VenvState {
    /// The venv existed and its drivers import; nothing was changed.
    Ready(PathBuf),
    /// The venv was created or completed with pip.
    Installed(PathBuf),
}

/// Makes sure the venv exists and its drivers import; returns the interpreter's path.
///
/// Creates the venv with the system `python3 -m venv` (Debian's `python3-venv`) and runs
/// `pip install psycopg[binary] asyncpg` only when the import check fails.
///
/// # Errors
/// When `python3 -m venv` or pip fails (their output is quoted), or the drivers still do not
/// import afterwards.
pub fn ensure_venv() -> anyhow::Result<VenvState> {
    let dir = venv_dir();
    let python = venv_python();
    if imports_ok(&python) {
        return Ok(VenvState::Ready(python));
    }
    if !python.exists() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        run(
            "python3 -m venv",
            Command::new("python3").args(["-m", "venv"]).arg(&dir),
        )?;
    }
    run(
        "pip install",
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(REQUIREMENTS),
    )?;
    ensure!(
        imports_ok(&python),
        "`{IMPORT_CHECK}` still fails in {} after pip install",
        dir.display()
    );
    Ok(VenvState::Installed(python))
}

/// Whether `python` exists and imports the drivers.
fn imports_ok(python: &Path) -> bool {
    python.exists()
        && Command::new(python)
            .args(["-c", IMPORT_CHECK])
            .output()
            .is_ok_and(|out| out.status.success())
}

/// Runs `command`, turning a failure into an error quoting its output.
fn run(what: &str, command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    crate::process::checked(what, &output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venv_paths_hang_together() {
        let dir = venv_dir();
        assert!(venv_python().starts_with(&dir));
        assert!(scripts_dir().ends_with("tests/python"));
    }
}
