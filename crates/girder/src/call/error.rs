use std::time::Duration;

use crate::ExitReason;

/// Why a call got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No reply came within the timeout. The request may still be handled; its reply is dropped.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The server exited (before or while handling the call), with this reason. `NoProc` means
    /// it was not alive when the call was made.
    #[error("server exited: {0}")]
    Exited(ExitReason),
    /// The server dropped the request without replying and is still running.
    #[error("server dropped the request without replying")]
    NoReply,
    /// The server is overloaded and refused the call before handling it: its bounded mailbox
    /// is full and lets no caller wait ([`Overflow::FailFast`](crate::Overflow), on this node
    /// or another), or it refused with [`ReplyTo::overloaded`](crate::ReplyTo::overloaded).
    /// Nothing was handled; the call may be retried later or elsewhere.
    #[error("server overloaded: call refused")]
    Overloaded,
}
