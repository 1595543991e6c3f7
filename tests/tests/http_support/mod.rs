//! What the HTTP tests share: a small HTTP/1.1 client (whole responses, and chunked streams
//! read as they arrive), and the normalising that makes real etcd's JSON comparable with
//! oxcd's.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use regex::Regex;

/// How long one request may take.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// A whole HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Header names as the server wrote them.
    pub names: Vec<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

fn write_request(
    stream: &mut TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    ));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .expect("write request head");
    stream.write_all(body).expect("write request body");
}

/// Sends one request to `addr` (`127.0.0.1:PORT`) and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(REQUEST_DEADLINE))
        .expect("set read timeout");
    write_request(&mut stream, addr, method, path, headers, body);
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw) {
        // Go's server may reset a connection it answered without reading the whole body;
        // the answer has arrived by then.
        if raw.is_empty() {
            panic!("{method} {path} on {addr}: reading the response: {e}");
        }
    }
    let (status, names, headers, rest) = parse_head(&raw).unwrap_or_else(|| {
        panic!(
            "{method} {path} on {addr}: no complete response head in {:?}",
            String::from_utf8_lossy(&raw)
        )
    });
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut d = Dechunker::default();
        d.feed(rest);
        d.data
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        names,
        body,
    }
}

/// `POST path` with a JSON body.
pub fn post(addr: &str, path: &str, body: &str) -> Response {
    request(addr, "POST", path, &[], body.as_bytes())
}

/// `GET path`.
pub fn get(addr: &str, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// Lower-cased header names and their values.
type Headers = Vec<(String, String)>;

/// Splits a response head off `raw`: status, header names as written, headers, and what
/// follows.
fn parse_head(raw: &[u8]) -> Option<(u16, Vec<String>, Headers, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let fields: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(':')).collect();
    let names = fields.iter().map(|(n, _)| n.trim().to_owned()).collect();
    let headers = fields
        .iter()
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, names, headers, &raw[end + 4..]))
}

/// Decodes `Transfer-Encoding: chunked` incrementally.
#[derive(Default)]
struct Dechunker {
    pending: Vec<u8>,
    data: Vec<u8>,
    done: bool,
}

impl Dechunker {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while !self.done {
            let Some(eol) = self.pending.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.pending[..eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
            if size == 0 {
                self.done = true;
                return;
            }
            if self.pending.len() < eol + 2 + size + 2 {
                return;
            }
            self.data
                .extend_from_slice(&self.pending[eol + 2..eol + 2 + size]);
            self.pending.drain(..eol + 2 + size + 2);
        }
    }
}

/// A streaming response read as it arrives (a watch, a keepalive).
pub struct Stream {
    stream: TcpStream,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    dechunker: Dechunker,
    /// Body bytes of a response that is not chunked.
    plain: Vec<u8>,
    /// How much of the body has been handed out as lines.
    consumed: usize,
}

impl Stream {
    /// Sends `POST path` with `body` and waits for the response head.
    pub fn open(addr: &str, path: &str, body: &str) -> Stream {
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        write_request(&mut stream, addr, "POST", path, &[], body.as_bytes());
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let mut raw = Vec::new();
        loop {
            if let Some((status, _, headers, rest)) = parse_head(&raw) {
                let chunked = headers
                    .iter()
                    .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
                let rest = rest.to_vec();
                let mut s = Stream {
                    stream,
                    status,
                    headers,
                    chunked,
                    dechunker: Dechunker::default(),
                    plain: Vec::new(),
                    consumed: 0,
                };
                s.feed(&rest);
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "POST {path}: no response head within {REQUEST_DEADLINE:?}"
            );
            let mut buf = [0u8; 8192];
            match self_read(&mut stream, &mut buf) {
                Some(0) => panic!(
                    "POST {path}: connection closed before the response head: {:?}",
                    String::from_utf8_lossy(&raw)
                ),
                Some(n) => raw.extend_from_slice(&buf[..n]),
                None => {}
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if self.chunked {
            self.dechunker.feed(bytes);
        } else {
            self.plain.extend_from_slice(bytes);
        }
    }

    fn body(&self) -> &[u8] {
        if self.chunked {
            &self.dechunker.data
        } else {
            &self.plain
        }
    }

    /// The next newline-terminated line of the body, waiting up to `timeout`; `None` if none
    /// came (or the stream ended without one).
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(nl) = self.body()[self.consumed..]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line = &self.body()[self.consumed..self.consumed + nl];
                let line = String::from_utf8_lossy(line).into_owned();
                self.consumed += nl + 1;
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let mut buf = [0u8; 8192];
            match self_read(&mut self.stream, &mut buf) {
                Some(0) => return None,
                Some(n) => {
                    let bytes = buf[..n].to_vec();
                    self.feed(&bytes);
                }
                None => {}
            }
        }
    }

    /// Everything received but not handed out as lines, after waiting `wait` for more.
    pub fn rest(&mut self, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let mut buf = [0u8; 8192];
            match self_read(&mut self.stream, &mut buf) {
                Some(0) => break,
                Some(n) => {
                    let bytes = buf[..n].to_vec();
                    self.feed(&bytes);
                }
                None => {}
            }
        }
        String::from_utf8_lossy(&self.body()[self.consumed..]).into_owned()
    }
}

/// One read with the socket's short timeout: `None` when nothing came in time.
fn self_read(stream: &mut TcpStream, buf: &mut [u8]) -> Option<usize> {
    match stream.read(buf) {
        Ok(n) => Some(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(_) => Some(0),
    }
}

/// Blanks, in a gateway JSON body, what legitimately differs between two servers given the
/// same requests: cluster and member ids, raft terms and indexes, ports, the server version,
/// database sizes and whole-database hashes. Key order, revisions, values and formatting are
/// kept: they must match.
pub fn normalize(json: &str) -> String {
    let rules = [
        (
            r#""(cluster_id|member_id|raft_term|leader|raftIndex|raftTerm|raftAppliedIndex|dbSize|dbSizeInUse)":"\d+""#,
            r#""$1":"<n>""#,
        ),
        (r#""ID":"\d{6,}""#, r#""ID":"<id>""#),
        (r#""version":"3\.\d+\.\d+""#, r#""version":"<version>""#),
        (r#""hash":\d+"#, r#""hash":<hash>"#),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
    ];
    let mut out = json.to_owned();
    for (pattern, replacement) in rules {
        out = Regex::new(pattern)
            .expect("valid pattern")
            .replace_all(&out, replacement)
            .into_owned();
    }
    out
}
