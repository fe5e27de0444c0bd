//! Builds the kernel programs (`jitgate-ebpf`, target `bpfel-unknown-none`) with aya-build and
//! leaves the object at `$OUT_DIR/jitgate`, which `src/bpf` embeds.
//!
//! Without `bpf-linker` on `PATH`, or with `JITGATE_EBPF_STUB=1`, an empty object is written
//! instead so `cargo check` and clippy work anywhere; loading it at run time fails with
//! `BpfError::MissingPrograms`, which tells the operator to run `cargo xtask setup`.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// The kernel crate, a sibling of this crate excluded from the host workspace.
const EBPF_PACKAGE: &str = "jitgate-ebpf";
/// Its binary target; aya-build copies the object to `$OUT_DIR/<this>`.
const EBPF_BIN: &str = "jitgate";
/// Set to `1` to skip the kernel build and embed an empty object.
const STUB_ENV: &str = "JITGATE_EBPF_STUB";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed={STUB_ENV}");
    println!("cargo:rerun-if-env-changed=PATH");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or_else(|| anyhow!("OUT_DIR not set"))?);

    let stub_reason = if env::var_os(STUB_ENV).is_some_and(|v| v == "1") {
        Some(format!("{STUB_ENV}=1"))
    } else {
        which::which("bpf-linker")
            .err()
            .map(|err| format!("bpf-linker not found on PATH ({err})"))
    };
    if let Some(reason) = stub_reason {
        println!(
            "cargo:warning={reason}: embedding an EMPTY eBPF object; the agent cannot load \
             its kernel programs (run `cargo xtask setup`)"
        );
        let stub = out_dir.join(EBPF_BIN);
        fs::write(&stub, []).with_context(|| format!("writing {}", stub.display()))?;
        return Ok(());
    }

    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or_else(|| anyhow!("no manifest dir"))?);
    // The kernel programs compile the shared types too; aya-build only watches the ebpf crate.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../common").display()
    );
    let ebpf_manifest = manifest_dir.join("../ebpf/Cargo.toml");
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .manifest_path(&ebpf_manifest)
        .no_deps()
        .exec()
        .with_context(|| format!("cargo metadata for {}", ebpf_manifest.display()))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = packages
        .into_iter()
        .find(|package| package.name == EBPF_PACKAGE)
        .ok_or_else(|| {
            anyhow!(
                "package {EBPF_PACKAGE} not found in {}",
                ebpf_manifest.display()
            )
        })?;
    let root_dir = manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?;
    // aya-build runs `cargo build --package jitgate-ebpf` in the current directory; the crate is
    // excluded from this workspace, so that must be its own directory.
    env::set_current_dir(root_dir).with_context(|| format!("chdir {root_dir}"))?;
    let package = Package {
        name: name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}
