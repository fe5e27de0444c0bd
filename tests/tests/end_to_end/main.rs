//! End-to-end tests of the walking skeleton, as root: real kernel programs, a real PostgreSQL 15,
//! real `psql`, `pgbench` and a Rust driver run inside the runner cgroup, real JWTs, the real
//! collector. Each test asserts what the client received, what PostgreSQL executed, and what the
//! collector stored. One test binary, run serially (`--test-threads=1`) by `cargo xtask test`.

mod approvals;
mod audit;
mod audit_detail;
mod audit_postgres;
mod authz_regressions;
mod collector_tls;
mod connection;
mod credentials;
mod discovery;
mod identity;
mod masking;
mod masking_corpus;
mod masking_lineage;
mod pid_reuse;
mod policy;
mod policy_corpus;
mod sources;
mod spool;
mod support;
mod tls;
