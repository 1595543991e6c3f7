//! JSON as Go's `encoding/json` writes it, for byte-for-byte v2 bodies: fields in a fixed
//! order, `<`, `>` and `&` escaped as `\u003c`, `\u003e` and `\u0026`, control characters as
//! `\u00XX` (apart from `\n`, `\r` and `\t`), U+2028 and U+2029 escaped; and times in
//! RFC 3339 with nanoseconds, trailing zeros dropped (Go's `time.RFC3339Nano`).

/// Builds one JSON value; objects written field by field.
#[derive(Default)]
pub struct JsonWriter {
    out: String,
    /// Whether the innermost open object or array already holds an element.
    has_element: Vec<bool>,
}

impl JsonWriter {
    fn separator(&mut self) {
        if let Some(has) = self.has_element.last_mut() {
            if *has {
                self.out.push(',');
            }
            *has = true;
        }
    }

    fn key(&mut self, name: &str) {
        self.separator();
        self.out.push('"');
        self.out.push_str(name);
        self.out.push_str("\":");
    }

    /// Opens an object (as a value, or at the top).
    pub fn open(&mut self) {
        self.out.push('{');
        self.has_element.push(false);
    }

    /// Opens an object as an element of the array being written.
    pub fn open_element(&mut self) {
        self.separator();
        self.open();
    }

    /// Opens an object under `name`.
    pub fn open_field(&mut self, name: &str) {
        self.key(name);
        self.open();
    }

    pub fn close(&mut self) {
        self.out.push('}');
        self.has_element.pop();
    }

    /// Opens an array under `name`.
    pub fn open_array(&mut self, name: &str) {
        self.key(name);
        self.out.push('[');
        self.has_element.push(false);
    }

    pub fn close_array(&mut self) {
        self.out.push(']');
        self.has_element.pop();
    }

    pub fn field_str(&mut self, name: &str, value: &str) {
        self.key(name);
        push_string(&mut self.out, value);
    }

    /// A string as an element of the array being written.
    pub fn element_str(&mut self, value: &str) {
        self.separator();
        push_string(&mut self.out, value);
    }

    pub fn field_u64(&mut self, name: &str, value: u64) {
        self.key(name);
        self.out.push_str(&value.to_string());
    }

    pub fn field_i64(&mut self, name: &str, value: i64) {
        self.key(name);
        self.out.push_str(&value.to_string());
    }

    pub fn field_f64(&mut self, name: &str, value: f64) {
        self.key(name);
        self.out.push_str(&go_float(value));
    }

    pub fn field_bool(&mut self, name: &str, value: bool) {
        self.key(name);
        self.out.push_str(if value { "true" } else { "false" });
    }

    /// Inserts already encoded JSON under `name`.
    pub fn field_raw(&mut self, name: &str, json: &str) {
        self.key(name);
        self.out.push_str(json);
    }

    pub fn finish(self) -> String {
        self.out
    }

    /// The value and a newline, as `json.Encoder` writes it.
    pub fn finish_line(mut self) -> String {
        self.out.push('\n');
        self.out
    }
}

/// A quoted JSON string, escaped as Go escapes it.
pub fn push_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 0xf) as usize] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A serde value as Go's `encoding/json` writes it: serde_json's layout with Go's string
/// escaping (`push_string`), for bodies built from serde types.
pub fn to_go_json<T: serde::Serialize>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out,
        GoFormatter,
    ))?;
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// serde_json's compact formatter, with the escapes Go adds (`<`, `>`, `&`, U+2028, U+2029)
/// and Go's `\u00XX` where serde_json writes `\b` and `\f`.
struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        escape: serde_json::ser::CharEscape,
    ) -> std::io::Result<()> {
        use serde_json::ser::CharEscape;
        match escape {
            CharEscape::Backspace => writer.write_all(b"\\u0008"),
            CharEscape::FormFeed => writer.write_all(b"\\u000c"),
            other => serde_json::ser::CompactFormatter.write_char_escape(writer, other),
        }
    }
}

/// A float as Go's `encoding/json` writes it (shortest form; exponent only for very large or
/// small numbers).
pub fn go_float(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e21 {
        return format!("{}", v as i128);
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{v:e}");
        // Go writes e-07 where Rust writes e-7.
        if let Some((mantissa, exp)) = s.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ("-", d),
                None => ("+", exp),
            };
            return format!("{mantissa}e{sign}{digits:0>2}");
        }
        return s;
    }
    format!("{v}")
}

/// A Unix time in nanoseconds as Go's `time.RFC3339Nano` in UTC:
/// `2026-12-05T11:01:14.119648999Z`, trailing zeros of the fraction dropped.
pub fn rfc3339_nano(unix_nanos: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_nanos as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_as_go() {
        let mut s = String::new();
        push_string(&mut s, "<a&b>\"\\\n\t\u{1}é\u{2028}");
        assert_eq!(s, r#""\u003ca\u0026b\u003e\"\\\n\t\u0001é\u2028""#);
    }

    #[test]
    fn serde_values_escape_as_go() {
        let (key, text) = ("k<", "<a&b>\"\\\n\t\u{1}\u{8}\u{c}é\u{2028}\u{2029}");
        let mut expected = String::from("{");
        push_string(&mut expected, key);
        expected.push(':');
        push_string(&mut expected, text);
        expected.push('}');
        let value = std::collections::BTreeMap::from([(key, text)]);
        assert_eq!(to_go_json(&value).unwrap(), expected);
    }

    #[test]
    fn times_are_rfc3339_nano() {
        assert_eq!(
            rfc3339_nano(1_796_468_474_119_648_999),
            "2026-12-05T11:01:14.119648999Z"
        );
        assert_eq!(
            rfc3339_nano(1_796_468_474_100_000_000),
            "2026-12-05T11:01:14.1Z"
        );
        assert_eq!(
            rfc3339_nano(1_796_468_474_000_000_000),
            "2026-12-05T11:01:14Z"
        );
    }

    #[test]
    fn objects_nest() {
        let mut w = JsonWriter::default();
        w.open();
        w.field_str("a", "x");
        w.open_array("n");
        w.open_element();
        w.field_u64("i", 1);
        w.close();
        w.open_element();
        w.close();
        w.close_array();
        w.field_f64("f", 0.5);
        w.close();
        assert_eq!(w.finish(), r#"{"a":"x","n":[{"i":1},{}],"f":0.5}"#);
    }
}
