//! The Common Name of a client certificate's subject: with `--client-cert-auth`, the user a
//! request without a token acts as (etcd's AuthInfoFromTLS).
//!
//! A certificate is DER: `Certificate ::= SEQUENCE { tbsCertificate, ... }`, and
//! `TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
//! validity, subject, ... }`; the subject is a SEQUENCE of SETs of `{ type OID, value }`, the
//! Common Name being OID 2.5.4.3. Only that path is read; the certificate was verified by
//! the TLS handshake already.

/// DER encoding of OID 2.5.4.3 (id-at-commonName).
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_VERSION: u8 = 0xA0;

/// The subject's Common Name in a DER certificate, if it has one.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (tag, cert, _) = element(der)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = element(cert)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    // Skip the optional version, then serial, signature, issuer and validity.
    let (tag, _, rest) = element(tbs)?;
    if tag == TAG_VERSION {
        tbs = rest;
    }
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (tag, mut subject, _) = element(tbs)?;
    if tag != TAG_SEQUENCE {
        return None;
    }
    while !subject.is_empty() {
        let (tag, set, rest) = element(subject)?;
        subject = rest;
        if tag != TAG_SET {
            return None;
        }
        let (_, pair, _) = element(set)?;
        let (tag, oid, value) = element(pair)?;
        if tag == TAG_OID && oid == COMMON_NAME_OID {
            let (_, name, _) = element(value)?;
            return String::from_utf8(name.to_vec()).ok();
        }
    }
    None
}

/// Splits one DER element off `input`: its tag, contents, and what follows it.
pub(super) fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_name_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "oxcd");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "example.com");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("example.com"));
    }

    #[test]
    fn no_common_name_or_garbage_is_none() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()), None);
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x85, 1, 2, 3, 4, 5]), None);
        assert_eq!(common_name(&[0x30, 0x05, 0x30]), None);
    }
}
