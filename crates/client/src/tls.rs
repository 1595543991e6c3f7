//! TLS to the servers: a CA bundle, a client certificate, a server name, or no verification.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::{Error, Result};

/// TLS settings, built from PEM bytes (read the files yourself, or use
/// [`TlsOptions::from_files`]).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
    skip_verify: bool,
}

impl TlsOptions {
    /// TLS with no CA (the server certificate must then be skipped or trusted otherwise).
    pub fn new() -> TlsOptions {
        TlsOptions::default()
    }

    /// Reads the optional CA bundle, client certificate and key files, as etcdctl's
    /// `--cacert`, `--cert` and `--key`.
    pub fn from_files(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> Result<Self> {
        let read =
            |path: &str| std::fs::read(path).map_err(|e| Error::Tls(format!("open {path}: {e}")));
        let mut tls = TlsOptions::new();
        if let Some(ca) = ca {
            tls.ca = Some(read(ca)?);
        }
        match (cert, key) {
            (Some(cert), Some(key)) => tls.identity = Some((read(cert)?, read(key)?)),
            (None, None) => {}
            _ => return Err(Error::Tls("tls: both cert and key are needed".into())),
        }
        Ok(tls)
    }

    /// Trust the certificates of this PEM bundle.
    pub fn with_ca(mut self, pem: impl Into<Vec<u8>>) -> TlsOptions {
        self.ca = Some(pem.into());
        self
    }

    /// Present this client certificate and key (PEM).
    pub fn with_identity(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Expect the server certificate to carry this name instead of the endpoint's host.
    pub fn with_server_name(mut self, name: impl Into<String>) -> TlsOptions {
        self.server_name = Some(name.into());
        self
    }

    /// Accept any server certificate (testing only; as `--insecure-skip-tls-verify`).
    pub fn with_skip_verify(mut self, skip: bool) -> TlsOptions {
        self.skip_verify = skip;
        self
    }

    /// tonic's configuration and, when verification is skipped, the verifier that does so.
    pub(crate) fn to_tonic(
        &self,
    ) -> Result<(ClientTlsConfig, Option<Arc<dyn ServerCertVerifier>>)> {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(ca));
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name.clone());
        }
        let verifier: Option<Arc<dyn ServerCertVerifier>> = if self.skip_verify {
            Some(Arc::new(AcceptAnyCertificate(
                rustls::crypto::ring::default_provider(),
            )))
        } else {
            None
        };
        Ok((config, verifier))
    }
}

impl TlsOptions {
    /// The same settings as a rustls client configuration, for HTTP beside gRPC (a
    /// member's `/metrics`, the v2 API). Without a CA, no server certificate is trusted
    /// unless verification is skipped.
    pub fn to_rustls(&self) -> Result<rustls::ClientConfig> {
        let tls_error = |e: rustls::Error| Error::Tls(e.to_string());
        let pem_error = |e: rustls::pki_types::pem::Error| Error::Tls(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?;
        let builder = if self.skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(
                    rustls::crypto::ring::default_provider(),
                )))
        } else {
            let mut roots = RootCertStore::empty();
            if let Some(ca) = &self.ca {
                for cert in CertificateDer::pem_slice_iter(ca) {
                    roots.add(cert.map_err(pem_error)?).map_err(tls_error)?;
                }
            }
            builder.with_root_certificates(roots)
        };
        match &self.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(pem_error)?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(pem_error)?;
                builder.with_client_auth_cert(chain, key).map_err(tls_error)
            }
            None => Ok(builder.with_no_client_auth()),
        }
    }
}

/// Accepts every server certificate; signatures are still checked with ring.
#[derive(Debug)]
struct AcceptAnyCertificate(rustls::crypto::CryptoProvider);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
