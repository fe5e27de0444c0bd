//! The session's side of lineage-aware masking ([`crate::masking::flow`]): a statement the
//! policy allows is refused, or held for approval, when what it does with protected values has
//! no safe mask; each result's RowDescription gets the statement's lineage masks; and the masks
//! of cursors (`DECLARE`) and SQL-level prepared statements (`PREPARE`) are kept for the rows
//! `FETCH` and `EXECUTE` return later.

use std::collections::HashMap;

use super::Session;
use crate::masking::MaskStrategy;
use crate::masking::copy::CopyMasker;
use crate::masking::flow::{self, Overlay, Refusal};
use crate::policy::catalogue::DYNAMIC_SQL;
use crate::policy::decide::DEFAULT_GRANT_TTL;
use crate::policy::lineage::Lineage;
use crate::policy::{Analysis, ApprovalMode, ApprovalNeeded, Decision, Denial};
use crate::proxy::pending::Pending;

/// Catalog views and tables that show sampled column values or other sessions' SQL text.
const STATISTICS_VIEWS: &[&str] = &[
    "pg_stats",
    "pg_stats_ext",
    "pg_stats_ext_exprs",
    "pg_statistic",
    "pg_statistic_ext_data",
    "pg_stat_statements",
    "pg_stat_activity",
];

/// Most cursors (and, apart, prepared statements) remembered; past it the map starts again, and
/// rows of a forgotten name get every column without a table OID nulled (fails closed).
const MAX_NAMED: usize = 1024;

/// Lineage masks by cursor and by SQL-level prepared statement name.
#[derive(Debug, Default)]
pub(super) struct NamedOverlays {
    cursors: HashMap<String, Overlay>,
    prepared: HashMap<String, Overlay>,
}

/// Records `overlay` for `name`. A name already known with other masks may still be the old
/// definition (the server refuses a second `PREPARE` or `DECLARE` of a name in use), so its
/// rows get every column without a table OID nulled.
fn remember(map: &mut HashMap<String, Overlay>, name: &str, overlay: Overlay) {
    if map.len() >= MAX_NAMED && !map.contains_key(name) {
        map.clear();
    }
    let overlay = match map.get(name) {
        Some(known) if *known != overlay => unknown(),
        _ => overlay,
    };
    map.insert(name.to_owned(), overlay);
}

/// Forgets `name` (`None`: every name) after `CLOSE` or `DEALLOCATE`.
fn forget(map: &mut HashMap<String, Overlay>, name: Option<&String>) {
    match name {
        Some(name) => {
            map.remove(name);
        }
        None => map.clear(),
    }
}

/// Every column without a table OID nulled: for rows whose lineage is not known.
fn unknown() -> Overlay {
    Overlay {
        placed: Vec::new(),
        unplaced: Some(MaskStrategy::Null),
    }
}

impl NamedOverlays {
    fn note(&mut self, lineage: &Lineage, overlay: &Overlay) {
        if let Some(name) = &lineage.closes {
            forget(&mut self.cursors, name.as_ref());
        }
        if let Some(name) = &lineage.deallocates {
            forget(&mut self.prepared, name.as_ref());
        }
        if let Some(name) = &lineage.declares {
            remember(&mut self.cursors, name, overlay.clone());
        }
        if let Some(name) = &lineage.prepares {
            remember(&mut self.prepared, name, overlay.clone());
        }
    }

    fn of(&self, catalog: &crate::masking::MaskCatalog, lineage: &Lineage) -> Overlay {
        if let Some(name) = &lineage.fetches {
            return self.cursors.get(name).cloned().unwrap_or_else(unknown);
        }
        if let Some(name) = &lineage.executes {
            return self.prepared.get(name).cloned().unwrap_or_else(unknown);
        }
        flow::overlay(catalog, lineage)
    }
}

fn deny(rule: &str, reason: String) -> Decision {
    Decision::Deny(Denial {
        rule: rule.to_owned(),
        kind: None,
        reason,
        policies: Vec::new(),
    })
}

impl Session<'_> {
    /// `decision` (the policy's), unless the statement is allowed (or held for approval) but
    /// does with a protected value what no mask makes safe: then a denial (rule `masking-lineage`, or
    /// `masking-dynamic-sql` for functions running SQL text the agent cannot see), or an
    /// approval for predicates whose rule asks for one (policies `mask:schema.table.column`).
    pub(super) fn with_masking(&mut self, analysis: &Analysis, decision: Decision) -> Decision {
        // A statement the policy holds for approval is checked too: once approved it runs.
        if matches!(decision, Decision::Deny(_)) || !self.catalog.has_rules() {
            return decision;
        }
        if let Some(view) = analysis.tables.iter().find(|t| {
            STATISTICS_VIEWS.contains(
                &t.rsplit('.')
                    .next()
                    .unwrap_or(t)
                    .to_ascii_lowercase()
                    .as_str(),
            )
        }) {
            return deny(
                "masking-catalog",
                format!(
                    "jitgate: {view} shows column values (most common values, histogram bounds) \
                     and is not readable on a database with masked columns"
                ),
            );
        }
        if analysis.dangerous.contains(DYNAMIC_SQL) {
            return deny(
                "masking-dynamic-sql",
                "jitgate: functions that run SQL given as text (query_to_xml, table_to_xml, …) \
                 are not allowed on a database with masked columns: what they read cannot be \
                 seen, so it cannot be masked"
                    .to_owned(),
            );
        }
        self.note_protected(analysis);
        let mut needs: Vec<(String, Vec<String>)> = Vec::new();
        for lineage in &analysis.lineage {
            match flow::check(&self.catalog, lineage) {
                Ok(overlay) => self.named_overlays.note(lineage, &overlay),
                Err(Refusal::Deny(reason)) => return deny("masking-lineage", reason),
                Err(Refusal::Approval {
                    reason,
                    columns,
                    overlay,
                }) => {
                    self.named_overlays.note(lineage, &overlay);
                    needs.push((reason, columns));
                }
            }
        }
        if needs.is_empty() || matches!(decision, Decision::Approval(_)) {
            return decision;
        }
        let reason = needs
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        let mut columns: Vec<String> = needs.into_iter().flat_map(|(_, c)| c).collect();
        columns.sort();
        columns.dedup();
        Decision::Approval(ApprovalNeeded {
            policies: columns.iter().map(|c| format!("mask:{c}")).collect(),
            reason,
            mode: ApprovalMode::Hold,
            grant_ttl: DEFAULT_GRANT_TTL,
            auto_approved_by: None,
            actions: vec!["select".to_owned()],
            resources: columns.iter().map(|c| format!("Column::\"{c}\"")).collect(),
        })
    }

    /// Sets [`Session::touched_protected`] when `analysis` may read protected data: a lineage
    /// source with a rule (functions that read protected tables included), a protected table
    /// named anywhere, a DO block or CALL (code the agent cannot see), or a write while some
    /// function reads protected tables (it may be a trigger).
    fn note_protected(&mut self, analysis: &Analysis) {
        if self.touched_protected {
            return;
        }
        use crate::policy::StatementKind as K;
        let reads = analysis
            .lineage
            .iter()
            .flat_map(Lineage::all_sources)
            .any(|s| !self.catalog.rules_of(s).is_empty())
            || !self
                .catalog
                .protected_columns_of(analysis.tables.iter().map(String::as_str))
                .is_empty()
            || analysis.kinds.contains(&K::Do)
            || analysis.kinds.contains(&K::Call)
            || (self.catalog.has_reading_functions()
                && [K::Insert, K::Update, K::Delete, K::Merge, K::CopyFrom]
                    .iter()
                    .any(|k| analysis.kinds.contains(k)));
        self.touched_protected = reads;
    }

    /// Whether error and notice messages must be scrubbed now ([`crate::masking::side`]): the
    /// session may have read protected data.
    pub(super) fn side_channels_open(&self) -> bool {
        self.touched_protected
    }

    /// Whether a notification from backend `pid` may carry protected data: this session's once
    /// it may have read protected data; another session's when some function of the database
    /// reads protected tables (a trigger may `pg_notify` what it read; an application's own
    /// NOTIFY is its own to send).
    pub(super) fn notification_may_carry(&self, pid: u32) -> bool {
        if Some(pid) == self.server_pid {
            self.touched_protected
        } else {
            self.catalog.has_reading_functions()
        }
    }

    /// The masker for the COPY data the server starts sending (CopyOutResponse), if the
    /// statement's lineage masks any of its columns.
    pub(super) fn copy_masker(&self) -> Option<CopyMasker> {
        if !self.catalog.has_rules() {
            return None;
        }
        let lineage = self.current_lineage()?;
        let format = lineage.copy.clone()?;
        let overlay = flow::overlay(&self.catalog, lineage);
        if overlay.unplaced.is_some() {
            return Some(CopyMasker::every(format, MaskStrategy::Null));
        }
        if overlay.is_empty() {
            return None;
        }
        Some(CopyMasker::new(
            format,
            overlay
                .placed
                .into_iter()
                .enumerate()
                .filter_map(|(i, s)| Some((i, s?)))
                .collect(),
        ))
    }

    /// The lineage masks for the result the server describes next: the current statement of a
    /// simple Query, or the Execute an injected Describe was sent for.
    pub(super) fn overlay_for_result(&self) -> Overlay {
        if !self.catalog.has_rules() {
            return Overlay::default();
        }
        match self.current_lineage() {
            Some(lineage) => self.named_overlays.of(&self.catalog, lineage),
            None => unknown(),
        }
    }

    /// The lineage of the statement the server is answering.
    fn current_lineage(&self) -> Option<&Lineage> {
        let (analysis, index) = match self.pending.front() {
            Some(Pending::Query(exec)) => {
                let multi = exec.analysis.as_ref().is_some_and(|a| !a.parts.is_empty());
                (
                    exec.analysis.as_ref(),
                    if multi { exec.parts_done } else { 0 },
                )
            }
            Some(Pending::Describe { injected: true }) => match self.pending.get(1) {
                Some(Pending::Execute(e)) => (e.analysis.as_ref(), 0),
                _ => (None, 0),
            },
            Some(Pending::Execute(e)) => (e.analysis.as_ref(), 0),
            _ => (None, 0),
        };
        analysis.and_then(|a| a.lineage.get(index))
    }
}
