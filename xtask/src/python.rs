//! The Python environment of the conformance suite: psycopg 3 and asyncpg from PyPI in a venv
//! under the target directory (see `jitgate_tests::python`, which owns the place and the
//! requirements so the tests and setup agree). Idempotent: when the venv already imports both
//! drivers this is one quick interpreter start and nothing is installed.

use anyhow::Context as _;
use jitgate_tests::python::{REQUIREMENTS, VenvState, ensure_venv, venv_dir};

use crate::step;

/// Creates or completes the venv; reports what it found or did.
///
/// # Errors
/// When `python3 -m venv` (Debian's `python3-venv`, installed by setup) or pip fails.
pub fn ensure() -> anyhow::Result<()> {
    let dir = venv_dir();
    let title = "python venv";
    let state = ensure_venv()
        .with_context(|| format!("creating {} with {}", dir.display(), REQUIREMENTS.join(" ")))?;
    match state {
        VenvState::Ready(python) => step::skip(
            title,
            &format!("{} imports {}", python.display(), REQUIREMENTS.join(", ")),
        ),
        VenvState::Installed(python) => step::note(&format!(
            "✓ {title}: installed {} for {}",
            REQUIREMENTS.join(" "),
            python.display()
        )),
    }
    Ok(())
}
