//! jitgate-agent: the runner-host daemon. Kernel redirect ([`bpf`]), workload identity
//! ([`identity`]), PostgreSQL interception ([`pgwire`], [`proxy`]), statement policy ([`policy`]),
//! result masking ([`masking`]), upstream credentials ([`credentials`]), audit delivery
//! ([`audit`]) and the collector's approvals ([`approval`]).

pub mod approval;
pub mod audit;
pub mod bpf;
pub mod collector_tls;
pub mod config;
pub mod credentials;
pub mod identity;
pub mod lifecycle;
pub mod masking;
pub mod pgwire;
pub mod policy;
pub mod proxy;
pub mod render;
pub mod run;
pub mod tls;
