//! Statement policy: every statement is parsed with PostgreSQL's own parser (`pg_query`,
//! [`analysis`], [`access`]) and every table, function and database it touches is authorized
//! with Cedar ([`engine`], [`entities`], [`decide`]) against the workload's identity.
//! Unparseable SQL is never sent to the server; dangerous features are named by
//! [`catalogue`].

pub mod access;
pub mod analysis;
pub mod cache;
pub mod catalogue;
pub mod decide;
pub mod engine;
pub mod entities;
pub mod explain;
pub mod integrity;
pub mod kind;
pub mod lineage;
pub mod params;
pub mod slot;
#[cfg(test)]
mod tests;

pub use analysis::Analysis;
pub use cache::Analyzer;
pub use decide::{ApprovalNeeded, Decision, Denial, SessionFacts, SessionPolicy};
pub use engine::{ApprovalMode, PolicyEngine, PolicyError};
pub use kind::StatementKind;
pub use slot::PolicySlot;
