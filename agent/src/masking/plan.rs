//! A masking plan for one result shape: built from a RowDescription (and, in the extended
//! protocol, the Bind's result format codes) and applied to each DataRow.

use bytes::{Bytes, BytesMut};

use super::{MaskCatalog, MaskStrategy};
use crate::pgwire::WireError;
use crate::pgwire::backend::{FieldDescription, parse_data_row};
use crate::pgwire::write;

/// One masked column of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MaskedColumn {
    index: usize,
    strategy: MaskStrategy,
    type_oid: u32,
}

/// Which columns of a result are masked, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskPlan {
    columns: Vec<MaskedColumn>,
}

impl MaskPlan {
    /// The plan for `fields` under `catalog`.
    pub fn new(catalog: &MaskCatalog, fields: &[FieldDescription]) -> Self {
        let columns = fields
            .iter()
            .enumerate()
            .filter_map(|(index, f)| {
                let strategy = match catalog.get(f.table_oid, f.column) {
                    Some(s) => s.clone(),
                    // A whole row of a protected table: no safe partial value exists.
                    None if catalog.is_protected_rowtype(f.type_oid) => MaskStrategy::Null,
                    None => return None,
                };
                Some(MaskedColumn {
                    index,
                    strategy,
                    type_oid: f.type_oid,
                })
            })
            .collect();
        Self { columns }
    }

    /// Whether no column is masked.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Applies the plan to a DataRow body. Returns the rebuilt message (tag and length included)
    /// and the number of values replaced, or `None` when nothing needed replacing.
    pub fn apply(&self, body: &Bytes) -> Result<Option<(BytesMut, u64)>, WireError> {
        if self.columns.is_empty() {
            return Ok(None);
        }
        let values = parse_data_row(body)?;
        let mut replaced: Vec<(usize, Option<Vec<u8>>)> = Vec::with_capacity(self.columns.len());
        for col in &self.columns {
            if let Some(Some(value)) = values.get(col.index) {
                replaced.push((col.index, col.strategy.apply(value, col.type_oid)));
            }
        }
        if replaced.is_empty() {
            return Ok(None);
        }
        let count = replaced.len() as u64;
        let mut out_values: Vec<Option<&[u8]>> = values;
        for (index, new) in &replaced {
            out_values[*index] = new.as_deref();
        }
        let mut out = BytesMut::with_capacity(body.len() + 5);
        write::data_row(&mut out, &out_values);
        Ok(Some((out, count)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, table_oid: u32, column: i16, type_oid: u32) -> FieldDescription {
        FieldDescription {
            name: name.into(),
            table_oid,
            column,
            type_oid,
            format: 0,
        }
    }

    #[test]
    fn aliased_column_is_masked_by_oid_and_attnum() {
        let mut catalog = MaskCatalog::default();
        catalog.insert(100, 3, MaskStrategy::Redact { text: "***".into() });
        let plan = MaskPlan::new(&catalog, &[field("id", 100, 1, 23), field("e", 100, 3, 25)]);
        let mut row = BytesMut::new();
        write::data_row(
            &mut row,
            &[Some(b"1".as_slice()), Some(b"ana@example.com".as_slice())],
        );
        let body = Bytes::copy_from_slice(&row[5..]);
        let (out, n) = plan.apply(&body).expect("valid").expect("masked");
        assert_eq!(n, 1);
        let out_body = Bytes::copy_from_slice(&out[5..]);
        let values = parse_data_row(&out_body).expect("valid");
        assert_eq!(values, vec![Some(&b"1"[..]), Some(&b"***"[..])]);
    }

    #[test]
    fn nulls_stay_null_and_unprotected_rows_pass() {
        let mut catalog = MaskCatalog::default();
        catalog.insert(100, 3, MaskStrategy::Null);
        let plan = MaskPlan::new(&catalog, &[field("e", 100, 3, 25)]);
        let mut row = BytesMut::new();
        write::data_row(&mut row, &[None]);
        assert!(
            plan.apply(&Bytes::copy_from_slice(&row[5..]))
                .expect("valid")
                .is_none()
        );
        let none = MaskPlan::new(&catalog, &[field("e", 101, 3, 25)]);
        assert!(none.is_empty());
    }
}
