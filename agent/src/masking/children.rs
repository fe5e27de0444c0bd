//! Inheritance children and partitions of protected tables, resolved through the server's
//! catalog when a session starts (`pg_inherits`): reading a partition or child table directly
//! (`SELECT email FROM customers_2024`) names the child's OID in RowDescription, so each child's
//! column of the same name gets the parent column's rule, for [`ROUNDS`] levels.

use std::collections::BTreeSet;

use super::MaskCatalog;

/// Levels of children resolved (partitions of partitions…).
pub const ROUNDS: usize = 4;

/// The query for the children of the tables `oids`, or `None` when there are none. Returns
/// `schema, child, column, child oid, attnum, reltype, position, parent oid` as text, one row per
/// column of each child.
pub fn query(oids: &BTreeSet<u32>) -> Option<String> {
    if oids.is_empty() {
        return None;
    }
    let list: Vec<String> = oids.iter().map(u32::to_string).collect();
    Some(format!(
        "SELECT n.nspname::text, c.relname::text, a.attname::text, c.oid::text, a.attnum::text, \
         c.reltype::text, \
         (SELECT count(*) FROM pg_catalog.pg_attribute b WHERE b.attrelid = c.oid \
         AND b.attnum > 0 AND NOT b.attisdropped AND b.attnum <= a.attnum)::text, \
         i.inhparent::text \
         FROM pg_catalog.pg_inherits i \
         JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 \
         AND NOT a.attisdropped \
         WHERE i.inhparent IN ({})",
        list.join(", ")
    ))
}

/// Adds the protected columns of the children in `rows` (from [`query`]); returns the children
/// that gained one (for the next level).
pub fn add(catalog: &mut MaskCatalog, rows: &[Vec<Option<String>>]) -> BTreeSet<u32> {
    let mut added = BTreeSet::new();
    for row in rows {
        let Some(
            [
                Some(schema),
                Some(child),
                Some(column),
                Some(oid),
                Some(attnum),
                Some(reltype),
                Some(position),
                Some(parent),
            ],
        ) = row.get(..8)
        else {
            continue;
        };
        let (Ok(oid), Ok(attnum), Ok(parent)) = (
            oid.parse::<u32>(),
            attnum.parse::<i16>(),
            parent.parse::<u32>(),
        ) else {
            continue;
        };
        let Some(mut rule) = catalog.rule_of_oid(parent, column) else {
            continue;
        };
        rule.column = format!("{schema}.{child}.{column} (from {})", rule.column);
        rule.position = position.parse().ok();
        catalog.add_column(
            (schema.clone(), child.clone(), column.clone()),
            (oid, attnum, reltype.parse().ok()),
            rule,
        );
        added.insert(oid);
    }
    added
}
