//! Masking of `COPY … TO STDOUT` data (PostgreSQL docs: COPY "File Formats", and 55.2.6: every
//! CopyData the server sends holds one row; in binary format the file header comes with the
//! first row and the trailer alone).
//!
//! - text: fields split at the delimiter (data delimiters are backslash-escaped), `\N` (or the
//!   `NULL` option) is NULL; a masked value is decoded, masked as text and escaped again.
//! - CSV: fields split at the delimiter outside quotes; the unquoted `NULL` string (empty by
//!   default) is NULL; a masked value is written quoted. The `HEADER` line passes.
//! - binary: a masked value becomes NULL (length -1): the column's type is not on the wire, and
//!   NULL is valid for every type.
//!
//! Only the masked fields are rewritten; everything else is copied byte for byte.

use bytes::{BufMut as _, BytesMut};
use serde_json::Value;

use super::MaskStrategy;
use crate::pgwire::WireError;

/// `COPY … TO` output format and options, as the statement sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// `FORMAT text` (the default).
    Text {
        /// `DELIMITER` (default tab).
        delimiter: u8,
        /// `NULL` (default `\N`).
        null: Vec<u8>,
    },
    /// `FORMAT csv`.
    Csv {
        /// `DELIMITER` (default `,`).
        delimiter: u8,
        /// `QUOTE` (default `"`).
        quote: u8,
        /// `ESCAPE` (default the quote).
        escape: u8,
        /// `NULL` (default empty).
        null: Vec<u8>,
        /// `HEADER`: the first row is column names.
        header: bool,
    },
    /// `FORMAT binary`.
    Binary,
}

fn option_text(arg: &Value) -> Option<String> {
    let arg = arg.get("node").unwrap_or(arg);
    if let Some(s) = arg.get("String").and_then(|s| s.get("sval")) {
        return s.as_str().map(str::to_owned);
    }
    if let Some(b) = arg.get("Boolean").and_then(|b| b.get("boolval")) {
        return Some(b.as_bool().unwrap_or(false).to_string());
    }
    if let Some(i) = arg.get("Integer").and_then(|i| i.get("ival")) {
        return Some(i.as_i64().unwrap_or(0).to_string());
    }
    None
}

/// The `ENCODING` a `COPY` statement's options name, if any, lowercased.
pub fn encoding_option(options: &[Value]) -> Option<String> {
    options.iter().find_map(|o| {
        let d = o.get("node").unwrap_or(o).get("DefElem")?;
        (d.get("defname")?.as_str()? == "encoding")
            .then(|| option_text(d.get("arg")?))
            .flatten()
            .map(|e| e.to_ascii_lowercase())
    })
}

impl CopyFormat {
    /// The format of a CopyStmt's `options` (DefElem nodes of its JSON parse tree).
    pub fn from_options(options: &[Value]) -> Self {
        let mut format = String::from("text");
        let (mut delimiter, mut quote, mut escape, mut null, mut header) =
            (None, b'"', None, None, false);
        for option in options {
            let Some(d) = option.get("node").unwrap_or(option).get("DefElem") else {
                continue;
            };
            let name = d.get("defname").and_then(Value::as_str).unwrap_or("");
            // An option given without a value (`HEADER`, `CSV`) means true.
            let value = d
                .get("arg")
                .filter(|a| !a.is_null())
                .and_then(option_text)
                .unwrap_or_else(|| "true".to_owned());
            let first = value.bytes().next();
            match name {
                "format" => format = value.to_ascii_lowercase(),
                "delimiter" => delimiter = first,
                "quote" => quote = first.unwrap_or(b'"'),
                "escape" => escape = first,
                "null" => null = Some(value.into_bytes()),
                "header" => {
                    header = !matches!(value.to_ascii_lowercase().as_str(), "false" | "off" | "0");
                }
                _ => {}
            }
        }
        match format.as_str() {
            "csv" => Self::Csv {
                delimiter: delimiter.unwrap_or(b','),
                quote,
                escape: escape.unwrap_or(quote),
                null: null.unwrap_or_default(),
                header,
            },
            "binary" => Self::Binary,
            _ => Self::Text {
                delimiter: delimiter.unwrap_or(b'\t'),
                null: null.unwrap_or_else(|| b"\\N".to_vec()),
            },
        }
    }
}

/// The binary COPY file signature (11 bytes) that opens the header.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Masks the CopyData of one `COPY … TO`.
#[derive(Debug)]
pub struct CopyMasker {
    format: CopyFormat,
    /// Masked columns by position, in order.
    columns: Vec<(usize, MaskStrategy)>,
    /// Whether the CSV header line or the binary file header is still to come.
    header_pending: bool,
    /// A strategy for every column (rows whose lineage could not be told).
    every: Option<MaskStrategy>,
}

impl CopyMasker {
    /// A masker for `format` masking `columns` (position, strategy).
    pub fn new(format: CopyFormat, mut columns: Vec<(usize, MaskStrategy)>) -> Self {
        columns.sort_by_key(|(i, _)| *i);
        let header_pending = matches!(
            format,
            CopyFormat::Csv { header: true, .. } | CopyFormat::Binary
        );
        Self {
            format,
            columns,
            header_pending,
            every: None,
        }
    }

    /// A masker masking every column with `strategy`.
    pub fn every(format: CopyFormat, strategy: MaskStrategy) -> Self {
        let mut masker = Self::new(format, Vec::new());
        masker.every = Some(strategy);
        masker
    }

    fn strategy(&self, index: usize) -> Option<&MaskStrategy> {
        self.columns
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, s)| s)
            .or(self.every.as_ref())
    }

    /// Appends the CopyData message (tag and length included) for `data` with the masked
    /// columns replaced. Returns the number of values masked.
    ///
    /// # Errors
    /// [`WireError::Malformed`] for binary data whose lengths do not add up; nothing is
    /// appended then.
    pub fn apply(&mut self, data: &[u8], out: &mut BytesMut) -> Result<u64, WireError> {
        let start = out.len();
        out.put_u8(b'd');
        out.put_u32(0);
        let result = match self.format.clone() {
            CopyFormat::Text { delimiter, null } => Ok(self.text_row(data, delimiter, &null, out)),
            CopyFormat::Csv {
                delimiter,
                quote,
                escape,
                null,
                header,
            } => {
                if header && self.header_pending {
                    self.header_pending = false;
                    out.extend_from_slice(data);
                    Ok(0)
                } else {
                    Ok(self.csv_row(data, delimiter, quote, escape, &null, out))
                }
            }
            CopyFormat::Binary => self.binary(data, out),
        };
        match result {
            Ok(n) => {
                let len = u32::try_from(out.len() - start - 1).unwrap_or(u32::MAX);
                out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
                Ok(n)
            }
            Err(e) => {
                out.truncate(start);
                Err(e)
            }
        }
    }

    fn text_row(&self, data: &[u8], delimiter: u8, null: &[u8], out: &mut BytesMut) -> u64 {
        let mut count = 0;
        for (index, field) in split_text(data, delimiter).into_iter().enumerate() {
            if index > 0 {
                out.put_u8(delimiter);
            }
            let raw = &data[field.clone()];
            let Some(strategy) = self.strategy(index).filter(|_| raw != null) else {
                out.extend_from_slice(raw);
                continue;
            };
            let value = unescape_text(raw);
            let mut masked = BytesMut::new();
            count += 1;
            if strategy.write_masked(&value, TEXT_OID, &mut masked) {
                escape_text(&masked, delimiter, out);
            } else {
                out.extend_from_slice(null);
            }
        }
        if data.ends_with(b"\n") {
            out.put_u8(b'\n');
        }
        count
    }

    fn csv_row(
        &self,
        data: &[u8],
        delimiter: u8,
        quote: u8,
        escape: u8,
        null: &[u8],
        out: &mut BytesMut,
    ) -> u64 {
        let line = data.strip_suffix(b"\n").unwrap_or(data);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut count = 0;
        for (index, field) in split_csv(line, delimiter, quote, escape)
            .into_iter()
            .enumerate()
        {
            if index > 0 {
                out.put_u8(delimiter);
            }
            let raw = &line[field.clone()];
            let Some(strategy) = self
                .strategy(index)
                .filter(|_| raw != null && !raw.is_empty())
            else {
                out.extend_from_slice(raw);
                continue;
            };
            let value = unquote_csv(raw, quote, escape);
            if value.is_empty() {
                // An empty value reveals nothing.
                out.extend_from_slice(raw);
                continue;
            }
            let mut masked = BytesMut::new();
            count += 1;
            if strategy.write_masked(&value, TEXT_OID, &mut masked) {
                out.put_u8(quote);
                for &b in masked.iter() {
                    if b == quote || b == escape {
                        out.put_u8(escape);
                    }
                    out.put_u8(b);
                }
                out.put_u8(quote);
            } else {
                out.extend_from_slice(null);
            }
        }
        out.extend_from_slice(&data[line.len()..]);
        count
    }

    fn binary(&mut self, data: &[u8], out: &mut BytesMut) -> Result<u64, WireError> {
        let malformed = |detail| WireError::Malformed {
            message: "CopyData",
            detail,
        };
        let mut at = 0;
        if self.header_pending && data.starts_with(SIGNATURE) {
            self.header_pending = false;
            let ext = data
                .get(15..19)
                .and_then(|b| b.first_chunk::<4>())
                .map(|b| u32::from_be_bytes(*b) as usize)
                .ok_or(malformed("truncated binary header"))?;
            at = 19 + ext;
            out.extend_from_slice(data.get(..at).ok_or(malformed("truncated binary header"))?);
        }
        let mut count = 0;
        while at < data.len() {
            let n = data
                .get(at..at + 2)
                .and_then(|b| b.first_chunk::<2>())
                .map(|b| i16::from_be_bytes(*b))
                .ok_or(malformed("truncated field count"))?;
            out.extend_from_slice(&data[at..at + 2]);
            at += 2;
            if n < 0 {
                // The trailer.
                continue;
            }
            for index in 0..usize::try_from(n).unwrap_or(0) {
                let len = data
                    .get(at..at + 4)
                    .and_then(|b| b.first_chunk::<4>())
                    .map(|b| i32::from_be_bytes(*b))
                    .ok_or(malformed("truncated field length"))?;
                let end = at + 4 + usize::try_from(len).unwrap_or(0);
                if end > data.len() {
                    return Err(malformed("truncated field"));
                }
                if len >= 0 && self.strategy(index).is_some() {
                    out.put_i32(-1);
                    count += 1;
                } else {
                    out.extend_from_slice(&data[at..end]);
                }
                at = end;
            }
        }
        Ok(count)
    }
}

/// `text`'s type OID: masked COPY values are written as text.
const TEXT_OID: u32 = 25;

/// Byte ranges of a text-format row's fields (without the line end).
fn split_text(data: &[u8], delimiter: u8) -> Vec<std::ops::Range<usize>> {
    let line = data.strip_suffix(b"\n").unwrap_or(data);
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b if b == delimiter => {
                fields.push(start..i);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    fields.push(start..line.len().max(start));
    fields
}

/// A text-format field's value: backslash sequences decoded.
fn unescape_text(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' || i + 1 == raw.len() {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(u8::try_from(v & 0xff).unwrap_or(0));
            }
            other => out.push(other),
        }
    }
    out
}

/// Writes `value` as a text-format field.
fn escape_text(value: &[u8], delimiter: u8, out: &mut BytesMut) {
    for &b in value {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            11 => out.extend_from_slice(b"\\v"),
            b if b == delimiter => {
                out.put_u8(b'\\');
                out.put_u8(b);
            }
            b => out.put_u8(b),
        }
    }
}

/// Byte ranges of a CSV line's fields (quotes included).
fn split_csv(line: &[u8], delimiter: u8, quote: u8, escape: u8) -> Vec<std::ops::Range<usize>> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if quoted {
            if b == escape && escape != quote && line.get(i + 1).is_some() {
                i += 2;
                continue;
            }
            if b == quote {
                if escape == quote && line.get(i + 1) == Some(&quote) {
                    i += 2;
                    continue;
                }
                quoted = false;
            }
        } else if b == quote {
            quoted = true;
        } else if b == delimiter {
            fields.push(start..i);
            start = i + 1;
        }
        i += 1;
    }
    fields.push(start..line.len().max(start));
    fields
}

/// A CSV field's value: quotes removed, escaped characters kept.
fn unquote_csv(raw: &[u8], quote: u8, escape: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut quoted = false;
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let next = raw.get(i + 1).copied();
        if quoted
            && b == escape
            && let Some(n) = next
            && (n == quote || (escape != quote && n == escape))
        {
            out.push(n);
            i += 2;
            continue;
        }
        if b == quote {
            quoted = !quoted;
        } else {
            out.push(b);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
#[path = "copy_tests.rs"]
mod tests;
