//! The generic server loop, written once for every [`Server`].

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use super::{Flow, Server, ServerRef, StartError};
use crate::behaviour::{self, guarded, Msg, Starter};
use crate::call::watch;
use crate::{Context, Event, ExitReason, Node, Pid, SpawnOptions, TimerRef};

/// The message type of a server's mailbox: the [`Msg`] every behaviour takes. Build these
/// through [`ServerRef`]'s methods.
pub type ServerMsg<S> = Msg<<S as Server>::Call, <S as Server>::Cast, <S as Server>::Info>;

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
        self.ctx.send_after(Msg::Info(msg), delay)
    }

    /// Sends `msg` to this server's `handle_cast` after `delay`.
    pub fn cast_after(&self, msg: S::Cast, delay: Duration) -> TimerRef {
        self.ctx.send_after(Msg::Cast(msg), delay)
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
    let parent = opts.parent();
    let name = name.map(str::to_string);
    let addr = behaviour::start(node, opts, "server", move |ctx, starter| {
        run(server, ServerContext { ctx, parent }, name, starter)
    })
    .await?;
    Ok(ServerRef { addr })
}

async fn run<S: Server>(
    mut server: S,
    mut ctx: ServerContext<S>,
    name: Option<String>,
    starter: Starter,
) -> ExitReason {
    let starter = match starter.register(&ctx, name.as_deref()) {
        Ok(s) => s,
        Err(reason) => return reason,
    };
    if let Err(reason) = starter.init(server.init(&mut ctx)).await {
        return reason;
    }

    let reason = loop {
        let flow = match ctx.recv().await {
            Event::Message(Msg::Call(request)) => {
                let (req, tag) = request.into_parts();
                let noted = watch::begin(tag);
                let flow = guarded(server.handle_call(req, &mut ctx)).await;
                watch::end(noted, ctx.node(), ctx.pid());
                flow
            }
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
    let _ = guarded(server.terminate(&reason, &mut ctx)).await;
    reason
}
