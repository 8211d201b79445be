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
        let node = inner.node.clone();
        node.spawn_task(async move {
            let tls_cfg = inner.cfg.tls.clone();
            match tls_cfg {
                Some(t) => match tls::accept(stream, &t).await {
                    Ok(s) => accept(inner, s, from).await,
                    Err(e) => inner.refused(from, format!("TLS: {e}")),
                },
                None => accept(inner, stream, from).await,
            }
        });
    }
}

async fn accept<S>(inner: Arc<Inner>, stream: S, from: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let admitted = parking_lot::Mutex::new(None);
    let result = handshake::accept(stream, &inner.hs, |name, creation| {
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

pub(super) async fn dial(inner: Arc<Inner>, peer: Arc<Peer>, addr: SocketAddr, gen: u64) {
    let attempt = async {
        let tcp = inner
            .cfg
            .network
            .connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        match &inner.cfg.tls {
            Some(t) => {
                let s = tls::connect(tcp, peer.name.host(), t)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                // Under TLS 1.3 a refused client certificate shows up on the first read, here.
                let (est, conn) = handshake::initiate(s, &inner.hs)
                    .await
                    .map_err(|e| format!("handshake over TLS: {e}"))?;
                check_peer(&peer, &est)?;
                inner.established(peer.clone(), gen, est, conn);
            }
            None => {
                let (est, conn) = handshake::initiate(tcp, &inner.hs)
                    .await
                    .map_err(|e| e.to_string())?;
                check_peer(&peer, &est)?;
                inner.established(peer.clone(), gen, est, conn);
            }
        }
        Ok::<(), String>(())
    };
    let outcome = tokio::time::timeout(inner.cfg.connect_timeout, attempt).await;
    let error = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e,
        Err(_) => "timed out".to_string(),
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
    tracing::warn!(node = %inner.cfg.name, peer = %peer.name, %addr, %error, "dial failed");
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
/// and readiness.
#[derive(Default)]
pub(super) struct ListenerHealth {
    errors: u64,
    /// The error of the failing run, while no `accept` has succeeded since.
    failing: Option<String>,
    last_logged: Option<std::time::Instant>,
}

impl ListenerHealth {
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
        }
    }
}
