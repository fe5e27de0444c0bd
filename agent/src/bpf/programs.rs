//! Loading the five kernel programs, attaching them to the cgroup as bpf links and pinning the
//! links (see [`super::pins`]).

use std::{fs::File, path::Path};

use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSockAddr, SockOps, links::FdLink},
};
use jitgate_common::{
    PROG_CONNECT4, PROG_CONNECT6, PROG_GETPEERNAME4, PROG_GETPEERNAME6, PROG_SOCK_OPS,
};

use super::{BpfError, pins};

/// The `cgroup/*` sock_addr programs, by name.
const SOCK_ADDR_PROGRAMS: [&str; 4] = [
    PROG_CONNECT4,
    PROG_CONNECT6,
    PROG_GETPEERNAME4,
    PROG_GETPEERNAME6,
];

/// Loads and attaches all programs to `cgroup`, then pins their links under `pin_dir`.
///
/// Every program is attached before anything is pinned: if one fails, the links attached so far
/// are dropped (detached) and the previous instance's pins stay untouched.
///
/// The links are multi-attach (bpf links to a cgroup always are), so a previous instance's
/// programs keep running until its pins are replaced.
pub(super) fn attach_and_pin(
    ebpf: &mut Ebpf,
    cgroup: &File,
    pin_dir: &Path,
) -> Result<(), BpfError> {
    let mut links = Vec::with_capacity(SOCK_ADDR_PROGRAMS.len() + 1);
    for name in SOCK_ADDR_PROGRAMS {
        links.push((name, attach_sock_addr(ebpf, name, cgroup)?));
    }
    links.push((PROG_SOCK_OPS, attach_sock_ops(ebpf, cgroup)?));
    for (name, link) in links {
        pins::pin_link(pin_dir, name, link)?;
    }
    Ok(())
}

/// Types, loads and attaches program `$name` of type `$ty` to `$cgroup`, returning its link as
/// an [`FdLink`]. A macro because aya's program types share no trait for `load`/`attach`.
macro_rules! attach {
    ($ebpf:expr, $ty:ty, $name:expr, $cgroup:expr) => {{
        let name: &'static str = $name;
        let program_error = |action| {
            move |source| BpfError::Program {
                action,
                name,
                source,
            }
        };
        let program: &mut $ty = $ebpf
            .program_mut(name)
            .ok_or(BpfError::MissingProgram { name })?
            .try_into()
            .map_err(program_error("typing"))?;
        program.load().map_err(program_error("loading"))?;
        // With bpf links (kernel >= 5.7) the attach flags must be 0; links are multi-attach.
        let id = program
            .attach($cgroup, CgroupAttachMode::Single)
            .map_err(program_error("attaching"))?;
        let link = program
            .take_link(id)
            .map_err(program_error("taking link of"))?;
        FdLink::try_from(link).map_err(|source| BpfError::Link { name, source })
    }};
}

fn attach_sock_addr(
    ebpf: &mut Ebpf,
    name: &'static str,
    cgroup: &File,
) -> Result<FdLink, BpfError> {
    attach!(ebpf, CgroupSockAddr, name, cgroup)
}

fn attach_sock_ops(ebpf: &mut Ebpf, cgroup: &File) -> Result<FdLink, BpfError> {
    attach!(ebpf, SockOps, PROG_SOCK_OPS, cgroup)
}
