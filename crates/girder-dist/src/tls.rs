//! Optional TLS under the handshake: rustls with mutual certificate authentication.
//!
//! Both sides present a certificate signed by the cluster's CA and verify the other's against
//! it; the cookie handshake then runs inside the encrypted stream, so a node needs both the right
//! certificate and the cookie. Each side also checks that the other's certificate names the
//! host of the node it claims to be (the part of its name after `@`): the dialler checks the
//! acceptor's as TLS clients do, and the acceptor checks the dialler's against the name in its
//! Hello, so a certificate issued to one node cannot be used to pose as another (unless
//! [`TlsConfig::allow_any_client_name`]). Only the `ring` crypto provider is compiled in.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {what} from {path}: {error}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What went wrong.
        error: String,
    },
    /// rustls refused the certificates or keys.
    #[error("invalid TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA roots could not be used to verify clients.
    #[error("invalid CA for client verification: {0}")]
    Verifier(String),
}

/// Certificates and keys for both directions of a node's connections.
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    client_names: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig(..)")
    }
}

impl TlsConfig {
    /// Builds both directions from the cluster CA, this node's certificate chain and its key.
    pub fn new(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in ca {
            roots.add(c)?;
        }
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        Ok(TlsConfig {
            server: Arc::new(server),
            client: Arc::new(client),
            client_names: true,
        })
    }

    /// Accepts a dialler whose certificate (signed by the cluster CA) does not name the host of
    /// the node it claims to be: for clusters whose certificates are shared, or name something
    /// else. Any holder of such a certificate and the cookie can then claim any name.
    pub fn allow_any_client_name(mut self) -> Self {
        self.client_names = false;
        self
    }

    /// Whether an incoming connection's certificate must name the claimed node's host.
    pub fn checks_client_names(&self) -> bool {
        self.client_names
    }

    /// Builds from PEM files: the CA certificate(s), this node's certificate chain, its key.
    pub fn from_pem_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pem_err = |what, path: &Path, e: rustls_pki_types::pem::Error| TlsError::Pem {
            what,
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let ca = CertificateDer::pem_file_iter(ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_err("CA certificates", ca, e))?;
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_err("certificate chain", cert, e))?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err("private key", key, e))?;
        TlsConfig::new(ca, chain, key)
    }
}

/// The client side: encrypts `stream` and checks that the peer's certificate names
/// `server_name` and is signed by the cluster CA.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    server_name: &str,
    cfg: &TlsConfig,
) -> io::Result<tokio_rustls::client::TlsStream<S>> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(cfg.client.clone())
        .connect(name, stream)
        .await
}

/// The server side: encrypts `stream` and requires a client certificate signed by the cluster
/// CA.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    cfg: &TlsConfig,
) -> io::Result<tokio_rustls::server::TlsStream<S>> {
    TlsAcceptor::from(cfg.server.clone()).accept(stream).await
}

/// Whether `certificate` (the dialler's, already verified against the CA) names `host`: a DNS
/// name or an IP address in its subject alternative names.
///
/// ```
/// # use rustls_pki_types::CertificateDer;
/// let not_a_certificate = CertificateDer::from(vec![0u8; 8]);
/// assert!(girder_dist::tls::names_host(&not_a_certificate, "localhost").is_err());
/// ```
pub fn names_host(certificate: &CertificateDer<'_>, host: &str) -> Result<(), String> {
    let name = ServerName::try_from(host).map_err(|e| format!("{host:?}: {e}"))?;
    let cert = webpki::EndEntityCert::try_from(certificate).map_err(|e| format!("{e:?}"))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the certificate does not name {host}"))
}

/// The dialler's certificate on an accepted connection (the end entity of its chain).
pub fn client_certificate<S>(
    stream: &tokio_rustls::server::TlsStream<S>,
) -> Option<CertificateDer<'static>> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates()
        .and_then(|chain| chain.first())
        .map(|c| c.clone().into_owned())
}
