//! jitgate test harness: real PostgreSQL servers, cgroups, OIDC issuers and child processes as
//! RAII guards, shared by the root integration tests (`tests/tests/`) and `cargo xtask demo`.

pub mod agent;
pub mod cgroup;
pub mod claims;
pub mod collector;
pub mod collector_db;
pub mod http;
pub mod issuer;
pub mod pgbouncer;
pub mod postgres;
pub mod process;
pub mod python;
pub mod shop;
pub mod stack;
