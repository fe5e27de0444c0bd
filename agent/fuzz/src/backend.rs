//! The `backend` driver: server → client bytes as the session relay reads them
//! (`proxy/session/from_server.rs`), including the masking rewrite of every DataRow.
//!
//! The plan follows the stream: each RowDescription that parses replaces it with a plan that
//! masks some of its columns (every other plain table column, cycling through the strategies,
//! and whole-row values of a "protected" row type), as the proxy builds one from the server's
//! description. Before the first RowDescription a fixed plan over a synthetic description
//! applies, so single DataRow seeds exercise the rewrite too.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use jitgate_agent::config::MaskConfig;
use jitgate_agent::masking::copy::{CopyFormat, CopyMasker};
use jitgate_agent::masking::{MaskCatalog, MaskPlan, MaskStrategy, side};
use jitgate_agent::pgwire::backend::{
    ErrorFields, FieldDescription, ROW_DESCRIPTION_TAG, TransactionStatus, parse_command_complete,
    parse_data_row, parse_parameter_status, parse_row_description,
};
use jitgate_agent::pgwire::codec::TaggedCodec;
use tokio_util::codec::Decoder;

use crate::{MAX_FRAME, round_trip};

/// Textual type OIDs (text, varchar) and a non-textual one (int4) for the synthetic plan.
const TEXT: u32 = 25;
const VARCHAR: u32 = 1043;
const INT4: u32 = 23;
/// Row type treated as a protected table's in every plan.
const PROTECTED_ROWTYPE: u32 = 16_390;

/// Decodes `data` as a server's byte stream; runs every backend parser on every frame and the
/// current masking plan on every body.
pub fn backend(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let start = buf.clone().freeze();
    let mut offset = 0;
    let mut codec = TaggedCodec::new(MAX_FRAME);
    let mut plan = MaskPlan::new(&catalog_for(&synthetic_fields()), &synthetic_fields());
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        round_trip(&frame, &start[offset..]);
        offset += frame.wire_len();
        if let Ok(fields) = parse_row_description(&frame.body) {
            if frame.tag == ROW_DESCRIPTION_TAG {
                plan = MaskPlan::new(&catalog_for(&fields), &fields);
            }
            black_box(fields);
        }
        message_bodies(&frame.body);
        mask(&plan, &frame.body);
        copy(&frame.body);
    }
}

/// Every backend parser on one body, whatever its tag.
fn message_bodies(body: &Bytes) {
    if let Ok(status) = TransactionStatus::parse(body) {
        assert_eq!(Some(&status.byte()), body.first());
    }
    if let Ok(values) = parse_data_row(body) {
        let bytes: usize = values.iter().flatten().map(|v| v.len()).sum();
        assert!(2 + 4 * values.len() + bytes <= body.len());
    }
    for message in ["ErrorResponse", "NoticeResponse"] {
        if let Ok(fields) = ErrorFields::parse(body, message) {
            black_box((fields.sqlstate(), fields.message(), fields.get(b'D')));
        }
    }
    if let Ok((name, value)) = parse_parameter_status(body) {
        assert!(name.len() + value.len() + 2 <= body.len());
    }
    if let Ok(tag) = parse_command_complete(body) {
        assert!(tag.len() < body.len());
    }
}

/// Masks `body` as a row of COPY data in each format (the second column redacted): the result
/// is one well-formed CopyData message; with nothing masked it is the input unchanged; a
/// refused body leaves nothing behind.
fn copy(body: &Bytes) {
    let formats = [
        CopyFormat::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec(),
        },
        CopyFormat::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'\\',
            null: Vec::new(),
            header: false,
        },
        CopyFormat::Binary,
    ];
    for format in formats {
        let strategy = MaskStrategy::Redact { text: "x".into() };
        let mut masker = CopyMasker::new(format, vec![(1, strategy)]);
        let mut out = BytesMut::new();
        let Ok(masked) = masker.apply(body, &mut out) else {
            assert!(out.is_empty(), "refused COPY data left bytes behind");
            continue;
        };
        assert_eq!(out.first(), Some(&b'd'));
        let declared = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
        assert_eq!(declared + 1, out.len(), "CopyData length word");
        if masked == 0 {
            assert_eq!(&out[5..], &body[..], "COPY data with nothing masked changed");
        }
    }
    if let Ok(fields) = ErrorFields::parse(body, "ErrorResponse")
        && let Some(scrubbed) = side::scrub_fields(&fields.fields)
    {
        assert!(scrubbed.len() <= fields.fields.len());
        assert!(scrubbed.iter().all(|(c, _)| ![b'D', b'W', b'q'].contains(c)));
    }
}

/// Applies `plan` to `body`: a rewritten row must be a well-formed DataRow with the same number
/// of values as the input, with no more replacements than the plan has columns; a refused body
/// must leave nothing behind.
fn mask(plan: &MaskPlan, body: &Bytes) {
    let mut out = BytesMut::new();
    let Ok(replaced) = plan.apply_into(body, &mut out) else {
        assert!(out.is_empty(), "a refused row left bytes behind");
        return;
    };
    assert!(
        replaced <= 1 + body.len() as u64,
        "more replacements than values"
    );
    assert_eq!(out.first(), Some(&b'D'));
    let declared = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
    assert_eq!(declared + 1, out.len(), "rewritten DataRow length word");
    let new_body = Bytes::copy_from_slice(&out[5..]);
    let before = parse_data_row(body).map(|v| v.len());
    let after = parse_data_row(&new_body).map(|v| v.len());
    assert_eq!(
        before.ok(),
        after.ok(),
        "masking changed the number of values"
    );
    if replaced == 0 {
        assert_eq!(&out[5..], &body[..], "a row with nothing masked changed");
    }
}

/// The catalog a masked database would have for `fields`: every other column that comes from a
/// table (odd positions) is protected, with a strategy chosen by position; the protected row
/// type is [`PROTECTED_ROWTYPE`].
fn catalog_for(fields: &[FieldDescription]) -> MaskCatalog {
    let masks = [MaskConfig {
        column: "public.t.c".into(),
        strategy: MaskStrategy::Null,
        expressions: Default::default(),
        predicates: Default::default(),
    }];
    let rows = [vec![
        Some("public".to_owned()),
        Some("t".to_owned()),
        Some("c".to_owned()),
        Some("1".to_owned()),
        Some("1".to_owned()),
        Some(PROTECTED_ROWTYPE.to_string()),
    ]];
    let mut catalog = MaskCatalog::from_rows(&masks, &rows);
    let key = std::sync::Arc::new(jitgate_agent::masking::key::MaskKey::from_secret(&[7; 32]));
    for (index, field) in fields.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        let mut strategy = match index % 10 {
            1 => MaskStrategy::Redact { text: "***".into() },
            3 => MaskStrategy::Partial {
                keep_first: 1,
                keep_last: 2,
                keep_domain: true,
            },
            5 => MaskStrategy::FormatPreserving { key: None },
            7 => MaskStrategy::Hash { key: None },
            _ => MaskStrategy::Null,
        };
        strategy.set_key(&key);
        catalog.insert(field.table_oid, field.column, strategy);
    }
    catalog
}

/// A description of the shape the fixed plan masks: text, varchar and int columns of one table
/// and a whole-row value of the protected row type.
fn synthetic_fields() -> Vec<FieldDescription> {
    [
        TEXT,
        VARCHAR,
        INT4,
        TEXT,
        PROTECTED_ROWTYPE,
        VARCHAR,
        TEXT,
        TEXT,
    ]
    .into_iter()
    .enumerate()
    .map(|(index, type_oid)| FieldDescription {
        name: format!("c{index}"),
        table_oid: 16_384,
        column: i16::try_from(index + 1).unwrap_or(i16::MAX),
        type_oid,
        format: 0,
    })
    .collect()
}
