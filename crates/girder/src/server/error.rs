use std::time::Duration;

use crate::{ExitReason, Pid};

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
}

/// Why a server did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// `init` returned an error or panicked; the process exited with this reason.
    #[error("init failed: {0}")]
    Init(ExitReason),
    /// The requested name is held by another live process.
    #[error("already started as {0}")]
    AlreadyStarted(Pid),
    /// The start was refused for another reason (for example a name the process cannot take).
    #[error("start failed: {0}")]
    Other(String),
}
