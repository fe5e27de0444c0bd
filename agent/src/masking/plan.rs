//! A masking plan for one result shape: built from a RowDescription (and, in the extended
//! protocol, the Bind's result format codes) and applied to each DataRow.

use bytes::{BufMut as _, BytesMut};

use super::flow::Overlay;
use super::{MaskCatalog, MaskStrategy};
use crate::pgwire::WireError;
use crate::pgwire::backend::{DATA_ROW_TAG, FieldDescription};

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
        Self::with(catalog, fields, &Overlay::default())
    }

    /// The plan for `fields` under `catalog`, with the statement's lineage masks for the
    /// columns the RowDescription cannot attribute ([`Overlay`]). An overlay whose width is not
    /// the result's applies to every column without a table OID.
    pub fn with(catalog: &MaskCatalog, fields: &[FieldDescription], overlay: &Overlay) -> Self {
        let unplaced;
        let overlay = if overlay.placed.is_empty() || overlay.placed.len() == fields.len() {
            overlay
        } else {
            unplaced = overlay.unplace();
            &unplaced
        };
        let columns = fields
            .iter()
            .enumerate()
            .filter_map(|(index, f)| {
                let strategy = match catalog.get(f.table_oid, f.column) {
                    Some(s) => s.clone(),
                    None if let Some(s) = overlay.get(index, f.table_oid) => s.clone(),
                    // Unmasked by policy for this session: the detectors too leave it alone.
                    None if catalog.is_unmasked(f.table_oid, f.column) => return None,
                    // A whole row of a protected table: no safe partial value exists.
                    None if catalog.is_protected_rowtype(f.type_oid) => MaskStrategy::Null,
                    None => match catalog.detectors() {
                        Some(detectors) if super::strategy::is_textual(f.type_oid) => {
                            MaskStrategy::Detect {
                                detectors: std::sync::Arc::clone(detectors),
                            }
                        }
                        _ => return None,
                    },
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

    /// Appends the masked DataRow for `body` (a DataRow body, PostgreSQL docs 55.7) to `out`,
    /// tag and length included, in one pass without intermediate allocations. Returns the number
    /// of values replaced (NULLs are left as they are and not counted). On a malformed body
    /// nothing is appended.
    ///
    /// # Errors
    /// [`WireError::Malformed`] when the body is truncated or its lengths do not add up.
    pub fn apply_into(&self, body: &[u8], out: &mut BytesMut) -> Result<u64, WireError> {
        let start = out.len();
        let result = self.write_row(body, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Copies `body` into `out` in as few spans as possible: only each masked, non-NULL value
    /// is written anew (with its new length word); everything between is copied in bulk.
    fn write_row(&self, body: &[u8], out: &mut BytesMut) -> Result<u64, WireError> {
        let malformed = |detail| WireError::Malformed {
            message: "DataRow",
            detail,
        };
        let n = body
            .first_chunk::<2>()
            .map(|b| u16::from_be_bytes(*b))
            .ok_or(malformed("truncated Int16"))?;
        out.reserve(body.len() + 5);
        out.put_u8(DATA_ROW_TAG);
        let length_at = out.len();
        out.put_u32(0);
        let mut masked = self.columns.iter().peekable();
        let mut count = 0;
        let mut at = 2;
        let mut copied = 0;
        for index in 0..usize::from(n) {
            let len = body
                .get(at..)
                .and_then(<[u8]>::first_chunk::<4>)
                .map(|b| i32::from_be_bytes(*b))
                .ok_or(malformed("truncated Int32"))?;
            let value_at = at + 4;
            let value_len = usize::try_from(len).unwrap_or(0);
            let end = value_at + value_len;
            if end > body.len() {
                return Err(malformed("truncated value"));
            }
            at = end;
            let Some(column) = masked.next_if(|c| c.index == index) else {
                continue;
            };
            if len < 0 || column.strategy.leaves(&body[value_at..end]) {
                continue;
            }
            count += 1;
            out.extend_from_slice(&body[copied..value_at - 4]);
            copied = end;
            let length_word = out.len();
            out.put_i32(0);
            let value = &body[value_at..end];
            if column.strategy.write_masked(value, column.type_oid, out) {
                let written = i32::try_from(out.len() - length_word - 4)
                    .map_err(|_| malformed("masked value too long"))?;
                out[length_word..length_word + 4].copy_from_slice(&written.to_be_bytes());
            } else {
                out.truncate(length_word);
                out.put_i32(-1);
            }
        }
        if at != body.len() {
            return Err(malformed("bytes after the last column"));
        }
        out.extend_from_slice(&body[copied..]);
        let len =
            u32::try_from(out.len() - length_at).map_err(|_| malformed("masked row too long"))?;
        out[length_at..length_at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgwire::backend::parse_data_row;
    use crate::pgwire::write;
    use bytes::Bytes;

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
        let mut out = BytesMut::new();
        let n = plan.apply_into(&row[5..], &mut out).expect("valid");
        assert_eq!(n, 1);
        assert_eq!(out[0], DATA_ROW_TAG);
        let out_body = Bytes::copy_from_slice(&out[5..]);
        let values = parse_data_row(&out_body).expect("valid");
        assert_eq!(values, vec![Some(&b"1"[..]), Some(&b"***"[..])]);
        let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]);
        assert_eq!(len as usize, out.len() - 1);
    }

    #[test]
    fn detectors_mask_flagged_values_of_unnamed_textual_columns_only() {
        use crate::masking::detect::{Detector, Detectors};
        let mut catalog = MaskCatalog::default();
        catalog.set_detectors(std::sync::Arc::new(
            Detectors::new(&[Detector::Email]).expect("enabled"),
        ));
        assert!(!catalog.is_empty());
        let plan = MaskPlan::new(
            &catalog,
            &[
                field("id", 0, 0, 23),
                field("a", 0, 0, 25),
                field("b", 0, 0, 1043),
            ],
        );
        let mut row = BytesMut::new();
        write::data_row(
            &mut row,
            &[
                Some(b"1".as_slice()),
                Some(b"Ana Lima".as_slice()),
                Some(b"mail ana@example.com".as_slice()),
            ],
        );
        let mut out = BytesMut::new();
        let n = plan.apply_into(&row[5..], &mut out).expect("valid");
        assert_eq!(n, 1, "only the flagged value counts as masked");
        let out_body = Bytes::copy_from_slice(&out[5..]);
        let values = parse_data_row(&out_body).expect("valid");
        assert_eq!(
            values,
            vec![
                Some(&b"1"[..]),
                Some(&b"Ana Lima"[..]),
                Some(&b"[redacted: email]"[..])
            ]
        );
    }

    #[test]
    fn a_column_unmasked_by_policy_is_not_scanned_by_detectors_either() {
        use crate::masking::detect::{Detector, Detectors};
        let masks = [crate::config::MaskConfig {
            column: "public.customers.email".into(),
            strategy: MaskStrategy::Null,
            expressions: Default::default(),
            predicates: Default::default(),
        }];
        let mut catalog = crate::masking::catalog::customers_catalog(&masks);
        catalog.set_detectors(std::sync::Arc::new(
            Detectors::new(&[Detector::Email]).expect("enabled"),
        ));
        let fields = [field("email", 16390, 3, 25), field("other", 0, 0, 25)];
        assert_eq!(MaskPlan::new(&catalog, &fields).columns.len(), 2);
        catalog.unmask("public", "customers", "email");
        let plan = MaskPlan::new(&catalog, &fields);
        assert_eq!(
            plan.columns.len(),
            1,
            "only the column no rule names is scanned"
        );
        assert_eq!(plan.columns[0].index, 1);
    }

    #[test]
    fn nulls_stay_null_and_unprotected_rows_pass() {
        let mut catalog = MaskCatalog::default();
        catalog.insert(100, 3, MaskStrategy::Null);
        let plan = MaskPlan::new(&catalog, &[field("e", 100, 3, 25)]);
        let mut row = BytesMut::new();
        write::data_row(&mut row, &[None]);
        let mut out = BytesMut::new();
        assert_eq!(plan.apply_into(&row[5..], &mut out).expect("valid"), 0);
        assert_eq!(out, row, "a NULL stays NULL and the row is unchanged");
        let none = MaskPlan::new(&catalog, &[field("e", 101, 3, 25)]);
        assert!(none.is_empty());
    }

    #[test]
    fn truncated_and_overlong_rows_are_rejected_and_leave_nothing() {
        let mut catalog = MaskCatalog::default();
        catalog.insert(100, 1, MaskStrategy::Null);
        let plan = MaskPlan::new(&catalog, &[field("a", 100, 1, 25), field("b", 100, 2, 25)]);
        let mut row = BytesMut::new();
        write::data_row(&mut row, &[Some(b"x".as_slice()), Some(b"yy".as_slice())]);
        let mut out = BytesMut::from(&b"kept"[..]);
        assert!(plan.apply_into(&row[5..row.len() - 1], &mut out).is_err());
        let mut long = row[5..].to_vec();
        long.push(0);
        assert!(plan.apply_into(&long, &mut out).is_err());
        assert_eq!(&out[..], b"kept");
    }

    #[test]
    fn non_textual_masked_column_becomes_null() {
        let mut catalog = MaskCatalog::default();
        catalog.insert(100, 1, MaskStrategy::Redact { text: "x".into() });
        let plan = MaskPlan::new(&catalog, &[field("n", 100, 1, 23), field("t", 100, 2, 25)]);
        let mut row = BytesMut::new();
        write::data_row(&mut row, &[Some(&[0, 0, 0, 7][..]), Some(b"t".as_slice())]);
        let mut out = BytesMut::new();
        assert_eq!(plan.apply_into(&row[5..], &mut out).expect("valid"), 1);
        let body = Bytes::copy_from_slice(&out[5..]);
        assert_eq!(
            parse_data_row(&body).expect("valid"),
            vec![None, Some(&b"t"[..])]
        );
    }
}
