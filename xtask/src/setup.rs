//! `cargo xtask setup`: installs every machine prerequisite, idempotently.
//!
//! Debian packages (PostgreSQL 15 and its client, libclang for pg_query, pgbouncer, iproute2,
//! python3-venv), nightly's `rust-src` (eBPF builds use `-Z build-std=core`) and bpf-linker
//! (see [`crate::bpf_linker`]). [`check`] looks at what is there in well under a second; only
//! what is missing is installed, so a second run does nothing.

use std::process::Command;

use anyhow::{Context, bail};

use crate::bpf_linker::{self, Installed, NightlyLlvm};
use crate::step;

/// Debian packages the build, the tests and the demo need.
pub const DEBIAN_PACKAGES: [&str; 8] = [
    "postgresql-15",
    "postgresql-client-15",
    "libclang-dev",
    "clang",
    "pgbouncer",
    "iproute2",
    "python3-venv",
    // The TLS tests give the test server a certificate made with `openssl req`.
    "openssl",
];

/// What is missing on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Debian packages not in state "install ok installed".
    pub missing_packages: Vec<&'static str>,
    /// Whether the nightly toolchain is installed at all.
    pub nightly: bool,
    /// Whether nightly has the `rust-src` component.
    pub rust_src: bool,
    /// bpf-linker's state; `None` when nightly's LLVM could not be discovered (no nightly).
    pub bpf_linker: Option<Installed>,
}

impl Status {
    /// True when nothing needs installing.
    pub fn is_complete(&self) -> bool {
        self.missing_packages.is_empty()
            && self.nightly
            && self.rust_src
            && matches!(self.bpf_linker, Some(Installed::Ready(_)))
    }
}

/// Inspects the machine without changing anything (dpkg-query, rustup, bpf-linker --version).
pub fn check() -> Status {
    let nightly = step::probe(Command::new("rustup").args(["toolchain", "list"]))
        .is_some_and(|list| list.lines().any(|l| l.starts_with("nightly")));
    let rust_src = nightly
        && step::probe(Command::new("rustup").args([
            "component",
            "list",
            "--toolchain",
            "nightly",
            "--installed",
        ]))
        .is_some_and(|list| list.lines().any(|l| l.starts_with("rust-src")));
    let bpf_linker = nightly
        .then(|| NightlyLlvm::discover().ok())
        .flatten()
        .map(|llvm| bpf_linker::installed(&llvm));
    Status {
        missing_packages: missing_packages(),
        nightly,
        rust_src,
        bpf_linker,
    }
}

/// Runs setup only when [`check`] finds something missing (used by `test` and `demo`).
pub fn ensure() -> anyhow::Result<()> {
    let status = check();
    if status.is_complete() {
        step::skip("setup", "all prerequisites present");
        return Ok(());
    }
    install(status)
}

/// `cargo xtask setup`.
pub fn run() -> anyhow::Result<()> {
    install(check())
}

fn install(status: Status) -> anyhow::Result<()> {
    let Status {
        missing_packages,
        nightly,
        rust_src,
        bpf_linker,
    } = status;

    if missing_packages.is_empty() {
        step::skip("Debian packages", &DEBIAN_PACKAGES.join(" "));
    } else {
        install_packages(&missing_packages)?;
    }

    if !nightly {
        step::captured(
            "nightly toolchain",
            Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]),
        )?;
    } else if rust_src {
        step::skip("rust-src (nightly)", "installed");
    } else {
        step::captured(
            "rust-src (nightly)",
            Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
        )?;
    }

    let llvm = NightlyLlvm::discover()?;
    // Re-check when nightly was just installed (the status had no LLVM to compare with).
    let state = match bpf_linker {
        Some(state) => state,
        None => bpf_linker::installed(&llvm),
    };
    match state {
        Installed::Ready(path) => step::skip(
            "bpf-linker",
            &format!(
                "{} {} linked to {}",
                path.display(),
                bpf_linker::VERSION,
                llvm.file_name
            ),
        ),
        Installed::Missing => bpf_linker::install(&llvm, false)?,
        Installed::Wrong(reason) => {
            step::note(&format!("bpf-linker needs a rebuild: {reason}"));
            bpf_linker::install(&llvm, true)?;
        }
    }
    crate::fuzz::install_cargo_fuzz()?;
    crate::python::ensure()?;
    Ok(())
}

/// Packages of [`DEBIAN_PACKAGES`] whose dpkg status is not "install ok installed".
fn missing_packages() -> Vec<&'static str> {
    let report = step::probe_any_status(
        Command::new("dpkg-query")
            .args(["-W", "-f=${Package} ${Status}\\n"])
            .args(DEBIAN_PACKAGES),
    )
    .unwrap_or_default();
    let installed: Vec<&str> = report
        .lines()
        .filter(|line| line.ends_with("install ok installed"))
        .filter_map(|line| line.split_whitespace().next())
        .map(|package| package.split(':').next().unwrap_or(package))
        .collect();
    DEBIAN_PACKAGES
        .into_iter()
        .filter(|package| !installed.contains(package))
        .collect()
}

/// `apt-get update` once, then `apt-get install -y` the missing packages, non-interactively.
fn install_packages(packages: &[&str]) -> anyhow::Result<()> {
    let privileged = |program: &str| -> anyhow::Result<Command> {
        if step::is_root() {
            return Ok(Command::new(program));
        }
        if step::find_on_path("sudo").is_none() {
            bail!(
                "installing {} needs root: run `cargo xtask setup` as root",
                packages.join(" ")
            );
        }
        let mut command = Command::new("sudo");
        command.args(["--preserve-env=DEBIAN_FRONTEND", program]);
        Ok(command)
    };

    let mut update = privileged("apt-get")?;
    update
        .args(["update", "-q"])
        .env("DEBIAN_FRONTEND", "noninteractive");
    step::captured("apt-get update", &mut update)?;

    let mut install = privileged("apt-get")?;
    install
        .args(["install", "-y", "-q"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive");
    step::captured("Debian packages", &mut install)
        .with_context(|| format!("installing {}", packages.join(" ")))?;

    let still_missing = missing_packages();
    if !still_missing.is_empty() {
        bail!(
            "still not installed after apt-get: {}",
            still_missing.join(" ")
        );
    }
    Ok(())
}
