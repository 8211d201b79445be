//! # girder-ops: a node's eyes and voice
//!
//! Metrics, alarms, notifications and an HTTP ops API for a Girder node, as a side effect of the
//! runtime: nothing in user handlers.
//!
//! | module | what it is | OTP anchor |
//! |---|---|---|
//! | [`exporter`] | runtime and (with `dist`) distribution numbers on the `metrics` facade, Prometheus text | `observer`, `recon` |
//! | [`alarm`] | [`AlarmManager`]: raise/clear, no duplicates, history, thresholds with hysteresis | SASL `alarm_handler`, elarm |
//! | `cluster` (feature `dist`) | every node's active alarms, asked for across the cluster | `alarm_handler` on each node |
//! | [`notice`] | [`Notice`]: what subscribers hear (alarms, nodes up and down) | `error_logger` events |
//! | [`webhook`] | [`webhook::Webhook`]: notices POSTed as JSON, retried with back-off, bounded | — |
//! | [`Ops`] | all of it on one node, served over HTTP: probes, metrics, processes, supervision, alarms, live events, and [`girder::sys`] for each behaviour (its state, suspend/resume, a live trace) | `observer`, `sys` |
//!
//! [`Ops::builder`] sets a node's endpoint up, then either serves it on an address of its own
//! ([`OpsBuilder::serve`]) or hands its axum [`Router`] to the application, to nest in its own
//! app beside its routes, under its middleware, on its listener ([`OpsBuilder::router`]).
//! Either way the [`Ops`] handle owns the background tasks (threshold samplers, the notice
//! log, the webhook, ...), which run as tasks of the node; dropping it, or
//! [`Ops::shutdown`], ends them.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use girder::Node;
//! use girder_ops::Ops;
//!
//! let node = Node::new("docs");
//! // A server of its own:
//! let ops = Ops::builder(&node).serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
//! let url = format!("http://{}/healthz", ops.local_addr());
//! # let _ = url;
//! drop(ops);
//! // Or in the application's axum app, under /ops:
//! let (ops_router, ops) = Ops::builder(&node).router().await;
//! let app: axum::Router = axum::Router::new().nest("/ops", ops_router);
//! # let _ = (app, ops);
//! # }
//! ```
//!
//! ## Features
//!
//! - `dist` (on by default): the cluster, from `girder-dist`. `OpsBuilder::dist` and
//!   `OpsBuilder::membership` (or `Ops::start`) take the node's `DistNode` and membership:
//!   node up/down/left notices and `node_down:<name>` alarms (a connection lost without a
//!   goodbye; not a graceful leave), other nodes' alarms
//!   (`/api/alarms?scope=cluster`), peers and members in `/api/nodes`, traffic and membership
//!   metrics, readiness that waits for peers. Without it the crate depends on the core alone
//!   and serves the single-node ops API ([`Ops::builder`], [`Ops::start_local`]): metrics,
//!   alarms, processes (with `sys`: state, suspend/resume, traces), the supervision tree,
//!   health probes, live events and the dashboard.

#![warn(missing_docs)]

pub mod alarm;
#[cfg(feature = "dist")]
pub mod cluster;
pub mod exporter;
mod http;
pub mod notice;
mod regulated;
mod server;
mod view;
mod watch;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use girder::{Node, OwnedTask};
#[cfg(feature = "dist")]
use girder_dist::{DistNode, Membership};
use metrics_exporter_prometheus::PrometheusHandle;

pub use alarm::{Alarm, AlarmManager, Severity, Threshold};
pub use notice::Notice;
pub use server::HttpLimits;
#[cfg(feature = "dist")]
use watch::follow_nodes;
pub use watch::resident_bytes;
use watch::{follow_lifecycle, log_notices, standard_thresholds};

/// How a node's ops endpoint runs, for `Ops::start` and [`Ops::start_local`]; the same
/// settings are [`OpsBuilder`]'s methods.
#[derive(Clone, Debug)]
pub struct OpsConfig {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// The bearer token for admin actions (clearing alarms, killing, suspending and resuming
    /// processes). Without one, admin actions are refused.
    pub admin_token: Option<String>,
    /// Also require the token for reads.
    pub protect_reads: bool,
    /// Raise `mailbox_long` when a mailbox holds more than this for 5 s (cleared at half).
    pub mailbox_alarm: usize,
    /// Raise `memory_high` when the OS process's resident memory exceeds this many bytes.
    pub memory_alarm: Option<u64>,
    /// Raise `restart_storm` when supervisors restart more than this many children in 10 s.
    pub restart_alarm: u64,
    /// Raise `overload` when the node's scheduling lag (how late a 100 ms timer fires where its
    /// tasks run: on its schedulers if it has them, else on the tokio runtime) stays above this
    /// for 5 s (cleared below a quarter of it).
    pub overload_lag: Duration,
    /// `/readyz` fails while membership has no other member (with the `dist` feature and a
    /// membership given to `Ops::start`).
    pub expect_peers: bool,
    /// POST every notice to this URL (see [`webhook`]).
    pub webhook: Option<webhook::WebhookConfig>,
    /// Limits on the HTTP connections of [`OpsBuilder::serve`] (header and idle timeout,
    /// connections open at once).
    pub http: HttpLimits,
}

impl OpsConfig {
    /// Defaults: no admin token, open reads, mailbox alarm at 10,000, restart storm at 20 per
    /// 10 s, no memory alarm.
    pub fn new(listen: SocketAddr) -> Self {
        OpsConfig {
            listen,
            admin_token: None,
            protect_reads: false,
            mailbox_alarm: 10_000,
            memory_alarm: None,
            restart_alarm: 20,
            overload_lag: Duration::from_millis(200),
            expect_peers: false,
            webhook: None,
            http: HttpLimits::default(),
        }
    }
}

/// What the HTTP handlers share.
pub(crate) struct Shared {
    pub(crate) node: Node,
    // Empty without the `dist` feature.
    #[cfg_attr(not(feature = "dist"), allow(dead_code))]
    pub(crate) cluster: Cluster,
    pub(crate) alarms: AlarmManager,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) admin_token: Option<String>,
    pub(crate) protect_reads: bool,
    #[cfg(feature = "dist")]
    pub(crate) expect_peers: bool,
    /// Silence on `/api/events` before a keep-alive comment.
    pub(crate) events_keep_alive: Duration,
    /// What the API was asked to do, for `/metrics`.
    pub(crate) counts: exporter::ApiCounts,
}

/// The node's distribution, when it has one (always none without the `dist` feature).
#[derive(Default)]
pub(crate) struct Cluster {
    #[cfg(feature = "dist")]
    pub(crate) dist: Option<DistNode>,
    #[cfg(feature = "dist")]
    pub(crate) membership: Option<Arc<Membership>>,
}

/// Settings an operator has no reason to change, which tests shorten.
#[derive(Clone, Copy, Debug)]
struct Tuning {
    /// See [`http::EVENTS_KEEP_ALIVE`].
    events_keep_alive: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            events_keep_alive: http::EVENTS_KEEP_ALIVE,
        }
    }
}

/// A node's ops endpoint: its alarms, notices and the background tasks that feed them (the
/// threshold samplers, the notice log, the webhook, ...) and, from
/// [`OpsBuilder::serve`], the HTTP server. Built with [`Ops::builder`].
///
/// The handle owns all of it: dropping it, or [`shutdown`](Ops::shutdown), ends every task it
/// started (and, with a distribution, stops this node's alarm service). A [`Router`] from
/// [`OpsBuilder::router`] is plain request handling and keeps answering in the application's
/// server after that, from what is left: processes, the supervision tree, `sys`, metrics,
/// alarms raised by hand; no threshold alarms, no notices to the log or the webhook.
#[must_use = "dropping the Ops handle ends its background tasks (and its server)"]
pub struct Ops {
    alarms: AlarmManager,
    /// Where [`OpsBuilder::serve`] listens; `None` for [`OpsBuilder::router`].
    local_addr: Option<SocketAddr>,
    webhook: Option<webhook::Webhook>,
    /// Everything else it started, ended when dropped: samplers, followers, the server.
    tasks: Vec<OwnedTask>,
    /// The distribution whose supervisor runs this node's alarm service (the `cluster`
    /// module's exported server), if this handle started one: stopped on drop.
    #[cfg(feature = "dist")]
    alarm_service: Option<DistNode>,
}

impl Ops {
    /// Sets up the ops endpoint of `node`: choose its settings, then [`serve`](OpsBuilder::serve)
    /// it on an address of its own or take its [`router`](OpsBuilder::router) into an
    /// application's axum app.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::Node;
    /// use girder_ops::Ops;
    ///
    /// let node = Node::new("docs");
    /// let ops = Ops::builder(&node)
    ///     .admin_token("a-long-enough-admin-token")
    ///     .mailbox_alarm(1_000)
    ///     .serve("127.0.0.1:0".parse().unwrap())
    ///     .await
    ///     .unwrap();
    /// let healthz = format!("http://{}/healthz", ops.local_addr());
    /// # let _ = healthz;
    /// ops.shutdown(); // the server and every background task end here
    /// # }
    /// ```
    pub fn builder(node: &Node) -> OpsBuilder {
        OpsBuilder {
            node: node.clone(),
            cluster: Cluster::default(),
            cfg: OpsConfig::new(SocketAddr::from(([127, 0, 0, 1], 0))),
            tuning: Tuning::default(),
        }
    }

    /// Starts the HTTP API on `cfg.listen`, the standard thresholds, a log of notices and, with
    /// a [`DistNode`], node up/down notices and `node_down:<name>` alarms, this node's alarms
    /// served to the others and theirs asked for; with a [`Membership`], the members in
    /// `/api/nodes` and the metrics, and readiness that waits for peers
    /// ([`OpsConfig::expect_peers`]).
    ///
    /// The same as [`Ops::builder`] with `cfg`'s settings, [`dist`](OpsBuilder::dist),
    /// [`membership`](OpsBuilder::membership) and [`serve`](OpsBuilder::serve)`(cfg.listen)`.
    #[cfg(feature = "dist")]
    pub async fn start(
        node: Node,
        dist: Option<DistNode>,
        membership: Option<Arc<Membership>>,
        cfg: OpsConfig,
    ) -> std::io::Result<Ops> {
        let listen = cfg.listen;
        let mut b = OpsBuilder::from_config(&node, cfg);
        if let Some(d) = &dist {
            b = b.dist(d);
        }
        if let Some(m) = membership {
            b = b.membership(m);
        }
        b.serve(listen).await
    }

    /// Starts the single-node ops API on `cfg.listen` (metrics, alarms, processes, supervision
    /// tree, health probes, live events, dashboard), the standard thresholds and a log of
    /// notices. With the `dist` feature, the same as `Ops::start` without a `DistNode`.
    ///
    /// The same as [`Ops::builder`] with `cfg`'s settings and
    /// [`serve`](OpsBuilder::serve)`(cfg.listen)`.
    pub async fn start_local(node: Node, cfg: OpsConfig) -> std::io::Result<Ops> {
        let listen = cfg.listen;
        OpsBuilder::from_config(&node, cfg).serve(listen).await
    }

    /// Where the HTTP API listens.
    ///
    /// # Panics
    ///
    /// On a handle from [`OpsBuilder::router`], which has no listener of its own (the
    /// application's server has it): see [`listening_on`](Ops::listening_on).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr.expect(
            "this Ops handle came with a Router and serves no listener of its own: \
             ask the application's listener",
        )
    }

    /// Where the HTTP API listens: `Some` for a handle from [`OpsBuilder::serve`] (and
    /// `Ops::start`, [`Ops::start_local`]), `None` for one from [`OpsBuilder::router`].
    pub fn listening_on(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The webhook sink, if one is configured.
    pub fn webhook(&self) -> Option<&webhook::Webhook> {
        self.webhook.as_ref()
    }

    /// The node's alarm manager (applications raise their own alarms here).
    pub fn alarms(&self) -> &AlarmManager {
        &self.alarms
    }

    /// Ends everything the handle owns, now: the same as dropping it, said out loud.
    ///
    /// The threshold samplers, the scheduling-lag probe, the notice log, the supervisors' and
    /// nodes' followers and the webhook are cancelled (a notice the webhook has not delivered
    /// yet is lost); this node's alarm service stops; a server from [`OpsBuilder::serve`]
    /// stops accepting at once and closes its idle connections (a response in progress, such
    /// as an open event stream, ends when its client goes). The process-wide metrics recorder
    /// ([`exporter::install`]) stays.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use girder::Node;
    /// use girder_ops::Ops;
    ///
    /// let node = Node::new("docs");
    /// let (router, ops) = Ops::builder(&node).router().await;
    /// ops.shutdown();
    /// // The router still answers reads wherever it is served; nothing samples alarms now.
    /// # let _ = router;
    /// # }
    /// ```
    pub fn shutdown(self) {
        drop(self)
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        // The tasks end as `tasks` is dropped; the alarm service is a process.
        #[cfg(feature = "dist")]
        if let Some(dist) = self.alarm_service.take() {
            crate::cluster::stop(&dist);
        }
    }
}

/// Sets up a node's ops endpoint (from [`Ops::builder`]): the settings of [`OpsConfig`] as
/// methods, then either [`serve`](Self::serve) (a server of its own on an address) or
/// [`router`](Self::router) (an axum [`Router`] for the application's own server).
///
/// Either way the [`Ops`] handle it returns owns the background tasks; keep it as long as
/// the API should run (see [`Ops`]).
#[must_use = "an OpsBuilder starts nothing until its serve or router"]
pub struct OpsBuilder {
    node: Node,
    cluster: Cluster,
    /// Every setting but `listen`, which [`serve`](Self::serve) takes.
    cfg: OpsConfig,
    tuning: Tuning,
}

impl OpsBuilder {
    /// Takes every setting of `cfg` but its `listen` address.
    fn from_config(node: &Node, cfg: OpsConfig) -> OpsBuilder {
        OpsBuilder {
            cfg,
            ..Ops::builder(node)
        }
    }

    /// The node's distribution (`dist.node()` is the builder's node): node up/down notices
    /// and `node_down:<name>` alarms, this node's alarms served to the other nodes and theirs
    /// in `/api/alarms?scope=cluster`, peers in `/api/nodes`, traffic metrics.
    #[cfg(feature = "dist")]
    pub fn dist(mut self, dist: &DistNode) -> Self {
        self.cluster.dist = Some(dist.clone());
        self
    }

    /// The node's membership: the members in `/api/nodes` and the metrics, and readiness that
    /// waits for peers if [`expect_peers`](Self::expect_peers).
    #[cfg(feature = "dist")]
    pub fn membership(mut self, membership: Arc<Membership>) -> Self {
        self.cluster.membership = Some(membership);
        self
    }

    /// `/readyz` fails while the membership has no other member ([`OpsConfig::expect_peers`];
    /// off by default).
    #[cfg(feature = "dist")]
    pub fn expect_peers(mut self, expect: bool) -> Self {
        self.cfg.expect_peers = expect;
        self
    }

    /// The bearer token for admin actions ([`OpsConfig::admin_token`]); without one, admin
    /// actions are refused.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.cfg.admin_token = Some(token.into());
        self
    }

    /// Also require the token for reads ([`OpsConfig::protect_reads`]; the probes stay open).
    pub fn protect_reads(mut self, protect: bool) -> Self {
        self.cfg.protect_reads = protect;
        self
    }

    /// Raise `mailbox_long` when a mailbox holds more than `messages` for 5 s
    /// ([`OpsConfig::mailbox_alarm`]; 10,000 by default).
    pub fn mailbox_alarm(mut self, messages: usize) -> Self {
        self.cfg.mailbox_alarm = messages;
        self
    }

    /// Raise `memory_high` when resident memory exceeds `bytes` ([`OpsConfig::memory_alarm`];
    /// off by default).
    pub fn memory_alarm(mut self, bytes: u64) -> Self {
        self.cfg.memory_alarm = Some(bytes);
        self
    }

    /// Raise `restart_storm` when supervisors restart more than `restarts` children in 10 s
    /// ([`OpsConfig::restart_alarm`]; 20 by default).
    pub fn restart_alarm(mut self, restarts: u64) -> Self {
        self.cfg.restart_alarm = restarts;
        self
    }

    /// Raise `overload` when timers fire more than `lag` late for 5 s
    /// ([`OpsConfig::overload_lag`]; 200 ms by default).
    pub fn overload_lag(mut self, lag: Duration) -> Self {
        self.cfg.overload_lag = lag;
        self
    }

    /// POST every notice to a URL ([`webhook`]).
    pub fn webhook(mut self, webhook: webhook::WebhookConfig) -> Self {
        self.cfg.webhook = Some(webhook);
        self
    }

    /// Limits on the HTTP connections [`serve`](Self::serve) accepts (by default a client has
    /// 10 s to send a request's headers, idle connections are closed after as long, and at
    /// most 1,024 are open at once). A [`router`](Self::router) is served by the application's
    /// own server, under its own limits.
    pub fn http_limits(mut self, limits: HttpLimits) -> Self {
        self.cfg.http = limits;
        self
    }

    /// Starts the background tasks and serves the API on `listen` (port 0: a free one, see
    /// [`Ops::local_addr`]), as `Ops::start` and [`Ops::start_local`] do: the dashboard at
    /// `/`, the probes, the metrics and the JSON API, a JSON 404 for any other path. Fails,
    /// having started nothing, if `listen` cannot be bound.
    ///
    /// The server runs as a task of the node; the returned handle ends it (and the rest).
    pub async fn serve(self, listen: SocketAddr) -> std::io::Result<Ops> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let node = self.node.clone();
        let limits = self.cfg.http;
        let (shared, mut ops) = self.start().await;
        let app = http::router(shared).fallback(http::not_found);
        ops.local_addr = Some(local_addr);
        ops.tasks
            .push(node.spawn_owned(server::run(listener, app, limits)));
        Ok(ops)
    }

    /// Starts the background tasks and returns the API as an axum [`Router`], for the
    /// application's own server: `.nest("/ops", router)` (or `.merge(router)` at the root)
    /// into its app, beside its own routes and under its own middleware and listener.
    ///
    /// The router's paths are those [`serve`](Self::serve) serves, under the prefix: the
    /// dashboard at the prefix itself (`/ops`) and at `/ops/dashboard` (its requests are
    /// relative to its address, so it works under any prefix, and behind a proxy that adds
    /// one), `/ops/healthz`, `/ops/metrics`, `/ops/api/...`. It has no fallback of its own
    /// (an unknown path under `/ops/api/` still gets the API's JSON 404), so it merges into
    /// an app that has one. Its state is applied: it is a `Router<()>`, nested after the
    /// application's own `.with_state(..)`.
    ///
    /// The handle owns the background tasks, not the router: keep it while the router
    /// serves (see [`Ops`]).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use axum::{routing::get, Router};
    /// use girder::Node;
    /// use girder_ops::Ops;
    ///
    /// let node = Node::new("docs");
    /// let (ops_router, ops) = Ops::builder(&node).router().await;
    /// let app: Router = Router::new()
    ///     .route("/hello", get(|| async { "hello" }))
    ///     .nest("/ops", ops_router);
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let addr = listener.local_addr().unwrap();
    /// let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    ///
    /// // The application's route and the ops API, on one listener.
    /// let hello = reqwest::get(format!("http://{addr}/hello")).await.unwrap();
    /// assert_eq!(hello.text().await.unwrap(), "hello");
    /// let health = reqwest::get(format!("http://{addr}/ops/healthz")).await.unwrap();
    /// assert_eq!(health.text().await.unwrap(), "ok");
    ///
    /// server.abort();
    /// ops.shutdown();
    /// # }
    /// ```
    pub async fn router(self) -> (Router, Ops) {
        let (shared, ops) = self.start().await;
        (http::router(shared), ops)
    }

    /// Everything but the server: the alarms, their samplers, the notices' followers, the
    /// webhook and (with a distribution) the alarm service, owned by the returned handle.
    async fn start(self) -> (Arc<Shared>, Ops) {
        let OpsBuilder {
            node,
            cluster,
            cfg,
            tuning,
        } = self;
        let alarms = AlarmManager::new();
        let mut tasks = standard_thresholds(&node, &alarms, &cfg);
        tasks.push(log_notices(&node, &alarms));
        tasks.push(follow_lifecycle(&node, &alarms));
        let webhook = cfg
            .webhook
            .clone()
            .map(|w| webhook::Webhook::start(&node, &alarms, w));
        #[cfg(feature = "dist")]
        let mut alarm_service = None;
        #[cfg(feature = "dist")]
        if let Some(d) = &cluster.dist {
            tasks.push(follow_nodes(d, &alarms));
            alarm_service = crate::cluster::serve(d, &alarms).await.then(|| d.clone());
        }
        let shared = Arc::new(Shared {
            node: node.clone(),
            cluster,
            alarms: alarms.clone(),
            metrics: exporter::install(),
            admin_token: cfg.admin_token.clone(),
            protect_reads: cfg.protect_reads,
            #[cfg(feature = "dist")]
            expect_peers: cfg.expect_peers,
            events_keep_alive: tuning.events_keep_alive,
            counts: Default::default(),
        });
        let ops = Ops {
            alarms,
            local_addr: None,
            webhook,
            tasks,
            #[cfg(feature = "dist")]
            alarm_service,
        };
        (shared, ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_event_stream_gets_keep_alive_comments() {
        let node = Node::new("keep-alive");
        let tuning = Tuning {
            events_keep_alive: Duration::from_millis(100),
        };
        let ops = OpsBuilder {
            tuning,
            ..Ops::builder(&node)
        }
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
        let mut stream = reqwest::get(format!("http://{}/api/events", ops.local_addr()))
            .await
            .unwrap();
        // Nothing happens on the node: all the stream carries is keep-alive comments.
        let mut seen = String::new();
        while seen.lines().filter(|l| l.starts_with(':')).count() < 2 {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
                .await
                .expect("a keep-alive within 5 s")
                .unwrap()
                .expect("the stream stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(
            seen.lines().all(|l| l.is_empty() || l.starts_with(':')),
            "{seen:?}"
        );
    }
}
