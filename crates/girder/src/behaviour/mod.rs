//! What every behaviour shares: one mailbox message ([`Msg`]) and one handle shape
//! ([`Handle`]), the start handshake (OTP's `proc_lib` start / init_ack) and its errors, and
//! running callbacks with panics caught. Written once; `server`, `statem`, `event` and
//! `supervisor` build on it (the call protocol is [`crate::call`]).

mod error;
mod handle;
mod source;

pub use error::{InitError, StartError};
pub(crate) use handle::{call, cast, handle, info};
pub use handle::{Handle, Msg};
pub use source::SourceId;
pub(crate) use source::Sources;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use tokio::sync::oneshot;

use crate::{Addr, Context, ExitReason, Node, RegisterError, SendError, SpawnOptions};

/// The new process's side of the start handshake.
pub(crate) struct Starter {
    tx: oneshot::Sender<Result<(), StartError>>,
}

impl Starter {
    /// Registers the process under `name` (if any); on failure reports it and returns the exit
    /// reason the process should end with.
    pub(crate) fn register<M: Send + 'static>(
        self,
        ctx: &Context<M>,
        name: Option<&str>,
    ) -> Result<Self, ExitReason> {
        let Some(name) = name else { return Ok(self) };
        match ctx.register(name) {
            Ok(()) => Ok(self),
            Err(e) => {
                let err = match e {
                    RegisterError::NameTaken { owner, .. } => StartError::AlreadyStarted(owner),
                    other => StartError::Other(other.to_string()),
                };
                let _ = self.tx.send(Err(err));
                Err(ExitReason::Normal)
            }
        }
    }

    /// Runs an `init` callback with panics caught, and reports its outcome to the starter.
    /// `Err` is the reason the process exits with (`Normal` for an `ignore`).
    pub(crate) async fn init<T>(
        self,
        init: impl Future<Output = Result<T, InitError>>,
    ) -> Result<T, ExitReason> {
        let outcome = AssertUnwindSafe(init)
            .catch_unwind()
            .await
            .unwrap_or_else(|p| Err(InitError::Stop(ExitReason::from_panic(p))));
        match outcome {
            Ok(state) => {
                let _ = self.tx.send(Ok(()));
                Ok(state)
            }
            Err(InitError::Stop(reason)) => {
                let _ = self.tx.send(Err(StartError::Init(reason.clone())));
                Err(reason)
            }
            Err(InitError::Ignore) => {
                let _ = self.tx.send(Err(StartError::Ignored));
                Err(ExitReason::Normal)
            }
        }
    }
}

/// Spawns a behaviour process and waits for its `init`. A failed start returns once the process
/// is gone (as OTP 26's `proc_lib` does).
pub(crate) async fn start<M, F, Fut>(
    node: &Node,
    opts: SpawnOptions,
    behaviour: &'static str,
    body: F,
) -> Result<Addr<M>, StartError>
where
    M: Send + 'static,
    F: FnOnce(Context<M>, Starter) -> Fut + Send + 'static,
    Fut: Future<Output = ExitReason> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    // A behaviour built on another (a supervisor on Server) keeps its own name.
    let opts = match opts.behaviour_name() {
        "process" => opts.behaviour(behaviour),
        _ => opts,
    };
    let addr = node.spawn_opts(opts, move |ctx| body(ctx, Starter { tx }));
    match rx.await {
        Ok(Ok(())) => Ok(addr),
        Ok(Err(e)) => {
            addr.wait_exit().await;
            Err(e)
        }
        // The process ended before init reported: it was killed during init.
        Err(_) => Err(StartError::Init(addr.wait_exit().await)),
    }
}

/// Sends `msg` wrapped by `wrap`; on failure hands back the unwrapped message.
pub(crate) fn send_as<M: Send + 'static, T>(
    addr: &Addr<M>,
    msg: T,
    wrap: impl FnOnce(T) -> M,
    unwrap: impl Fn(M) -> Option<T>,
) -> Result<(), SendError<T>> {
    addr.send(wrap(msg)).map_err(|e| sent_back(e, unwrap))
}

/// As [`send_as`], waiting for room in a full bounded mailbox (`Addr::send_wait`).
pub(crate) async fn send_wait_as<M: Send + 'static, T>(
    addr: &Addr<M>,
    msg: T,
    wrap: impl FnOnce(T) -> M,
    unwrap: impl Fn(M) -> Option<T>,
) -> Result<(), SendError<T>> {
    addr.send_wait(wrap(msg))
        .await
        .map_err(|e| sent_back(e, unwrap))
}

/// The refused message, unwrapped from the mailbox's message type.
fn sent_back<M, T>(e: SendError<M>, unwrap: impl Fn(M) -> Option<T>) -> SendError<T> {
    let back = |m| unwrap(m).expect("the message sent comes back");
    match e {
        SendError::Full(m) => SendError::Full(back(m)),
        SendError::NoProc(m) => SendError::NoProc(back(m)),
    }
}

/// Runs one callback with panics caught: `Err` carries the panic as an exit reason.
/// A plain combinator rather than an `async fn`, so every callback of every behaviour loop goes
/// through no extra layer.
#[inline]
pub(crate) fn guarded<T>(
    callback: impl Future<Output = T>,
) -> impl Future<Output = Result<T, ExitReason>> {
    AssertUnwindSafe(callback)
        .catch_unwind()
        .map(|r| r.map_err(ExitReason::from_panic))
}
