//! TLS toward clients (answering SSLRequest) and toward the upstream.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls_pki_types::pem::PemObject;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM blocks of one kind (`what`) in a file: at least one.
fn read_pem<T: PemObject>(path: &Path, what: &str) -> Result<Vec<T>, String> {
    let items: Vec<T> = T::pem_file_iter(path)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("reading {what} {}: {e}", path.display()))?;
    if items.is_empty() {
        return Err(format!("{} holds no PEM {what}", path.display()));
    }
    Ok(items)
}

/// Reads a PEM certificate chain.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    read_pem(path, "certificate")
}

/// Reads a PEM bundle of CA certificates.
fn read_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_pem(path, "CA certificate")? {
        roots.add(c).map_err(|e| format!("parsing CA {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Reads a PEM file of certificate revocation lists.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    read_pem(path, "certificate revocation list (X509 CRL)")
}

/// Trust and revocation for the certificates of the other end: a CA
/// bundle and, optionally, revocation lists. With lists, a certificate
/// whose revocation status they do not give (no list from its issuer) is
/// refused too, and so is a revoked one.
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    /// PEM CA bundle.
    pub ca: &'a Path,
    /// PEM file of CRLs (`X509 CRL` blocks), as PostgreSQL's `ssl_crl_file`.
    pub crl: Option<&'a Path>,
}

/// A TLS acceptor for clients from PEM files. It offers the ALPN protocol
/// `postgresql`, which libpq 17 and later ask for. With `client_ca`,
/// a client certificate must chain to it; the session refuses clients
/// without one, and checks that its common name is the user's.
pub fn acceptor(cert: &Path, key: &Path, clients: Option<Trust>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading key {}: {e}", key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match clients {
        Some(t) => {
            let crls = t.crl.map(read_crls).transpose()?.unwrap_or_default();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(read_roots(t.ca)?), provider())
                    .with_crls(crls)
                    // Clients without a certificate complete the handshake, so that
                    // the session can refuse them by name, with a recorded reason.
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| format!("client CA {}: {e}", t.ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder.with_single_cert(certs, key).map_err(|e| format!("certificate and key do not match: {e}"))?;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A client certificate the gateway verified, as events name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The subject's common name, if it has one.
    pub common_name: Option<String>,
    /// SHA-256 of the certificate (DER), lowercase hex.
    pub sha256: String,
}

impl ClientCert {
    /// The verified certificate of a client connection, if it sent one.
    pub fn of(conn: &rustls::ServerConnection) -> Option<ClientCert> {
        let der = conn.peer_certificates()?.first()?.as_ref();
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        Some(ClientCert {
            common_name: custos_auth::der::subject_common_name(der),
            sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// libpq's `sslmode`, toward the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, without checking its certificate.
    Prefer,
    /// TLS, without checking the certificate (libpq's meaning).
    Require,
    /// TLS, with the certificate checked against a CA and the host name.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's names (`verify-ca` is treated as `verify-full`,
    /// which is stricter).
    pub fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" | "verify-full" => SslMode::VerifyFull,
            other => return Err(format!("unknown sslmode {other:?}")),
        })
    }
}

/// TLS toward the upstream.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The mode.
    pub mode: SslMode,
    /// The connector, unless the mode is `Disable`.
    pub connector: Option<tokio_rustls::TlsConnector>,
}

impl UpstreamTls {
    /// Builds the connector for a mode; a CA (`sslrootcert`, with
    /// `sslcrl` optionally) is required for `verify-full`. `client` is a
    /// certificate and key (PEM) to present when the upstream asks for
    /// one, as libpq's `sslcert` and `sslkey`.
    pub fn new(mode: SslMode, server: Option<Trust>, client: Option<(&Path, &Path)>) -> Result<UpstreamTls, String> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match (mode, server) {
            (SslMode::Disable, _) => return Ok(UpstreamTls { mode, connector: None }),
            (SslMode::VerifyFull, None) => return Err("sslmode verify-full needs a CA file (sslrootcert)".into()),
            (_, Some(t)) => {
                let crls = t.crl.map(read_crls).transpose()?.unwrap_or_default();
                let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(read_roots(t.ca)?),
                    provider(),
                )
                .with_crls(crls)
                .build()
                .map_err(|e| format!("CA {}: {e}", t.ca.display()))?;
                builder.with_webpki_verifier(verifier)
            }
            (_, None) => builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify)),
        };
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                private_key_is_private(key)?;
                let certs = read_certs(cert)?;
                let key =
                    PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading key {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("client certificate {} and its key do not match: {e}", cert.display()))?
            }
        };
        Ok(UpstreamTls { mode, connector: Some(tokio_rustls::TlsConnector::from(Arc::new(config))) })
    }
}

/// libpq's rule for `sslkey`: a key file that group or others may read is
/// refused, unless root owns it and only its group may read it (0640, for
/// keys a system package manages).
fn private_key_is_private(key: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(key).map_err(|e| format!("reading key {}: {e}", key.display()))?;
    let mode = meta.mode() & 0o777;
    let ok = if meta.uid() == 0 { mode & 0o037 == 0 } else { mode & 0o077 == 0 };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the key {} may be read by others (mode {mode:o}); it should be 0600, or 0640 if root owns it",
            key.display()
        ))
    }
}

/// Accepts any certificate: what libpq's `sslmode=require` does without a
/// root certificate. Encrypts, but does not authenticate the server.
#[derive(Debug)]
struct NoVerify;

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
