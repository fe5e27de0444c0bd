//! `AuditQuery.Export`: every event of a time window, read from storage one page at a time
//! (keyset paging on time then event id) and sent as one [`EventBatch`] per page, so neither
//! side holds the window in memory: the next page is read only once the client took one of the
//! [`BUFFERED_PAGES`].

use jitgate_proto::audit::v1::EventBatch;
use tokio::sync::mpsc;
use tonic::Status;

use crate::storage::{ExportCursor, Store};

/// Events per page.
pub const PAGE: u32 = 1_000;
/// Pages buffered towards the client.
pub const BUFFERED_PAGES: usize = 2;

/// Streams the window `since <= time < until` (`until` 0 = no bound) to `out`; ends after the
/// last page, on a storage error (sent as `INTERNAL`) or when the client goes away.
pub async fn run(
    store: Store,
    since: i64,
    until: i64,
    out: mpsc::Sender<Result<EventBatch, Status>>,
) {
    let mut cursor = ExportCursor::default();
    loop {
        let page = store.export_page(since, until, cursor.clone(), PAGE).await;
        let events = match page {
            Ok(events) => events,
            Err(err) => {
                let _ = out.send(Err(super::internal(err))).await;
                return;
            }
        };
        let Some(last) = events.last() else {
            return;
        };
        cursor = ExportCursor {
            time_unix_us: last.time_unix_us,
            event_id: last.event_id.clone(),
        };
        let full = events.len() == usize::try_from(PAGE).unwrap_or(usize::MAX);
        if out.send(Ok(EventBatch { events })).await.is_err() || !full {
            return;
        }
    }
}
