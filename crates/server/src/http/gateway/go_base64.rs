//! Which base64 etcd's gateway accepts for a `bytes` field: Go's `base64.StdEncoding`, padded,
//! standard alphabet, line breaks ignored. Anything else is refused with Go's words
//! ("illegal base64 data at input byte N", N counted as Go counts it), so a URL-safe or
//! unpadded key is an error here as it is in etcd rather than silently read.

/// Go's decoding alphabet position of `c`, if it is in the standard alphabet.
fn is_alphabet(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

fn is_newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

/// Checks `s` as Go's `StdEncoding.DecodeString` would; the error is the offset Go reports.
pub fn check(s: &[u8]) -> Result<(), usize> {
    let mut si = 0;
    loop {
        // One quantum of up to four symbols.
        let mut j = 0;
        while j < 4 {
            if si == s.len() {
                return match j {
                    0 => Ok(()),
                    _ => Err(si - j),
                };
            }
            let c = s[si];
            si += 1;
            if is_alphabet(c) {
                j += 1;
                continue;
            }
            if is_newline(c) {
                continue;
            }
            if c != b'=' {
                return Err(si - 1);
            }
            // Padding: only in the third or fourth place, and "==" in the third.
            match j {
                0 | 1 => return Err(si - 1),
                2 => {
                    while si < s.len() && is_newline(s[si]) {
                        si += 1;
                    }
                    if si == s.len() {
                        return Err(s.len());
                    }
                    if s[si] != b'=' {
                        return Err(si - 1);
                    }
                    si += 1;
                }
                _ => {}
            }
            while si < s.len() && is_newline(s[si]) {
                si += 1;
            }
            return if si < s.len() { Err(si) } else { Ok(()) };
        }
    }
}

/// Go's message for a bad offset.
pub fn message(offset: usize) -> String {
    format!("illegal base64 data at input byte {offset}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offsets as Go 1.19's `base64.StdEncoding.DecodeString` reports them (checked against
    /// etcd 3.4.23's gateway for the first five).
    #[test]
    fn go_offsets() {
        assert_eq!(check(b"Zm9v"), Ok(()));
        assert_eq!(check(b"Zm9v=="), Err(4));
        assert_eq!(check(b"Zm9v_-"), Err(4));
        assert_eq!(check(b"Zm9"), Err(0));
        assert_eq!(check(b"!!!"), Err(0));
        assert_eq!(check(b""), Ok(()));
        assert_eq!(check(b"YQ=="), Ok(()));
        assert_eq!(check(b"YWI="), Ok(()));
        assert_eq!(check(b"YQ="), Err(3));
        assert_eq!(check(b"YQ=x"), Err(2));
        assert_eq!(check(b"Y==="), Err(1));
        assert_eq!(check(b"YQ==YQ=="), Err(4));
        assert_eq!(check(b"Zm9v\nYmFy"), Ok(()));
        assert_eq!(check(b"YQ==\n"), Ok(()));
        assert_eq!(check(b"Zm9vYmFy"), Ok(()));
        assert_eq!(check(b"Zm9vY"), Err(4));
    }
}
