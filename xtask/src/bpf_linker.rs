//! bpf-linker, built from source against the nightly toolchain's own libLLVM (DESIGN.md,
//! "Toolchains"): no system LLVM and no prebuilt download needed.
//!
//! The LLVM major comes from `rustc +nightly -vV` ("LLVM version: 22.1.2") and the library
//! from `$(rustc +nightly --print sysroot)/lib` (`libLLVM-22-rust-1.97.0-nightly.so`), so a new
//! nightly with a new LLVM needs no code change. An installed bpf-linker counts only when it
//! reports [`VERSION`] and, if it links a libLLVM dynamically, that library resolves into
//! nightly's lib directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::step;

/// The bpf-linker release aya 0.14 / aya-ebpf 0.2 are built with.
pub const VERSION: &str = "0.13.0";

/// Nightly's libLLVM, as bpf-linker must link it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightlyLlvm {
    /// `<nightly sysroot>/lib`.
    pub lib_dir: PathBuf,
    /// LLVM major version, e.g. 22 (selects bpf-linker's `llvm-<major>` feature).
    pub major: u32,
    /// The library's file name, e.g. `libLLVM-22-rust-1.97.0-nightly.so`.
    pub file_name: String,
}

impl NightlyLlvm {
    /// Finds nightly's sysroot, LLVM major and the matching libLLVM shared library.
    pub fn discover() -> anyhow::Result<Self> {
        let version = step::probe(Command::new("rustc").args(["+nightly", "-vV"]))
            .context("`rustc +nightly -vV` failed: is the nightly toolchain installed?")?;
        let major = llvm_major(&version)
            .with_context(|| format!("no `LLVM version:` in `rustc +nightly -vV`:\n{version}"))?;
        let sysroot = step::probe(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
            .context("`rustc +nightly --print sysroot` failed")?;
        let lib_dir = Path::new(sysroot.trim()).join("lib");
        let names = std::fs::read_dir(&lib_dir)
            .with_context(|| format!("listing {}", lib_dir.display()))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| entry.file_name().into_string().ok());
        let file_name = pick_library(names, major)
            .with_context(|| format!("no libLLVM-{major}-rust-*.so in {}", lib_dir.display()))?;
        Ok(Self {
            lib_dir,
            major,
            file_name,
        })
    }

    /// The rustc `-l` argument linking this library (`dylib=LLVM-22-rust-1.97.0-nightly`).
    pub fn link_arg(&self) -> String {
        match self
            .file_name
            .strip_prefix("lib")
            .and_then(|rest| rest.strip_suffix(".so"))
        {
            Some(name) => format!("dylib={name}"),
            None => format!("dylib:+verbatim={}", self.file_name),
        }
    }

    /// RUSTFLAGS for building bpf-linker: link this library and find it at run time by rpath.
    pub fn rustflags(&self) -> String {
        let lib = self.lib_dir.display();
        format!(
            "-L {lib} -l {} -C link-arg=-Wl,-rpath,{lib}",
            self.link_arg()
        )
    }
}

/// The major of `LLVM version: 22.1.2` in `rustc -vV` output.
fn llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version:"))
        .and_then(|version| version.trim().split('.').next())
        .and_then(|major| major.parse().ok())
}

/// `libLLVM-<major>-rust-<ver>.so` from `names`; else the `libLLVM.so.<major>.<minor>-rust-<ver>`
/// spelling some toolchains ship alone.
fn pick_library(names: impl Iterator<Item = String>, major: u32) -> Option<String> {
    let dashed = format!("libLLVM-{major}-rust-");
    let dotted = format!("libLLVM.so.{major}.");
    let names: Vec<String> = names.collect();
    names
        .iter()
        .find(|n| n.starts_with(&dashed) && n.ends_with(".so"))
        .or_else(|| names.iter().find(|n| n.starts_with(&dotted)))
        .cloned()
}

/// What is installed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// bpf-linker [`VERSION`] linked to nightly's libLLVM (or to none dynamically).
    Ready(PathBuf),
    /// Something named bpf-linker that is not usable; the reason says why.
    Wrong(String),
    /// No bpf-linker on PATH.
    Missing,
}

/// Checks the bpf-linker on PATH against [`VERSION`] and `llvm` (milliseconds).
pub fn installed(llvm: &NightlyLlvm) -> Installed {
    let Some(path) = step::find_on_path("bpf-linker") else {
        return Installed::Missing;
    };
    let version = step::probe(Command::new(&path).arg("--version")).unwrap_or_default();
    if version.split_whitespace().nth(1) != Some(VERSION) {
        return Installed::Wrong(format!("`bpf-linker --version` says {:?}", version.trim()));
    }
    // Without ldd, trust the version.
    let Some(ldd) = step::probe(Command::new("ldd").arg(&path)) else {
        return Installed::Ready(path);
    };
    for line in ldd.lines().filter(|l| l.contains("libLLVM")) {
        // `libLLVM.so.22.1-rust-… => /…/nightly/lib/libLLVM.so.22.1-rust-… (0x…)`: the SONAME
        // differs from the `-l` file name, so compare the directory it resolves into.
        let resolved = line
            .split_once("=>")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(Path::new);
        match resolved {
            Some(lib) if lib.parent() == Some(llvm.lib_dir.as_path()) => {}
            _ => return Installed::Wrong(format!("its libLLVM is not nightly's: {}", line.trim())),
        }
    }
    Installed::Ready(path)
}

/// Builds and installs bpf-linker [`VERSION`] from crates.io against `llvm` (~5 minutes).
/// `force` replaces an existing, unusable install.
pub fn install(llvm: &NightlyLlvm, force: bool) -> anyhow::Result<()> {
    let features = format!("llvm-{},no-llvm-linking", llvm.major);
    let mut command = step::cargo(["install", "bpf-linker", "--version", VERSION]);
    command
        .args(["--no-default-features", "--features", &features])
        .env("RUSTFLAGS", llvm.rustflags());
    if force {
        command.arg("--force");
    }
    step::captured("bpf-linker (source build)", &mut command)?;
    match installed(llvm) {
        Installed::Ready(_) => Ok(()),
        Installed::Missing => {
            bail!("bpf-linker was installed but is not on PATH: add $CARGO_HOME/bin (~/.cargo/bin)")
        }
        Installed::Wrong(reason) => bail!("bpf-linker was installed but is unusable: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llvm_major() {
        let vv = "rustc 1.97.0-nightly\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.2\n";
        assert_eq!(llvm_major(vv), Some(22));
        assert_eq!(llvm_major("rustc 1.0"), None);
    }

    #[test]
    fn picks_the_dashed_library_and_builds_flags() {
        let names = [
            "librustc_driver-b5a9.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "libLLVM-22-rust-1.97.0-nightly.so",
        ]
        .map(String::from);
        let file_name = pick_library(names.into_iter(), 22);
        assert_eq!(
            file_name.as_deref(),
            Some("libLLVM-22-rust-1.97.0-nightly.so")
        );
        let llvm = NightlyLlvm {
            lib_dir: PathBuf::from("/nightly/lib"),
            major: 22,
            file_name: "libLLVM-22-rust-1.97.0-nightly.so".into(),
        };
        assert_eq!(
            llvm.rustflags(),
            "-L /nightly/lib -l dylib=LLVM-22-rust-1.97.0-nightly -C link-arg=-Wl,-rpath,/nightly/lib"
        );
        assert_eq!(
            pick_library(["libLLVM-21-rust-x.so".to_string()].into_iter(), 22),
            None
        );
    }
}
