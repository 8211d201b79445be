//! The HTTP ops API (axum): health probes, Prometheus metrics, the node's processes,
//! supervision tree, alarms and a live event stream, and `sys` for each behaviour (its state,
//! suspend and resume, a live trace); admin actions behind a bearer token. Pids are written as
//! they print (`<0.42.1>`) everywhere (see [`crate::view`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures_util::Stream;
use girder::supervisor::ChildInfo;
use girder::sys::{self, SysError, Trace, TraceEvent, Traced};
use girder::{ExitReason, Pid, SupervisorRef};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::alarm::{AlarmManager, Severity};
use crate::view::{pid_text, ChildView, ProcessView, StatsView, SysStateView, TraceEventView};
use crate::Shared;

/// An API error: a status and a message that says what was wrong.
pub(crate) struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

type Api<T> = Result<T, ApiError>;

/// Query parameters whose rejection (`?limit=many`) is the API's JSON error, as every other
/// error is, rather than axum's plain-text one.
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(q)) => Ok(Params(q)),
            Err(rejection) => Err(bad(rejection.body_text())),
        }
    }
}

/// The API's routes, with no fallback of their own (an application's app may have one; the
/// standalone server adds [`not_found`]): unknown paths under `/api/` answer the JSON 404.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/dashboard", get(dashboard_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/nodes", get(nodes))
        .route("/api/processes", get(processes))
        .route("/api/processes/{pid}/kill", post(kill))
        .route("/api/processes/{pid}/state", get(sys_state))
        .route("/api/processes/{pid}/suspend", post(suspend))
        .route("/api/processes/{pid}/resume", post(resume))
        .route("/api/processes/{pid}/trace", get(trace))
        .route("/api/supervision", get(supervision))
        .route("/api/alarms", get(alarms))
        .route("/api/alarms/{id}/clear", post(clear_alarm))
        .route("/api/events", get(events))
        .route("/api/{*rest}", any(not_found))
        .with_state(shared)
}

/// The answer for a path the API does not have.
pub(crate) async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}

/// Checks the bearer token: always for admin actions, for reads when so configured.
fn authorize(shared: &Shared, headers: &HeaderMap, admin: bool) -> Api<()> {
    if !admin && !shared.protect_reads {
        return Ok(());
    }
    let Some(token) = &shared.admin_token else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "admin actions are disabled: the node has no admin token".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let refused = |e: ApiError| {
        shared.counts.unauthorized.fetch_add(1, Ordering::Relaxed);
        Err(e)
    };
    match given {
        None => refused(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer <token>)".into(),
        )),
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => refused(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong bearer token".into(),
        )),
    }
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The dashboard: one page, its script and styles inline, data from this API.
///
/// Its requests are relative to its own address, so it works wherever the router is mounted
/// (nested under `/ops`, behind a proxy that adds a prefix). At the API's root (`/`, or `/ops`
/// when nested) the API is under the page's path; at `dashboard` under the root, beside it.
/// The page cannot tell `/ops/dashboard` (beside) from a router nested at `/dashboard`
/// (under), so the server says which (`data-page` on `<html>`).
const DASHBOARD: &str = include_str!("dashboard.html");

async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(DASHBOARD)
}

/// The dashboard as served at `dashboard` (see [`DASHBOARD`]).
async fn dashboard_page() -> axum::response::Html<&'static str> {
    static PAGE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        DASHBOARD.replacen(
            "<html lang=\"en\">",
            "<html lang=\"en\" data-page=\"dashboard\">",
            1,
        )
    });
    axum::response::Html(PAGE.as_str())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    let mut why = Vec::new();
    for a in s.alarms.active() {
        if a.severity == Severity::Critical {
            why.push(format!("critical alarm {}: {}", a.id, a.text));
        }
    }
    #[cfg(feature = "dist")]
    if let Some(d) = &s.cluster.dist {
        if !s.node.is_alive(d.services().pid()) {
            why.push(format!(
                "{} is down: global names, process groups and the alarm service are not \
                 running; restart the node",
                girder_dist::node::KERNEL_SUP
            ));
        }
        let listener = d.listener_status();
        if !listener.accepting {
            why.push(format!(
                "the distribution listener is not accepting connections: {}",
                listener.last_error.unwrap_or_default()
            ));
        }
    }
    #[cfg(feature = "dist")]
    if let Some(m) = &s.cluster.membership {
        if s.expect_peers && m.members().is_empty() {
            why.push("not joined to a cluster yet (no other members)".into());
        }
    }
    if why.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "why": why })),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Api<Response> {
    authorize(&s, &headers, false)?;
    #[cfg(feature = "dist")]
    crate::exporter::collect(
        &s.node,
        s.cluster.dist.as_ref(),
        s.cluster.membership.as_deref(),
    );
    #[cfg(not(feature = "dist"))]
    crate::exporter::collect_node(&s.node);
    crate::exporter::collect_ops(&s.node, &s.alarms, &s.counts);
    let body = s
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_else(|| "# another metrics recorder is installed in this process\n".into());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

#[derive(Serialize)]
struct NodeView {
    name: String,
    this: bool,
    connected: bool,
    creation: Option<u32>,
    processes: Option<usize>,
    bytes_in: u64,
    bytes_out: u64,
}

/// The name this node goes by: its distribution's, else the core node's.
fn this_node_name(s: &Shared) -> String {
    #[cfg(feature = "dist")]
    if let Some(d) = &s.cluster.dist {
        return d.name().to_string();
    }
    s.node.name().to_string()
}

async fn nodes(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Api<Json<serde_json::Value>> {
    authorize(&s, &headers, false)?;
    let stats = s.node.stats();
    #[allow(unused_mut)] // only the distribution adds to it
    let mut v = vec![NodeView {
        name: this_node_name(&s),
        this: true,
        connected: true,
        creation: Some(s.node.creation()),
        processes: Some(stats.processes),
        bytes_in: 0,
        bytes_out: 0,
    }];
    #[cfg(feature = "dist")]
    if let Some(d) = &s.cluster.dist {
        for p in d.peers() {
            v.push(NodeView {
                name: p.name.to_string(),
                this: false,
                connected: p.connected,
                creation: p.creation,
                processes: None,
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
            });
        }
    }
    #[cfg(feature = "dist")]
    let members: Vec<serde_json::Value> = s
        .cluster
        .membership
        .as_ref()
        .map(|m| {
            m.members()
                .into_iter()
                .map(|m| json!({ "name": m.name.to_string(), "addr": m.addr.to_string(), "roles": m.roles }))
                .collect()
        })
        .unwrap_or_default();
    #[cfg(not(feature = "dist"))]
    let members: Vec<serde_json::Value> = Vec::new();
    Ok(Json(json!({
        "nodes": v,
        "members": members,
        "stats": StatsView::from(stats),
        "schedulers": s.node.scheduler_stats(),
    })))
}

#[derive(Deserialize)]
struct ProcessQuery {
    sort: Option<String>,
    limit: Option<usize>,
}

async fn processes(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Params(q): Params<ProcessQuery>,
) -> Api<Json<serde_json::Value>> {
    authorize(&s, &headers, false)?;
    let mut list = s.node.processes();
    match q.sort.as_deref().unwrap_or("mailbox") {
        "mailbox" => list.sort_by(|a, b| b.mailbox_len.cmp(&a.mailbox_len).then(a.pid.cmp(&b.pid))),
        "restarts" => list.sort_by(|a, b| b.restarts.cmp(&a.restarts).then(a.pid.cmp(&b.pid))),
        "messages" => {
            list.sort_by(|a, b| b.messages_in.cmp(&a.messages_in).then(a.pid.cmp(&b.pid)))
        }
        "pid" => {}
        other => {
            return Err(bad(format!(
                "unknown sort {other:?}: use mailbox, restarts, messages or pid"
            )))
        }
    }
    let total = list.len();
    list.truncate(q.limit.unwrap_or(100).min(10_000));
    let list: Vec<ProcessView> = list.into_iter().map(ProcessView::from).collect();
    Ok(Json(json!({ "total": total, "processes": list })))
}

/// Reads `<0.42.7>` or `0.42.7` (node index, id, creation, as pids print).
fn parse_pid(text: &str) -> Api<Pid> {
    let t = text.trim().trim_start_matches('<').trim_end_matches('>');
    let parts: Vec<&str> = t.split('.').collect();
    let err = || {
        bad(format!(
            "not a pid: {text:?} (expected <node.id.creation>, e.g. <0.42.7>)"
        ))
    };
    if parts.len() != 3 {
        return Err(err());
    }
    let node: u32 = parts[0].parse().map_err(|_| err())?;
    let id: u64 = parts[1].parse().map_err(|_| err())?;
    let creation: u32 = parts[2].parse().map_err(|_| err())?;
    Ok(Pid::new(node, creation, id))
}

async fn kill(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(pid): Path<String>,
) -> Api<Json<serde_json::Value>> {
    authorize(&s, &headers, true)?;
    let pid = parse_pid(&pid)?;
    if !pid.is_local() || !s.node.is_alive(pid) {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no live process {pid} on this node"),
        ));
    }
    s.node.exit(pid, ExitReason::Kill);
    s.counts.kills.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%pid, "process killed through the ops API");
    Ok(Json(json!({ "killed": pid.to_string() })))
}

/// A `sys` request's failure as an API error: what happened, with the status that says so.
fn sys_error(e: SysError) -> ApiError {
    let (status, hint) = match &e {
        SysError::NoProc(_) => (StatusCode::NOT_FOUND, ""),
        SysError::Remote(_) => (StatusCode::NOT_FOUND, ": ask that node's ops API"),
        SysError::NotABehaviour(_) => (
            StatusCode::CONFLICT,
            " (a plain process; servers, state machines, supervisors and event managers answer sys requests)",
        ),
        SysError::Timeout(..) => (
            StatusCode::GATEWAY_TIMEOUT,
            " (busy in a long callback, or overloaded)",
        ),
        SysError::TooManyTraces(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            ": stop one before starting another",
        ),
    };
    ApiError(status, format!("{e}{hint}"))
}

async fn sys_state(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(pid): Path<String>,
) -> Api<Json<SysStateView>> {
    authorize(&s, &headers, false)?;
    let pid = parse_pid(&pid)?;
    let state = sys::get_state(&s.node, pid).await.map_err(sys_error)?;
    Ok(Json(state.into()))
}

async fn suspend(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(pid): Path<String>,
) -> Api<Json<serde_json::Value>> {
    authorize(&s, &headers, true)?;
    let pid = parse_pid(&pid)?;
    sys::suspend(&s.node, pid).await.map_err(sys_error)?;
    s.counts.suspends.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%pid, "process suspended through the ops API");
    Ok(Json(json!({ "suspended": pid.to_string() })))
}

async fn resume(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(pid): Path<String>,
) -> Api<Json<serde_json::Value>> {
    authorize(&s, &headers, true)?;
    let pid = parse_pid(&pid)?;
    sys::resume(&s.node, pid).await.map_err(sys_error)?;
    s.counts.resumes.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%pid, "process resumed through the ops API");
    Ok(Json(json!({ "resumed": pid.to_string() })))
}

/// A behaviour's events as server-sent events, until the process exits or the client goes
/// (the response's stream owns the trace: dropping it detaches the trace).
async fn trace(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(pid): Path<String>,
) -> Api<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    authorize(&s, &headers, false)?;
    let pid = parse_pid(&pid)?;
    let trace = sys::trace(&s.node, pid).await.map_err(sys_error)?;
    let keep_alive = KeepAlive::new().interval(s.events_keep_alive);
    Ok(Sse::new(TraceEvents::new(trace)).keep_alive(keep_alive))
}

/// A [`Trace`] as SSE: `event: trace` per event (a [`TraceEventView`]); `event: dropped`
/// (`{"dropped": n}`, the total so far) where the core says it dropped events for this slow
/// reader (its in-band `Traced::Dropped`, just before the next event that fit); `event: end`
/// (`{"pid", "dropped"}`) once the process has exited, then the end of the stream.
///
/// Read only as the response is written (hyper polls it when its write buffer has room), so a
/// slow client backs up into the trace's own bounded queue, where the core drops and counts:
/// nothing here buffers anything.
pub(crate) struct TraceEvents {
    trace: Option<Trace>,
    pid: Pid,
    reported: u64,
}

impl TraceEvents {
    fn new(trace: Trace) -> Self {
        TraceEvents {
            pid: trace.pid(),
            trace: Some(trace),
            reported: 0,
        }
    }
}

fn sse_json(name: &str, data: &impl Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"))
}

impl Stream for TraceEvents {
    type Item = Result<SseEvent, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(trace) = &mut this.trace else {
            return Poll::Ready(None);
        };
        let next = std::task::ready!(Pin::new(&mut *trace).poll_next(cx));
        let event = match next {
            Some(TraceEvent {
                event: Traced::Dropped { count },
                ..
            }) => {
                this.reported += count;
                sse_json("dropped", &json!({ "dropped": this.reported }))
            }
            Some(e) => sse_json("trace", &TraceEventView::from(e)),
            None => {
                // The process has exited: the trace is over.
                let dropped = trace.dropped();
                this.trace = None;
                let end = json!({ "pid": this.pid.to_string(), "dropped": dropped });
                sse_json("end", &end)
            }
        };
        Poll::Ready(Some(Ok(event)))
    }
}

#[derive(Serialize)]
struct Tree {
    #[serde(serialize_with = "pid_text")]
    pid: Pid,
    name: Option<String>,
    restarts: u32,
    children: Vec<TreeChild>,
}

#[derive(Serialize)]
struct TreeChild {
    #[serde(flatten)]
    info: ChildView,
    /// The child's own children, when it is a supervisor.
    tree: Option<Tree>,
}

async fn supervision(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Api<Json<serde_json::Value>> {
    authorize(&s, &headers, false)?;
    let sups: Vec<_> = s
        .node
        .processes()
        .into_iter()
        .filter(|p| p.behaviour == "supervisor")
        .collect();
    let mut children_of = std::collections::HashMap::new();
    for p in &sups {
        let Ok(r) = SupervisorRef::from_pid(&s.node, p.pid) else {
            continue;
        };
        // A supervisor busy restarting answers later; the tree is a snapshot, not worth waiting for.
        if let Ok(Ok(children)) =
            tokio::time::timeout(Duration::from_secs(2), r.which_children()).await
        {
            children_of.insert(p.pid, children);
        }
    }
    let nested: std::collections::HashSet<Pid> = children_of
        .values()
        .flatten()
        .filter_map(|c| c.pid)
        .collect();
    fn build(
        pid: Pid,
        sups: &[girder::ProcessInfo],
        children_of: &mut std::collections::HashMap<Pid, Vec<ChildInfo>>,
    ) -> Tree {
        let info = sups.iter().find(|p| p.pid == pid);
        let children = children_of.remove(&pid).unwrap_or_default();
        Tree {
            pid,
            name: info.and_then(|i| i.name.clone()),
            restarts: info.map(|i| i.restarts).unwrap_or(0),
            children: children
                .into_iter()
                .map(|c| {
                    let tree = c
                        .pid
                        .filter(|p| sups.iter().any(|s| s.pid == *p))
                        .map(|p| build(p, sups, children_of));
                    TreeChild {
                        info: c.into(),
                        tree,
                    }
                })
                .collect(),
        }
    }
    let roots: Vec<Pid> = sups
        .iter()
        .map(|p| p.pid)
        .filter(|p| !nested.contains(p))
        .collect();
    let trees: Vec<Tree> = roots
        .into_iter()
        .map(|r| build(r, &sups, &mut children_of))
        .collect();
    Ok(Json(json!({ "roots": trees })))
}

#[derive(Deserialize)]
struct AlarmQuery {
    scope: Option<String>,
}

async fn alarms(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Params(q): Params<AlarmQuery>,
) -> Api<Json<serde_json::Value>> {
    authorize(&s, &headers, false)?;
    let cluster = match q.scope.as_deref() {
        None | Some("node") => None,
        #[cfg(feature = "dist")]
        Some("cluster") => Some(match &s.cluster.dist {
            Some(d) => crate::cluster::gather(d).await,
            None => Vec::new(),
        }),
        // A node without distribution is a cluster of one: no other node's alarms.
        #[cfg(not(feature = "dist"))]
        Some("cluster") => Some(Vec::<serde_json::Value>::new()),
        Some(other) => return Err(bad(format!("unknown scope {other:?}: use node or cluster"))),
    };
    Ok(Json(json!({
        "active": s.alarms.active(),
        "history": s.alarms.history(),
        "cluster": cluster,
    })))
}

async fn clear_alarm(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Api<Json<serde_json::Value>> {
    authorize(&s, &headers, true)?;
    match s.alarms.clear(&id) {
        Ok(a) => {
            s.counts.alarm_clears.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(alarm = %a.id, "alarm cleared through the ops API");
            Ok(Json(json!({ "cleared": a })))
        }
        Err(e) => Err(ApiError(StatusCode::NOT_FOUND, e.to_string())),
    }
}

/// How long `/api/events` stays silent before it sends a keep-alive comment (`:`), so proxies
/// and load balancers that cut idle connections (often after 30 or 60 s) keep the stream open.
pub(crate) const EVENTS_KEEP_ALIVE: Duration = Duration::from_secs(15);

async fn events(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Api<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    authorize(&s, &headers, false)?;
    // An empty comment line (`:`), sent after each `events_keep_alive` without an event.
    let keep_alive = KeepAlive::new().interval(s.events_keep_alive);
    Ok(Sse::new(notice_stream(&s.alarms)).keep_alive(keep_alive))
}

fn notice_stream(alarms: &AlarmManager) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    BroadcastStream::new(alarms.subscribe()).map(|n| {
        Ok(match n {
            Ok(notice) => SseEvent::default()
                .event("notice")
                .json_data(&notice)
                .unwrap_or_else(|_| SseEvent::default().comment("unencodable notice")),
            // A slow reader missed some: say so rather than silently skip.
            Err(e) => SseEvent::default().event("lagged").data(e.to_string()),
        })
    })
}
