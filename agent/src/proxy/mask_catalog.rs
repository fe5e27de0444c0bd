//! The session's masking catalog, built on its own upstream connection before the client's
//! first message: the target's configured columns resolved ([`crate::masking::catalog`]), minus
//! those a policy lets this session `unmask`, plus inheritance children
//! ([`crate::masking::children`]), functions reading protected tables
//! ([`crate::masking::functions`]) and views over protected columns
//! ([`crate::masking::views`]), and the target's content detectors.

use std::collections::BTreeSet;

use super::ProxyError;
use super::upstream::{self, Upstream};
use crate::config::TargetConfig;
use crate::masking::catalog::resolve_query;
use crate::masking::{MaskCatalog, children, functions, views};
use crate::policy::SessionPolicy;

/// A catalog query built from a set of relation OIDs, and what adds its rows to the catalog
/// (returning the OIDs the next round starts from).
type Round = (
    fn(&BTreeSet<u32>) -> Option<String>,
    fn(&mut MaskCatalog, &[Vec<Option<String>>]) -> BTreeSet<u32>,
);

/// Builds the catalog for `target` and `policy`'s identity.
///
/// # Errors
/// [`ProxyError`] when a catalog query fails on the upstream connection.
pub async fn build(
    upstream: &mut Upstream,
    target: &TargetConfig,
    policy: &SessionPolicy,
) -> Result<MaskCatalog, ProxyError> {
    let mut catalog = match resolve_query(&target.masks) {
        Some(sql) => {
            let rows = upstream::simple_query(upstream, &sql).await?;
            MaskCatalog::from_rows(&target.masks, &rows)
        }
        None => MaskCatalog::default(),
    };
    let resolved = catalog.configured_columns();
    for mask in &target.masks {
        let found = resolved
            .iter()
            .any(|(s, t, c)| mask.column == format!("{s}.{t}.{c}"));
        if !found {
            tracing::warn!(
                column = %mask.column,
                "a masked column this database does not have (spelling and case must match \
                 pg_catalog): nothing is protected by that rule here"
            );
        }
    }
    for (schema, table, column) in policy.unmasked(&resolved) {
        tracing::info!(column = %format!("{schema}.{table}.{column}"), "unmasked for this session by policy");
        catalog.unmask(&schema, &table, &column);
    }
    rounds(
        upstream,
        &mut catalog,
        (children::query, children::add),
        children::ROUNDS,
    )
    .await?;
    if catalog.has_rules() {
        let rows = upstream::simple_query(upstream, functions::QUERY).await?;
        functions::add(&mut catalog, &rows);
    }
    rounds(
        upstream,
        &mut catalog,
        (views::dependents_query, views::add),
        views::ROUNDS,
    )
    .await?;
    if let Some(detectors) = &target.compiled_detectors {
        catalog.set_detectors(std::sync::Arc::clone(detectors));
    }
    Ok(catalog)
}

/// Runs `round` up to `limit` times, each from the OIDs the previous one added.
async fn rounds(
    upstream: &mut Upstream,
    catalog: &mut MaskCatalog,
    (query, add): Round,
    limit: usize,
) -> Result<(), ProxyError> {
    let mut oids = catalog.protected_oids();
    for _ in 0..limit {
        let Some(sql) = query(&oids) else {
            break;
        };
        let rows = upstream::simple_query(upstream, &sql).await?;
        oids = add(catalog, &rows);
    }
    Ok(())
}
