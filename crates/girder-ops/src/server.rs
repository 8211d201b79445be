//! The ops API's own HTTP server: hyper's HTTP/1 under the limits `axum::serve` does not set.
//! A client that connects and sends nothing, sends half a request, or keeps a connection open
//! and idle is closed after [`HttpLimits::header_timeout`]; at most
//! [`HttpLimits::max_connections`] connections are open at once (more are closed on arrival);
//! a failed `accept` (out of file descriptors) is retried after a pause instead of ending the
//! server. Every connection ends when the server does, so [`Ops`](crate::Ops) ending ends
//! them too, server-sent event streams included.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Limits on the ops API's HTTP connections ([`OpsBuilder::http_limits`](crate::OpsBuilder::http_limits)).
///
/// ```
/// use std::time::Duration;
/// let limits = girder_ops::HttpLimits {
///     header_timeout: Duration::from_secs(5),
///     ..girder_ops::HttpLimits::default()
/// };
/// assert_eq!(limits.max_connections, 1024);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client has to send a request's headers, counted from when the connection
    /// opens or the previous response was sent: a silent, slow or idle client is closed after
    /// it. Default 10 s. (A response under way, such as an event stream, is not limited.)
    pub header_timeout: Duration,
    /// Connections open at once; more are closed on arrival. Default 1,024.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
        }
    }
}

/// The first pause after a failed `accept`, doubled up to 1 s while it keeps failing.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until the task is dropped.
pub(crate) async fn run(listener: TcpListener, app: Router, limits: HttpLimits) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    // Dropped with this task (the `Ops` handle ending): every connection sees it and ends,
    // event streams included.
    let (_server_alive, server_gone) = tokio::sync::watch::channel(());
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut budget = girder::log::LogBudget::default();
    let mut may_log = move || budget.spend();
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF_MIN;
                accepted
            }
            Err(e) => {
                if let Some(suppressed) = may_log() {
                    tracing::error!(error = %e, suppressed, ?backoff, "ops API cannot accept connections; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if let Some(suppressed) = may_log() {
                tracing::warn!(%from, suppressed, max = limits.max_connections, "ops API connection turned away: too many open");
            }
            drop(tcp);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let mut server_gone = server_gone.clone();
        // On tokio's runtime, as axum::serve places connections: HTTP parsing and writing stay
        // off the threads that run the node's processes. (They once ran there; a stalled event
        // stream seen then turned out to be a trace's notice of dropped events waiting for an
        // event that never came, fixed in `girder::sys`, not a lost wake-up.) The server's end
        // still ends it (below).
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = http.serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                // Errors here are the client's (a timeout, a reset, bad bytes): it ends.
                _ = connection => {}
                _ = server_gone.changed() => {}
            }
        });
    }
}
