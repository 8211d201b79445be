//! Listeners: plain TCP (1883), TLS (rustls, 8883 by convention) and WebSocket (for browsers;
//! MQTT in binary frames, subprotocol `mqtt`, §6). Each accepts sockets and starts a
//! [`Client`] process for each under the clients' supervisor; the client sees a byte
//! stream whatever the transport.
//!
//! A TLS handshake or a WebSocket upgrade runs in a task of its own, bounded by the
//! connection timeout, so a peer that opens a socket and says nothing holds up nobody; peers
//! still in their handshake are counted against `max_connections` as well.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use girder::supervisor::SupervisorRef;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::broker::Shared;
use crate::client::{stream, Client};

/// How a listener's sockets carry MQTT.
#[derive(Clone)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// TLS over TCP.
    Tls(TlsAcceptor),
    /// WebSocket over TCP (binary frames, subprotocol `mqtt`).
    WebSocket,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Tls(_) => "tls",
            Transport::WebSocket => "websocket",
        })
    }
}

/// Why a TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} from {path}: {error}")]
    Pem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        error: String,
    },
    /// rustls refused the certificate or key.
    #[error("invalid certificate or key: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// A TLS transport from a PEM certificate chain and private key.
pub fn tls(cert: &Path, key: &Path) -> Result<Transport, TlsError> {
    let pem = |what, path: &Path, e: rustls_pki_types::pem::Error| TlsError::Pem {
        what,
        path: path.display().to_string(),
        error: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem("certificate chain", cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem("private key", key, e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Transport::Tls(TlsAcceptor::from(Arc::new(config))))
}

/// Accepts on `listener` (non-blocking, not registered with any runtime) until the task is
/// aborted. The listener is registered with the I/O driver of the scheduler that first runs
/// this, and so is every socket it accepts.
pub async fn accept(
    listener: std::net::TcpListener,
    transport: Transport,
    shared: Arc<Shared>,
    connections: SupervisorRef,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, ?transport, "listener not registered");
            return;
        }
    };
    // Peers still in their TLS handshake or WebSocket upgrade.
    let pending = Arc::new(AtomicUsize::new(0));
    let rate = shared.config.max_connection_rate.map(|r| {
        girder_regulate::Queue::builder()
            .rate(r, r.ceil().max(1.0) as u32)
            .max_queue_len(1000)
            .max_queue_time(shared.config.connect_timeout())
            .build()
    });
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors, usually: wait a little rather than spin.
                tracing::warn!(error = %e, ?transport, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Some(rate) = &rate {
            // Waiting here holds the accept loop back, so the kernel's backlog fills and
            // connecting clients wait in it: the rate, not the broker, gives way.
            match rate.ask().await {
                Ok(permit) => permit.ignore(),
                Err(e) => {
                    shared.stats.connections_refused.inc();
                    tracing::debug!(%peer, error = %e, "connection refused by the rate limit");
                    continue;
                }
            }
        }
        // Admission: a permit for each connection between accept and CONNACK, so a flood of
        // connects (or a node falling behind: the governor tightens it) waits here.
        let admitted = match shared.admission.ask().await {
            Ok(permit) => permit,
            Err(e) => {
                shared.stats.connections_refused.inc();
                tracing::debug!(%peer, error = %e, "connection refused by admission");
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        match &transport {
            Transport::Tcp => {
                let (r, w) = stream::tcp(socket);
                // Not awaited here: a start is a call to the connections' supervisor, which
                // waits for the client's `init`, and an accept loop waiting for it made every
                // connect wait for the one before (connects/s bounded by that round trip, not
                // by the machine). The admission permit, held until CONNACK, bounds the starts
                // under way (`max_connecting`).
                let (shared, connections) = (shared.clone(), connections.clone());
                shared.node.clone().spawn_task(async move {
                    start(&shared, &connections, peer, admitted, r, w).await
                });
            }
            other => {
                let busy =
                    shared.stats.connections.get() as usize + pending.load(Ordering::Relaxed);
                if busy >= shared.config.max_connections {
                    // Refused before any work is spent on it.
                    shared.stats.connections_refused.inc();
                    continue;
                }
                pending.fetch_add(1, Ordering::Relaxed);
                let (shared, connections, pending) =
                    (shared.clone(), connections.clone(), pending.clone());
                let other = other.clone();
                shared.node.clone().spawn_task(async move {
                    let limit = shared.config.connect_timeout();
                    let upgraded = tokio::time::timeout(limit, upgrade(&shared.node, socket, &other)).await;
                    pending.fetch_sub(1, Ordering::Relaxed);
                    match upgraded {
                        Ok(Ok((r, w))) => start(&shared, &connections, peer, admitted, r, w).await,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, transport = ?other, error = %e, "handshake failed")
                        }
                        Err(_) => tracing::info!(%peer, transport = ?other, "handshake timed out"),
                    }
                });
            }
        }
    }
}

type Halves = (stream::Reader, stream::Writer);

async fn upgrade(
    node: &girder::Node,
    socket: TcpStream,
    transport: &Transport,
) -> std::io::Result<Halves> {
    match transport {
        Transport::Tcp => Ok(stream::tcp(socket)),
        Transport::Tls(acceptor) => Ok(stream::boxed(acceptor.accept(socket).await?)),
        Transport::WebSocket => websocket(node, socket).await,
    }
}

/// The largest WebSocket message or frame accepted (MQTT packets are bounded separately).
const WS_MAX: usize = 16 * 1024 * 1024;

/// Upgrades to WebSocket with the `mqtt` subprotocol (§6: a client must offer it; MQTT 3.1
/// clients offering `mqttv3.1` are taken too) and bridges its binary messages to a byte
/// stream for the connection, through an in-memory pipe.
async fn websocket(node: &girder::Node, socket: TcpStream) -> std::io::Result<Halves> {
    // tungstenite's callback type fixes the large error variant.
    #[allow(clippy::result_large_err)]
    let choose = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offered = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .find(|p| *p == "mqtt" || *p == "mqttv3.1");
        match offered {
            Some(p) => {
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_str(p).expect("a token"),
                );
                Ok(resp)
            }
            None => {
                let mut refused =
                    ErrorResponse::new(Some("the mqtt subprotocol is required".into()));
                *refused.status_mut() =
                    tokio_tungstenite::tungstenite::http::StatusCode::BAD_REQUEST;
                Err(refused)
            }
        }
    };
    let cfg = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(WS_MAX))
        .max_frame_size(Some(WS_MAX));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(socket, choose, Some(cfg))
        .await
        .map_err(std::io::Error::other)?;
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_conn, mut to_conn) = tokio::io::split(ours);
    let (mut sink, mut stream) = ws.split();
    // Client to connection: each binary message's bytes, in order (a packet may span
    // messages, and a message may hold several packets: §6 allows both).
    node.spawn_task(async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                WsMessage::Binary(b) => {
                    if to_conn.write_all(&b).await.is_err() {
                        break;
                    }
                }
                WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => {}
                // §6: text frames are not MQTT; the connection closes.
                WsMessage::Text(_) | WsMessage::Close(_) => break,
            }
        }
        let _ = to_conn.shutdown().await;
    });
    // Connection to client: what it writes, as binary messages.
    node.spawn_task(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from_conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let m = WsMessage::Binary(buf[..n].to_vec().into());
                    if sink.send(m).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.close().await;
    });
    Ok(stream::boxed(theirs))
}

async fn start(
    shared: &Arc<Shared>,
    connections: &SupervisorRef,
    peer: SocketAddr,
    admitted: girder_regulate::Permit,
    r: stream::Reader,
    w: stream::Writer,
) {
    let spec = Client::new(shared.clone(), peer, r, w)
        .admitted(admitted)
        .spec();
    if let Err(e) = connections.start_child(spec).await {
        tracing::warn!(%peer, error = %e, "connection not started");
    }
}
