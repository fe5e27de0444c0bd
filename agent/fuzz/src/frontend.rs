//! The `frontend` driver: client → server bytes as the proxy's startup phase and session relay
//! read them (`proxy/startup.rs`, `proxy/session/from_client.rs`).
//!
//! The startup phase is untagged (`Int32 len, Int32 code`): SSLRequest and GSSENCRequest may
//! come first, then a StartupMessage or a CancelRequest. Everything after is tagged. An input
//! whose first bytes are no valid startup packet is decoded as tagged messages from its start,
//! so single captured messages are useful seeds too.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use jitgate_agent::pgwire::codec::{StartupCodec, StartupFrame, TaggedCodec, codes};
use jitgate_agent::pgwire::frontend::{
    Bind, Execute, FunctionCall, Parse, StartupMessage, Target, parse_query,
};
use tokio_util::codec::Decoder;

use crate::{MAX_FRAME, round_trip};

/// Decodes `data` as a client's byte stream and runs every frontend parser on every frame.
pub fn frontend(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    let mut startup_frames = 0usize;
    loop {
        match StartupCodec.decode(&mut buf) {
            Ok(Some(frame)) => {
                startup_frames += 1;
                startup_message(&frame);
                match frame.code {
                    // The agent answers 'N' and reads the next startup packet.
                    codes::SSL_REQUEST | codes::GSSENC_REQUEST => continue,
                    _ => break,
                }
            }
            Ok(None) | Err(_) => {
                if startup_frames == 0 {
                    buf = BytesMut::from(data);
                }
                break;
            }
        }
    }
    tagged(&mut buf);
}

/// One startup-phase packet: the parameters of a StartupMessage must parse or be malformed.
fn startup_message(frame: &StartupFrame) {
    if frame.code == codes::PROTOCOL_3_0
        && let Ok(message) = StartupMessage::decode(&frame.body)
    {
        // `database` defaults to `user`: whenever there is a user there is a database.
        assert!(message.user().is_none() || message.database().is_some());
        black_box(message);
    }
    // The codec stripped exactly the 8 header bytes of a packet within the limit.
    assert!(frame.body.len() + 8 <= codec_startup_limit());
}

fn codec_startup_limit() -> usize {
    jitgate_agent::pgwire::codec::MAX_STARTUP_PACKET as usize
}

/// The tagged phase: frames until the bytes run out or the codec refuses them.
fn tagged(buf: &mut BytesMut) {
    let mut codec = TaggedCodec::new(MAX_FRAME);
    let start = buf.clone().freeze();
    let mut offset = 0;
    while let Ok(Some(frame)) = codec.decode(buf) {
        round_trip(&frame, &start[offset..]);
        offset += frame.wire_len();
        message_bodies(&frame.body);
    }
}

/// Every frontend parser on one body, whatever its tag: each must return a value or
/// `WireError::Malformed`, and what it returns must be consistent with the body.
fn message_bodies(body: &Bytes) {
    if let Ok(text) = parse_query(body) {
        assert!(
            text.len() < body.len(),
            "Query text includes its terminator"
        );
    }
    if let Ok(parse) = Parse::decode(body) {
        assert!(
            parse.name.len() + parse.query.len() + 4 * parse.param_types.len() + 4 <= body.len()
        );
        black_box(parse);
    }
    if let Ok(bind) = Bind::decode(body) {
        for index in 0..bind.result_formats.len() + 2 {
            black_box(Bind::format_of(&bind.result_formats, index));
        }
        assert!(
            bind.portal.len() + bind.statement.len() + 2 * bind.result_formats.len() + 8
                <= body.len()
        );
    }
    for message in ["Describe", "Close"] {
        if let Ok(target) = Target::decode(body, message) {
            assert!(target.kind == b'S' || target.kind == b'P');
            black_box(target);
        }
    }
    if let Ok(execute) = Execute::decode(body) {
        assert!(execute.portal.len() + 5 <= body.len());
    }
    if let Ok(call) = FunctionCall::decode(body) {
        assert!(8 + 4 * usize::from(call.args) <= body.len());
    }
    if let Ok(startup) = StartupMessage::decode(body) {
        black_box(startup);
    }
}
