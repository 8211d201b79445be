//! The generic server loop, written once for every [`Server`].

use std::future::poll_fn;
use std::ops::{Deref, DerefMut};
use std::task::Poll;
use std::time::Duration;

use super::{Flow, Server, ServerRef, StartError, TraceMsg};
use crate::behaviour::{self, guarded, Msg, SourceId, Sources, Starter};
use crate::call::{watch, Request};
use crate::sys::{self, Sys, Traced};
use crate::{Context, Event, ExitReason, Node, Pid, SpawnOptions, TimerRef};

/// The message type of a server's mailbox: the [`Msg`] every behaviour takes. Build these
/// through [`ServerRef`]'s methods.
pub type ServerMsg<S> = Msg<<S as Server>::Call, <S as Server>::Cast, <S as Server>::Info>;

/// What a server's callbacks see: the process [`Context`] plus server helpers.
pub struct ServerContext<S: Server> {
    ctx: Context<ServerMsg<S>>,
    parent: Option<Pid>,
    sources: Sources<S::Info>,
    /// A source's item taken by `poll_next`, handled next.
    source_item: Option<S::Info>,
    sys: Sys,
    /// The server has a `handle_idle` of its own (the default clears this the first time it
    /// runs, so a server without one pays nothing for it after).
    pub(super) wants_idle: bool,
}

impl<S: Server> ServerContext<S> {
    /// A handle to this server.
    pub fn me(&self) -> ServerRef<S> {
        ServerRef {
            addr: self.ctx.addr(),
        }
    }

    /// The process that started this server linked (its supervisor), if any.
    pub fn parent(&self) -> Option<Pid> {
        self.parent
    }

    /// Sends `msg` to this server's `handle_info` after `delay`.
    pub fn info_after(&self, msg: S::Info, delay: Duration) -> TimerRef {
        self.ctx.send_after(Msg::Info(msg), delay)
    }

    /// Sends `msg` to this server's `handle_cast` after `delay`.
    pub fn cast_after(&self, msg: S::Cast, delay: Duration) -> TimerRef {
        self.ctx.send_after(Msg::Cast(msg), delay)
    }

    /// Adds an event source: every item of `stream` arrives at `handle_info` as `wrap(Some(item))`,
    /// and its end once as `wrap(None)` (then the source is gone). The server's own task polls
    /// it, beside the mailbox, taking an item only when it is about to handle it: no helper
    /// process, and no item taken and lost if the server stops. A socket's read half framed
    /// into packets (`tokio_util::codec::FramedRead`), a channel's receiver or any other
    /// [`Stream`](futures_util::Stream) will do.
    ///
    /// ```
    /// use girder::{Flow, Node, Server, ServerContext};
    /// use girder::behaviour::Handle;
    ///
    /// /// Sums the numbers a stream yields; replies with the sum when it ends.
    /// struct Sum { total: u64, done: Option<tokio::sync::oneshot::Sender<u64>> }
    ///
    /// enum Info { Number(u64), End }
    ///
    /// impl Server for Sum {
    ///     type Call = (); type Cast = (); type Info = Info;
    ///
    ///     async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
    ///         let numbers = futures_util::stream::iter([1, 2, 3, 4]);
    ///         ctx.add_source(numbers, |n| n.map_or(Info::End, Info::Number));
    ///         Ok(())
    ///     }
    ///
    ///     async fn handle_info(&mut self, info: Info, _: &mut ServerContext<Self>) -> Flow {
    ///         match info {
    ///             Info::Number(n) => self.total += n,
    ///             Info::End => {
    ///                 let _ = self.done.take().unwrap().send(self.total);
    ///             }
    ///         }
    ///         Flow::Continue
    ///     }
    /// }
    ///
    /// # #[tokio::main] async fn main() {
    /// let node = Node::new("docs");
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let sum = girder::server::start(&node, Sum { total: 0, done: Some(tx) }).await.unwrap();
    /// assert_eq!(rx.await.unwrap(), 10);
    /// assert_eq!(sum.mailbox_len(), 0); // no item went through the mailbox
    /// # }
    /// ```
    pub fn add_source<St, F>(&mut self, stream: St, wrap: F) -> SourceId
    where
        St: futures_util::Stream + Send + 'static,
        F: FnMut(Option<St::Item>) -> S::Info + Send + 'static,
    {
        self.sources.add(stream, wrap)
    }

    /// Removes an event source, dropping its stream (and what it still holds). False if it had
    /// ended or was removed already.
    pub fn remove_source(&mut self, id: SourceId) -> bool {
        self.sources.remove(id)
    }

    /// Takes an event source's stream back, with whatever it has buffered and not yet yielded:
    /// to stop reading it for a while (add it again to go on), or to hand it to another
    /// process (a socket whose client's session lives elsewhere). `None` if the source has
    /// ended or was removed, or its stream is not an `St`.
    ///
    /// ```
    /// use futures_util::stream::{self, Iter, StreamExt};
    /// use girder::behaviour::SourceId;
    /// use girder::{Flow, Node, Server, ServerContext};
    ///
    /// type Numbers = Iter<std::vec::IntoIter<u32>>;
    ///
    /// /// Handles the first number of its stream, then hands the stream on, unread past it.
    /// struct First {
    ///     source: Option<SourceId>,
    ///     out: Option<tokio::sync::oneshot::Sender<(u32, Numbers)>>,
    /// }
    ///
    /// impl Server for First {
    ///     type Call = (); type Cast = (); type Info = Option<u32>;
    ///
    ///     async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
    ///         let numbers: Numbers = stream::iter(vec![1, 2, 3]);
    ///         self.source = Some(ctx.add_source(numbers, |n| n));
    ///         Ok(())
    ///     }
    ///
    ///     async fn handle_info(&mut self, n: Option<u32>, ctx: &mut ServerContext<Self>) -> Flow {
    ///         let rest: Numbers = ctx.take_source(self.source.unwrap()).expect("not ended");
    ///         let _ = self.out.take().unwrap().send((n.unwrap(), rest));
    ///         Flow::Continue
    ///     }
    /// }
    ///
    /// # #[tokio::main] async fn main() {
    /// let node = Node::new("docs");
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let first = First { source: None, out: Some(tx) };
    /// let server = girder::server::start(&node, first).await.unwrap();
    /// let (n, rest) = rx.await.unwrap();
    /// assert_eq!(n, 1);
    /// assert_eq!(rest.collect::<Vec<_>>().await, vec![2, 3]);
    /// assert_eq!(server.mailbox_len(), 0);
    /// # }
    /// ```
    pub fn take_source<St>(&mut self, id: SourceId) -> Option<St>
    where
        St: futures_util::Stream + Unpin + 'static,
    {
        self.sources.take(id)
    }

    /// How many event sources the server has.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// The next mailbox event (its system lane first, always), taking turns with the sources;
    /// while suspended, only `sys` requests and stops. `None`: a source's item or a `sys`
    /// request is waiting in `self.source_item` or `self.sys.inbox` (kept aside, so the common
    /// path moves an event and nothing around it).
    #[inline(always)]
    fn poll_next(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Option<Event<ServerMsg<S>>>> {
        if self.sys.inbox.is_some() {
            return Poll::Ready(None);
        }
        let got = if self.sys.is_suspended() {
            self.ctx
                .poll_suspended(cx, self.parent, &mut self.sys.inbox)
        } else if self.sources.is_empty() {
            self.ctx.poll_event(cx, &mut self.sys.inbox)
        } else {
            return self.poll_with_sources(cx);
        };
        match got {
            Poll::Ready(e) => Poll::Ready(Some(e)),
            Poll::Pending if self.sys.inbox.is_some() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_with_sources(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Event<ServerMsg<S>>>> {
        let mailbox_first = self.ctx.has_sys() || !self.sources.take_turn();
        if !mailbox_first {
            if let Poll::Ready(info) = self.sources.poll_next(cx) {
                self.source_item = Some(info);
                return Poll::Ready(None);
            }
        }
        match self.ctx.poll_event(cx, &mut self.sys.inbox) {
            Poll::Ready(e) => return Poll::Ready(Some(e)),
            Poll::Pending if self.sys.inbox.is_some() => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if mailbox_first {
            if let Poll::Ready(info) = self.sources.poll_next(cx) {
                self.source_item = Some(info);
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    }

    /// Records an event about to be handled to the attached traces.
    fn trace(&mut self, event: Traced, detail: Option<String>) {
        let pid = self.ctx.pid();
        self.sys.trace(pid, event, || detail);
    }
}

/// What the loop's poll found.
enum Next<E> {
    /// A mailbox event.
    Event(E),
    /// A source's item or a `sys` request, kept aside in the context.
    Aside,
    /// Nothing, after a busy spell: `handle_idle` is due.
    Idle,
}

/// The call, unless its caller has given up and others wait: then it is dropped before it
/// starts (and counted).
fn fresh<S: Server>(ctx: &ServerContext<S>, request: Request<S::Call>) -> Option<Request<S::Call>> {
    if request.stale(ctx.ctx.mailbox_len() > 0) {
        ctx.ctx.node().inner.counters.call_expired();
        return None;
    }
    Some(request)
}

/// Records a source's item to the attached traces, if any.
fn trace_info<S: Server>(ctx: &mut ServerContext<S>, info: S::Info) -> S::Info {
    if ctx.sys.tracing() {
        let detail = sys::detail(|| S::trace_view(TraceMsg::Info(&info)));
        ctx.trace(Traced::Info, detail);
    }
    info
}

/// Records a mailbox event to the attached traces, if any.
fn trace_event<S: Server>(
    ctx: &mut ServerContext<S>,
    event: Event<ServerMsg<S>>,
) -> Event<ServerMsg<S>> {
    if ctx.sys.tracing() {
        if let Some((kind, detail)) = traced::<S>(&event) {
            ctx.trace(kind, detail);
        }
    }
    event
}

/// How a trace shows an event.
fn traced<S: Server>(event: &Event<ServerMsg<S>>) -> Option<(Traced, Option<String>)> {
    Some(match event {
        Event::Message(Msg::Call(r)) => (
            Traced::Call,
            sys::detail(|| S::trace_view(TraceMsg::Call(r.body()))),
        ),
        Event::Message(Msg::Cast(m)) => (
            Traced::Cast,
            sys::detail(|| S::trace_view(TraceMsg::Cast(m))),
        ),
        Event::Message(Msg::Info(m)) => (
            Traced::Info,
            sys::detail(|| S::trace_view(TraceMsg::Info(m))),
        ),
        Event::Exit { from, reason } => (
            Traced::Exit {
                from: *from,
                reason: reason.to_string(),
            },
            None,
        ),
        Event::Down(d) => (
            Traced::Down {
                pid: d.pid,
                reason: d.reason.to_string(),
            },
            None,
        ),
        // Traced as `Stopping`, with the reason the server ends with.
        Event::Stop(_) => return None,
    })
}

impl<S: Server> Deref for ServerContext<S> {
    type Target = Context<ServerMsg<S>>;
    fn deref(&self) -> &Self::Target {
        &self.ctx
    }
}

impl<S: Server> DerefMut for ServerContext<S> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.ctx
    }
}

/// `handle_idle`, then back to the scheduler without polling again: the poll that found
/// nothing left a waker with the mailbox and every source (or, if it only gave up its turn,
/// woke the task already). A source added by `handle_idle` has not been polled yet, so then
/// the loop polls at once. `Err`: the server stops.
async fn idle_spell<S: Server>(
    server: &mut S,
    ctx: &mut ServerContext<S>,
) -> Result<(), ExitReason> {
    let added = ctx.sources.added();
    match guarded(server.handle_idle(ctx)).await {
        Ok(Flow::Continue) => {}
        Ok(Flow::Stop(reason)) => return Err(reason),
        Err(panic) => return Err(panic),
    }
    if ctx.sources.added() == added {
        let mut yielded = false;
        poll_fn(|_| {
            if yielded {
                Poll::Ready(())
            } else {
                yielded = true;
                Poll::Pending
            }
        })
        .await;
    }
    Ok(())
}

pub(super) async fn start<S: Server>(
    node: &Node,
    server: S,
    opts: SpawnOptions,
    name: Option<&str>,
) -> Result<ServerRef<S>, StartError> {
    let parent = opts.parent();
    let name = name.map(str::to_string);
    let addr = behaviour::start(node, opts, "server", move |ctx, starter| {
        run(
            server,
            ServerContext {
                ctx,
                parent,
                sources: Sources::new(),
                source_item: None,
                wants_idle: true,
                sys: Sys::default(),
            },
            name,
            starter,
        )
    })
    .await?;
    Ok(ServerRef { addr })
}

/// The server's life: register, `init`, then the message loop. A plain function returning an
/// `async move` block rather than an `async fn`: an `async fn` moves its arguments into locals
/// and its future keeps room for both copies in every state (the server and its context, some
/// hundreds of bytes per process for as long as it lives).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn run<S: Server>(
    mut server: S,
    mut ctx: ServerContext<S>,
    name: Option<String>,
    starter: Starter,
) -> impl std::future::Future<Output = ExitReason> + Send {
    async move {
        let starter = match starter.register(&ctx, name.as_deref()) {
            Ok(s) => s,
            Err(reason) => return reason,
        };
        if let Err(reason) = starter.init(server.init(&mut ctx)).await {
            return reason;
        }

        // Something was handled since the server last found nothing waiting.
        let mut busy = false;
        // No local of the loop is borrowed, and none stays set across a handler's await
        // unless it must: a process's future keeps room for every local that may be live at an
        // await, for as long as the process lives.
        let reason = loop {
            let polled = poll_fn(|cx| match ctx.poll_next(cx) {
                Poll::Ready(Some(e)) => Poll::Ready(Next::Event(e)),
                Poll::Ready(None) => Poll::Ready(Next::Aside),
                // Suspended (`sys::suspend`), no callback runs: the idle waits for the resume.
                Poll::Pending if busy && ctx.wants_idle && !ctx.sys.is_suspended() => {
                    Poll::Ready(Next::Idle)
                }
                Poll::Pending => Poll::Pending,
            })
            .await;
            let event = match polled {
                Next::Event(e) => e,
                Next::Idle => {
                    busy = false;
                    if let Err(reason) = idle_spell(&mut server, &mut ctx).await {
                        break reason;
                    }
                    continue;
                }
                Next::Aside => {
                    busy = true;
                    if let Some(req) = ctx.sys.inbox.take() {
                        let (pid, name) = (ctx.pid(), ctx.behaviour_name());
                        ctx.sys
                            .handle(pid, name, *req, || (None, server.state_view()));
                        continue;
                    }
                    let info = ctx.source_item.take().expect("a source's item is waiting");
                    let info = trace_info(&mut ctx, info);
                    match guarded(server.handle_info(info, &mut ctx)).await {
                        Ok(Flow::Continue) => continue,
                        Ok(Flow::Stop(reason)) => break reason,
                        Err(panic) => break panic,
                    }
                }
            };
            busy = true;
            let event = trace_event(&mut ctx, event);
            let flow = match event {
                Event::Message(Msg::Call(request)) => match fresh(&ctx, request) {
                    Some(request) => {
                        let (req, tag) = request.into_parts();
                        let noted = watch::begin(tag);
                        let flow = guarded(server.handle_call(req, &mut ctx)).await;
                        watch::end(noted, ctx.node(), ctx.pid());
                        flow
                    }
                    None => Ok(Flow::Continue),
                },
                Event::Message(Msg::Cast(msg)) => guarded(server.handle_cast(msg, &mut ctx)).await,
                Event::Message(Msg::Info(msg)) => guarded(server.handle_info(msg, &mut ctx)).await,
                Event::Stop(reason) => break reason,
                Event::Exit { from, reason } if Some(from) == ctx.parent => break reason,
                Event::Exit { from, reason } => {
                    guarded(server.handle_exit(from, reason, &mut ctx)).await
                }
                Event::Down(down) => guarded(server.handle_down(down, &mut ctx)).await,
            };
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop(reason)) => break reason,
                Err(panic) => break panic,
            }
        };
        // Recorded before the mailbox and its pending calls are dropped, so their callers see why.
        ctx.record_exit_reason(&reason);
        ctx.trace(
            Traced::Stopping {
                reason: reason.to_string(),
            },
            None,
        );
        let _ = guarded(server.terminate(&reason, &mut ctx)).await;
        reason
    }
}
