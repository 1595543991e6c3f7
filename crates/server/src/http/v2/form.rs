//! Form and query parameters as Go's `Request.ParseForm` reads them: body values (for
//! POST, PUT and PATCH with a form content type) before query values, the same errors.

use std::collections::HashMap;

/// Parameters by name, each with its values in order.
#[derive(Default, Debug)]
pub struct Form {
    values: HashMap<String, Vec<String>>,
}

impl Form {
    /// Parses the form body (when it counts) and the query, body first.
    pub fn parse(
        method: &str,
        content_type: Option<&str>,
        body: &[u8],
        query: &str,
    ) -> Result<Form, String> {
        let mut form = Form::default();
        let is_form = content_type
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|ct| {
                ct.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if matches!(method, "POST" | "PUT" | "PATCH") && is_form {
            form.add(&String::from_utf8_lossy(body))?;
        }
        form.add(query)?;
        Ok(form)
    }

    fn add(&mut self, s: &str) -> Result<(), String> {
        for pair in s.split('&').filter(|p| !p.is_empty()) {
            if pair.contains(';') {
                return Err("invalid semicolon separator in query".into());
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = unescape(k, true)?;
            let v = unescape(v, true)?;
            self.values.entry(k).or_default().push(v);
        }
        Ok(())
    }

    /// Whether the parameter was given (even empty).
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The first value, or "" (Go's `FormValue`).
    pub fn value(&self, name: &str) -> &str {
        self.values
            .get(name)
            .and_then(|v| v.first())
            .map_or("", String::as_str)
    }

    /// The first value parsed as Go's `strconv.ParseBool`; false when absent.
    pub fn bool(&self, name: &str) -> Result<bool, ()> {
        if !self.has(name) {
            return Ok(false);
        }
        parse_bool(self.value(name))
    }

    /// The first value as an unsigned decimal; 0 when absent.
    pub fn u64(&self, name: &str) -> Result<u64, ()> {
        if !self.has(name) {
            return Ok(0);
        }
        parse_u64(self.value(name))
    }
}

pub fn parse_bool(s: &str) -> Result<bool, ()> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(()),
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)`: digits only (underscores are not allowed in base 10).
pub fn parse_u64(s: &str) -> Result<u64, ()> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse().map_err(|_| ())
}

/// Percent-decoding as Go's `url.QueryUnescape` (`query`: `+` is a space) or
/// `url.PathUnescape`.
pub fn unescape(s: &str, query: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).and_then(|&b| hex(b)),
                    bytes.get(i + 2).and_then(|&b| hex(b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        let end = (i + 3).min(bytes.len());
                        return Err(format!(
                            "invalid URL escape \"{}\"",
                            String::from_utf8_lossy(&bytes[i..end])
                        ));
                    }
                }
            }
            b'+' if query => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_values_come_before_query_values() {
        let f = Form::parse(
            "PUT",
            Some("application/x-www-form-urlencoded"),
            b"value=a+b%21&ttl=",
            "value=q&dir=true",
        )
        .unwrap();
        assert_eq!(f.value("value"), "a b!");
        assert!(f.has("ttl"));
        assert_eq!(f.value("ttl"), "");
        assert_eq!(f.bool("dir"), Ok(true));
        assert_eq!(f.bool("nope"), Ok(false));
        let f = Form::parse(
            "DELETE",
            Some("application/x-www-form-urlencoded"),
            b"value=x",
            "",
        )
        .unwrap();
        assert!(!f.has("value"));
    }

    #[test]
    fn bad_escapes_are_go_errors() {
        let e = Form::parse("GET", None, b"", "a=%zz").unwrap_err();
        assert_eq!(e, "invalid URL escape \"%zz\"");
        assert_eq!(parse_u64("12a"), Err(()));
        assert_eq!(parse_bool("yes"), Err(()));
    }
}
