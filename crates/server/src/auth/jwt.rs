//! JWT tokens (`--auth-token jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`), as etcd's
//! tokenJWT: a token is signed claims `{username, revision, exp}`; any member holding the key
//! judges it without having recorded anything. With only `pub-key` a member verifies tokens
//! but cannot issue them.
//!
//! Sign methods: RS256/384/512, PS256/384/512, ES256/384/512 and HS256/384/512 as etcd 3.4,
//! and EdDSA (Ed25519) as etcd 3.5. All but ES512 go through jsonwebtoken on ring; ring has
//! no P-521, so ES512 has its own signer ([`es512`]).
//!
//! Keys are PEM files. Asymmetric methods sign with `priv-key` and, like etcd, verify with its
//! public half when it is given; `pub-key` (a public key or a certificate) is then only
//! checked to parse. HMAC methods use the bytes of `priv-key` as the secret. An EC private key
//! may be SEC1 (`EC PRIVATE KEY`) or PKCS#8, as etcd reads them.

mod es512;

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
    signer: Signer,
    ttl: Duration,
}

/// The library that signs and verifies for the chosen method.
enum Signer {
    Jsonwebtoken {
        algorithm: Algorithm,
        /// `None` when only a public key was given: verify-only.
        signing: Option<EncodingKey>,
        verifying: DecodingKey,
        validation: Validation,
    },
    Es512(es512::Es512Keys),
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
        if method == "ES512" {
            let parse = |pem: Option<Vec<u8>>| pem.as_deref().map(first_pem_block).transpose();
            let keys = parse(public)
                .and_then(|public| {
                    es512::Es512Keys::from_pem(public.as_ref(), parse(private)?.as_ref())
                })
                .map_err(|e| e.to_string())?;
            return Ok(JwtTokens {
                signer: Signer::Es512(keys),
                ttl,
            });
        }
        let algorithm = method
            .parse::<Algorithm>()
            .map_err(|_| invalid_options("auth: invalid auth signature method"))?;
        let (signing, verifying) =
            keys(algorithm, public.as_deref(), private.as_deref()).map_err(|e| e.to_string())?;
        let mut validation = Validation::new(algorithm);
        // etcd's library refuses a token once `exp` has passed, with no leeway.
        validation.leeway = 0;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Ok(JwtTokens {
            signer: Signer::Jsonwebtoken {
                algorithm,
                signing,
                verifying,
                validation,
            },
            ttl,
        })
    }

    /// A token for `username` at auth `revision`, expiring `ttl` from now.
    pub fn assign(&self, username: &str, revision: u64) -> Result<String, JwtError> {
        let claims = Claims {
            username: username.to_string(),
            revision,
            exp: unix_now() + self.ttl.as_secs(),
        };
        let token = match &self.signer {
            Signer::Jsonwebtoken {
                algorithm, signing, ..
            } => {
                let key = signing.as_ref().ok_or(JwtError::VerifyOnly)?;
                jsonwebtoken::encode(&Header::new(*algorithm), &claims, key)
                    .map_err(|e| JwtError::Sign(e.to_string()))?
            }
            Signer::Es512(keys) => keys.sign(&claims).ok_or(JwtError::VerifyOnly)?,
        };
        tracing::debug!(
            "user-name" = username,
            revision,
            "created/assigned a new JWT token"
        );
        Ok(token)
    }

    /// The user and auth revision a valid, unexpired token names.
    pub fn info(&self, token: &str) -> Option<(String, u64)> {
        let claims = match &self.signer {
            Signer::Jsonwebtoken {
                verifying,
                validation,
                ..
            } => jsonwebtoken::decode::<Claims>(token, verifying, validation)
                .map(|data| data.claims)
                .map_err(|e| e.to_string()),
            // jsonwebtoken's expiry rule, as etcd's: valid up to and including `exp`.
            Signer::Es512(keys) => keys.verify::<Claims>(token).and_then(|claims| {
                if claims.exp < unix_now() {
                    Err("ExpiredSignature".to_string())
                } else {
                    Ok(claims)
                }
            }),
        };
        match claims {
            Ok(claims) => Some((claims.username, claims.revision)),
            Err(error) => {
                tracing::warn!(%error, "failed to parse a JWT token");
                None
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A key file's first PEM block, the one etcd reads (so an `EC PARAMETERS` block before the
/// key, as `openssl ecparam -genkey` writes without `-noout`, is refused as by etcd).
fn first_pem_block(file: &[u8]) -> Result<pem::Pem, KeyError> {
    pem::parse(file).map_err(|e| KeyError::Invalid(e.to_string()))
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
    let pem = first_pem_block(private)?;
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
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

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

    /// A P-521 test key (`openssl ecparam -name secp521r1 -genkey -noout`), the same key in
    /// PKCS#8, and its public key.
    const P521_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
MIHcAgEBBEIAvAxnaQOkv7AxS+INEb3DVIXKTngZFtx//qjIoDZXKz6X+rlBuFe+
uB9flODt+73TjmVpla8SPN3z5rSeenzCQ1SgBwYFK4EEACOhgYkDgYYABAHFi7r8
q4pVYPZ6pu1GeAE3cU0oRABgFq/myonHBmx6Z8CmLHiKGsfQXrFj9S2u/UJsl2KG
0qFOMNrNHMA4EfVrowE2vsAVfoDHZSdCx6yXovxiIek3k8S5e8PsTxNNZcAN9fsd
ERNQvH555u0GwkckMj22xS1JCWDHdYzygWJx0WaMgg==
-----END EC PRIVATE KEY-----
";
    const P521_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIHuAgEAMBAGByqGSM49AgEGBSuBBAAjBIHWMIHTAgEBBEIAvAxnaQOkv7AxS+IN
Eb3DVIXKTngZFtx//qjIoDZXKz6X+rlBuFe+uB9flODt+73TjmVpla8SPN3z5rSe
enzCQ1ShgYkDgYYABAHFi7r8q4pVYPZ6pu1GeAE3cU0oRABgFq/myonHBmx6Z8Cm
LHiKGsfQXrFj9S2u/UJsl2KG0qFOMNrNHMA4EfVrowE2vsAVfoDHZSdCx6yXovxi
Iek3k8S5e8PsTxNNZcAN9fsdERNQvH555u0GwkckMj22xS1JCWDHdYzygWJx0WaM
gg==
-----END PRIVATE KEY-----
";
    const P521_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQBxYu6/KuKVWD2eqbtRngBN3FNKEQA
YBav5sqJxwZsemfApix4ihrH0F6xY/Utrv1CbJdihtKhTjDazRzAOBH1a6MBNr7A
FX6Ax2UnQsesl6L8YiHpN5PEuXvD7E8TTWXADfX7HRETULx+eebtBsJHJDI9tsUt
SQlgx3WM8oFicdFmjII=
-----END PUBLIC KEY-----
";

    /// A self-signed certificate for that key (`openssl req -new -x509 -key …`).
    const P521_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----
MIIB/TCCAV6gAwIBAgIUXjsSKXXHH5r7eMcaDMomzeUFEb0wCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEcDUyMTAgFw0yNjEyMDUxNzQ0MzdaGA8yMTI2MTExMTE3NDQz
N1owDzENMAsGA1UEAwwEcDUyMTCBmzAQBgcqhkjOPQIBBgUrgQQAIwOBhgAEAcWL
uvyrilVg9nqm7UZ4ATdxTShEAGAWr+bKiccGbHpnwKYseIoax9BesWP1La79QmyX
YobSoU4w2s0cwDgR9WujATa+wBV+gMdlJ0LHrJei/GIh6TeTxLl7w+xPE01lwA31
+x0RE1C8fnnm7QbCRyQyPbbFLUkJYMd1jPKBYnHRZoyCo1MwUTAdBgNVHQ4EFgQU
oxQ5QLO2orbio09QV2K6ssl2uSEwHwYDVR0jBBgwFoAUoxQ5QLO2orbio09QV2K6
ssl2uSEwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgOBjAAwgYgCQgD8dg88
9E+5za3rvQpUkGZaw9wOCYHp2FMOgdnOyLduD3+wOr2gNe+1GRDVIpwSq7Fftg7n
6Uxgw0zgIiT4y5dVPwJCAUAtcbknZSnc2oE4K2lKAc7Nc/oK4bb8yHm1z3d2rti+
s3eLmjLuOlU9CjBp1dqubEdfdwhQJtqGDq7aGK3NRN1m
-----END CERTIFICATE-----
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
    fn es512_tokens_from_sec1_and_pkcs8_keys_verify_with_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let es512 = |key: (&str, &str)| provider(dir.path(), &[("sign-method", "ES512"), key]);
        let from_sec1 = es512(("priv-key", P521_SEC1)).unwrap();
        let from_pkcs8 = es512(("priv-key", P521_PKCS8)).unwrap();
        let verifier = es512(("pub-key", P521_PUBLIC)).unwrap();
        let from_certificate = es512(("pub-key", P521_CERTIFICATE)).unwrap();

        let token = from_sec1.assign("alice", 9).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap();
        assert_eq!(decode(parts[0]), br#"{"alg":"ES512","typ":"JWT"}"#);
        assert_eq!(decode(parts[2]).len(), 132, "r||s, 66 bytes each");
        for signer in [&from_sec1, &from_pkcs8, &verifier, &from_certificate] {
            assert_eq!(signer.info(&token), Some(("alice".to_string(), 9)));
        }
        let other = from_pkcs8.assign("bob", 3).unwrap();
        assert_eq!(verifier.info(&other), Some(("bob".to_string(), 3)));
        assert!(matches!(
            verifier.assign("bob", 1),
            Err(JwtError::VerifyOnly)
        ));

        // A changed signature, claims or algorithm is refused.
        let mut signature = decode(parts[2]);
        signature[10] ^= 1;
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            URL_SAFE_NO_PAD.encode(signature)
        );
        assert_eq!(verifier.info(&forged), None);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"username":"root","revision":9,"exp":9999999999}"#);
        let forged = format!("{}.{claims}.{}", parts[0], parts[2]);
        assert_eq!(verifier.info(&forged), None);
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#);
        let forged = format!("{header}.{}.{}", parts[1], parts[2]);
        assert_eq!(verifier.info(&forged), None);
        assert_eq!(verifier.info("a.b.c"), None);
        assert_eq!(verifier.info(""), None);

        // Keys for another curve or method are refused at startup, and so is a key after an
        // `EC PARAMETERS` block (`-genkey` without `-noout`), as etcd refuses it.
        let with_parameters = format!(
            "-----BEGIN EC PARAMETERS-----\nBgUrgQQAIw==\n-----END EC PARAMETERS-----\n{P521_SEC1}"
        );
        assert!(es512(("priv-key", &with_parameters))
            .err()
            .unwrap()
            .contains("invalid key"));
        assert!(es512(("priv-key", EC_SEC1))
            .err()
            .unwrap()
            .contains("invalid key"));
        assert!(es512(("pub-key", EC_PUBLIC))
            .err()
            .unwrap()
            .contains("invalid key"));
        assert!(es512(("priv-key", "secret"))
            .err()
            .unwrap()
            .contains("invalid key"));
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
        let es512 = provider(
            dir.path(),
            &[
                ("sign-method", "ES512"),
                ("priv-key", P521_PKCS8),
                ("ttl", "1s"),
            ],
        )
        .unwrap();
        let token = hs.assign("u", 1).unwrap();
        let es512_token = es512.assign("u", 1).unwrap();
        assert!(hs.info(&token).is_some());
        assert!(es512.info(&es512_token).is_some());
        // `exp` is in whole seconds: past it after at most two.
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(hs.info(&token), None, "expired");
        assert_eq!(es512.info(&es512_token), None, "expired");

        let err = |opts: &[(&str, &str)]| provider(dir.path(), opts).err().unwrap();
        assert!(err(&[("sign-method", "XX1")]).contains("invalid auth signature method"));
        assert!(err(&[("priv-key", "secret")]).contains("invalid auth signature method"));
        assert_eq!(err(&[("sign-method", "RS256")]), "auth: missing key data");
        assert!(
            err(&[("sign-method", "HS256"), ("priv-key", "k"), ("ttl", "x")])
                .contains("invalid duration")
        );
        assert!(err(&[("sign-method", "ES256"), ("priv-key", "not a key")]).contains("invalid key"));
    }
}
