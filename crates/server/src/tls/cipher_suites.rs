//! `--cipher-suites`: Go's cipher suite names, as etcd takes them, mapped to rustls suites.
//!
//! etcd accepts every name Go's `crypto/tls` knows (its secure and insecure lists, plus the
//! `..._CHACHA20_POLY1305` spellings without `_SHA256`) and refuses any other with
//! `unexpected TLS cipher suite "NAME"`. Go applies the list to TLS 1.2 only: TLS 1.3 suites
//! are always on. oxcd does the same with rustls, which implements the AEAD suites with
//! ECDHE key exchange; a listed Go suite that rustls lacks (CBC, RC4, 3DES, plain RSA key
//! exchange) is left out with a warning. A list with no TLS 1.2 suite left serves TLS 1.3
//! only, which is what Go's handshake comes to with such a list.

use rustls::crypto::ring::cipher_suite as ring;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

/// Go's names of the suites rustls (on ring) implements.
const SUPPORTED: &[(&str, SupportedCipherSuite)] = &[
    ("TLS_AES_128_GCM_SHA256", ring::TLS13_AES_128_GCM_SHA256),
    ("TLS_AES_256_GCM_SHA384", ring::TLS13_AES_256_GCM_SHA384),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        ring::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ring::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ring::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        ring::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ring::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    // etcd's own aliases.
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        ring::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Names Go knows that rustls does not implement.
const GO_ONLY: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// Checks `names` as etcd does at startup: every name must be a Go cipher suite. Returns
/// warnings for the ones rustls does not implement.
pub fn validate(names: &[String]) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    for name in names {
        if SUPPORTED.iter().any(|(n, _)| n == name) {
            continue;
        }
        if GO_ONLY.contains(&name.as_str()) {
            warnings.push(format!(
                "cipher suite {name:?} is not implemented by oxcd's TLS library, left out"
            ));
            continue;
        }
        return Err(format!("unexpected TLS cipher suite {name:?}"));
    }
    if !names.is_empty() && tls12_suites(names).is_empty() {
        warnings.push(format!(
            "--cipher-suites={} names no TLS 1.2 cipher suite oxcd implements; serving TLS 1.3 only",
            names.join(",")
        ));
    }
    Ok(warnings)
}

/// Every TLS 1.3 suite, then the TLS 1.2 suites of `names` in the order given; rustls'
/// defaults when `names` is empty.
pub fn resolve(names: &[String]) -> Vec<SupportedCipherSuite> {
    if names.is_empty() {
        return rustls::crypto::ring::DEFAULT_CIPHER_SUITES.to_vec();
    }
    let mut suites: Vec<SupportedCipherSuite> = rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .copied()
        .filter(is_tls13)
        .collect();
    for suite in tls12_suites(names) {
        if !suites.contains(&suite) {
            suites.push(suite);
        }
    }
    suites
}

fn tls12_suites(names: &[String]) -> Vec<SupportedCipherSuite> {
    names
        .iter()
        .filter_map(|name| SUPPORTED.iter().find(|(n, _)| n == name))
        .map(|(_, suite)| *suite)
        .filter(|s| !is_tls13(s))
        .collect()
}

/// Whether `suite` is a TLS 1.3 one.
pub fn is_tls13(suite: &SupportedCipherSuite) -> bool {
    let v: &SupportedProtocolVersion = suite.version();
    v.version == rustls::ProtocolVersion::TLSv1_3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn etcd_e2e_list_is_accepted() {
        let list = names(&[
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        ]);
        assert_eq!(validate(&list), Ok(vec![]));
        let suites = resolve(&list);
        assert_eq!(suites.iter().filter(|s| is_tls13(s)).count(), 3);
        assert_eq!(suites.iter().filter(|s| !is_tls13(s)).count(), 6);
    }

    #[test]
    fn unknown_names_are_refused_as_etcd_does() {
        assert_eq!(
            validate(&names(&["TLS_NOPE"])),
            Err("unexpected TLS cipher suite \"TLS_NOPE\"".to_string())
        );
    }

    #[test]
    fn go_only_suites_are_left_out_with_a_warning() {
        let list = names(&[
            "TLS_RSA_WITH_AES_128_CBC_SHA",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        ]);
        assert_eq!(validate(&list).unwrap().len(), 1);
        assert_eq!(resolve(&list).iter().filter(|s| !is_tls13(s)).count(), 1);
        // Nothing usable left for TLS 1.2.
        let only = names(&["TLS_RSA_WITH_AES_128_CBC_SHA"]);
        assert_eq!(validate(&only).unwrap().len(), 2);
        assert!(resolve(&only).iter().all(is_tls13));
    }
}
