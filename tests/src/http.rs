//! A tiny loopback HTTP/1.1 server for the identity tests: an OIDC provider's discovery document
//! and JWK Set ([`oidc_provider`]), or a GitHub Actions-like token service. One thread, one request per connection
//! (`Connection: close`), answers chosen by path through a handler the test can change while the
//! server runs; every request is recorded. Stopped (and its port closed) on drop.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

/// A request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The path, without query.
    pub path: String,
    /// The query string (after `?`), empty when none.
    pub query: String,
    /// Header names in lower case, with their values.
    pub headers: HashMap<String, String>,
}

/// An answer: status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body, sent as `application/json`.
    pub body: String,
}

impl Response {
    /// 200 with `body`.
    pub fn ok(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: body.into(),
        }
    }

    /// `status` with an empty JSON object.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            body: "{}".into(),
        }
    }
}

/// Chooses the answer to a request.
pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

struct Shared {
    handler: Mutex<Arc<Handler>>,
    requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
}

/// A running server on `127.0.0.1`.
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// Starts a server on a free port.
    pub fn start(
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        Self::start_on(0, handler)
    }

    /// Starts a server on `127.0.0.1:port` (0 = a free one), e.g. again on the port of a server
    /// that was stopped.
    pub fn start_on(
        port: u16,
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            handler: Mutex::new(Arc::new(handler)),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let serving = shared.clone();
        let thread = std::thread::Builder::new()
            .name("test-http".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if serving.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let _ = serve(&serving, stream);
                    }
                }
            })
            .context("spawning the HTTP server thread")?;
        Ok(Self {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Replaces the handler.
    pub fn set_handler(&self, handler: impl Fn(&Request) -> Response + Send + Sync + 'static) {
        if let Ok(mut h) = self.shared.handler.lock() {
            *h = Arc::new(handler);
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// How many requests asked for `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(shared: &Shared, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target, String::new()),
    };
    let mut headers = HashMap::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let request = Request {
        path,
        query,
        headers,
    };
    let handler = shared
        .handler
        .lock()
        .map(|h| h.clone())
        .map_err(|_| std::io::Error::other("handler lock poisoned"))?;
    let response = handler(&request);
    if let Ok(mut requests) = shared.requests.lock() {
        requests.push(request);
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        response.status,
        response.body.len(),
        response.body
    )?;
    stream.flush()
}

/// The keys an [`oidc_provider`] publishes, changeable while it runs (key rotation).
pub type PublishedKeys = Arc<Mutex<Vec<serde_json::Value>>>;

/// Discovery path (OpenID Connect Discovery 1.0 §4).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Path of the JWK Set an [`oidc_provider`] names as `jwks_uri`.
pub const JWKS_PATH: &str = "/jwks";

/// An OIDC provider on `127.0.0.1:port` whose issuer is `http://127.0.0.1:port`: the discovery
/// document at [`DISCOVERY_PATH`] and the JWK Set `{"keys": keys}` at [`JWKS_PATH`].
pub fn oidc_provider(port: u16, keys: PublishedKeys) -> anyhow::Result<HttpServer> {
    let issuer = format!("http://127.0.0.1:{port}");
    HttpServer::start_on(port, move |request| match request.path.as_str() {
        DISCOVERY_PATH => Response::ok(
            serde_json::json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}{JWKS_PATH}"),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            })
            .to_string(),
        ),
        JWKS_PATH => {
            let keys = keys.lock().map(|k| k.clone()).unwrap_or_default();
            Response::ok(serde_json::json!({ "keys": keys }).to_string())
        }
        _ => Response::status(404),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn get(addr: SocketAddr, target: &str) -> String {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n"
        )
        .expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn serves_records_and_stops() {
        let server = HttpServer::start(|r| {
            if r.path == "/a" {
                Response::ok("{\"x\":1}")
            } else {
                Response::status(404)
            }
        })
        .expect("server");
        let answer = get(server.addr, "/a?q=1");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("{\"x\":1}"));
        assert!(get(server.addr, "/b").starts_with("HTTP/1.1 404"));
        let first = &server.requests()[0];
        assert_eq!(first.query, "q=1");
        assert_eq!(first.headers["authorization"], "Bearer t");
        assert_eq!(server.hits("/a"), 1);
        let addr = server.addr;
        drop(server);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
    }
}
