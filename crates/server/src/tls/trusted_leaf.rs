//! A client certificate that is itself one of the trusted CA certificates is accepted, as
//! Go's crypto/x509 does (a certificate in the root pool verifies as a chain of one). webpki
//! refuses such a certificate when it is a CA (`CaUsedAsEndEntity`); etcd's own fixtures use a
//! self-signed CA certificate with CN `root` as the client certificate and as the trusted CA
//! (TestCtlV3AuthCertCNWithWithConcurrentOperation).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Verifies with `inner`; when that refuses a certificate only for what it is (a CA used as
/// an end entity), still accepts it if it is byte-identical to a trusted CA certificate and
/// within its validity period. A revoked one stays refused.
#[derive(Debug)]
pub struct TrustedLeafClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub roots: Vec<CertificateDer<'static>>,
}

impl TrustedLeafClientVerifier {
    fn is_trusted_itself(&self, cert: &CertificateDer<'_>, now: UnixTime) -> bool {
        if !self.roots.iter().any(|root| root.as_ref() == cert.as_ref()) {
            return false;
        }
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return false;
        };
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let validity = parsed.validity();
        validity.not_before.timestamp() <= now && now <= validity.not_after.timestamp()
    }
}

impl ClientCertVerifier for TrustedLeafClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            // webpki's `CaUsedAsEndEntity` arrives as `Other`; a revoked, expired or
            // unknown certificate keeps its refusal.
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(_)))
                if self.is_trusted_itself(end_entity, now) =>
            {
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
