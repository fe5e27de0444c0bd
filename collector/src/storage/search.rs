//! What the query API's storage calls share across backends: the export cursor and page
//! bound, and the facts of a session a live follower filters on.

/// Largest page [`super::Store::export_page`] returns.
pub const MAX_EXPORT_PAGE: u32 = 5_000;

/// Where an export page starts: after the event at `time_unix_us` with `event_id` (events are
/// exported ordered by time, then event id). [`ExportCursor::default`] starts at the beginning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportCursor {
    /// Time of the last event already exported, microseconds since the Unix epoch.
    pub time_unix_us: i64,
    /// Its event id.
    pub event_id: String,
}

impl Default for ExportCursor {
    fn default() -> ExportCursor {
        ExportCursor {
            time_unix_us: i64::MIN,
            event_id: String::new(),
        }
    }
}

/// What a live follower matches a session's events on (from the `sessions` row).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionFacts {
    /// Identity strings any of which `--identity` may name: issuer, subject, app id, object id.
    pub identities: [String; 4],
    /// The target the client dialled.
    pub target: String,
}
