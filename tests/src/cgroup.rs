//! cgroup v2 guards (owned by the kernel-side work).
