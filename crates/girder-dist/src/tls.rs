//! Optional TLS under the handshake: rustls with mutual certificate authentication.
//!
//! Both sides present a certificate signed by the cluster's CA and verify the other's against
//! it; the cookie handshake then runs inside the encrypted stream, so a node needs both the right
//! certificate and the cookie. Only the `ring` crypto provider is compiled in.

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
        })
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
