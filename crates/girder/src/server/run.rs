//! The generic server loop, written once for every [`Server`].

use std::ops::{Deref, DerefMut};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::oneshot;

use super::{Flow, ReplyTo, Server, ServerRef, StartError};
use crate::{Context, Event, ExitReason, Node, Pid, SpawnOptions, TimerRef};

/// The message type of a server's mailbox. Build these through [`ServerRef`]'s methods.
pub enum ServerMsg<S: Server> {
    /// A request and where its reply goes.
    Call(S::Call, ReplyTo<S::Reply>),
    /// A fire-and-forget request.
    Cast(S::Cast),
    /// Any other message.
    Info(S::Info),
}

/// What a server's callbacks see: the process [`Context`] plus server helpers.
pub struct ServerContext<S: Server> {
    ctx: Context<ServerMsg<S>>,
    parent: Option<Pid>,
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
        self.ctx.send_after(ServerMsg::Info(msg), delay)
    }

    /// Sends `msg` to this server's `handle_cast` after `delay`.
    pub fn cast_after(&self, msg: S::Cast, delay: Duration) -> TimerRef {
        self.ctx.send_after(ServerMsg::Cast(msg), delay)
    }
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

pub(super) async fn start<S: Server>(
    node: &Node,
    server: S,
    opts: SpawnOptions,
    name: Option<&str>,
) -> Result<ServerRef<S>, StartError> {
    let (started_tx, started_rx) = oneshot::channel();
    let parent = opts.parent();
    let name = name.map(str::to_string);
    // A behaviour built on Server (a supervisor) keeps its own name.
    let opts = match opts.behaviour_name() {
        "process" => opts.behaviour("server"),
        _ => opts,
    };
    let addr = node.spawn_opts(opts, move |ctx| {
        run(server, ServerContext { ctx, parent }, name, started_tx)
    });
    match started_rx.await {
        Ok(Ok(())) => Ok(ServerRef { addr }),
        Ok(Err(e)) => {
            // As OTP 26's proc_lib: a failed start returns once the process is gone.
            addr.wait_exit().await;
            Err(e)
        }
        // The process ended before init reported: it was killed during init.
        Err(_) => Err(StartError::Init(
            addr.exit_reason().unwrap_or(ExitReason::Killed),
        )),
    }
}

async fn run<S: Server>(
    mut server: S,
    mut ctx: ServerContext<S>,
    name: Option<String>,
    started: oneshot::Sender<Result<(), StartError>>,
) -> ExitReason {
    if let Some(name) = name {
        if let Err(e) = ctx.register(&name) {
            let err = match e {
                crate::RegisterError::NameTaken { owner, .. } => StartError::AlreadyStarted(owner),
                other => StartError::Other(other.to_string()),
            };
            let _ = started.send(Err(err));
            return ExitReason::Normal;
        }
    }
    let init = AssertUnwindSafe(server.init(&mut ctx)).catch_unwind().await;
    let init = init.unwrap_or_else(|p| Err(ExitReason::from_panic(p)));
    if let Err(reason) = init {
        ctx.record_exit_reason(&reason);
        let _ = started.send(Err(StartError::Init(reason.clone())));
        return reason;
    }
    let _ = started.send(Ok(()));

    let reason = loop {
        let flow = match ctx.recv().await {
            Event::Message(ServerMsg::Call(req, from)) => {
                AssertUnwindSafe(server.handle_call(req, from, &mut ctx))
                    .catch_unwind()
                    .await
            }
            Event::Message(ServerMsg::Cast(msg)) => {
                AssertUnwindSafe(server.handle_cast(msg, &mut ctx))
                    .catch_unwind()
                    .await
            }
            Event::Message(ServerMsg::Info(msg)) => {
                AssertUnwindSafe(server.handle_info(msg, &mut ctx))
                    .catch_unwind()
                    .await
            }
            Event::Stop(reason) => break reason,
            Event::Exit { from, reason } if Some(from) == ctx.parent => break reason,
            Event::Exit { from, reason } => {
                AssertUnwindSafe(server.handle_exit(from, reason, &mut ctx))
                    .catch_unwind()
                    .await
            }
            Event::Down(down) => {
                AssertUnwindSafe(server.handle_down(down, &mut ctx))
                    .catch_unwind()
                    .await
            }
        };
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Stop(reason)) => break reason,
            Err(panic) => break ExitReason::from_panic(panic),
        }
    };
    // Recorded before the mailbox and its pending calls are dropped, so their callers see why.
    ctx.record_exit_reason(&reason);
    let _ = AssertUnwindSafe(server.terminate(&reason, &mut ctx))
        .catch_unwind()
        .await;
    reason
}
