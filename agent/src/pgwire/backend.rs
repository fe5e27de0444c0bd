//! Backend (server → client) message bodies jitgate inspects (PostgreSQL docs 55.7): the ones
//! that end requests (ReadyForQuery, CommandComplete, ErrorResponse), describe results
//! (RowDescription) and carry values (DataRow).

use bytes::Bytes;

use super::WireError;
use super::read::Reader;

/// Authentication* family.
pub const AUTHENTICATION_TAG: u8 = b'R';
/// ParameterStatus.
pub const PARAMETER_STATUS_TAG: u8 = b'S';
/// BackendKeyData.
pub const BACKEND_KEY_DATA_TAG: u8 = b'K';
/// ReadyForQuery.
pub const READY_FOR_QUERY_TAG: u8 = b'Z';
/// RowDescription.
pub const ROW_DESCRIPTION_TAG: u8 = b'T';
/// DataRow.
pub const DATA_ROW_TAG: u8 = b'D';
/// CommandComplete.
pub const COMMAND_COMPLETE_TAG: u8 = b'C';
/// EmptyQueryResponse.
pub const EMPTY_QUERY_RESPONSE_TAG: u8 = b'I';
/// ErrorResponse.
pub const ERROR_RESPONSE_TAG: u8 = b'E';
/// NoticeResponse.
pub const NOTICE_RESPONSE_TAG: u8 = b'N';
/// NotificationResponse.
pub const NOTIFICATION_RESPONSE_TAG: u8 = b'A';
/// ParseComplete.
pub const PARSE_COMPLETE_TAG: u8 = b'1';
/// BindComplete.
pub const BIND_COMPLETE_TAG: u8 = b'2';
/// CloseComplete.
pub const CLOSE_COMPLETE_TAG: u8 = b'3';
/// NoData.
pub const NO_DATA_TAG: u8 = b'n';
/// ParameterDescription.
pub const PARAMETER_DESCRIPTION_TAG: u8 = b't';
/// PortalSuspended.
pub const PORTAL_SUSPENDED_TAG: u8 = b's';
/// CopyInResponse.
pub const COPY_IN_RESPONSE_TAG: u8 = b'G';
/// CopyOutResponse.
pub const COPY_OUT_RESPONSE_TAG: u8 = b'H';
/// CopyData (both directions).
pub const COPY_DATA_TAG: u8 = b'd';
/// CopyDone (both directions).
pub const COPY_DONE_TAG: u8 = b'c';
/// CopyBothResponse.
pub const COPY_BOTH_RESPONSE_TAG: u8 = b'W';
/// NegotiateProtocolVersion.
pub const NEGOTIATE_PROTOCOL_VERSION_TAG: u8 = b'v';

/// Transaction status in ReadyForQuery: idle, in a transaction block, or in a failed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionStatus {
    /// `'I'`: not in a transaction block.
    #[default]
    Idle,
    /// `'T'`: in a transaction block.
    InTransaction,
    /// `'E'`: in a failed transaction block.
    Failed,
}

impl TransactionStatus {
    /// Parses a ReadyForQuery body.
    pub fn parse(body: &Bytes) -> Result<Self, WireError> {
        match Reader::new(body, "ReadyForQuery").u8()? {
            b'I' => Ok(Self::Idle),
            b'T' => Ok(Self::InTransaction),
            b'E' => Ok(Self::Failed),
            _ => Err(WireError::Malformed {
                message: "ReadyForQuery",
                detail: "unknown transaction status",
            }),
        }
    }

    /// The status byte.
    pub fn byte(self) -> u8 {
        match self {
            Self::Idle => b'I',
            Self::InTransaction => b'T',
            Self::Failed => b'E',
        }
    }
}

/// One field of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name (or alias) as the client sees it.
    pub name: String,
    /// OID of the table the column comes from, 0 if it is not a plain table column.
    pub table_oid: u32,
    /// Attribute number in that table, 0 if none.
    pub column: i16,
    /// Data type OID.
    pub type_oid: u32,
    /// Format code: 0 text, 1 binary (always 0 in a Describe-statement response).
    pub format: i16,
}

/// Parses a RowDescription body into its fields.
pub fn parse_row_description(body: &Bytes) -> Result<Vec<FieldDescription>, WireError> {
    let mut r = Reader::new(body, "RowDescription");
    let n = r.u16()?;
    let mut fields = Vec::with_capacity(usize::from(n).min(body.len() / 19 + 1));
    for _ in 0..n {
        let name = r.cstr()?.to_owned();
        let table_oid = r.u32()?;
        let column = r.u16()? as i16;
        let type_oid = r.u32()?;
        let _type_size = r.u16()?;
        let _type_modifier = r.i32()?;
        let format = r.u16()? as i16;
        fields.push(FieldDescription {
            name,
            table_oid,
            column,
            type_oid,
            format,
        });
    }
    Ok(fields)
}

/// Splits a DataRow body into column values (`None` = NULL), borrowing from the body.
pub fn parse_data_row(body: &Bytes) -> Result<Vec<Option<&[u8]>>, WireError> {
    let mut r = Reader::new(body, "DataRow");
    let n = r.u16()?;
    let mut values = Vec::with_capacity(usize::from(n).min(body.len() / 4 + 1));
    for _ in 0..n {
        let len = r.i32()?;
        if len < 0 {
            values.push(None);
        } else {
            values.push(Some(r.bytes(len as usize)?));
        }
    }
    Ok(values)
}

/// CommandComplete: the command tag, e.g. `SELECT 3` or `INSERT 0 1`.
pub fn parse_command_complete(body: &Bytes) -> Result<&str, WireError> {
    Reader::new(body, "CommandComplete").cstr()
}

/// ParameterStatus: the setting's name and its new value.
pub fn parse_parameter_status(body: &Bytes) -> Result<(&str, &str), WireError> {
    let mut r = Reader::new(body, "ParameterStatus");
    Ok((r.cstr()?, r.cstr()?))
}

/// Fields of an ErrorResponse or NoticeResponse (PostgreSQL docs 55.8 "Error and Notice Message
/// Fields"), as (field type byte, value) pairs in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// `(code, value)` pairs, e.g. `(b'C', "42501")`.
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    /// Parses an ErrorResponse/NoticeResponse body.
    pub fn parse(body: &Bytes, message: &'static str) -> Result<Self, WireError> {
        let mut r = Reader::new(body, message);
        let mut fields = Vec::new();
        loop {
            let code = r.u8()?;
            if code == 0 {
                break;
            }
            fields.push((code, r.cstr()?.to_owned()));
        }
        Ok(Self { fields })
    }

    /// The value of field `code`.
    pub fn get(&self, code: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_str())
    }

    /// SQLSTATE (field `C`).
    pub fn sqlstate(&self) -> Option<&str> {
        self.get(b'C')
    }

    /// Primary message (field `M`).
    pub fn message(&self) -> Option<&str> {
        self.get(b'M')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgwire::write;
    use bytes::BytesMut;

    #[test]
    fn error_fields_round_trip() {
        let mut out = BytesMut::new();
        write::error_response(
            &mut out,
            write::Severity::Error,
            "42501",
            "denied",
            Some("hint"),
        );
        let body = Bytes::copy_from_slice(&out[5..]);
        let f = ErrorFields::parse(&body, "ErrorResponse").expect("valid");
        assert_eq!(f.sqlstate(), Some("42501"));
        assert_eq!(f.message(), Some("denied"));
        assert_eq!(f.get(b'H'), Some("hint"));
    }

    #[test]
    fn data_row_values_and_nulls() {
        let mut out = BytesMut::new();
        write::data_row(
            &mut out,
            &[Some(b"a".as_slice()), None, Some(b"".as_slice())],
        );
        let body = Bytes::copy_from_slice(&out[5..]);
        let values = parse_data_row(&body).expect("valid");
        assert_eq!(values, vec![Some(&b"a"[..]), None, Some(&b""[..])]);
    }

    #[test]
    fn data_row_with_lying_length_is_malformed() {
        let body = Bytes::from_static(b"\0\x01\0\0\0\x09abc");
        assert!(parse_data_row(&body).is_err());
    }

    #[test]
    fn row_description_fields() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(b"e\0");
        b.extend_from_slice(&16384u32.to_be_bytes());
        b.extend_from_slice(&3u16.to_be_bytes());
        b.extend_from_slice(&25u32.to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        let fields = parse_row_description(&b.freeze()).expect("valid");
        assert_eq!(fields[0].name, "e");
        assert_eq!((fields[0].table_oid, fields[0].column), (16384, 3));
        assert_eq!((fields[0].type_oid, fields[0].format), (25, 1));
    }

    #[test]
    fn negotiate_protocol_version_lists_unrecognised_options() {
        let mut out = BytesMut::new();
        write::negotiate_protocol_version(&mut out, 0, &["_pq_.compression"]);
        assert_eq!(out[0], NEGOTIATE_PROTOCOL_VERSION_TAG);
        let body = Bytes::copy_from_slice(&out[5..]);
        let mut r = Reader::new(&body, "NegotiateProtocolVersion");
        assert_eq!(r.u32().expect("version"), 196_608);
        assert_eq!(r.u32().expect("count"), 1);
        assert_eq!(r.cstr().expect("option"), "_pq_.compression");
    }

    #[test]
    fn ready_for_query_status() {
        assert_eq!(
            TransactionStatus::parse(&Bytes::from_static(b"T")).expect("valid"),
            TransactionStatus::InTransaction
        );
        assert!(TransactionStatus::parse(&Bytes::from_static(b"?")).is_err());
    }
}
