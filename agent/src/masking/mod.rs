//! Inline masking of protected columns in DataRow messages.
//!
//! Protected columns are configured as `schema.table.column` and resolved through the server's
//! catalog to (table OID, attribute number) ([`catalog`]); a RowDescription's fields carry the
//! same pair for plain table columns under any alias, so a [`plan::MaskPlan`] built from each
//! RowDescription says which DataRow values to replace ([`strategy`]).

pub mod card;
pub mod catalog;
pub mod children;
pub mod copy;
pub mod detect;
pub mod flow;
pub mod functions;
pub mod key;
pub mod plan;
pub mod side;
pub mod strategy;
pub mod views;

pub use catalog::MaskCatalog;
pub use plan::MaskPlan;
pub use strategy::MaskStrategy;
