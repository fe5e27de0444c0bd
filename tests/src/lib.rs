//! jitgate test harness: real PostgreSQL servers, cgroups, OIDC issuers and child processes as
//! RAII guards, shared by the root integration tests (`tests/tests/`) and `cargo xtask demo`.

pub mod cgroup;
