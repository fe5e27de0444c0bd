//! [`BpfError`]: everything that can go wrong loading, attaching, pinning or querying the
//! kernel redirect.

use std::{io, path::PathBuf};

use aya::{
    EbpfError,
    maps::MapError,
    pin::PinError,
    programs::{ProgramError, links::LinkError},
};

/// An error of the kernel redirect ([`super::Redirector`], [`super::unload`],
/// [`super::cgroup2_mount`]).
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The agent was built without its kernel programs (an empty embedded object).
    #[error(
        "this agent was built without its eBPF programs (bpf-linker was missing or \
         JITGATE_EBPF_STUB=1); run `cargo xtask setup` and rebuild"
    )]
    MissingPrograms,

    /// `/proc/self/mounts` could not be read.
    #[error("reading /proc/self/mounts")]
    ReadMounts {
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// No cgroup v2 hierarchy is mounted.
    #[error("no cgroup2 file system in /proc/self/mounts")]
    NoCgroup2,

    /// The pin directory is not on a bpffs and none could be mounted for it.
    #[error("pin directory {path} is not on a bpf file system")]
    NotOnBpffs {
        /// The configured pin directory.
        path: PathBuf,
    },

    /// Mounting bpffs failed.
    #[error("mounting bpffs at {path}")]
    MountBpffs {
        /// Mount point.
        path: PathBuf,
        /// The `mount(2)` error.
        #[source]
        source: io::Error,
    },

    /// A file or directory operation on a pin, the pin directory or the cgroup failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("creating", "opening cgroup", "removing pin", ...).
        action: &'static str,
        /// The path operated on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Parsing or loading the eBPF object failed (maps are created here).
    #[error("loading the eBPF object")]
    Load {
        /// aya's error.
        #[source]
        source: EbpfError,
    },

    /// The object lacks a program the agent needs (agent and object out of step).
    #[error("eBPF program {name} missing from the object")]
    MissingProgram {
        /// Program name (see `jitgate_common::PROG_*`).
        name: &'static str,
    },

    /// Loading (verifying) or attaching a program failed; for verifier rejections the source
    /// carries the verifier log.
    #[error("{action} eBPF program {name}")]
    Program {
        /// "loading", "attaching", "taking link of".
        action: &'static str,
        /// Program name.
        name: &'static str,
        /// aya's error.
        #[source]
        source: ProgramError,
    },

    /// Turning a program's attachment into a pinnable link failed.
    #[error("link of eBPF program {name}")]
    Link {
        /// Program name.
        name: &'static str,
        /// aya's error.
        #[source]
        source: LinkError,
    },

    /// The object lacks a map the agent needs.
    #[error("eBPF map {name} missing from the object")]
    MissingMap {
        /// Map name (see `jitgate_common::MAP_*`).
        name: &'static str,
    },

    /// A map operation (type check, lookup, update) failed.
    #[error("{action} eBPF map {name}")]
    Map {
        /// "opening", "reading", "writing".
        action: &'static str,
        /// Map name.
        name: &'static str,
        /// aya's error.
        #[source]
        source: MapError,
    },

    /// Pinning a map or link on bpffs failed.
    #[error("pinning {path}")]
    Pin {
        /// The pin path.
        path: PathBuf,
        /// aya's error.
        #[source]
        source: PinError,
    },

    /// A kernel address record has an address family other than `AF_INET` / `AF_INET6`.
    #[error("address family {family} is neither AF_INET nor AF_INET6")]
    AddressFamily {
        /// The family found.
        family: u32,
    },
}
