//! ES512 tokens: JWS with ECDSA on P-521 over SHA-512 (RFC 7518 §3.4), which jsonwebtoken on
//! ring cannot make (ring has no P-521). A token is `header.claims.signature`, each part
//! base64url without padding; the signature is r‖s, 66 bytes each. The header is
//! `{"alg":"ES512","typ":"JWT"}` as etcd's library writes it, and a token whose header names
//! another algorithm is refused.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p521::ecdsa::signature::{Signer as _, Verifier as _};
use p521::ecdsa::{Signature, SigningKey, VerifyingKey};
use p521::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::KeyError;

/// The JOSE header of every ES512 token.
const HEADER: &str = r#"{"alg":"ES512","typ":"JWT"}"#;

/// PEM labels of the key forms read, as etcd reads them: SEC1 (openssl's default) or PKCS#8
/// for the private key; a SubjectPublicKeyInfo or a certificate for the public one.
const SEC1_LABEL: &str = "EC PRIVATE KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";
const CERTIFICATE_LABEL: &str = "CERTIFICATE";

/// The header fields a token is checked for.
#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// A P-521 key pair, or only its public half (verify-only).
pub struct Es512Keys {
    signing: Option<SigningKey>,
    verifying: VerifyingKey,
}

impl Es512Keys {
    /// Reads the keys as PEM. With a private key the public half verifies (as etcd does); a
    /// given public key must still parse.
    pub fn from_pem(
        public: Option<&pem::Pem>,
        private: Option<&pem::Pem>,
    ) -> Result<Es512Keys, KeyError> {
        let given_public = public.map(verifying_key).transpose()?;
        match private {
            Some(private) => {
                let signing = signing_key(private)?;
                Ok(Es512Keys {
                    verifying: VerifyingKey::from(&signing),
                    signing: Some(signing),
                })
            }
            None => given_public
                .map(|verifying| Es512Keys {
                    signing: None,
                    verifying,
                })
                .ok_or(KeyError::Missing),
        }
    }

    /// A signed token carrying `claims`; `None` when verify-only.
    pub fn sign(&self, claims: &impl Serialize) -> Option<String> {
        let key = self.signing.as_ref()?;
        let claims = serde_json::to_vec(claims).expect("claims serialize");
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature: Signature = key.sign(input.as_bytes());
        Some(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }

    /// The claims of `token` when its header says ES512 and its signature holds.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<T, String> {
        let (input, signature) = token.rsplit_once('.').ok_or("malformed token")?;
        let (header, claims) = input.split_once('.').ok_or("malformed token")?;
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string());
        let header: Header = serde_json::from_slice(&decode(header)?).map_err(|e| e.to_string())?;
        if header.alg != "ES512" {
            return Err(format!("signing method {} is invalid", header.alg));
        }
        let signature = Signature::from_slice(&decode(signature)?).map_err(|e| e.to_string())?;
        self.verifying
            .verify(input.as_bytes(), &signature)
            .map_err(|e| e.to_string())?;
        serde_json::from_slice(&decode(claims)?).map_err(|e| e.to_string())
    }
}

fn invalid(e: impl std::fmt::Display) -> KeyError {
    KeyError::Invalid(e.to_string())
}

fn signing_key(pem: &pem::Pem) -> Result<SigningKey, KeyError> {
    let secret = match pem.tag() {
        SEC1_LABEL => p521::SecretKey::from_sec1_der(pem.contents()).map_err(invalid)?,
        PKCS8_LABEL => p521::SecretKey::from_pkcs8_der(pem.contents()).map_err(invalid)?,
        other => return Err(invalid(format!("not a P-521 private key: {other}"))),
    };
    SigningKey::from_bytes(&secret.to_bytes()).map_err(invalid)
}

fn verifying_key(pem: &pem::Pem) -> Result<VerifyingKey, KeyError> {
    let public = if pem.tag() == CERTIFICATE_LABEL {
        let (_, cert) = x509_parser::parse_x509_certificate(pem.contents()).map_err(invalid)?;
        p521::PublicKey::from_public_key_der(cert.tbs_certificate.subject_pki.raw)
    } else {
        p521::PublicKey::from_public_key_der(pem.contents())
    }
    .map_err(invalid)?;
    VerifyingKey::from_affine(*public.as_affine()).map_err(invalid)
}
