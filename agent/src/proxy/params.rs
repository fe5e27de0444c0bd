//! The parameters of a Bind as the audit trail records them (`Statement.parameters`), with the
//! redaction rule for masked columns.
//!
//! Rule: when the statement names a relation with protected columns (by relation name, any
//! schema: [`MaskCatalog::protected_columns_of`]), a parameter is recorded only if it is tied to
//! columns ([`crate::policy::params`]) none of which is a protected column name of those
//! relations; otherwise — tied to a protected name, or used in a way whose column cannot be told
//! — it is redacted (value left out, `redacted` set). A statement that names no such relation
//! has its parameters recorded. A Bind of a statement the agent has no analysis of, on a
//! database with protected columns, has all its parameters redacted. NULL-ness and the format
//! are recorded either way.

use jitgate_proto::audit::v1 as pb;

use crate::masking::MaskCatalog;
use crate::pgwire::frontend::Bind;
use crate::policy::Analysis;

/// The records of `bind`'s parameters: 1-based, values as [`crate::render::value`] gives them.
pub fn of_bind(
    bind: &Bind<'_>,
    analysis: Option<&Analysis>,
    catalog: &MaskCatalog,
) -> Vec<pb::Parameter> {
    if bind.params.is_empty() {
        return Vec::new();
    }
    let protected = match analysis {
        _ if catalog.is_empty() => Default::default(),
        Some(a) => catalog.protected_columns_of(a.tables.iter().map(String::as_str)),
        None => Default::default(),
    };
    let redact_all = analysis.is_none() && !catalog.is_empty();
    bind.params
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let binary = Bind::format_of(&bind.param_formats, i) == 1;
            let redacted = redact_all
                || (!protected.is_empty()
                    && analysis
                        .and_then(|a| a.params.columns(index))
                        .is_none_or(|cols| cols.iter().any(|c| protected.contains(c.as_str()))));
            pb::Parameter {
                index,
                null: value.is_none(),
                binary,
                value: match value {
                    Some(v) if !redacted => crate::render::value(v, binary),
                    _ => String::new(),
                },
                redacted: redacted && value.is_some(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MaskConfig;
    use crate::masking::MaskStrategy;

    fn catalog() -> MaskCatalog {
        let masks = [MaskConfig {
            column: "public.customers.email".into(),
            strategy: MaskStrategy::Null,
            expressions: Default::default(),
            predicates: Default::default(),
        }];
        crate::masking::catalog::customers_catalog(&masks)
    }

    fn bind_body(values: &[Option<&[u8]>], formats: &[i16]) -> bytes::Bytes {
        use bytes::BufMut as _;
        let mut b = bytes::BytesMut::new();
        b.put_slice(b"\0\0");
        b.put_u16(u16::try_from(formats.len()).unwrap_or(0));
        for f in formats {
            b.put_i16(*f);
        }
        b.put_u16(u16::try_from(values.len()).unwrap_or(0));
        for v in values {
            match v {
                Some(v) => {
                    b.put_i32(i32::try_from(v.len()).unwrap_or(0));
                    b.put_slice(v);
                }
                None => b.put_i32(-1),
            }
        }
        b.put_u16(0);
        b.freeze()
    }

    fn record(sql: &str, values: &[Option<&[u8]>], formats: &[i16]) -> Vec<pb::Parameter> {
        let analysis = crate::policy::analysis::analyze(sql).expect("parses");
        let body = bind_body(values, formats);
        let bind = Bind::decode(&body).expect("bind");
        of_bind(&bind, Some(&analysis), &catalog())
    }

    #[test]
    fn protected_columns_are_redacted_others_recorded() {
        let p = record(
            "SELECT * FROM customers WHERE email = $1 AND name = $2 AND id = $3",
            &[Some(b"a@b.c"), Some(b"Ann"), None],
            &[],
        );
        assert!(p[0].redacted && p[0].value.is_empty());
        assert_eq!(
            (p[1].index, p[1].value.as_str(), p[1].redacted),
            (2, "Ann", false)
        );
        assert!(p[2].null && !p[2].redacted);
        let p = record(
            "INSERT INTO public.customers (name, email) VALUES ($1, $2)",
            &[Some(b"Bo"), Some(b"x@y.z")],
            &[],
        );
        assert_eq!(p[0].value, "Bo");
        assert!(p[1].redacted);
        let p = record(
            "UPDATE customers SET email = $1 WHERE id = $2",
            &[Some(b"x@y.z"), Some(&[0, 0, 0, 7])],
            &[0, 1],
        );
        assert!(p[0].redacted);
        assert_eq!((p[1].binary, p[1].value.as_str()), (true, "00000007"));
    }

    #[test]
    fn untied_parameters_fail_closed_only_near_protected_tables() {
        let p = record(
            "SELECT * FROM customers WHERE lower(name) = $1",
            &[Some(b"ann")],
            &[],
        );
        assert!(p[0].redacted, "untied on a table with protected columns");
        let p = record(
            "SELECT * FROM orders WHERE lower(note) = $1 AND email = $2",
            &[Some(b"n"), Some(b"e")],
            &[],
        );
        assert!(!p[0].redacted && !p[1].redacted, "no protected table named");
        let body = bind_body(&[Some(b"v")], &[]);
        let bind = Bind::decode(&body).expect("bind");
        assert!(of_bind(&bind, None, &catalog())[0].redacted);
        assert!(!of_bind(&bind, None, &MaskCatalog::default())[0].redacted);
    }
}
