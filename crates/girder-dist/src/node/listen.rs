//! Sockets: the accept loop and the dialler, each taking a connection through TLS (if set) and
//! the handshake before handing it to `connections`.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Inner, NodeEvent};
use crate::handshake::{self, Established};
use crate::peer::{Peer, State};
use crate::tls;

/// The first pause after a failed `accept`, doubled on each failure in a row up to
/// [`ACCEPT_BACKOFF_MAX`]: an error such as EMFILE repeats at once until something changes, and
/// retrying in a tight loop would burn a core.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts connections until the node stops. A failed `accept` (out of file descriptors,
/// connection aborted, ...) never ends the loop: it is logged and counted, and the loop tries
/// again after a pause, so the listener comes back by itself once the cause goes away.
pub(super) async fn accept_loop(
    inner: Weak<Inner>,
    mut listener: Box<dyn crate::transport::Listener>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stopped => return,
        };
        let (stream, from) = match accepted {
            Ok(a) => a,
            Err(e) => {
                let Some(inner) = inner.upgrade() else { return };
                inner
                    .listener_health
                    .lock()
                    .failed(&inner.cfg.name, &e, backoff);
                drop(inner);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stopped => return,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF_MIN;
        let Some(inner) = inner.upgrade() else { return };
        inner.listener_health.lock().accepted(&inner.cfg.name);
        // Bounded before anything else is spent on it: over the limits, closed at once.
        let Some(slot) = Pending::take(&inner, from) else {
            drop(stream);
            continue;
        };
        let node = inner.node.clone();
        node.spawn_task(async move {
            let _slot = slot;
            match inner.cfg.tls.clone() {
                // Boxed: a TLS session's state is several KiB, and a future holds the largest
                // of its branches, so unboxed every pending connection would pay for it.
                Some(t) => Box::pin(accept_tls(inner, stream, from, t)).await,
                None => accept(inner, stream, from, None).await,
            }
        });
    }
}

/// An incoming connection's place among those authenticating; given back when dropped.
struct Pending {
    inner: Arc<Inner>,
    source: std::net::IpAddr,
}

impl Pending {
    /// A place for a connection from `from`, unless the node or that source has as many
    /// authenticating as it may (then the connection is turned away and counted).
    fn take(inner: &Arc<Inner>, from: SocketAddr) -> Option<Pending> {
        let source = from.ip();
        let took = inner.listener_health.lock().take_pending(
            source,
            inner.cfg.max_pending_handshakes,
            inner.cfg.max_pending_handshakes_per_source,
        );
        match took {
            Ok(()) => Some(Pending {
                inner: inner.clone(),
                source,
            }),
            Err(Some(suppressed)) => {
                tracing::warn!(
                    node = %inner.cfg.name,
                    %from,
                    suppressed,
                    "connection turned away: too many authenticating"
                );
                None
            }
            Err(None) => None,
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.inner.listener_health.lock().give_back(self.source);
    }
}

/// TLS first (within the handshake timeout), then the handshake inside it.
async fn accept_tls(
    inner: Arc<Inner>,
    stream: crate::transport::BoxStream,
    from: SocketAddr,
    t: Arc<tls::TlsConfig>,
) {
    let limit = inner.cfg.handshake_timeout;
    match tokio::time::timeout(limit, tls::accept(stream, &t)).await {
        Ok(Ok(s)) => {
            let cert = t
                .checks_client_names()
                .then(|| tls::client_certificate(&s))
                .map(|c| c.ok_or_else(|| "no client certificate".to_string()));
            accept(inner, s, from, cert).await
        }
        Ok(Err(e)) => inner.refused(from, format!("TLS: {e}")),
        Err(_) => inner.refused(from, format!("TLS: no handshake within {limit:?}")),
    }
}

/// Runs the acceptor's handshake. With TLS that checks names, `certificate` is the dialler's
/// (or why there is none): it must name the host of the node the dialler claims to be, which
/// is checked with admission, after the cookie proof.
async fn accept<S>(
    inner: Arc<Inner>,
    stream: S,
    from: SocketAddr,
    certificate: Option<Result<rustls_pki_types::CertificateDer<'static>, String>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admitted = parking_lot::Mutex::new(None);
    let result = handshake::accept(stream, &inner.hs, |name, creation| {
        if let Some(cert) = &certificate {
            cert.as_ref()
                .map_err(|e| e.clone())
                .and_then(|c| tls::names_host(c, name.host()))
                .map_err(|why| crate::handshake::Refusal::CertificateNotForName {
                    name: name.clone(),
                    why,
                })?;
        }
        let gen = inner.admit(name, creation)?;
        *admitted.lock() = Some((name.clone(), gen));
        Ok(())
    })
    .await;
    let admitted = admitted.into_inner();
    match (result, admitted) {
        (Ok((est, conn)), Some((_, gen))) => {
            let peer = inner.table.peer(&est.peer);
            inner.established(peer, gen, est, conn);
        }
        (Err(e), Some((name, gen))) => {
            inner.refused(from, format!("{name}: {e}"));
            inner.attempt_failed(&inner.table.peer(&name), gen);
        }
        (Err(e), None) => inner.refused(from, e.to_string()),
        (Ok(_), None) => unreachable!("a handshake completes only after admission"),
    }
}

/// Why a dial failed: in words, and whether the peer refused this node's cookie proof (or
/// gave a wrong one of its own), which is counted and logged apart.
struct DialError {
    error: String,
    /// Why the peer refused this node, if it did (to log, counted and rate-limited).
    refused: Option<&'static str>,
}

impl DialError {
    fn other(error: impl ToString) -> Self {
        DialError {
            error: error.to_string(),
            refused: None,
        }
    }

    fn handshake(e: handshake::HandshakeError, context: &str) -> Self {
        use handshake::HandshakeError::{BadProof, ProofRefused, RefusedByPeer};
        DialError {
            refused: match e {
                ProofRefused(_) | BadProof(_) => {
                    Some("dial refused: the peer did not accept this node's cookie proof")
                }
                RefusedByPeer { .. } => {
                    Some("dial refused: the peer authenticated this node and refused to admit it")
                }
                _ => None,
            },
            error: format!("{context}{e}"),
        }
    }
}

pub(super) async fn dial(inner: Arc<Inner>, peer: Arc<Peer>, addr: SocketAddr, gen: u64) {
    let attempt = async {
        let tcp = inner
            .cfg
            .network
            .connect(addr)
            .await
            .map_err(DialError::other)?;
        match &inner.cfg.tls {
            Some(t) => {
                let s = tls::connect(tcp, peer.name.host(), t)
                    .await
                    .map_err(|e| DialError::other(format!("TLS: {e}")))?;
                // Under TLS 1.3 a refused client certificate shows up on the first read, here.
                let (est, conn) = handshake::initiate(s, &inner.hs)
                    .await
                    .map_err(|e| DialError::handshake(e, "handshake over TLS: "))?;
                check_peer(&peer, &est).map_err(DialError::other)?;
                inner.established(peer.clone(), gen, est, conn);
            }
            None => {
                let (est, conn) = handshake::initiate(tcp, &inner.hs)
                    .await
                    .map_err(|e| DialError::handshake(e, ""))?;
                check_peer(&peer, &est).map_err(DialError::other)?;
                inner.established(peer.clone(), gen, est, conn);
            }
        }
        Ok::<(), DialError>(())
    };
    let outcome = tokio::time::timeout(inner.cfg.connect_timeout, attempt).await;
    let DialError { error, refused } = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(_) => DialError::other("timed out"),
    };
    // If the peer (with the smaller name) is dialling us at the same time it refused our dial;
    // its own dial is about to arrive, so give it a moment before calling the peer unreachable.
    if peer.name < inner.cfg.name {
        for _ in 0..20 {
            let still_ours =
                matches!(&*peer.state.lock(), State::Connecting { gen: g, .. } if *g == gen);
            if !still_ours {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if let Some(why) = refused {
        // Counted, and logged at most once a second: a peer with another cookie is dialled
        // again and again (on demand, and by the registry's retries).
        let suppressed = inner.listener_health.lock().dial_refused();
        if let Some(suppressed) = suppressed {
            tracing::warn!(
                node = %inner.cfg.name,
                peer = %peer.name,
                %addr,
                %error,
                suppressed,
                "{why}"
            );
        }
    } else {
        tracing::warn!(node = %inner.cfg.name, peer = %peer.name, %addr, %error, "dial failed");
    }
    let _ = inner.events.send(NodeEvent::DialFailed {
        node: peer.name.clone(),
        reason: error,
    });
    inner.attempt_failed(&peer, gen);
}

fn check_peer(peer: &Peer, est: &Established) -> Result<(), String> {
    if est.peer != peer.name {
        return Err(format!("dialled {} but reached {}", peer.name, est.peer));
    }
    Ok(())
}

/// How long a listener that keeps failing waits between log lines about it.
const LOG_AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// What the accept loop last saw, for [`DistNode::listener_status`](super::DistNode::listener_status)
/// and readiness, and the connections authenticating.
#[derive(Default)]
pub(super) struct ListenerHealth {
    errors: u64,
    /// The error of the failing run, while no `accept` has succeeded since.
    failing: Option<String>,
    last_logged: Option<std::time::Instant>,
    pending: usize,
    pending_by_source: std::collections::HashMap<std::net::IpAddr, usize>,
    refused: u64,
    turned_away: u64,
    dials_refused: u64,
    refused_log: girder::log::LogBudget,
    turned_away_log: girder::log::LogBudget,
    dials_refused_log: girder::log::LogBudget,
}

impl ListenerHealth {
    /// Counts a refused connection; `Some(suppressed)` if it may be logged now.
    pub(super) fn refused(&mut self) -> Option<u64> {
        self.refused += 1;
        self.refused_log.spend()
    }

    /// Counts a dial whose peer refused this node's proof; `Some(suppressed)` if it may be
    /// logged now.
    fn dial_refused(&mut self) -> Option<u64> {
        self.dials_refused += 1;
        self.dials_refused_log.spend()
    }

    /// Takes a place for a connection from `source`; if there is none, counts it turned away
    /// and says whether it may be logged (`Err(Some(suppressed))`).
    fn take_pending(
        &mut self,
        source: std::net::IpAddr,
        max: usize,
        max_per_source: usize,
    ) -> Result<(), Option<u64>> {
        let from_source = self.pending_by_source.get(&source).copied().unwrap_or(0);
        if self.pending >= max || from_source >= max_per_source {
            self.turned_away += 1;
            return Err(self.turned_away_log.spend());
        }
        self.pending += 1;
        *self.pending_by_source.entry(source).or_default() += 1;
        Ok(())
    }

    fn give_back(&mut self, source: std::net::IpAddr) {
        self.pending -= 1;
        if let std::collections::hash_map::Entry::Occupied(mut e) =
            self.pending_by_source.entry(source)
        {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    fn failed(&mut self, node: &crate::NodeName, e: &std::io::Error, retry_in: Duration) {
        self.errors += 1;
        let first = self.failing.is_none();
        self.failing = Some(e.to_string());
        let quiet = self
            .last_logged
            .is_some_and(|at| at.elapsed() < LOG_AT_MOST_EVERY);
        if first || !quiet {
            self.last_logged = Some(std::time::Instant::now());
            tracing::error!(
                %node,
                error = %e,
                errors = self.errors,
                ?retry_in,
                "distribution listener cannot accept connections; retrying"
            );
        }
    }

    fn accepted(&mut self, node: &crate::NodeName) {
        if self.failing.take().is_some() {
            tracing::warn!(%node, errors = self.errors, "distribution listener accepting again");
        }
    }

    pub(super) fn status(&self) -> super::ListenerStatus {
        super::ListenerStatus {
            accepting: self.failing.is_none(),
            errors: self.errors,
            last_error: self.failing.clone(),
            pending_handshakes: self.pending,
            refused: self.refused,
            turned_away: self.turned_away,
            dials_refused: self.dials_refused,
        }
    }
}
