//! JWT tokens (`--auth-token jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`), as etcd's
//! tokenJWT: a token is signed claims `{username, revision, exp}`; any member holding the key
//! judges it without having recorded anything. With only `pub-key` a member verifies tokens
//! but cannot issue them.
//!
//! Sign methods: RS256/384/512, PS256/384/512, ES256/384 and HS256/384/512 as etcd 3.4, and
//! EdDSA (Ed25519) as etcd 3.5. ES512 (P-521) is refused at startup: the signing library
//! (jsonwebtoken on ring) has no P-521.
//!
//! Keys are PEM files. Asymmetric methods sign with `priv-key` and, like etcd, verify with its
//! public half when it is given; `pub-key` (a public key or a certificate) is then only
//! checked to parse. HMAC methods use the bytes of `priv-key` as the secret.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde::{Deserialize, Serialize};

use super::cert;
use crate::config::flags::parse_go_duration;

/// etcd's default JWT lifetime when `ttl` is not given.
const DEFAULT_TTL: Duration = Duration::from_secs(5 * 60);

/// The options etcd knows; others are warned about and ignored.
const KNOWN_OPTIONS: [&str; 4] = ["sign-method", "pub-key", "priv-key", "ttl"];

/// DER of OID 1.2.840.10045.2.1 (id-ecPublicKey), for wrapping a SEC1 key into PKCS#8.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// What a token says, as etcd's claims (a JSON object; key order does not matter).
#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Issues and judges JWT tokens with one key.
pub struct JwtTokens {
    algorithm: Algorithm,
    /// `None` when only a public key was given: verify-only.
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtTokens {
    /// Builds the provider from `--auth-token jwt,…` options, with etcd's rules: unknown
    /// options warned about, `sign-method` required, at least one key, `ttl` a Go duration.
    pub fn from_options(options: &HashMap<String, String>) -> Result<JwtTokens, String> {
        let unknown: Vec<&str> = options
            .keys()
            .map(String::as_str)
            .filter(|k| !KNOWN_OPTIONS.contains(k))
            .collect();
        if !unknown.is_empty() {
            tracing::warn!(keys = ?unknown, "unknown JWT options");
        }
        let opt = |k: &str| options.get(k).filter(|v| !v.is_empty());
        let ttl = match opt("ttl") {
            Some(ttl) => parse_go_duration(ttl).map_err(invalid_options)?,
            None => DEFAULT_TTL,
        };
        let read = |k: &str| -> Result<Option<Vec<u8>>, String> {
            opt(k)
                .map(|file| {
                    std::fs::read(file).map_err(|e| invalid_options(format!("{file}: {e}")))
                })
                .transpose()
        };
        let public = read("pub-key")?;
        let private = read("priv-key")?;
        let method = options.get("sign-method").map(String::as_str).unwrap_or("");
        let algorithm = match method {
            "ES512" => {
                return Err(
                    "sign-method ES512 is not supported by this build (no P-521 in its \
                            signing library): use ES256 or ES384"
                        .to_string(),
                )
            }
            m => m
                .parse::<Algorithm>()
                .map_err(|_| invalid_options("auth: invalid auth signature method"))?,
        };
        let (signing, verifying) =
            keys(algorithm, public.as_deref(), private.as_deref()).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(algorithm);
        // etcd's library refuses a token once `exp` has passed, with no leeway.
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Ok(JwtTokens {
            algorithm,
            signing,
            verifying,
            validation,
            ttl,
        })
    }

    /// A token for `username` at auth `revision`, expiring `ttl` from now.
    pub fn assign(&self, username: &str, revision: u64) -> Result<String, JwtError> {
        let Some(key) = &self.signing else {
            return Err(JwtError::VerifyOnly);
        };
        let exp = (SystemTime::now() + self.ttl)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            username: username.to_string(),
            revision,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(self.algorithm), &claims, key)
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        tracing::debug!(
            "user-name" = username,
            revision,
            "created/assigned a new JWT token"
        );
        Ok(token)
    }

    /// The user and auth revision a valid, unexpired token names.
    pub fn info(&self, token: &str) -> Option<(String, u64)> {
        match jsonwebtoken::decode::<Claims>(token, &self.verifying, &self.validation) {
            Ok(data) => Some((data.claims.username, data.claims.revision)),
            Err(e) => {
                tracing::warn!(error = %e, "failed to parse a JWT token");
                None
            }
        }
    }
}

/// Why a JWT token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("auth: token signing attempted with verify-only key")]
    VerifyOnly,
    #[error("failed to sign a JWT token: {0}")]
    Sign(String),
}

/// Why the keys could not be loaded (etcd's texts where it has one).
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("auth: missing key data")]
    Missing,
    #[error("invalid key: {0}")]
    Invalid(String),
}

fn invalid_options(e: impl std::fmt::Display) -> String {
    format!("problem loading JWT options: {e}: auth: invalid auth options")
}

/// The signing key (`None`: verify-only) and the verifying key for `algorithm`.
fn keys(
    algorithm: Algorithm,
    public: Option<&[u8]>,
    private: Option<&[u8]>,
) -> Result<(Option<EncodingKey>, DecodingKey), KeyError> {
    use Algorithm::*;
    let invalid = |e: &dyn std::fmt::Display| KeyError::Invalid(e.to_string());
    if matches!(algorithm, HS256 | HS384 | HS512) {
        let secret = private.ok_or(KeyError::Missing)?;
        return Ok((
            Some(EncodingKey::from_secret(secret)),
            DecodingKey::from_secret(secret),
        ));
    }
    // A given public key must parse, even when the private key's half is used.
    let given_public = public
        .map(|pem| match algorithm {
            ES256 | ES384 => DecodingKey::from_ec_pem(pem),
            EdDSA => DecodingKey::from_ed_pem(pem),
            _ => DecodingKey::from_rsa_pem(pem),
        })
        .transpose()
        .map_err(|e| invalid(&e))?;
    let Some(private) = private else {
        return given_public.map(|k| (None, k)).ok_or(KeyError::Missing);
    };
    let pem = pem::parse(private).map_err(|e| invalid(&e))?;
    let der = pem.contents();
    let rng = ring::rand::SystemRandom::new();
    match algorithm {
        ES256 | ES384 => {
            let pkcs8 = if pem.tag() == "EC PRIVATE KEY" {
                sec1_to_pkcs8(der).ok_or_else(|| invalid(&"malformed EC PRIVATE KEY"))?
            } else {
                der.to_vec()
            };
            let ring_alg = if algorithm == ES256 {
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let pair = EcdsaKeyPair::from_pkcs8(ring_alg, &pkcs8, &rng).map_err(|e| invalid(&e))?;
            Ok((
                Some(EncodingKey::from_ec_der(&pkcs8)),
                DecodingKey::from_ec_der(pair.public_key().as_ref()),
            ))
        }
        EdDSA => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| invalid(&e))?;
            Ok((
                Some(EncodingKey::from_ed_der(der)),
                DecodingKey::from_ed_der(pair.public_key().as_ref()),
            ))
        }
        _ => {
            let pair = if pem.tag() == "RSA PRIVATE KEY" {
                RsaKeyPair::from_der(der)
            } else {
                RsaKeyPair::from_pkcs8(der)
            }
            .map_err(|e| invalid(&e))?;
            // jsonwebtoken's RSA signer takes the PKCS#1 form; PEM gives it either form.
            let signing = EncodingKey::from_rsa_pem(private).map_err(|e| invalid(&e))?;
            Ok((
                Some(signing),
                DecodingKey::from_rsa_der(pair.public_key().as_ref()),
            ))
        }
    }
}

/// Wraps a SEC1 `ECPrivateKey` (PEM "EC PRIVATE KEY", openssl's default) into PKCS#8, the
/// form ring reads: `SEQUENCE { INTEGER 0, SEQUENCE { id-ecPublicKey, curve }, OCTET STRING
/// { ECPrivateKey } }`. The curve comes from the key's `[0] parameters`.
fn sec1_to_pkcs8(sec1: &[u8]) -> Option<Vec<u8>> {
    let (tag, mut fields, _) = cert::element(sec1)?;
    if tag != 0x30 {
        return None;
    }
    let mut curve = None;
    while !fields.is_empty() {
        let (tag, contents, rest) = cert::element(fields)?;
        if tag == 0xa0 {
            curve = Some(contents);
        }
        fields = rest;
    }
    let curve = curve?;
    let algorithm = der(0x30, &[&der(0x06, &[EC_PUBLIC_KEY_OID]), curve]);
    let body = [&[0x02, 0x01, 0x00][..], &algorithm, &der(0x04, &[sec1])].concat();
    Some(der(0x30, &[&body[..]]))
}

/// One DER element: `tag`, length, then `parts` concatenated.
fn der(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let contents = parts.concat();
    let len = contents.len();
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 test key in openssl's default SEC1 form (`openssl ecparam -genkey`).
    const EC_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIC+v8OzhKAUQVd9S8Yhq7GJKtXNZPDzhqX/SO4RoaJFEoAoGCCqGSM49
AwEHoUQDQgAEyvuM76ZkKfXzV/x6ijzLlBzgdOuY2I/kiC3QWUTjNc6vNc576ZYo
48ahpBXYBLilikDgzclntGlzog5RtAx/cg==
-----END EC PRIVATE KEY-----
";
    const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEyvuM76ZkKfXzV/x6ijzLlBzgdOuY
2I/kiC3QWUTjNc6vNc576ZYo48ahpBXYBLilikDgzclntGlzog5RtAx/cg==
-----END PUBLIC KEY-----
";

    fn provider(dir: &std::path::Path, opts: &[(&str, &str)]) -> Result<JwtTokens, String> {
        let mut options = HashMap::new();
        for (k, v) in opts {
            let v = match *k {
                "pub-key" | "priv-key" => {
                    let path = dir.join(k);
                    std::fs::write(&path, v).unwrap();
                    path.to_string_lossy().into_owned()
                }
                _ => v.to_string(),
            };
            options.insert(k.to_string(), v);
        }
        JwtTokens::from_options(&options)
    }

    #[test]
    fn ec_tokens_from_a_sec1_key_verify_with_the_public_key_alone() {
        let dir = tempfile::tempdir().unwrap();
        let signer = provider(
            dir.path(),
            &[
                ("sign-method", "ES256"),
                ("priv-key", EC_SEC1),
                ("ttl", "1m"),
            ],
        )
        .unwrap();
        let token = signer.assign("alice", 7).unwrap();
        assert_eq!(signer.info(&token), Some(("alice".to_string(), 7)));

        let verifier = provider(
            dir.path(),
            &[("sign-method", "ES256"), ("pub-key", EC_PUBLIC)],
        )
        .unwrap();
        assert_eq!(verifier.info(&token), Some(("alice".to_string(), 7)));
        assert!(matches!(
            verifier.assign("bob", 1),
            Err(JwtError::VerifyOnly)
        ));
        assert_eq!(
            JwtError::VerifyOnly.to_string(),
            "auth: token signing attempted with verify-only key"
        );

        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(verifier.info(&tampered), None);
        assert_eq!(verifier.info("a.b.c"), None);
    }

    #[test]
    fn pkcs8_keys_from_rcgen_sign_ed25519_and_es384() {
        let dir = tempfile::tempdir().unwrap();
        for (method, alg) in [
            ("EdDSA", &rcgen::PKCS_ED25519),
            ("ES384", &rcgen::PKCS_ECDSA_P384_SHA384),
        ] {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let signer = provider(
                dir.path(),
                &[("sign-method", method), ("priv-key", &key.serialize_pem())],
            )
            .unwrap();
            let token = signer.assign("root", 2).unwrap();
            let verifier = provider(
                dir.path(),
                &[("sign-method", method), ("pub-key", &key.public_key_pem())],
            )
            .unwrap();
            assert_eq!(
                verifier.info(&token),
                Some(("root".to_string(), 2)),
                "{method}"
            );
        }
    }

    #[test]
    fn hmac_expiry_and_option_errors() {
        let dir = tempfile::tempdir().unwrap();
        let hs = provider(
            dir.path(),
            &[
                ("sign-method", "HS256"),
                ("priv-key", "secret"),
                ("ttl", "1s"),
            ],
        )
        .unwrap();
        let token = hs.assign("u", 1).unwrap();
        assert!(hs.info(&token).is_some());
        // `exp` is in whole seconds: past it after at most two.
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(hs.info(&token), None, "expired");

        let err = |opts: &[(&str, &str)]| provider(dir.path(), opts).err().unwrap();
        assert!(err(&[("sign-method", "XX1")]).contains("invalid auth signature method"));
        assert!(err(&[("priv-key", "secret")]).contains("invalid auth signature method"));
        assert_eq!(err(&[("sign-method", "RS256")]), "auth: missing key data");
        assert!(err(&[("sign-method", "ES512"), ("priv-key", EC_SEC1)]).contains("ES512"));
        assert!(
            err(&[("sign-method", "HS256"), ("priv-key", "k"), ("ttl", "x")])
                .contains("invalid duration")
        );
        assert!(err(&[("sign-method", "ES256"), ("priv-key", "not a key")]).contains("invalid key"));
    }
}
