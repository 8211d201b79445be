//! Supervisors: processes that start, watch and restart other processes.
//!
//! A supervisor starts its children in order, traps their exits and restarts them by its
//! [`RestartStrategy`] and each child's [`Restart`] type. Restarts are limited by an intensity
//! (at most `max_restarts` in `period`, default 1 in 5 s): past it the supervisor stops its
//! children and exits with `Shutdown`, escalating the failure to its own supervisor. Children are
//! stopped in reverse start order, each by its [`Shutdown`] policy. A supervisor is itself a
//! [`Server`](crate::Server), so supervisors nest into trees.
//!
//! ```
//! use girder::supervisor::{ChildSpec, RestartStrategy, Supervisor};
//! use girder::{Event, ExitReason, Node};
//!
//! # #[tokio::main] async fn main() {
//! let node = Node::new("docs");
//! let worker = || ChildSpec::process("worker", |mut ctx| async move {
//!     loop {
//!         if let Event::Message(fail) = ctx.recv().await {
//!             if fail { return ExitReason::error("asked to fail"); }
//!         }
//!     }
//! });
//! let sup = Supervisor::builder()
//!     .strategy(RestartStrategy::OneForOne)
//!     .intensity(3, std::time::Duration::from_secs(5))
//!     .child(worker().named("w"))
//!     .start(&node)
//!     .await
//!     .unwrap();
//! let first = node.whereis("w").unwrap();
//! node.addr::<bool>(first).unwrap().send(true).unwrap();
//! // The supervisor restarts the worker under the same name.
//! let restarted = loop {
//!     match node.whereis("w") {
//!         Some(p) if p != first => break p,
//!         _ => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
//!     }
//! };
//! assert_ne!(first, restarted);
//! assert_eq!(sup.which_children().await.unwrap()[0].restarts, 1);
//! sup.stop(ExitReason::Shutdown).await;
//! # }
//! ```

mod children;
mod error;
mod run;
mod spec;
mod stop;

use std::time::Duration;

pub use error::SupervisorError;
pub use spec::{ChildKind, ChildSpec, ChildStart, Restart, Shutdown, DEFAULT_WORKER_SHUTDOWN};

use run::{ChildRef, Request};
pub use run::{SupervisorCall, SupervisorServer};

use crate::server::{self, CallError, ServerMsg, StartError};
use crate::{Addr, Node, Pid, ReplyTo, SpawnOptions};

/// Which children a supervisor restarts when one of them exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum RestartStrategy {
    /// Only the child that exited (`one_for_one`).
    OneForOne,
    /// All children: the others are stopped, then all are started again (`one_for_all`).
    OneForAll,
    /// The child that exited and every child started after it (`rest_for_one`).
    RestForOne,
    /// Like `OneForOne` for children added at run time with [`SupervisorRef::start_child`],
    /// often many instances of one spec (ids need not be unique; instances are told apart by
    /// pid). They are stopped all at once, not in order, and forgotten once they stop
    /// (`simple_one_for_one`, Elixir's `DynamicSupervisor`). Every operation costs the same
    /// whatever the number of children.
    Dynamic,
}

/// One child as its supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Its pid while running.
    pub pid: Option<Pid>,
    /// A restart failed and another attempt is queued (OTP's `restarting`).
    pub restarting: bool,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Its restart type.
    pub restart: Restart,
    /// How many times it has been restarted.
    pub restarts: u32,
}

/// Counts of a supervisor's children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChildCounts {
    /// Child specs held.
    pub specs: usize,
    /// Children running.
    pub active: usize,
    /// Specs that are supervisors.
    pub supervisors: usize,
    /// Specs that are workers.
    pub workers: usize,
}

/// Entry point for building supervisors: `Supervisor::builder()`.
pub struct Supervisor;

impl Supervisor {
    /// A builder with OTP's defaults: `OneForOne`, at most 1 restart in 5 s, no children.
    pub fn builder() -> SupervisorBuilder {
        SupervisorBuilder {
            strategy: RestartStrategy::OneForOne,
            intensity: 1,
            period: Duration::from_secs(5),
            children: Vec::new(),
            name: None,
        }
    }
}

/// How to build a supervisor: strategy, intensity, children, and an optional name.
#[derive(Clone, Debug)]
pub struct SupervisorBuilder {
    strategy: RestartStrategy,
    intensity: u32,
    period: Duration,
    children: Vec<ChildSpec>,
    name: Option<String>,
}

impl SupervisorBuilder {
    /// Sets the restart strategy.
    pub fn strategy(mut self, strategy: RestartStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Allows at most `max_restarts` restarts within `period` before the supervisor gives up.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.intensity = max_restarts;
        self.period = period;
        self
    }

    /// Adds a child, started after the ones added before it.
    pub fn child(mut self, spec: ChildSpec) -> Self {
        self.children.push(spec);
        self
    }

    /// Registers the supervisor under `name`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The builder refuses what `start_child` refuses, plus duplicate ids where ids must be
    /// unique (every strategy but `Dynamic`).
    fn validate(&self) -> Result<(), StartError> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.children {
            c.check().map_err(StartError::Other)?;
            if self.strategy != RestartStrategy::Dynamic && !seen.insert(c.id.as_str()) {
                return Err(StartError::Other(format!("duplicate child id {:?}", c.id)));
            }
        }
        Ok(())
    }

    /// Starts the supervisor and its children (in order), unlinked. Returns once every child has
    /// started; if one fails, the ones started are stopped and the error says which.
    pub async fn start(self, node: &Node) -> Result<SupervisorRef, StartError> {
        self.start_opts(node, SpawnOptions::new()).await
    }

    /// Starts the supervisor linked to `parent` (as a child of another supervisor).
    pub async fn start_link(self, node: &Node, parent: Pid) -> Result<SupervisorRef, StartError> {
        self.start_opts(node, SpawnOptions::new().link(parent))
            .await
    }

    async fn start_opts(
        self,
        node: &Node,
        opts: SpawnOptions,
    ) -> Result<SupervisorRef, StartError> {
        self.validate()?;
        let state =
            SupervisorServer::new(self.strategy, self.intensity, self.period, self.children);
        let opts = opts.trap_exit(true).behaviour("supervisor");
        let server = server::start_with(node, state, opts, self.name.as_deref()).await?;
        Ok(SupervisorRef::from_addr(server.addr().clone()))
    }
}

/// A handle to a running supervisor. Every request waits at most its timeout
/// ([`DEFAULT_CALL_TIMEOUT`](crate::call::DEFAULT_CALL_TIMEOUT) unless set with
/// [`with_timeout`](Self::with_timeout)) and then fails with [`CallError::Timeout`] inside
/// [`SupervisorError::Call`]; the supervisor still finishes what it was asked to do. Besides its
/// own requests it has the methods every behaviour handle has
/// ([`Handle`](crate::behaviour::Handle)); its `stop` stops the children in reverse start
/// order, then the supervisor.
pub struct SupervisorRef {
    addr: Addr<SupervisorMsg>,
    timeout: Duration,
}

/// The message type of a supervisor's mailbox (what [`SupervisorRef::addr`] addresses); its
/// requests are [`SupervisorRef`]'s methods.
pub type SupervisorMsg = ServerMsg<SupervisorServer>;

crate::behaviour::handle!(
    SupervisorRef [] [],
    SupervisorMsg,
    timeout = crate::call::DEFAULT_CALL_TIMEOUT
);

impl SupervisorRef {
    /// The same handle with requests that wait up to `timeout` (for a child whose start or
    /// shutdown takes longer than the default).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use std::time::Duration;
    /// let node = girder::Node::new("docs");
    /// let sup = girder::Supervisor::builder().start(&node).await.unwrap();
    /// let patient = sup.clone().with_timeout(Duration::from_secs(60));
    /// assert!(patient.which_children().await.unwrap().is_empty());
    /// # }
    /// ```
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn call<R: Send + 'static>(
        &self,
        make: impl FnOnce(ReplyTo<R>) -> SupervisorCall + Send,
    ) -> Result<R, SupervisorError> {
        crate::behaviour::call(&self.addr, make, self.timeout)
            .await
            .map_err(SupervisorError::Call)
    }

    /// Adds and starts a child at run time. The spec is checked as the builder checks it; in a
    /// dynamic supervisor any number of instances of one spec may run. A child whose `init`
    /// declines (OTP's `ignore`) gives [`SupervisorError::Ignored`]; its spec is kept (without
    /// a pid) by a static supervisor unless it is temporary.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        self.call(|r| SupervisorCall(Request::StartChild(spec, r)))
            .await?
    }

    /// Stops a child by its shutdown policy. Its spec is kept (except temporary and dynamic
    /// children) so it can be restarted with [`restart_child`](Self::restart_child). In a
    /// dynamic supervisor whose instances share an id this fails with
    /// [`SupervisorError::Ambiguous`]: use [`terminate_pid`](Self::terminate_pid).
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        let which = ChildRef::Id(id.into());
        self.call(|r| SupervisorCall(Request::TerminateChild(which, r)))
            .await?
    }

    /// Stops the child running as `pid` by its shutdown policy (as
    /// [`terminate_child`](Self::terminate_child)).
    pub async fn terminate_pid(&self, pid: Pid) -> Result<(), SupervisorError> {
        self.call(|r| SupervisorCall(Request::TerminateChild(ChildRef::Pid(pid), r)))
            .await?
    }

    /// Starts a stopped child again.
    pub async fn restart_child(&self, id: &str) -> Result<Pid, SupervisorError> {
        let id = id.to_string();
        self.call(|r| SupervisorCall(Request::RestartChild(id, r)))
            .await?
    }

    /// Forgets a stopped child's spec.
    pub async fn delete_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id = id.to_string();
        self.call(|r| SupervisorCall(Request::DeleteChild(id, r)))
            .await?
    }

    /// The children, in start order.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.call(|r| SupervisorCall(Request::WhichChildren(r)))
            .await
    }

    /// Counts of the children.
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.call(|r| SupervisorCall(Request::CountChildren(r)))
            .await
    }
}

impl From<CallError> for SupervisorError {
    fn from(e: CallError) -> Self {
        SupervisorError::Call(e)
    }
}
