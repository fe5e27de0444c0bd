//! Fuzz drivers for jitgate-agent: everything the agent does with bytes a peer chose.
//!
//! The agent sits between an untrusted CI job and the database, so every byte sequence from
//! either side must end in a frame, a `WireError` or a parse failure, never a panic (issue 3).
//! Each driver takes one fuzz input and runs it through the same code the proxy runs:
//!
//! - [`frontend`]: client → server bytes: the startup-phase codec, then the tagged codec, and
//!   every frontend message parser on every frame body;
//! - [`backend`]: server → client bytes: the tagged codec, every backend parser, and the
//!   masking rewrite of DataRow bodies under a plan built from the stream's own RowDescription;
//! - [`analyze`]: the policy analyzer (PostgreSQL's parser through `pg_query`) on the input as
//!   SQL text.
//!
//! The drivers are plain functions so the seed corpus can also be replayed by `cargo test` on a
//! stable toolchain (see the tests at the bottom); `fuzz_targets/*.rs` wrap them for libFuzzer.

mod backend;
mod frontend;

pub use backend::backend;
pub use frontend::frontend;

use std::hint::black_box;

use bytes::BytesMut;
use jitgate_agent::pgwire::codec::Frame;
use jitgate_agent::policy::analysis;

/// Largest frame the drivers' codecs accept; larger ones are `WireError::TooLarge`, as in the
/// proxy (whose default is 64 MiB; a smaller limit keeps libFuzzer from buffering that much).
pub const MAX_FRAME: u32 = 1 << 20;

/// A decoded frame written back out is exactly the bytes it was decoded from (`before` starts
/// where the frame did).
fn round_trip(frame: &Frame, before: &[u8]) {
    let mut out = BytesMut::new();
    frame.write_to(&mut out);
    assert_eq!(out.len(), frame.wire_len());
    assert_eq!(&out[..], &before[..out.len()], "frame does not round-trip");
}

/// Runs the policy analyzer on `data` when it is UTF-8, as the proxy does with the text of
/// every Query and Parse message. Every top-level statement must be counted.
pub fn analyze(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    match analysis::analyze(sql) {
        Ok(found) => {
            // An analysis that parsed must name a class for every statement it counted.
            assert!(
                found.statements == 0 || !found.kinds.is_empty(),
                "statements without kinds: {found:?}"
            );
            black_box(found);
        }
        Err(failure) => {
            black_box(failure);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    /// Every seed file of `corpus/<target>`.
    fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("corpus directory") {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("seed file");
            out.push((path, bytes));
        }
        assert!(!out.is_empty(), "no seeds in {}", dir.display());
        out
    }

    #[test]
    fn frontend_seeds_replay() {
        for (_, bytes) in seeds("frontend") {
            super::frontend(&bytes);
        }
    }

    #[test]
    fn backend_seeds_replay() {
        for (_, bytes) in seeds("backend") {
            super::backend(&bytes);
        }
    }

    #[test]
    fn analyze_seeds_replay() {
        for (_, bytes) in seeds("analyze") {
            super::analyze(&bytes);
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for input in [&b""[..], b"\0", b"Q", b"\0\0\0\x08\x04\xd2\x16\x2f"] {
            super::frontend(input);
            super::backend(input);
            super::analyze(input);
        }
    }
}
