//! Servers: the `gen_server` behaviour.
//!
//! A [`Server`] is a handful of callbacks; the library owns the loop around them: the mailbox,
//! calls with timeouts, casts, trapped exits and monitors, crash handling and `terminate`.
//!
//! * [`ServerRef::call`] sends a request and waits for the reply, 5 s by default. If the server
//!   is not alive, or dies before replying, the call ends at once with a [`CallError`] saying why;
//!   a reply that comes after the caller gave up is dropped.
//! * A handler may keep the [`ReplyTo`] and answer later, from another task (a deferred reply).
//! * A panic in a callback ends the server with [`ExitReason::Panic`], after `terminate` runs.
//! * A server started by a supervisor that traps exits stops (running `terminate`) when its
//!   parent sends it an exit signal, as OTP's `gen_server` does.

mod run;

use std::future::Future;
use std::time::Duration;

pub use crate::behaviour::{InitError, StartError};
pub use crate::call::{CallError, Outcome, ReplyTo, DEFAULT_CALL_TIMEOUT};
pub use run::{ServerContext, ServerMsg};

use crate::{Addr, Down, ExitReason, LookupError, Node, Pid, SendError, SpawnOptions};

/// What a callback tells the server loop to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Wait for the next message.
    Continue,
    /// Run `terminate` and exit with this reason.
    Stop(ExitReason),
}

/// The `gen_server` behaviour: a process that serves calls, casts and other messages.
///
/// Only `handle_call` is required; every other callback has a default. Callbacks are async, so a
/// handler may await (for example a call to another server), but the server handles one message at
/// a time: long work belongs in another process, answered later through [`ReplyTo`].
///
/// ```
/// use girder::{Flow, Node, ReplyTo, Server, ServerContext};
///
/// struct Kv(std::collections::HashMap<String, String>);
///
/// enum Req { Get(String), Put(String, String) }
///
/// impl Server for Kv {
///     type Call = Req;
///     type Reply = Option<String>;
///     type Cast = ();
///     type Info = ();
///
///     async fn handle_call(&mut self, req: Req, from: ReplyTo<Option<String>>, _: &mut ServerContext<Self>) -> Flow {
///         match req {
///             Req::Get(k) => from.reply(self.0.get(&k).cloned()),
///             Req::Put(k, v) => from.reply(self.0.insert(k, v)),
///         }
///         Flow::Continue
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let kv = girder::server::start(&node, Kv(Default::default())).await.unwrap();
/// kv.call(Req::Put("a".into(), "1".into())).await.unwrap();
/// assert_eq!(kv.call(Req::Get("a".into())).await.unwrap(), Some("1".into()));
/// # }
/// ```
pub trait Server: Sized + Send + 'static {
    /// Requests that expect a reply.
    type Call: Send + 'static;
    /// The reply to a call.
    type Reply: Send + 'static;
    /// Fire-and-forget requests.
    type Cast: Send + 'static;
    /// Other messages (timers, notifications from other processes).
    type Info: Send + 'static;

    /// Runs in the new process before [`start`] returns. [`InitError::Stop`] (or an
    /// [`ExitReason`], through `?` or `.into()`) aborts the start: the process exits with that
    /// reason and `start` returns [`StartError::Init`]. [`InitError::Ignore`] declines to start
    /// (OTP's `ignore`): `start` returns [`StartError::Ignored`], and a supervisor lists the
    /// child without a pid.
    fn init(
        &mut self,
        ctx: &mut ServerContext<Self>,
    ) -> impl Future<Output = Result<(), InitError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Handles a call. Reply through `from`, now or later; dropping it unanswered ends the call
    /// with [`CallError::NoReply`].
    fn handle_call(
        &mut self,
        req: Self::Call,
        from: ReplyTo<Self::Reply>,
        ctx: &mut ServerContext<Self>,
    ) -> impl Future<Output = Flow> + Send;

    /// Handles a cast. The default ignores it.
    fn handle_cast(
        &mut self,
        msg: Self::Cast,
        ctx: &mut ServerContext<Self>,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (msg, ctx);
        async { Flow::Continue }
    }

    /// Handles any other message. The default ignores it.
    fn handle_info(
        &mut self,
        msg: Self::Info,
        ctx: &mut ServerContext<Self>,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (msg, ctx);
        async { Flow::Continue }
    }

    /// Handles a trapped exit signal from a process other than the parent (an exit from the
    /// parent stops the server). The default stops on an abnormal exit of a linked process, as an
    /// untrapped link would, and ignores `Normal`.
    fn handle_exit(
        &mut self,
        from: Pid,
        reason: ExitReason,
        ctx: &mut ServerContext<Self>,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (from, ctx);
        async move {
            if reason.is_normal() {
                Flow::Continue
            } else {
                Flow::Stop(reason)
            }
        }
    }

    /// Handles a monitor notification. The default ignores it.
    fn handle_down(
        &mut self,
        down: Down,
        ctx: &mut ServerContext<Self>,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (down, ctx);
        async { Flow::Continue }
    }

    /// Runs when the server stops: after a callback returns [`Flow::Stop`] or panics, after
    /// [`ServerRef::stop`], or on an exit signal from the parent while trapping exits. It does not
    /// run when the process is killed outright (as in OTP).
    fn terminate(
        &mut self,
        reason: &ExitReason,
        ctx: &mut ServerContext<Self>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (reason, ctx);
        async {}
    }
}

/// A typed handle to a running [`Server`].
pub struct ServerRef<S: Server> {
    addr: Addr<ServerMsg<S>>,
}

impl<S: Server> Clone for ServerRef<S> {
    fn clone(&self) -> Self {
        ServerRef {
            addr: self.addr.clone(),
        }
    }
}

impl<S: Server> std::fmt::Debug for ServerRef<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerRef({})", self.pid())
    }
}

impl<S: Server> ServerRef<S> {
    /// The server's pid.
    pub fn pid(&self) -> Pid {
        self.addr.pid()
    }

    /// The underlying mailbox handle.
    pub fn addr(&self) -> &Addr<ServerMsg<S>> {
        &self.addr
    }

    /// The server registered under `name` on `node`.
    pub fn lookup(node: &Node, name: &str) -> Result<Self, LookupError> {
        node.lookup(name).map(|addr| ServerRef { addr })
    }

    /// A handle from a typed address, local or remote (the distribution layer builds remote
    /// ones).
    pub fn from_addr(addr: Addr<ServerMsg<S>>) -> Self {
        ServerRef { addr }
    }

    /// The server with `pid` on `node`.
    pub fn from_pid(node: &Node, pid: Pid) -> Result<Self, LookupError> {
        node.addr(pid).map(|addr| ServerRef { addr })
    }

    /// Calls the server and waits up to [`DEFAULT_CALL_TIMEOUT`] for the reply.
    pub fn call(
        &self,
        req: S::Call,
    ) -> impl Future<Output = Result<S::Reply, CallError>> + Send + '_ {
        // Returns the protocol's future itself: an `async fn` wrapper would add a layer that
        // every poll of every call goes through.
        self.call_timeout(req, DEFAULT_CALL_TIMEOUT)
    }

    /// Calls the server and waits up to `timeout` for the reply (`Duration::MAX`: forever). A
    /// bounded mailbox that is full makes the call wait for room within the same timeout.
    pub fn call_timeout(
        &self,
        req: S::Call,
        timeout: Duration,
    ) -> impl Future<Output = Result<S::Reply, CallError>> + Send + '_ {
        crate::call::call(&self.addr, timeout, move |from| ServerMsg::Call(req, from))
    }

    /// Sends a cast. Fails only if the server is not alive or its bounded mailbox is full.
    pub fn cast(&self, msg: S::Cast) -> Result<(), SendError<S::Cast>> {
        crate::behaviour::send_as(&self.addr, msg, ServerMsg::Cast, |m| match m {
            ServerMsg::Cast(c) => Some(c),
            _ => None,
        })
    }

    /// Sends an info message (handled by [`Server::handle_info`]).
    pub fn info(&self, msg: S::Info) -> Result<(), SendError<S::Info>> {
        crate::behaviour::send_as(&self.addr, msg, ServerMsg::Info, |m| match m {
            ServerMsg::Info(i) => Some(i),
            _ => None,
        })
    }

    /// Asks the server to stop with `reason`, runs its `terminate`, and waits until it has
    /// exited. The request overtakes queued messages (it travels in the system lane); the
    /// message being handled finishes first. Returns the reason the server exited with.
    pub async fn stop(&self, reason: ExitReason) -> ExitReason {
        self.addr.stop(reason);
        self.wait_exit().await
    }

    /// Waits until the server exits and returns why.
    pub async fn wait_exit(&self) -> ExitReason {
        self.addr.wait_exit().await
    }
}

/// Starts `server` in a new, unlinked process and waits for its `init`.
pub async fn start<S: Server>(node: &Node, server: S) -> Result<ServerRef<S>, StartError> {
    start_with(node, server, SpawnOptions::new(), None).await
}

/// Starts `server` with spawn options (link to a parent, mailbox bound) and, if `name` is given,
/// registers it under that name before `init` runs (failing with
/// [`StartError::AlreadyStarted`] if the name is taken).
pub async fn start_with<S: Server>(
    node: &Node,
    server: S,
    opts: SpawnOptions,
    name: Option<&str>,
) -> Result<ServerRef<S>, StartError> {
    run::start(node, server, opts, name).await
}
