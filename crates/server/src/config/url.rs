//! URLs as etcd accepts them in its URL flags: `scheme://host:port` with scheme http,
//! https, unix or unixs, a port always present and no path.

use std::fmt;

/// The transport a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Http,
    Https,
    /// A unix socket whose path is the URL's `host:port`.
    Unix,
    /// A unix socket carrying TLS.
    Unixs,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Unix => "unix",
            Scheme::Unixs => "unixs",
        }
    }

    /// Whether connections on this URL use TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Unixs)
    }
}

/// One validated URL. Its [`Display`](fmt::Display) form is canonical (`scheme://host:port`)
/// and is what member ids are computed from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtcdUrl {
    pub scheme: Scheme,
    /// The host as written, without brackets for IPv6 ("::1"); may be empty (":2379").
    pub host: String,
    pub port: u16,
    /// `host:port` as written (brackets kept): a socket address for TCP, a path for unix.
    pub authority: String,
}

impl EtcdUrl {
    /// Parses one URL with etcd's rules; the error text is etcd's.
    pub fn parse(input: &str) -> Result<EtcdUrl, String> {
        let s = input.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| format!("URL scheme must be http, https, unix, or unixs: {s}"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "unix" => Scheme::Unix,
            "unixs" => Scheme::Unixs,
            _ => {
                return Err(format!(
                    "URL scheme must be http, https, unix, or unixs: {s}"
                ))
            }
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if !path.is_empty() {
            return Err(format!("URL must not contain a path: {s}"));
        }
        if authority.contains('@') {
            return Err(format!("URL must not contain user information: {s}"));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("URL address does not have the form \"host:port\": {s}"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("URL address does not have a valid port: {s}"))?;
        Ok(EtcdUrl {
            scheme,
            host: host.to_string(),
            port,
            authority: authority.to_string(),
        })
    }

    /// Parses a comma-separated list, sorted as etcd sorts it (by canonical string);
    /// an empty list is an error, as in etcd.
    pub fn parse_list(input: &str) -> Result<Vec<EtcdUrl>, String> {
        let mut urls = input
            .split(',')
            .map(EtcdUrl::parse)
            .collect::<Result<Vec<_>, _>>()?;
        urls.sort_by_key(|u| u.to_string());
        Ok(urls)
    }

    /// Whether the host is an IP address or `localhost`: etcd binds only to those.
    pub fn host_is_bindable(&self) -> bool {
        matches!(self.scheme, Scheme::Unix | Scheme::Unixs)
            || self.host == "localhost"
            || self.host.is_empty()
            || self.host.parse::<std::net::IpAddr>().is_ok()
    }
}

impl fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.authority)
    }
}

/// Splits `host:port` as Go's `net.SplitHostPort` does: IPv6 hosts need brackets, and
/// the port must be present (it may be empty there; the caller checks it).
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        if port.contains(':') {
            return None;
        }
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') || host.contains('[') || host.contains(']') {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_urls() {
        let u = EtcdUrl::parse(" http://127.0.0.1:2379 ").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Http, "127.0.0.1", 2379)
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:2379");
        let u = EtcdUrl::parse("HTTPS://[::1]:2380").unwrap();
        assert_eq!((u.scheme, u.host.as_str()), (Scheme::Https, "::1"));
        assert_eq!(u.to_string(), "https://[::1]:2380");
        assert!(EtcdUrl::parse("unix://localhost:123").is_ok());
    }

    #[test]
    fn refuses_what_etcd_refuses() {
        for (bad, why) in [
            ("ftp://a:1", "URL scheme must be"),
            ("127.0.0.1:2379", "URL scheme must be"),
            ("http://a:1/", "must not contain a path"),
            ("http://a", "host:port"),
            ("http://::1:2379", "host:port"),
            ("http://a:x", "valid port"),
        ] {
            let err = EtcdUrl::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(EtcdUrl::parse_list("").is_err());
    }

    #[test]
    fn lists_are_sorted() {
        let l = EtcdUrl::parse_list("http://b:2,http://a:1").unwrap();
        assert_eq!(l[0].to_string(), "http://a:1");
    }
}
