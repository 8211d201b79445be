//! Child specifications: what a supervisor starts, and how it restarts and stops it.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use parking_lot::Mutex;

use crate::server::{self, StartError};
use crate::statem::{self, StateMachine};
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
    /// Whether the child should start trapping exits (see [`ChildSpec::trap_exit`]).
    pub trap_exit: bool,
    /// The child's mailbox bound, if its spec sets one (see [`ChildSpec::capacity`]).
    pub capacity: Option<usize>,
}

impl ChildStart {
    /// Spawn options that link the child to its supervisor before it runs (and make it trap
    /// exits if its spec says so).
    pub fn spawn_options(&self) -> SpawnOptions {
        let opts = SpawnOptions::new()
            .link(self.parent)
            .trap_exit(self.trap_exit);
        match self.capacity {
            Some(n) => opts.capacity(n),
            None => opts,
        }
    }
}

type StartFuture = Pin<Box<dyn Future<Output = Result<Pid, StartError>> + Send>>;
type OnceFn = Box<dyn FnOnce(ChildStart) -> StartFuture + Send>;

/// How a spec starts its child.
#[derive(Clone)]
pub(crate) enum StartFn {
    /// As often as needed: every restart runs it again.
    Repeat(Arc<dyn Fn(ChildStart) -> StartFuture + Send + Sync>),
    /// Once: it owns what it starts the child with (an accepted socket, say).
    Once(Arc<Mutex<Option<OnceFn>>>),
    /// A `Once` that has started its child: what the supervisor keeps for it (a dynamic
    /// supervisor of a hundred thousand connections keeps no empty closure cell for each).
    Spent,
}

impl StartFn {
    /// Forgets a `Once` start that has run (it cannot run again).
    pub(crate) fn spend(&mut self) {
        if matches!(self, StartFn::Once(_)) {
            *self = StartFn::Spent;
        }
    }

    /// Runs the start function with panics caught: a start function that panics is a failed
    /// start, never a crash of the supervisor that runs it.
    pub(crate) async fn run(&self, s: ChildStart) -> Result<Pid, StartError> {
        let this = self.clone();
        AssertUnwindSafe(async move {
            let start = match this {
                StartFn::Repeat(f) => f(s),
                StartFn::Once(cell) => match cell.lock().take() {
                    Some(f) => f(s),
                    None => return Err(spent()),
                },
                StartFn::Spent => return Err(spent()),
            };
            start.await
        })
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(StartError::Init(ExitReason::from_panic(panic))))
    }
}

fn spent() -> StartError {
    StartError::Other("a child spec made with `once` can start only once".into())
}

/// A child specification: an id, a start function, and restart and shutdown policies. Specs are
/// data: cloning one gives another instance of the same child (a dynamic supervisor runs any
/// number of instances of one spec).
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
    pub(crate) trap_exit: bool,
    pub(crate) capacity: Option<usize>,
}

/// The default shutdown time for workers, as in OTP.
pub const DEFAULT_WORKER_SHUTDOWN: Duration = Duration::from_secs(5);

impl ChildSpec {
    fn with_start(id: impl Into<String>, start: StartFn) -> Self {
        ChildSpec {
            id: id.into(),
            start,
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(DEFAULT_WORKER_SHUTDOWN),
            kind: ChildKind::Worker,
            name: None,
            trap_exit: false,
            capacity: None,
        }
    }

    /// A child started by `start`, which must start a process linked to `ChildStart::parent`
    /// and return its pid once it is ready ([`StartError::Ignored`] to decline, as OTP's
    /// `ignore`).
    pub fn new<F, Fut>(id: impl Into<String>, start: F) -> Self
    where
        F: Fn(ChildStart) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Pid, StartError>> + Send + 'static,
    {
        Self::with_start(id, StartFn::Repeat(Arc::new(move |s| Box::pin(start(s)))))
    }

    /// A child that can start only once, because `start` owns what the child is started with
    /// (an accepted socket moved into a connection's process, say). It is
    /// [`Restart::Temporary`], and supervisors refuse it with any other restart type: there is
    /// nothing to restart it from.
    ///
    /// ```
    /// use girder::supervisor::{ChildSpec, RestartStrategy, Supervisor};
    /// use girder::{Event, ExitReason, Node};
    ///
    /// # #[tokio::main] async fn main() {
    /// let node = Node::new("docs");
    /// let conns = Supervisor::builder()
    ///     .strategy(RestartStrategy::Dynamic)
    ///     .start(&node)
    ///     .await
    ///     .unwrap();
    /// for greeting in ["hello".to_string(), "bonjour".to_string()] {
    ///     // Not `Clone` in general: moved into the one process that owns it.
    ///     let spec = ChildSpec::once("conn", move |s| async move {
    ///         let addr = s.node.spawn_opts(s.spawn_options(), move |mut ctx: girder::Context<()>| async move {
    ///             let _mine = greeting;
    ///             ctx.recv().await;
    ///             ExitReason::Normal
    ///         });
    ///         Ok(addr.pid())
    ///     });
    ///     conns.start_child(spec).await.unwrap();
    /// }
    /// assert_eq!(conns.count_children().await.unwrap().active, 2);
    /// # }
    /// ```
    pub fn once<F, Fut>(id: impl Into<String>, start: F) -> Self
    where
        F: FnOnce(ChildStart) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Pid, StartError>> + Send + 'static,
    {
        let start: OnceFn = Box::new(move |s| Box::pin(start(s)));
        let mut spec = Self::with_start(id, StartFn::Once(Arc::new(Mutex::new(Some(start)))));
        spec.restart = Restart::Temporary;
        spec
    }

    /// A [`Server`] child; `make` builds a fresh server state for every (re)start.
    pub fn server<S, F>(id: impl Into<String>, make: F) -> Self
    where
        S: Server,
        F: Fn() -> S + Send + Sync + 'static,
    {
        Self::new(id, move |s: ChildStart| start_server(s, make()))
    }

    /// A [`Server`] child started once from `state` (see [`ChildSpec::once`]): one instance
    /// of a dynamic supervisor's children with its own arguments.
    pub fn server_once<S: Server>(id: impl Into<String>, state: S) -> Self {
        Self::once(id, move |s: ChildStart| start_server(s, state))
    }

    /// A [`StateMachine`] child; `make` builds a fresh machine for every (re)start.
    pub fn state_machine<S, F>(id: impl Into<String>, make: F) -> Self
    where
        S: StateMachine,
        F: Fn() -> S + Send + Sync + 'static,
    {
        Self::new(id, move |s: ChildStart| {
            let machine = make();
            async move {
                let opts = s.spawn_options();
                statem::start_with(&s.node, machine, opts, s.name.as_deref())
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
                    if let Err(e) = s.node.register(name, addr.pid()) {
                        // Not started, so not left running: it would be linked to a supervisor
                        // that does not know it.
                        s.node.exit(addr.pid(), ExitReason::Kill);
                        addr.wait_exit().await;
                        return Err(match e {
                            crate::RegisterError::NameTaken { owner, .. } => {
                                StartError::AlreadyStarted(owner)
                            }
                            other => StartError::Other(other.to_string()),
                        });
                    }
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

    /// The child's id, unique within its supervisor (except in a dynamic one, where instances
    /// of one spec share it).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sets when the child is restarted (default `Permanent`; `Temporary` for [`once`](Self::once)
    /// specs, which can be nothing else).
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

    /// Bounds the child's mailbox to `capacity` messages each time it starts (the default is
    /// unbounded): senders then get `Full` or wait, as [`SpawnOptions::capacity`] says. Start
    /// functions that spawn through [`ChildStart::spawn_options`] (every constructor here
    /// does) apply it.
    ///
    /// ```
    /// use girder::supervisor::{ChildSpec, RestartStrategy, Supervisor};
    /// use girder::{Node, Server, ServerRef};
    ///
    /// struct Idle;
    /// impl Server for Idle { type Call = (); type Cast = (); type Info = (); }
    ///
    /// # #[tokio::main] async fn main() {
    /// let node = Node::new("docs");
    /// let sup = Supervisor::builder().start(&node).await.unwrap();
    /// let pid = sup.start_child(ChildSpec::server("idle", || Idle).capacity(8)).await.unwrap();
    /// let idle = ServerRef::<Idle>::from_pid(&node, pid).unwrap();
    /// assert_eq!(idle.addr().mailbox_stats().unwrap().capacity, 8);
    /// # }
    /// ```
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Marks the child as a worker or a supervisor.
    pub fn kind(mut self, kind: ChildKind) -> Self {
        self.kind = kind;
        self
    }

    /// Starts the child trapping exits. A behaviour child that traps exits treats its
    /// supervisor's shutdown signal as a stop request: it runs its `terminate` callback (closing
    /// files, flushing buffers) before it exits, within the spec's [`Shutdown`] time. Without
    /// it the shutdown signal ends the child at once, as in OTP.
    ///
    /// ```
    /// use girder::supervisor::{ChildSpec, Supervisor};
    /// use girder::{ExitReason, Node, Server, ServerContext};
    ///
    /// struct Journal(tokio::sync::mpsc::UnboundedSender<&'static str>);
    /// impl Server for Journal {
    ///     type Call = (); type Cast = (); type Info = ();
    ///     async fn terminate(&mut self, _: &ExitReason, _: &mut ServerContext<Self>) {
    ///         let _ = self.0.send("flushed");
    ///     }
    /// }
    ///
    /// # #[tokio::main] async fn main() {
    /// let node = Node::new("docs");
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let sup = Supervisor::builder()
    ///     .child(ChildSpec::server("journal", move || Journal(tx.clone())).trap_exit(true))
    ///     .start(&node)
    ///     .await
    ///     .unwrap();
    /// sup.stop(ExitReason::Shutdown).await;
    /// assert_eq!(rx.recv().await, Some("flushed"));
    /// # }
    /// ```
    pub fn trap_exit(mut self, on: bool) -> Self {
        self.trap_exit = on;
        self
    }

    /// What a supervisor refuses, at build time and in `start_child` alike.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.id.is_empty() {
            return Err("a child spec has an empty id".into());
        }
        if matches!(self.start, StartFn::Once(_) | StartFn::Spent)
            && self.restart != Restart::Temporary
        {
            return Err(format!(
                "child {:?} can start only once (`ChildSpec::once`), so it must be temporary, not {:?}",
                self.id, self.restart
            ));
        }
        Ok(())
    }
}

async fn start_server<S: Server>(s: ChildStart, state: S) -> Result<Pid, StartError> {
    let opts = s.spawn_options();
    server::start_with(&s.node, state, opts, s.name.as_deref())
        .await
        .map(|r| r.pid())
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("trap_exit", &self.trap_exit)
            .finish()
    }
}
