//! Plain processes across nodes: the sending side of a remote [`Addr`] and the receiving side
//! of an exported process.

use std::marker::PhantomData;
use std::sync::Arc;

use girder::remote::{BoxFuture, RemoteSink};
use girder::{Addr, ExitReason, Pid, SendError};

use super::{Delivery, Inbound, Inbox, Target};
use crate::node::Inner;
use crate::peer::{Peer, Unsent};
use crate::wire::{self, Packet, Wire};

pub(super) fn unsent<M>(e: Unsent, msg: M) -> SendError<M> {
    match e {
        Unsent::Full => SendError::Full(msg),
        Unsent::Unreachable => SendError::NoProc(msg),
    }
}

/// The sending side of an [`Addr`] to a process on another node.
pub(super) struct RemoteProcess<M> {
    target: Target,
    _m: PhantomData<fn(M)>,
}

impl<M: Wire> RemoteProcess<M> {
    pub(super) fn new(target: Target) -> Self {
        RemoteProcess {
            target,
            _m: PhantomData,
        }
    }

    fn encode(&self, msg: &M) -> Option<bytes::Bytes> {
        let p = Packet::Send {
            to: self.target.wire(),
            name: M::NAME,
        };
        match wire::packet_with(&p, msg, &self.target.inner.translation) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(to = %self.target.pid, error = %e, "message not sent");
                None
            }
        }
    }
}

impl<M: Wire> RemoteSink<M> for RemoteProcess<M> {
    fn pid(&self) -> Pid {
        self.target.pid
    }

    fn send(&self, msg: M) -> Result<(), SendError<M>> {
        // A message that cannot be encoded is lost like one to a dead process: logged.
        let Some(bytes) = self.encode(&msg) else {
            return Ok(());
        };
        self.target.send_msg(bytes).map_err(|e| unsent(e, msg))
    }

    fn send_wait(&self, msg: M) -> BoxFuture<'_, Result<(), SendError<M>>> {
        Box::pin(async move {
            let Some(bytes) = self.encode(&msg) else {
                return Ok(());
            };
            self.target
                .send_wait(bytes)
                .await
                .map_err(|e| unsent(e, msg))
        })
    }

    fn stop(&self, reason: ExitReason) -> bool {
        self.target.stop(reason)
    }

    fn exit_reason(&self) -> Option<ExitReason> {
        self.target.exit_reason()
    }

    fn wait_exit(&self) -> BoxFuture<'static, ExitReason> {
        self.target.wait_exit()
    }
}

/// An exported plain process.
pub(super) struct ExportedProcess<M: Wire> {
    pub(super) addr: Addr<M>,
}

impl<M: Wire> Inbox for ExportedProcess<M> {
    fn deliver(
        &self,
        inner: &Arc<Inner>,
        _: &Arc<Peer>,
        name: &str,
        body: &[u8],
        how: Inbound,
        behind: bool,
    ) -> Result<Delivery, String> {
        if let Inbound::Call { .. } = how {
            return Err(format!("{} takes messages, not calls", self.addr.pid()));
        }
        let msg = wire::decode::<M>(name, body, &inner.translation)?;
        Ok(push(&self.addr, msg, behind, || {}))
    }
}

/// Queues without waiting if there is room (and nothing waits before it: `behind`); otherwise
/// a future that waits for room. A mailbox that lets nobody wait refuses: `refuse` runs, then
/// the message is dropped.
pub(super) fn push<M: Send + 'static>(
    addr: &Addr<M>,
    msg: M,
    behind: bool,
    refuse: impl FnOnce(),
) -> Delivery {
    let tried = if behind {
        Err(SendError::Full(msg))
    } else {
        addr.send(msg)
    };
    match tried {
        Ok(()) | Err(SendError::NoProc(_)) => Delivery::Done,
        // A mailbox that lets nobody wait refuses what finds it full, from any node: dropped
        // (counted as refused by the mailbox); a call's caller is told it was refused.
        Err(SendError::Full(m))
            if addr
                .mailbox_stats()
                .is_some_and(|s| s.overflow == girder::Overflow::FailFast) =>
        {
            refuse();
            drop(m);
            Delivery::Done
        }
        Err(SendError::Full(m)) => {
            let addr = addr.clone();
            Delivery::Wait(Box::pin(async move {
                let _ = addr.send_wait(m).await;
            }))
        }
    }
}
