//! Servers: the `gen_server` behaviour.
//!
//! A [`Server`] is a handful of callbacks; the library owns the loop around them: the mailbox,
//! calls with timeouts, casts, trapped exits and monitors, crash handling and `terminate`.
//!
//! * [`ServerRef::call`] sends a request and waits for the reply, 5 s by default. If the server
//!   is not alive, or dies before replying, the call ends at once with a [`CallError`] saying why
//!   (also when the reply handle was handed to another process); a reply that comes after the
//!   caller gave up is dropped.
//! * A request carries the [`ReplyTo`] its reply goes to, so its type names the reply's type.
//!   A handler may keep the handle and answer later, from another task (a deferred reply).
//! * A panic in a callback ends the server with [`ExitReason::Panic`], after `terminate` runs.
//! * A server started by a supervisor that traps exits stops (running `terminate`) when its
//!   parent sends it an exit signal, as OTP's `gen_server` does.

mod run;

use std::future::Future;
use std::time::Duration;

pub use crate::behaviour::{InitError, StartError};
pub use crate::call::{CallError, Outcome, ReplyTo, DEFAULT_CALL_TIMEOUT};
pub use run::{ServerContext, ServerMsg};

use crate::behaviour::Msg;
use crate::sys::StateView;
use crate::{Addr, Down, ExitReason, Node, Pid, SendError, SpawnOptions};

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
/// Every callback has a default; a server implements the ones it needs. Callbacks are async,
/// so a handler may await (for example a call to another server), but the server handles one
/// message at a time: long work belongs in another process, answered later through the
/// request's [`ReplyTo`].
///
/// A request names its reply's type by the reply handle it carries (as Akka Typed's requests
/// carry their `replyTo`): one server answers many kinds of request, each with its own typed
/// reply, and a wrong reply does not compile.
///
/// ```
/// use girder::{Flow, Node, ReplyTo, Server, ServerContext};
///
/// struct Kv(std::collections::HashMap<String, String>);
///
/// enum Req {
///     Get(String, ReplyTo<Option<String>>),
///     Put(String, String, ReplyTo<Option<String>>),
///     Len(ReplyTo<usize>),
/// }
///
/// impl Server for Kv {
///     type Call = Req;
///     type Cast = ();
///     type Info = ();
///
///     async fn handle_call(&mut self, req: Req, _: &mut ServerContext<Self>) -> Flow {
///         match req {
///             Req::Get(k, from) => from.reply(self.0.get(&k).cloned()),
///             Req::Put(k, v, from) => from.reply(self.0.insert(k, v)),
///             Req::Len(from) => from.reply(self.0.len()),
///         }
///         Flow::Continue
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let kv = girder::server::start(&node, Kv(Default::default())).await.unwrap();
/// kv.call(|r| Req::Put("a".into(), "1".into(), r)).await.unwrap();
/// assert_eq!(kv.call(|r| Req::Get("a".into(), r)).await.unwrap(), Some("1".into()));
/// assert_eq!(kv.call(Req::Len).await.unwrap(), 1);
/// # }
/// ```
pub trait Server: Sized + Send + 'static {
    /// Requests that expect a reply. Each carries the [`ReplyTo`] its reply goes to, whose
    /// type is the reply's (usually an enum with one variant per kind of request).
    type Call: Send + 'static;
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

    /// Handles a call. Reply through the request's [`ReplyTo`], now or later (keep it, or hand
    /// it to another process: its caller still learns if this server dies first); dropping it
    /// unanswered ends the call with [`CallError::NoReply`]. The default drops the request.
    fn handle_call(
        &mut self,
        req: Self::Call,
        ctx: &mut ServerContext<Self>,
    ) -> impl Future<Output = Flow> + Send {
        let _ = (req, ctx);
        async { Flow::Continue }
    }

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

    /// Called when the server has handled everything that was waiting (its mailbox and its
    /// event sources have nothing ready), before it waits for more: once per busy spell, not
    /// once per message. For work that is cheaper in batches, as Netty's `channelReadComplete`:
    /// a connection buffers what its handlers write and sends it here, in one system call for
    /// however many messages came together. The default does nothing.
    ///
    /// ```
    /// use girder::{Flow, Node, Server, ServerContext};
    ///
    /// /// Collects numbers; hands on their sum once no more are waiting.
    /// struct Batcher { sum: u64, batches: tokio::sync::mpsc::UnboundedSender<u64> }
    ///
    /// impl Server for Batcher {
    ///     type Call = (); type Cast = u64; type Info = ();
    ///
    ///     async fn handle_cast(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
    ///         self.sum += n;
    ///         Flow::Continue
    ///     }
    ///
    ///     async fn handle_idle(&mut self, _: &mut ServerContext<Self>) -> Flow {
    ///         let _ = self.batches.send(std::mem::take(&mut self.sum));
    ///         Flow::Continue
    ///     }
    /// }
    ///
    /// # #[tokio::main] async fn main() {
    /// let node = Node::new("docs");
    /// let (tx, mut batches) = tokio::sync::mpsc::unbounded_channel();
    /// let b = girder::server::start(&node, Batcher { sum: 0, batches: tx }).await.unwrap();
    /// girder::sys::suspend(&node, b.pid()).await.unwrap(); // holds it while the casts queue
    /// for n in 1..=4 { b.cast(n).unwrap(); }
    /// girder::sys::resume(&node, b.pid()).await.unwrap();
    /// let mut batch = 0;
    /// while batch == 0 { batch = batches.recv().await.unwrap(); }
    /// assert_eq!(batch, 10); // four casts, one batch
    /// # }
    /// ```
    fn handle_idle(&mut self, ctx: &mut ServerContext<Self>) -> impl Future<Output = Flow> + Send {
        // Not overridden: never called again.
        ctx.wants_idle = false;
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

    /// What [`sys::get_state`](crate::sys::get_state) shows of this server's state (OTP's
    /// `format_status`). Hidden unless you opt in, say with `StateView::debug(self)` or
    /// `StateView::json(&self.some_part)`: a state may hold secrets or be huge.
    fn state_view(&self) -> StateView {
        StateView::Hidden
    }

    /// How a [`sys::trace`](crate::sys::trace) shows a message this server gets; `None` (the
    /// default) shows its kind only. Opt in with `Some(format!("{msg:?}"))` when the message
    /// types are `Debug`.
    ///
    /// ```
    /// use girder::server::TraceMsg;
    /// use girder::{Server, ServerContext, Flow};
    /// struct Echo;
    /// impl Server for Echo {
    ///     type Call = (); type Cast = String; type Info = ();
    ///     fn trace_view(msg: TraceMsg<'_, Self>) -> Option<String> {
    ///         Some(format!("{msg:?}"))
    ///     }
    /// }
    /// let cast = "hi".to_string();
    /// assert_eq!(Echo::trace_view(TraceMsg::Cast(&cast)).unwrap(), r#"Cast("hi")"#);
    /// ```
    fn trace_view(msg: TraceMsg<'_, Self>) -> Option<String> {
        let _ = msg;
        None
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

/// A message as [`Server::trace_view`] sees it, before the server handles it.
pub enum TraceMsg<'a, S: Server> {
    /// A call's request.
    Call(&'a S::Call),
    /// A cast.
    Cast(&'a S::Cast),
    /// An info message (or an event source's item).
    Info(&'a S::Info),
}

impl<S: Server> std::fmt::Debug for TraceMsg<'_, S>
where
    S::Call: std::fmt::Debug,
    S::Cast: std::fmt::Debug,
    S::Info: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TraceMsg::Call(m) => f.debug_tuple("Call").field(m).finish(),
            TraceMsg::Cast(m) => f.debug_tuple("Cast").field(m).finish(),
            TraceMsg::Info(m) => f.debug_tuple("Info").field(m).finish(),
        }
    }
}

/// A typed handle to a running [`Server`], local or on another node. Cloning is cheap; a
/// handle never keeps its server alive. It has the methods every behaviour handle has
/// ([`Handle`](crate::behaviour::Handle): `pid`, `addr`, `from_addr`, `lookup`, `from_pid`,
/// `stop`, `wait_exit`, `is_alive`, `mailbox_len`) and the server's own `call`, `cast` and
/// `info`.
pub struct ServerRef<S: Server> {
    addr: Addr<ServerMsg<S>>,
}

crate::behaviour::handle!(ServerRef [S: Server] [S], ServerMsg<S>);

impl<S: Server> ServerRef<S> {
    /// Calls the server with the request `make` builds around its reply handle, and waits up
    /// to [`DEFAULT_CALL_TIMEOUT`] for the reply. A request type whose only field is the
    /// handle is its own `make` (`server.call(Req::Len)`).
    pub fn call<'a, R: Send + 'static>(
        &'a self,
        make: impl FnOnce(ReplyTo<R>) -> S::Call + Send + 'a,
    ) -> impl Future<Output = Result<R, CallError>> + Send + 'a {
        // Returns the protocol's future itself: an `async fn` wrapper would add a layer that
        // every poll of every call goes through.
        crate::behaviour::call(&self.addr, make, DEFAULT_CALL_TIMEOUT)
    }

    /// Calls the server and waits up to `timeout` for the reply (`Duration::MAX`: forever). A
    /// bounded mailbox that is full makes the call wait for room within the same timeout.
    pub fn call_timeout<'a, R: Send + 'static>(
        &'a self,
        make: impl FnOnce(ReplyTo<R>) -> S::Call + Send + 'a,
        timeout: Duration,
    ) -> impl Future<Output = Result<R, CallError>> + Send + 'a {
        crate::behaviour::call(&self.addr, make, timeout)
    }

    /// Sends a cast. Fails only if the server is not alive or its bounded mailbox is full.
    pub fn cast(&self, msg: S::Cast) -> Result<(), SendError<S::Cast>> {
        crate::behaviour::cast(&self.addr, msg)
    }

    /// Sends an info message (handled by [`Server::handle_info`]).
    pub fn info(&self, msg: S::Info) -> Result<(), SendError<S::Info>> {
        crate::behaviour::info(&self.addr, msg)
    }

    /// Sends a cast, waiting while the server's bounded mailbox is full (as
    /// [`Addr::send_wait`]): for a message that must not be shed, such as an acknowledgement.
    /// Fails only if the server is not alive.
    ///
    /// ```
    /// use girder::{Flow, Node, Server, ServerContext, SpawnOptions};
    ///
    /// struct Count(u32);
    /// impl Server for Count {
    ///     type Call = girder::ReplyTo<u32>; type Cast = u32; type Info = ();
    ///     async fn handle_call(&mut self, r: Self::Call, _: &mut ServerContext<Self>) -> Flow {
    ///         r.reply(self.0);
    ///         Flow::Continue
    ///     }
    ///     async fn handle_cast(&mut self, n: u32, _: &mut ServerContext<Self>) -> Flow {
    ///         self.0 += n;
    ///         Flow::Continue
    ///     }
    /// }
    /// # #[tokio::main] async fn main() {
    /// let node = Node::new("docs");
    /// let opts = SpawnOptions::new().capacity(1);
    /// let count = girder::server::start_with(&node, Count(0), opts, None).await.unwrap();
    /// for _ in 0..100 {
    ///     count.cast_wait(1).await.unwrap(); // never `Full`: waits for room instead
    /// }
    /// assert_eq!(count.call(|r| r).await.unwrap(), 100);
    /// # }
    /// ```
    pub async fn cast_wait(&self, msg: S::Cast) -> Result<(), SendError<S::Cast>> {
        crate::behaviour::send_wait_as(&self.addr, msg, Msg::Cast, |m| match m {
            Msg::Cast(c) => Some(c),
            _ => None,
        })
        .await
    }

    /// Sends an info message, waiting while the server's bounded mailbox is full (as
    /// [`cast_wait`](Self::cast_wait)).
    pub async fn info_wait(&self, msg: S::Info) -> Result<(), SendError<S::Info>> {
        crate::behaviour::send_wait_as(&self.addr, msg, Msg::Info, |m| match m {
            Msg::Info(i) => Some(i),
            _ => None,
        })
        .await
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
