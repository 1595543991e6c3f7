//! Go's text conventions that etcdctl's output is made of: `%q` quoting, `encoding/json`
//! strings, durations, `humanize.Bytes`, `strconv` parse errors.

use std::fmt::Write;
use std::time::Duration;

/// Go's `strconv.Quote` (`%q` of a string): printable UTF-8 kept, the rest escaped.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut rest = bytes;
    while !rest.is_empty() {
        let (ch, len) = match std::str::from_utf8(&rest[..rest.len().min(4)]) {
            Ok(s) => first_char(s),
            Err(e) if e.valid_up_to() > 0 => {
                first_char(std::str::from_utf8(&rest[..e.valid_up_to()]).expect("valid prefix"))
            }
            Err(_) => (None, 1),
        };
        match ch {
            None => {
                let _ = write!(out, "\\x{:02x}", rest[0]);
            }
            Some(c) => quote_char(&mut out, c),
        }
        rest = &rest[len..];
    }
    out.push('"');
    out
}

fn first_char(s: &str) -> (Option<char>, usize) {
    let c = s.chars().next().expect("non-empty");
    (Some(c), c.len_utf8())
}

fn quote_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if is_printable(c) => out.push(c),
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Go's `unicode.IsPrint`, approximated: no controls, no unassigned or format characters of
/// the common planes.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    !(u < 0x20
        || (0x7f..0xa0).contains(&u)
        || u == 0xad
        || (0x2028..=0x2029).contains(&u)
        || (0x200b..=0x200f).contains(&u)
        || (0xfff0..=0xfffb).contains(&u)
        || (0xd800..0xe000).contains(&u)
        || (0xe000..0xf900).contains(&u))
}

/// A string as Go's `encoding/json` writes it (HTML characters escaped, bad UTF-8 replaced).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 with padding, as `encoding/json` writes `[]byte`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `humanize.Bytes`: SI units, one decimal below 10.
pub fn human_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exp = ((size as f64).ln() / 1000f64.ln()).floor() as usize;
    let value = (size as f64 / 1000f64.powi(exp as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exp])
    } else {
        format!("{value:.0} {}", UNITS[exp])
    }
}

/// Go's `time.Duration.String()`.
pub fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let trim = |whole: u128, frac: u128, digits: usize, unit: &str| {
        let mut s = format!("{whole}");
        if frac > 0 {
            let f = format!("{frac:0digits$}");
            s.push('.');
            s.push_str(f.trim_end_matches('0'));
        }
        s.push_str(unit);
        s
    };
    if nanos < 1_000 {
        format!("{nanos}ns")
    } else if nanos < 1_000_000 {
        trim(nanos / 1_000, nanos % 1_000, 3, "µs")
    } else if nanos < 1_000_000_000 {
        trim(nanos / 1_000_000, nanos % 1_000_000, 6, "ms")
    } else {
        let secs = nanos / 1_000_000_000;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut out = String::new();
        if h > 0 {
            let _ = write!(out, "{h}h");
        }
        if h > 0 || m > 0 {
            let _ = write!(out, "{m}m");
        }
        out + &trim(s, nanos % 1_000_000_000, 9, "s")
    }
}

/// Go's `time.ParseDuration` (units ns, us, µs, ms, s, m, h; fractions; a sign).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {}", quote(text.as_bytes()));
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "time: missing unit in duration {}",
                    quote(text.as_bytes())
                ))
            }
            unit => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(unit.as_bytes()),
                    quote(text.as_bytes())
                ))
            }
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    Ok(Duration::from_secs_f64(total))
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            quote(text.as_bytes())
        )),
    }
}

/// Go's `strconv.ParseInt(text, base, 64)`, with its error text.
pub fn parse_int(text: &str, base: u32) -> Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            quote(text.as_bytes())
        ));
    }
    i64::from_str_radix(text.strip_prefix('+').unwrap_or(text), base).map_err(|_| {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            quote(text.as_bytes())
        )
    })
}

/// Go's `strconv.ParseInt(text, 0, 64)`, as pflag reads int flags: the base comes from the
/// prefix (`0x`, `0o`, `0b`, or a leading `0` for octal), else 10, and `_` may separate
/// digits (`1_000`, `0x_ff`).
pub fn parse_int_prefixed(text: &str) -> Result<i64, String> {
    let fail = |why: &str| {
        format!(
            "strconv.ParseInt: parsing {}: {why}",
            quote(text.as_bytes())
        )
    };
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let lower = unsigned.to_ascii_lowercase();
    let (base, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if !underscores_separate_digits(&lower) {
        return Err(fail("invalid syntax"));
    }
    let digits = digits.replace('_', "");
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return Err(fail("invalid syntax"));
    }
    let magnitude = u64::from_str_radix(&digits, base).map_err(|_| fail("value out of range"))?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
            .ok_or_else(|| fail("value out of range"))
    } else {
        i64::try_from(magnitude).map_err(|_| fail("value out of range"))
    }
}

/// Go's rule for `_` in a number (unsigned, lower case) read with base 0: each one stands
/// between two digits, or between the base prefix (`0x`, `0o`, `0b`) and a digit.
fn underscores_separate_digits(number: &str) -> bool {
    let bytes = number.as_bytes();
    let hex = number.starts_with("0x");
    let prefixed = hex || number.starts_with("0o") || number.starts_with("0b");
    // Whether the last byte seen was a digit (or the prefix), an underscore, or neither.
    #[derive(PartialEq)]
    enum Seen {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let mut seen = if prefixed { Seen::Digit } else { Seen::Start };
    for &b in &bytes[if prefixed { 2 } else { 0 }..] {
        if b.is_ascii_digit() || (hex && b.is_ascii_hexdigit()) {
            seen = Seen::Digit;
        } else if b == b'_' {
            if seen != Seen::Digit {
                return false;
            }
            seen = Seen::Underscore;
        } else if seen == Seen::Underscore {
            return false;
        } else {
            seen = Seen::Other;
        }
    }
    seen != Seen::Underscore
}

/// Go's `strconv.ParseUint(text, base, 64)`, with its error text.
pub fn parse_uint(text: &str, base: u32) -> Result<u64, String> {
    if text.is_empty() || !text.chars().all(|c| c.is_digit(base)) {
        return Err(format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            quote(text.as_bytes())
        ));
    }
    u64::from_str_radix(text, base).map_err(|_| {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            quote(text.as_bytes())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_ints_parse_as_pflag_reads_them() {
        assert_eq!(parse_int_prefixed("0x10"), Ok(16));
        assert_eq!(parse_int_prefixed("-010"), Ok(-8));
        assert_eq!(parse_int_prefixed("0b11"), Ok(3));
        assert_eq!(parse_int_prefixed("+7"), Ok(7));
        assert_eq!(parse_int_prefixed("0"), Ok(0));
        assert_eq!(parse_int_prefixed("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(
            parse_int_prefixed("9223372036854775808").unwrap_err(),
            "strconv.ParseInt: parsing \"9223372036854775808\": value out of range"
        );
        assert_eq!(
            parse_int_prefixed("08").unwrap_err(),
            "strconv.ParseInt: parsing \"08\": invalid syntax"
        );
        assert!(parse_int_prefixed("0x").is_err());
        // Go's digit separators.
        assert_eq!(parse_int_prefixed("1_000"), Ok(1000));
        assert_eq!(parse_int_prefixed("0x_1_f"), Ok(31));
        assert_eq!(parse_int_prefixed("0_17"), Ok(15));
        assert_eq!(parse_int_prefixed("-0b1_0"), Ok(-2));
        for bad in ["_1", "1_", "1__0", "0x_", "_", "-_1"] {
            assert_eq!(
                parse_int_prefixed(bad).unwrap_err(),
                format!("strconv.ParseInt: parsing \"{bad}\": invalid syntax")
            );
        }
        assert!(parse_int_prefixed("").is_err());
    }

    #[test]
    fn quoting_matches_go() {
        assert_eq!(quote(b"a\"b\n"), r#""a\"b\n""#);
        assert_eq!(quote(b"\x00\xff"), r#""\x00\xff""#);
        assert_eq!(quote("ключ".as_bytes()), "\"ключ\"");
        assert_eq!(json_string("<a&b>"), r#""\u003ca\u0026b\u003e""#);
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"f"), "Zg==");
    }

    #[test]
    fn sizes_and_durations_read_as_go_prints_them() {
        assert_eq!(human_bytes(5), "5 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(1234), "1.2 kB");
        assert_eq!(duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn ints_fail_as_strconv() {
        assert_eq!(parse_int("ff", 16), Ok(255));
        assert_eq!(
            parse_int("zz", 16).unwrap_err(),
            r#"strconv.ParseInt: parsing "zz": invalid syntax"#
        );
    }
}
