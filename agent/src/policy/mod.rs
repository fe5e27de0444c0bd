//! Statement policy: every statement is parsed with PostgreSQL's own parser (`pg_query`,
//! [`analysis`]) and checked against the deny rules ([`rules`]) that match the workload's
//! identity. Unparseable SQL is never sent to the server.

pub mod analysis;
pub mod cache;
pub mod integrity;
pub mod kind;
pub mod rules;

pub use analysis::Analysis;
pub use cache::Analyzer;
pub use kind::StatementKind;
pub use rules::{Decision, Denial, Policy};
