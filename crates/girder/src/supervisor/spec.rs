//! Child specifications: what a supervisor starts, and how it restarts and stops it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::server::{self, StartError};
use crate::{Context, ExitReason, Node, Pid, Server, SpawnOptions};

use super::SupervisorBuilder;

/// When a child is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Restart {
    /// Always restarted.
    Permanent,
    /// Restarted only after an abnormal exit (not `Normal` or `Shutdown`).
    Transient,
    /// Never restarted; forgotten when it exits.
    Temporary,
}

/// How a child is stopped when its supervisor stops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Shutdown {
    /// Killed at once with an untrappable `Kill`.
    BrutalKill,
    /// Sent `Shutdown`, and killed if it has not exited after this long.
    Timeout(Duration),
    /// Sent `Shutdown`, and waited for as long as it takes (the default for supervisors).
    Infinity,
}

/// Whether a child is a worker or a supervisor (shown by introspection; sets defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ChildKind {
    /// Does the work.
    Worker,
    /// Supervises other children.
    Supervisor,
}

/// What a child's start function is given: where to start it and whom to link to.
#[derive(Clone, Debug)]
pub struct ChildStart {
    /// The node to start on.
    pub node: Node,
    /// The supervisor, which the child must be linked to (use [`ChildStart::spawn_options`]).
    pub parent: Pid,
    /// The name the child should register under, if its spec has one.
    pub name: Option<String>,
}

impl ChildStart {
    /// Spawn options that link the child to its supervisor before it runs.
    pub fn spawn_options(&self) -> SpawnOptions {
        SpawnOptions::new().link(self.parent)
    }
}

type StartFuture = Pin<Box<dyn Future<Output = Result<Pid, StartError>> + Send>>;
type StartFn = Arc<dyn Fn(ChildStart) -> StartFuture + Send + Sync>;

/// A child specification: an id, a start function, and restart and shutdown policies. Specs are
/// data: cloning one gives another instance of the same child (for dynamic supervisors).
///
/// ```
/// use std::time::Duration;
/// use girder::supervisor::{ChildSpec, Restart, Shutdown};
/// use girder::{ExitReason, Event};
///
/// let spec = ChildSpec::process("ticker", |mut ctx| async move {
///     loop {
///         if let Event::Message(()) = ctx.recv().await {}
///     }
/// })
/// .restart(Restart::Transient)
/// .shutdown(Shutdown::Timeout(Duration::from_secs(1)));
/// assert_eq!(spec.id(), "ticker");
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) id: String,
    pub(crate) start: StartFn,
    pub(crate) restart: Restart,
    pub(crate) shutdown: Shutdown,
    pub(crate) kind: ChildKind,
    pub(crate) name: Option<String>,
}

/// The default shutdown time for workers, as in OTP.
pub const DEFAULT_WORKER_SHUTDOWN: Duration = Duration::from_secs(5);

impl ChildSpec {
    /// A child started by `start`, which must start a process linked to `ChildStart::parent`
    /// and return its pid once it is ready.
    pub fn new<F, Fut>(id: impl Into<String>, start: F) -> Self
    where
        F: Fn(ChildStart) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Pid, StartError>> + Send + 'static,
    {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move |s| Box::pin(start(s))),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(DEFAULT_WORKER_SHUTDOWN),
            kind: ChildKind::Worker,
            name: None,
        }
    }

    /// A [`Server`] child; `make` builds a fresh server state for every (re)start.
    pub fn server<S, F>(id: impl Into<String>, make: F) -> Self
    where
        S: Server,
        F: Fn() -> S + Send + Sync + 'static,
    {
        Self::new(id, move |s: ChildStart| {
            let state = make();
            async move {
                let opts = s.spawn_options();
                server::start_with(&s.node, state, opts, s.name.as_deref())
                    .await
                    .map(|r| r.pid())
            }
        })
    }

    /// A plain process child running `body`; a fresh process runs it on every (re)start.
    pub fn process<M, F, Fut>(id: impl Into<String>, body: F) -> Self
    where
        M: Send + 'static,
        F: Fn(Context<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ExitReason> + Send + 'static,
    {
        let body = Arc::new(body);
        Self::new(id, move |s: ChildStart| {
            let body = body.clone();
            async move {
                let addr = s
                    .node
                    .spawn_opts(s.spawn_options(), move |ctx| (*body)(ctx));
                if let Some(name) = &s.name {
                    s.node
                        .register(name, addr.pid())
                        .map_err(|e| StartError::Other(e.to_string()))?;
                }
                Ok(addr.pid())
            }
        })
    }

    /// A supervisor child (a subtree). Its shutdown defaults to `Infinity`, as in OTP.
    pub fn supervisor(id: impl Into<String>, tree: SupervisorBuilder) -> Self {
        let mut spec = Self::new(id, move |s: ChildStart| {
            let mut tree = tree.clone();
            if let Some(name) = &s.name {
                tree = tree.name(name.clone());
            }
            async move { tree.start_link(&s.node, s.parent).await.map(|r| r.pid()) }
        });
        spec.kind = ChildKind::Supervisor;
        spec.shutdown = Shutdown::Infinity;
        spec
    }

    /// The child's id, unique within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sets when the child is restarted (default `Permanent`).
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets how the child is stopped (default a 5 s timeout for workers, `Infinity` for
    /// supervisors).
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Registers the child under `name` each time it starts.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Marks the child as a worker or a supervisor.
    pub fn kind(mut self, kind: ChildKind) -> Self {
        self.kind = kind;
        self
    }
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .finish()
    }
}
