//! `--peer-cert-allowed-cn`, `--peer-cert-allowed-hostname` and
//! `--client-cert-allowed-hostname`: beyond chaining to the trusted CA, the certificate the
//! other end presents must carry one subject common name, or be valid for one host name.
//!
//! etcd's pkg/transport puts the rule into the side's `tls.Config`, used both to serve and to
//! dial, so it holds for the certificates clients present to this member and for the ones
//! the members it dials present. A certificate that breaks it fails the handshake with a
//! `bad_certificate` alert, and the rejecting side logs etcd's "client certificate
//! authentication failed".

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::config::AllowedCert;

/// etcd's error text for a certificate that breaks the rule.
const REJECTED: &str = "client certificate authentication failed";

impl AllowedCert {
    /// Whether the end-entity certificate `cert` satisfies the rule.
    pub fn permits(&self, cert: &CertificateDer<'_>) -> bool {
        match self {
            AllowedCert::CommonName(cn) => common_name(cert).as_deref() == Some(cn.as_str()),
            AllowedCert::Hostname(host) => {
                let Ok(name) = ServerName::try_from(host.as_str()) else {
                    return false;
                };
                ParsedCertificate::try_from(cert)
                    .and_then(|parsed| rustls::client::verify_server_name(&parsed, &name))
                    .is_ok()
            }
        }
    }

    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.permits(cert) {
            return Ok(());
        }
        tracing::warn!(rule = ?self, error = REJECTED, "rejected a certificate");
        // Go sends bad_certificate when VerifyPeerCertificate fails; rustls does for this.
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ))
    }
}

/// The subject's common name (the last one, as Go's `pkix.Name` keeps it).
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().last()?;
    cn.as_str().ok().map(str::to_owned)
}

/// A client certificate verifier that also applies an [`AllowedCert`] rule.
#[derive(Debug)]
pub struct AllowedClientVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub rule: AllowedCert,
}

impl ClientCertVerifier for AllowedClientVerifier {
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
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.rule.check(end_entity)?;
        Ok(verified)
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

/// A server certificate verifier (for dialing) that also applies an [`AllowedCert`] rule.
#[derive(Debug)]
pub struct AllowedServerVerifier {
    pub inner: Arc<dyn ServerCertVerifier>,
    pub rule: AllowedCert,
}

impl ServerCertVerifier for AllowedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.rule.check(end_entity)?;
        Ok(verified)
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
