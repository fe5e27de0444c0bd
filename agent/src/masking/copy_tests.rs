//! COPY data masking in text, CSV and binary format, on rows as PostgreSQL writes them.

use super::*;

fn redact() -> MaskStrategy {
    MaskStrategy::Redact { text: "***".into() }
}

fn options(sql: &str) -> CopyFormat {
    let parsed = pg_query::parse(sql).expect("parses");
    let stmt = parsed.protobuf.stmts[0].stmt.as_ref().expect("statement");
    let tree = serde_json::to_value(stmt).expect("json");
    let copy = tree
        .get("node")
        .unwrap_or(&tree)
        .get("CopyStmt")
        .expect("copy");
    CopyFormat::from_options(copy["options"].as_array().map_or(&[], Vec::as_slice))
}

fn run(format: CopyFormat, columns: Vec<(usize, MaskStrategy)>, rows: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut masker = CopyMasker::new(format, columns);
    rows.iter()
        .map(|row| {
            let mut out = BytesMut::new();
            masker.apply(row, &mut out).expect("valid");
            assert_eq!(out[0], b'd');
            let len = u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize;
            assert_eq!(len, out.len() - 1);
            out[5..].to_vec()
        })
        .collect()
}

#[test]
fn options_are_read_from_the_statement() {
    assert_eq!(
        options("COPY t TO STDOUT"),
        CopyFormat::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec()
        }
    );
    assert_eq!(
        options("COPY t TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'NA')"),
        CopyFormat::Csv {
            delimiter: b';',
            quote: b'"',
            escape: b'"',
            null: b"NA".to_vec(),
            header: true
        }
    );
    assert!(matches!(
        options("COPY t TO STDOUT CSV HEADER"),
        CopyFormat::Csv { header: true, .. }
    ));
    assert_eq!(
        options("COPY t TO STDOUT (FORMAT binary)"),
        CopyFormat::Binary
    );
}

#[test]
fn text_rows_mask_only_their_protected_fields_and_keep_escapes_and_nulls() {
    let out = run(
        options("COPY t TO STDOUT"),
        vec![(1, redact())],
        &[
            b"1\tana@example.com\tAna\n",
            b"2\t\\N\tBo\\tB\n",
            b"3\ta\\tb\\\\c\tC\n",
        ],
    );
    assert_eq!(out[0], b"1\t***\tAna\n");
    assert_eq!(
        out[1], b"2\t\\N\tBo\\tB\n",
        "NULL stays NULL, other fields as sent"
    );
    assert_eq!(out[2], b"3\t***\tC\n");
    let partial = MaskStrategy::Partial {
        keep_first: 1,
        keep_last: 0,
        keep_domain: false,
    };
    let out = run(
        options("COPY t TO STDOUT"),
        vec![(0, partial)],
        &[b"a\\tb\n"],
    );
    assert_eq!(
        out[0], b"a\\t*\n",
        "the decoded value is masked, then escaped"
    );
}

#[test]
fn csv_rows_keep_the_header_and_quote_masked_values() {
    let out = run(
        options("COPY t TO STDOUT (FORMAT csv, HEADER)"),
        vec![(1, redact()), (2, MaskStrategy::Null)],
        &[
            b"id,email,card\n",
            b"1,\"ana,lima@example.com\",4111111111111111\n",
            b"2,,\"\"\n",
        ],
    );
    assert_eq!(out[0], b"id,email,card\n");
    assert_eq!(out[1], b"1,\"***\",\n", "NULL is the unquoted empty string");
    assert_eq!(
        out[2], b"2,,\"\"\n",
        "NULL and empty values reveal nothing and stay"
    );
}

#[test]
fn binary_rows_null_their_protected_fields_across_header_and_trailer() {
    let mut first = Vec::new();
    first.extend_from_slice(SIGNATURE);
    first.extend_from_slice(&0u32.to_be_bytes());
    first.extend_from_slice(&0u32.to_be_bytes());
    let tuple = |email: &[u8]| {
        let mut t = 2i16.to_be_bytes().to_vec();
        t.extend_from_slice(&4i32.to_be_bytes());
        t.extend_from_slice(&7i32.to_be_bytes());
        t.extend_from_slice(&i32::try_from(email.len()).expect("short").to_be_bytes());
        t.extend_from_slice(email);
        t
    };
    first.extend_from_slice(&tuple(b"ana@example.com"));
    let second = tuple(b"bo@example.com");
    let trailer = (-1i16).to_be_bytes().to_vec();
    let out = run(
        CopyFormat::Binary,
        vec![(1, redact())],
        &[&first, &second, &trailer],
    );
    let mut expected_tuple = 2i16.to_be_bytes().to_vec();
    expected_tuple.extend_from_slice(&4i32.to_be_bytes());
    expected_tuple.extend_from_slice(&7i32.to_be_bytes());
    expected_tuple.extend_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(&out[0][..19], &first[..19], "the header passes");
    assert_eq!(&out[0][19..], &expected_tuple[..]);
    assert_eq!(out[1], expected_tuple);
    assert_eq!(out[2], trailer);
    let mut masker = CopyMasker::new(CopyFormat::Binary, vec![(1, redact())]);
    let mut out = BytesMut::from(&b"kept"[..]);
    assert!(masker.apply(&second[..second.len() - 3], &mut out).is_err());
    assert_eq!(&out[..], b"kept", "a truncated tuple leaves nothing");
}
