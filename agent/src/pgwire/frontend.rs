//! Frontend (client → server) message bodies jitgate inspects (PostgreSQL docs 55.7).
//!
//! Tags are named constants; parsers take a complete body from [`super::codec`] and return
//! borrowed views or owned strings. Every parser fails with [`WireError::Malformed`] rather than
//! panicking on any byte sequence.

use bytes::Bytes;

use super::WireError;
use super::read::Reader;

/// Query (simple query protocol).
pub const QUERY_TAG: u8 = b'Q';
/// Parse.
pub const PARSE_TAG: u8 = b'P';
/// Bind.
pub const BIND_TAG: u8 = b'B';
/// Describe.
pub const DESCRIBE_TAG: u8 = b'D';
/// Execute.
pub const EXECUTE_TAG: u8 = b'E';
/// Sync.
pub const SYNC_TAG: u8 = b'S';
/// Flush.
pub const FLUSH_TAG: u8 = b'H';
/// Close.
pub const CLOSE_TAG: u8 = b'C';
/// Terminate.
pub const TERMINATE_TAG: u8 = b'X';
/// CopyData (both directions).
pub const COPY_DATA_TAG: u8 = b'd';
/// CopyDone (both directions).
pub const COPY_DONE_TAG: u8 = b'c';
/// CopyFail.
pub const COPY_FAIL_TAG: u8 = b'f';
/// FunctionCall.
pub const FUNCTION_CALL_TAG: u8 = b'F';
/// PasswordMessage / SASLInitialResponse / SASLResponse / GSSResponse.
pub const PASSWORD_TAG: u8 = b'p';

/// StartupMessage parameters (`user`, `database`, `options`, `application_name`, …) in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupMessage {
    /// Name/value pairs as sent.
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    /// Parses the body after the protocol version: pairs of C strings ended by an empty name.
    pub fn decode(body: &Bytes) -> Result<Self, WireError> {
        const MSG: &str = "StartupMessage";
        let mut r = Reader::new(body, MSG);
        let mut params = Vec::new();
        loop {
            let name = r.cstr()?;
            if name.is_empty() {
                break;
            }
            let value = r.cstr()?;
            params.push((name.to_owned(), value.to_owned()));
        }
        Ok(Self { params })
    }

    /// The value of parameter `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `user`; the protocol requires it.
    pub fn user(&self) -> Option<&str> {
        self.get("user")
    }

    /// `database`, defaulting to the user name as the server does.
    pub fn database(&self) -> Option<&str> {
        self.get("database").or_else(|| self.user())
    }
}

/// Query: the SQL text of a simple-protocol request.
pub fn parse_query(body: &Bytes) -> Result<&str, WireError> {
    Reader::new(body, "Query").cstr()
}

/// Parse: a prepared statement's name, SQL text and declared parameter type OIDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name; empty for the unnamed statement.
    pub name: &'a str,
    /// SQL text.
    pub query: &'a str,
    /// Parameter type OIDs (0 = unspecified).
    pub param_types: Vec<u32>,
}

impl<'a> Parse<'a> {
    /// Parses a Parse body.
    pub fn decode(body: &'a Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Parse");
        let name = r.cstr()?;
        let query = r.cstr()?;
        let n = r.u16()?;
        let mut param_types = Vec::with_capacity(usize::from(n).min(body.len() / 4));
        for _ in 0..n {
            param_types.push(r.u32()?);
        }
        Ok(Self {
            name,
            query,
            param_types,
        })
    }
}

/// Bind: which statement a portal runs and the requested result formats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Destination portal; empty for the unnamed portal.
    pub portal: &'a str,
    /// Source prepared statement; empty for the unnamed statement.
    pub statement: &'a str,
    /// Parameter format codes: empty = all text, one = applies to all, else one per parameter.
    pub param_formats: Vec<i16>,
    /// Parameter values in order (`None`: NULL, length -1).
    pub params: Vec<Option<&'a [u8]>>,
    /// Result-column format codes: empty = all text, one = applies to all, else one per column.
    pub result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    /// Parses a Bind body.
    pub fn decode(body: &'a Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Bind");
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let n_formats = r.u16()?;
        let mut param_formats = Vec::with_capacity(usize::from(n_formats).min(body.len() / 2));
        for _ in 0..n_formats {
            param_formats.push(r.u16()? as i16);
        }
        let n_params = r.u16()?;
        let mut params = Vec::with_capacity(usize::from(n_params).min(body.len() / 4));
        for _ in 0..n_params {
            let len = r.i32()?;
            params.push(match usize::try_from(len) {
                Ok(len) => Some(r.bytes(len)?),
                Err(_) => None,
            });
        }
        let n_results = r.u16()?;
        let mut result_formats = Vec::with_capacity(usize::from(n_results).min(body.len() / 2));
        for _ in 0..n_results {
            result_formats.push(r.u16()? as i16);
        }
        Ok(Self {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    /// Format code of result column `index` (0 = text, 1 = binary), per the Bind rules.
    pub fn format_of(formats: &[i16], index: usize) -> i16 {
        match formats {
            [] => 0,
            [one] => *one,
            many => many.get(index).copied().unwrap_or(0),
        }
    }
}

/// Describe or Close target: `b'S'` statement or `b'P'` portal, and its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    /// `b'S'` or `b'P'`.
    pub kind: u8,
    /// Statement or portal name.
    pub name: &'a str,
}

impl<'a> Target<'a> {
    /// Parses a Describe or Close body.
    pub fn decode(body: &'a Bytes, message: &'static str) -> Result<Self, WireError> {
        let mut r = Reader::new(body, message);
        let kind = r.u8()?;
        if kind != b'S' && kind != b'P' {
            return Err(WireError::Malformed {
                message,
                detail: "target is neither 'S' nor 'P'",
            });
        }
        Ok(Self {
            kind,
            name: r.cstr()?,
        })
    }
}

/// Execute: portal name and row limit (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    /// Portal name.
    pub portal: &'a str,
    /// Maximum rows to return; 0 = all.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    /// Parses an Execute body.
    pub fn decode(body: &'a Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "Execute");
        Ok(Self {
            portal: r.cstr()?,
            max_rows: r.i32()?,
        })
    }
}

/// FunctionCall (PostgreSQL docs 55.7): the function's OID and how many arguments it carries.
/// The rest of the message (argument formats and values, result format) is checked for shape and
/// passed on unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionCall {
    /// `pg_proc.oid` of the function.
    pub oid: u32,
    /// Number of arguments.
    pub args: u16,
}

impl FunctionCall {
    /// Parses a FunctionCall body.
    pub fn decode(body: &Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "FunctionCall");
        let oid = r.u32()?;
        let formats = r.u16()?;
        r.skip(usize::from(formats) * 2)?;
        let args = r.u16()?;
        for _ in 0..args {
            let len = r.i32()?;
            if let Ok(len) = usize::try_from(len) {
                r.skip(len)?;
            }
        }
        r.u16()?;
        if r.remaining() != 0 {
            return Err(WireError::Malformed {
                message: "FunctionCall",
                detail: "bytes after the result format",
            });
        }
        Ok(Self { oid, args })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn function_call_parses_and_rejects_bad_shapes() {
        let mut body = BytesMut::new();
        body.extend_from_slice(&952u32.to_be_bytes()); // lo_open
        body.extend_from_slice(&1u16.to_be_bytes());
        body.extend_from_slice(&1u16.to_be_bytes()); // binary
        body.extend_from_slice(&2u16.to_be_bytes());
        for value in [16_384u32, 0x2_0000] {
            body.extend_from_slice(&4i32.to_be_bytes());
            body.extend_from_slice(&value.to_be_bytes());
        }
        body.extend_from_slice(&1u16.to_be_bytes());
        let call = FunctionCall::decode(&body.clone().freeze()).expect("valid");
        assert_eq!(call, FunctionCall { oid: 952, args: 2 });
        let truncated = body[..body.len() - 3].to_vec();
        assert!(FunctionCall::decode(&Bytes::from(truncated)).is_err());
        body.extend_from_slice(b"x");
        assert!(FunctionCall::decode(&body.freeze()).is_err());
    }

    #[test]
    fn startup_params_parse() {
        let body = Bytes::from_static(b"user\0ci\0database\0shop\0\0");
        let msg = StartupMessage::decode(&body).expect("valid");
        assert_eq!(msg.user(), Some("ci"));
        assert_eq!(msg.database(), Some("shop"));
    }

    #[test]
    fn database_defaults_to_user() {
        let body = Bytes::from_static(b"user\0ci\0\0");
        assert_eq!(
            StartupMessage::decode(&body).expect("valid").database(),
            Some("ci")
        );
    }

    #[test]
    fn unterminated_startup_is_malformed() {
        let body = Bytes::from_static(b"user\0ci");
        assert!(StartupMessage::decode(&body).is_err());
    }

    #[test]
    fn bind_reads_result_formats_past_parameters() {
        // portal "p1", statement "s1", 1 param format (binary), 1 param "42", 2 result formats.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"Bxxxxp1\0s1\0\0\x01\0\x01\0\x01\0\0\0\x0242\0\x02\0\x01\0\0");
        let body = Bytes::copy_from_slice(&buf[5..]);
        let bind = Bind::decode(&body).expect("valid");
        assert_eq!(bind.portal, "p1");
        assert_eq!(bind.statement, "s1");
        assert_eq!(bind.result_formats, vec![1, 0]);
        assert_eq!(Bind::format_of(&bind.result_formats, 1), 0);
        assert_eq!(Bind::format_of(&[1], 7), 1);
    }

    #[test]
    fn truncated_bind_is_malformed_not_panic() {
        let body = Bytes::from_static(b"p\0s\0\0\x01\0\x01\0\x01\x7f\xff\xff\xff");
        assert!(Bind::decode(&body).is_err());
    }

    #[test]
    fn parse_message_parses() {
        let body = Bytes::from_static(b"s1\0select $1\0\0\x01\0\0\0\x17");
        let p = Parse::decode(&body).expect("valid");
        assert_eq!(
            (p.name, p.query, p.param_types),
            ("s1", "select $1", vec![23])
        );
    }

    #[test]
    fn describe_target_rejects_unknown_kind() {
        assert!(Target::decode(&Bytes::from_static(b"Xname\0"), "Describe").is_err());
        let body = Bytes::from_static(b"Pp\0");
        let t = Target::decode(&body, "Describe").expect("valid");
        assert_eq!((t.kind, t.name), (b'P', "p"));
    }
}
