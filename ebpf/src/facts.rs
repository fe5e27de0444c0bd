//! Facts about the current task, read with BPF helpers at connect time.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::bpf_get_current_cgroup_id,
};
use jitgate_common::{COMM_LEN, ProcessFacts};

/// The calling process's `tgid` (what userspace calls its pid).
#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// pid/tgid, uid/gid, cgroup v2 id and comm of the current task. A failed `comm` read leaves it
/// zeroed rather than losing the record.
#[inline(always)]
pub fn current() -> ProcessFacts {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: helper without arguments, available to cgroup sock_addr programs.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    let comm: [u8; COMM_LEN] = bpf_get_current_comm().unwrap_or([0; COMM_LEN]);
    ProcessFacts {
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        cgroup_id,
        comm,
    }
}
