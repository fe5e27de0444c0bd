//! Cutting captured sessions into seed files: whole streams (up to [`STREAM_CAP`] bytes, cut
//! at a message boundary), single messages (a few distinct ones per tag), and the SQL texts of
//! Query and Parse messages for the analyzer.
//!
//! File names are `<what>-<hash>` with a hash of the content, so re-capturing the same traffic
//! gives the same names and distinct content never collides.

use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use super::capture::Session;

/// Longest whole-stream seed, bytes (libFuzzer's `-max_len` follows the largest seed).
pub const STREAM_CAP: usize = 16 * 1024;
/// Distinct single-message seeds kept per message tag and direction.
const PER_TAG: usize = 6;
/// Longest single-message seed, bytes.
const MESSAGE_CAP: usize = 4 * 1024;
/// Untagged startup-phase request codes (PostgreSQL docs 55.7).
const STARTUP_CODES: [u32; 4] = [196_608, 80_877_103, 80_877_104, 80_877_102];

/// Seed files per fuzz target: target name → (file name → content).
pub type Corpus = BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>;

/// The seeds of every target from `sessions`.
pub fn corpus(sessions: &[Session]) -> Corpus {
    let mut corpus = Corpus::new();
    let mut per_tag: BTreeMap<(&str, u8), usize> = BTreeMap::new();
    for session in sessions {
        let (startup, client_frames) = split(&session.client, true);
        let (_, server_frames) = split(&session.server, false);
        let startup_bytes = startup.iter().map(|packet| packet.len()).sum();
        for (target, stream, head, frames) in [
            ("frontend", &session.client, startup_bytes, &client_frames),
            ("backend", &session.server, 0, &server_frames),
        ] {
            let seeds = corpus.entry(target).or_default();
            let end = prefix_within(frames, head, STREAM_CAP);
            if end > 0 {
                add(seeds, &format!("{}-stream", session.label), &stream[..end]);
            }
            for frame in frames.iter().filter(|f| f.len() <= MESSAGE_CAP) {
                let count = per_tag.entry((target, frame[0])).or_default();
                if *count < PER_TAG && add(seeds, &tag_name(frame[0]), frame) {
                    *count += 1;
                }
            }
        }
        if let Some(first) = startup.first() {
            add(corpus.entry("frontend").or_default(), "startup", first);
        }
        let sql = corpus.entry("analyze").or_default();
        for frame in &client_frames {
            if let Some(text) = sql_text(frame) {
                add(sql, "sql", text);
            }
        }
    }
    corpus
}

/// Adds `content` as `<what>-<hash>` unless the same content is there already.
fn add(seeds: &mut BTreeMap<String, Vec<u8>>, what: &str, content: &[u8]) -> bool {
    let mut hasher = DefaultHasher::new();
    content.hash(&mut hasher);
    let name = format!("{what}-{:016x}", hasher.finish());
    let known: HashSet<&[u8]> = seeds.values().map(Vec::as_slice).collect();
    if known.contains(content) {
        return false;
    }
    seeds.insert(name, content.to_vec());
    true
}

/// Splits a stream into its untagged startup packets (client side only) and its tagged
/// messages, each as its whole wire bytes; a trailing partial message is dropped.
fn split(stream: &[u8], client: bool) -> (Vec<&[u8]>, Vec<&[u8]>) {
    let mut rest = stream;
    let mut startup = Vec::new();
    while client && rest.len() >= 8 {
        let len = be_u32(&rest[..4]) as usize;
        let code = be_u32(&rest[4..8]);
        if !(8..=10_000).contains(&len) || !STARTUP_CODES.contains(&code) || rest.len() < len {
            break;
        }
        startup.push(&rest[..len]);
        rest = &rest[len..];
        if code == STARTUP_CODES[0] || code == STARTUP_CODES[3] {
            break;
        }
    }
    let mut frames = Vec::new();
    while rest.len() >= 5 {
        let len = be_u32(&rest[1..5]) as usize;
        if len < 4 || rest.len() < len + 1 {
            break;
        }
        frames.push(&rest[..len + 1]);
        rest = &rest[len + 1..];
    }
    (startup, frames)
}

/// `head` bytes (the startup packets) plus as many whole messages as fit in `cap`.
fn prefix_within(frames: &[&[u8]], head: usize, cap: usize) -> usize {
    let mut end = head;
    for frame in frames {
        if end + frame.len() > cap {
            break;
        }
        end += frame.len();
    }
    end
}

/// The SQL of a Query (`Q`) or Parse (`P`) message.
fn sql_text(frame: &[u8]) -> Option<&[u8]> {
    let body = &frame[5..];
    let text = match frame[0] {
        b'Q' => body,
        b'P' => &body[body.iter().position(|&b| b == 0)? + 1..],
        _ => return None,
    };
    let end = text.iter().position(|&b| b == 0)?;
    (end > 0).then(|| &text[..end])
}

/// `Q` for printable tags, `x00` otherwise.
fn tag_name(tag: u8) -> String {
    if tag.is_ascii_alphanumeric() {
        format!("msg-{}", char::from(tag))
    } else {
        format!("msg-x{tag:02x}")
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(client: &[u8], server: &[u8]) -> Session {
        Session {
            label: "t".into(),
            client: client.to_vec(),
            server: server.to_vec(),
        }
    }

    #[test]
    fn streams_split_into_startup_messages_and_sql() {
        let mut client = Vec::new();
        client.extend_from_slice(&[0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f]);
        client.extend_from_slice(&[0, 0, 0, 13, 0, 3, 0, 0, b'u', 0, b'x', 0, 0]);
        client.extend_from_slice(b"Q\0\0\0\x0dselect 1\0");
        client.extend_from_slice(b"X\0\0\0\x04");
        let server = b"Z\0\0\0\x05IC\0\0";
        let corpus = corpus(&[session(&client, server)]);
        let frontend = &corpus["frontend"];
        assert!(frontend.keys().any(|k| k.starts_with("t-stream-")));
        assert!(frontend.keys().any(|k| k.starts_with("msg-Q-")));
        assert!(frontend.keys().any(|k| k.starts_with("startup-")));
        let stream = frontend.iter().find(|(k, _)| k.starts_with("t-stream"));
        assert_eq!(stream.map(|(_, v)| v.len()), Some(client.len()));
        // The trailing partial message "C\0\0" is not part of the server stream seed.
        let backend_stream = corpus["backend"]
            .iter()
            .find(|(k, _)| k.starts_with("t-stream"));
        assert_eq!(backend_stream.map(|(_, v)| v.len()), Some(6));
        let sql: Vec<&Vec<u8>> = corpus["analyze"].values().collect();
        assert_eq!(sql, vec![&b"select 1".to_vec()]);
    }

    #[test]
    fn parse_message_sql_is_after_the_name() {
        assert_eq!(
            sql_text(b"P\0\0\0\x10s1\0select 2\0\0\0"),
            Some(&b"select 2"[..])
        );
        assert_eq!(sql_text(b"Q\0\0\0\x05\0"), None);
    }
}
