//! Unclean request paths, as Go's `http.ServeMux` answers them in front of etcd's HTTP
//! handlers: a path with an empty, `.` or `..` segment (`/v2/keys//a`, `/v2/keys/a/../b`) gets
//! `301 Moved Permanently` to the cleaned path, query kept, before any handler runs. The
//! comparison is on the decoded path, as Go's `URL.Path` is.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, Method, StatusCode};

/// The redirect `req` gets, when its path is not clean. CONNECT is left alone, as Go does.
pub fn redirect(req: &Request) -> Option<Response> {
    let raw = req.uri().path();
    if req.method() == Method::CONNECT || raw == "*" {
        return None;
    }
    let decoded = percent_decode(raw)?;
    let cleaned = clean(&decoded);
    if cleaned == decoded {
        return None;
    }
    let mut location = escape_path(&cleaned);
    if let Some(query) = req.uri().query().filter(|q| !q.is_empty()) {
        location.push('?');
        location.push_str(query);
    }
    let mut resp = StatusCode::MOVED_PERMANENTLY.into_response();
    if *req.method() == Method::GET {
        let body = format!(
            "<a href=\"{}\">Moved Permanently</a>.\n\n",
            html_escape(&location)
        );
        resp = (StatusCode::MOVED_PERMANENTLY, body).into_response();
    }
    let headers = resp.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    headers.insert(header::LOCATION, HeaderValue::from_str(&location).ok()?);
    Some(resp)
}

/// Go's `cleanPath`: rooted, `path.Clean`ed, with a trailing slash kept.
fn clean(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut cleaned = format!("/{}", segments.join("/"));
    if path.ends_with('/') && cleaned != "/" {
        cleaned.push('/');
    }
    cleaned
}

/// `%XX` decoded; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Go's path escaping (`url.PathEscape` keeping `/`): unreserved bytes and `$&+,/:;=@` stay,
/// everything else becomes `%XX`.
fn escape_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go's `htmlEscape` of the redirect body.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(method: Method, uri: &str) -> Option<String> {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        redirect(&req).map(|r| {
            assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
            r.headers()[header::LOCATION].to_str().unwrap().to_owned()
        })
    }

    #[test]
    fn unclean_paths_redirect_to_the_cleaned_path() {
        let get = |uri| location(Method::GET, uri);
        assert_eq!(get("/v2/keys//foo").as_deref(), Some("/v2/keys/foo"));
        assert_eq!(
            get("/v2/keys/a/../foo?x=1").as_deref(),
            Some("/v2/keys/foo?x=1")
        );
        assert_eq!(get("/v2/keys/./foo/").as_deref(), Some("/v2/keys/foo/"));
        assert_eq!(get("/v2/keys/../..").as_deref(), Some("/"));
        assert_eq!(
            get("/v2/keys/a%20b//c").as_deref(),
            Some("/v2/keys/a%20b/c")
        );
        assert_eq!(get("/v2/keys/a%2F%2Fb").as_deref(), Some("/v2/keys/a/b"));
        assert_eq!(get("/v2/keys/foo/"), None);
        assert_eq!(get("/v2/keys/a%20b"), None);
        assert_eq!(location(Method::CONNECT, "/a//b"), None);
    }

    #[test]
    fn only_get_has_a_body_and_get_and_head_a_content_type() {
        let req = |method: Method| {
            let req = Request::builder()
                .method(method)
                .uri("/v2/keys//foo")
                .body(axum::body::Body::empty())
                .unwrap();
            redirect(&req).unwrap()
        };
        let get = req(Method::GET);
        assert_eq!(
            get.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let put = req(Method::PUT);
        assert!(put.headers().get(header::CONTENT_TYPE).is_none());
        assert_eq!(html_escape("/a?b=<'&\">"), "/a?b=&lt;&#39;&amp;&#34;&gt;");
    }
}
