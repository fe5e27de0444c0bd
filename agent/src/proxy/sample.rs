//! The first rows of a statement's result as the client received them (`Statement.sample`,
//! `[audit] sample_rows`): read back from the bytes just queued for the client, so after
//! masking. Memory is bounded: at most the configured number of rows, each value cut at
//! [`crate::render::VALUE_BYTES`]; once full, a row costs one comparison.

use jitgate_proto::audit::v1 as pb;

use crate::pgwire::backend::FieldDescription;
use crate::pgwire::read::Reader;

/// A result sample being collected.
#[derive(Debug, Clone, Default)]
pub struct Sampler {
    limit: usize,
    columns: Vec<String>,
    binary: Vec<bool>,
    described: bool,
    rows: Vec<pb::SampleRow>,
    truncated: bool,
}

impl Sampler {
    /// A sampler keeping at most `limit` rows (0: none).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }

    /// Takes the column names and formats of the result's first RowDescription (a later one,
    /// of a further statement of the same Query, is ignored).
    pub fn describe(&mut self, fields: &[FieldDescription]) {
        if self.described || self.limit == 0 {
            return;
        }
        self.described = true;
        self.columns = fields.iter().map(|f| f.name.clone()).collect();
        self.binary = fields.iter().map(|f| f.format == 1).collect();
    }

    /// Whether the next row would be kept.
    pub fn wants_row(&self) -> bool {
        self.rows.len() < self.limit
    }

    /// Notes a DataRow the client was sent: `message` is the whole message as queued for the
    /// client (tag, length, body). Kept while there is room, else only counted as truncation.
    pub fn row(&mut self, message: &[u8]) {
        if !self.wants_row() {
            if self.limit > 0 {
                self.truncated = true;
            }
            return;
        }
        let Some(body) = message.get(5..) else {
            return;
        };
        let mut r = Reader::new(body, "DataRow");
        let Ok(n) = r.u16() else {
            return;
        };
        let mut values = Vec::with_capacity(usize::from(n));
        for i in 0..usize::from(n) {
            let Ok(len) = r.i32() else {
                return;
            };
            let value = match usize::try_from(len) {
                Err(_) => pb::SampleValue {
                    null: true,
                    text: String::new(),
                },
                Ok(len) => match r.bytes(len) {
                    Ok(raw) => pb::SampleValue {
                        null: false,
                        text: crate::render::value(
                            raw,
                            self.binary.get(i).copied().unwrap_or(false),
                        ),
                    },
                    Err(_) => return,
                },
            };
            values.push(value);
        }
        self.rows.push(pb::SampleRow { values });
    }

    /// The sample for the audit event; `None` when nothing was sampled or sampling is off.
    pub fn finish(&self) -> Option<pb::ResultSample> {
        if self.limit == 0 || (self.rows.is_empty() && !self.described) {
            return None;
        }
        Some(pb::ResultSample {
            columns: self.columns.clone(),
            rows: self.rows.clone(),
            truncated: self.truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_row(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        crate::pgwire::write::data_row(&mut out, values);
        out.to_vec()
    }

    fn field(name: &str, format: i16) -> FieldDescription {
        FieldDescription {
            name: name.into(),
            table_oid: 0,
            column: 0,
            type_oid: 25,
            format,
        }
    }

    #[test]
    fn keeps_at_most_the_limit_and_marks_truncation() {
        let mut s = Sampler::new(2);
        s.describe(&[field("a", 0), field("b", 1)]);
        s.describe(&[field("ignored", 0)]);
        let long = vec![b'x'; 1000];
        s.row(&data_row(&[Some(b"one"), Some(&[1, 2])]));
        s.row(&data_row(&[None, Some(&long)]));
        assert!(!s.wants_row());
        s.row(&data_row(&[Some(b"three"), None]));
        let sample = s.finish().expect("sample");
        assert_eq!(sample.columns, vec!["a", "b"]);
        assert_eq!(sample.rows.len(), 2);
        assert_eq!(sample.rows[0].values[0].text, "one");
        assert_eq!(sample.rows[0].values[1].text, "0102");
        assert!(sample.rows[1].values[0].null);
        assert_eq!(
            sample.rows[1].values[1].text.len(),
            2 * crate::render::VALUE_BYTES
        );
        assert!(sample.truncated);
    }

    #[test]
    fn off_means_nothing() {
        let mut s = Sampler::new(0);
        s.describe(&[field("a", 0)]);
        s.row(&data_row(&[Some(b"v")]));
        assert!(s.finish().is_none());
        let mut s = Sampler::new(3);
        s.row(&data_row(&[Some(b"v")]));
        let sample = s.finish().expect("sample");
        assert!(!sample.truncated && sample.columns.is_empty());
    }
}
