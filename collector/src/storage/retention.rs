//! Retention: deleting what is older than the configured age, in bounded batches so the writer
//! connection (and with it ingest) is never held for long.
//!
//! Events go by their own time; a session row goes once it started before the cutoff and none
//! of its events remain; an approval goes once it was requested before the cutoff, is no
//! longer pending and its grant (if any) has ended. Each batch is one transaction.

/// How many rows [`super::Store::sweep`] deleted, per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Event rows.
    pub events: usize,
    /// Session rows.
    pub sessions: usize,
    /// Approval rows.
    pub approvals: usize,
}
