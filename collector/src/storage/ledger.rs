//! The chain ledger: for each session, the highest `seq` of an agent-chained event the
//! collector received and that event's hash, kept in the session row (`last_seq`, `last_hash`)
//! apart from the events. The hash chain shows deletions between stored events but not events
//! cut from the end; `jitgate verify` compares the stored chain with the ledger to see those.

use jitgate_proto::audit::v1::Event;
use jitgate_proto::chain;

use super::StoreError;

/// The ledger columns an event contributes: its `seq` and hash when it is chained (written by
/// an agent), `(-1, None)` for collector-written events, which never move the ledger.
///
/// # Errors
/// [`StoreError::OutOfRange`] for a `seq` above `i64::MAX`.
pub fn ledger_entry(event: &Event) -> Result<(i64, Option<Vec<u8>>), StoreError> {
    if !chain::is_chained(event) {
        return Ok((-1, None));
    }
    let seq = i64::try_from(event.seq).map_err(|_| StoreError::OutOfRange {
        field: "seq",
        value: event.seq,
    })?;
    Ok((seq, Some(event.hash.clone())))
}
