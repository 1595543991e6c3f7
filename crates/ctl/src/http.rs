//! A minimal HTTP/1.1 client for the v2 keys API and a member's `/metrics`: one request
//! per connection, whole responses, chunked bodies decoded; `https://` over rustls.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

/// One answer: status, the `X-Etcd-Index` header, the body.
pub struct Response {
    pub status: u16,
    pub etcd_index: u64,
    pub body: Vec<u8>,
}

/// A byte stream to a server, plain or TLS.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Sends `method path` with `body` to `endpoint` (`http://host:port`, `https://host:port`
/// or `host:port`); `tls` is the configuration for `https://`. The body is a form unless
/// `headers` name another `Content-Type`. `timeout` bounds connecting and each read
/// (`None`: wait as long as it takes, for watches).
pub fn request(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
    timeout: Option<Duration>,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<Response, String> {
    let secure = endpoint.starts_with("https://");
    let host = endpoint
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let address = std::net::ToSocketAddrs::to_socket_addrs(host)
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("no address for {host}"))?;
    let tcp = match timeout {
        Some(t) => TcpStream::connect_timeout(&address, t),
        None => TcpStream::connect(address),
    }
    .map_err(|e| format!("dial tcp {address}: connect: {}", os_error_text(&e)))?;
    tcp.set_read_timeout(timeout).map_err(|e| e.to_string())?;
    let mut stream: Box<dyn Stream> = if secure {
        let Some(config) = tls else {
            return Err(format!("{endpoint}: https needs TLS settings"));
        };
        let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        let connection =
            rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
        Box::new(rustls::StreamOwned::new(connection, tcp))
    } else {
        Box::new(tcp)
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let typed = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() || method == "PUT" || method == "POST" {
        if !typed {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(format!("{head}{body}").as_bytes())
        .and_then(|()| stream.flush())
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader
        .read_line(&mut status_line)
        .map_err(|e| e.to_string())?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response {status_line:?}"))?;
    let (mut chunked, mut length, mut etcd_index) = (false, None, 0);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "content-length" => length = value.parse::<usize>().ok(),
                "x-etcd-index" => etcd_index = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).map_err(|e| e.to_string())?;
            let size = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).map_err(|e| e.to_string())?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    } else {
        reader.read_to_end(&mut body).map_err(|e| e.to_string())?;
    }
    Ok(Response {
        status,
        etcd_index,
        body,
    })
}

/// An OS error as Go words it: `connection refused`, without Rust's `(os error N)`.
pub fn os_error_text(e: &std::io::Error) -> String {
    let text = e.to_string().to_lowercase();
    match text.find(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Go's `url.QueryEscape`: a query or form part, a space as `+`.
pub fn query_escape(text: &str) -> String {
    escape(text, |b| b == b' ', b"")
}

/// A URL path as Go's `url.URL.String` writes it: `/` and the sub-delimiters that a path
/// may hold stay as they are.
pub fn path_escape(text: &str) -> String {
    escape(text, |_| false, b"$&+,/:;=@")
}

/// Go's `url.Values.Encode`: `name=value` pairs sorted by name, joined with `&`.
pub fn encode_values(pairs: &[(&str, String)]) -> String {
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|(name, _)| *name);
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", query_escape(name), query_escape(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes all but the unreserved bytes and `keep`; `plus` bytes become `+`.
fn escape(text: &str, plus: impl Fn(u8) -> bool, keep: &[u8]) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ if keep.contains(&b) => out.push(b as char),
            _ if plus(b) => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
