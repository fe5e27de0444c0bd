//! A bounds-checked reader over a complete message body: big-endian integers and
//! NUL-terminated strings (PostgreSQL docs 55.6 "Message Data Types"), built on `nom`.

use nom::bytes::complete::{take, take_until};
use nom::number::complete::{be_i32, be_u8, be_u16, be_u32};

use super::WireError;

/// Reads fields from the front of a body; every read fails with [`WireError::Malformed`] when
/// the body is too short.
pub struct Reader<'a> {
    rest: &'a [u8],
    message: &'static str,
}

type Res<'a, T> = nom::IResult<&'a [u8], T>;

impl<'a> Reader<'a> {
    /// A reader over `body` of the message named `message` (used in errors).
    pub fn new(body: &'a [u8], message: &'static str) -> Self {
        Self {
            rest: body,
            message,
        }
    }

    fn run<T>(&mut self, r: Res<'a, T>, detail: &'static str) -> Result<T, WireError> {
        match r {
            Ok((rest, v)) => {
                self.rest = rest;
                Ok(v)
            }
            Err(_) => Err(WireError::Malformed {
                message: self.message,
                detail,
            }),
        }
    }

    /// A `String` field: bytes up to a NUL, which is consumed. Must be UTF-8.
    pub fn cstr(&mut self) -> Result<&'a str, WireError> {
        let r: Res<'a, &'a [u8]> = take_until(&b"\0"[..])(self.rest);
        let bytes = self.run(r, "unterminated string")?;
        self.rest = &self.rest[1..];
        std::str::from_utf8(bytes).map_err(|_| WireError::Malformed {
            message: self.message,
            detail: "string is not UTF-8",
        })
    }

    /// An `Int8` field.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        let r = be_u8(self.rest);
        self.run(r, "truncated Int8")
    }

    /// An `Int16` field.
    pub fn u16(&mut self) -> Result<u16, WireError> {
        let r = be_u16(self.rest);
        self.run(r, "truncated Int16")
    }

    /// An `Int32` field, unsigned.
    pub fn u32(&mut self) -> Result<u32, WireError> {
        let r = be_u32(self.rest);
        self.run(r, "truncated Int32")
    }

    /// An `Int32` field, signed (lengths where -1 means NULL).
    pub fn i32(&mut self) -> Result<i32, WireError> {
        let r = be_i32(self.rest);
        self.run(r, "truncated Int32")
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let r: Res<'a, &'a [u8]> = take(n)(self.rest);
        self.run(r, "truncated value")
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), WireError> {
        self.bytes(n).map(|_| ())
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }
}
