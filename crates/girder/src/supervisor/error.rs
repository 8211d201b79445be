use crate::server::{CallError, StartError};
use crate::Pid;

/// Why a supervisor request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisorError {
    /// A child with this id is running.
    #[error("child {id:?} is already running as {pid}")]
    AlreadyStarted {
        /// The child id.
        id: String,
        /// Its pid.
        pid: Pid,
    },
    /// A stopped child with this id exists; restart or delete it first.
    #[error("child {0:?} already exists (stopped)")]
    AlreadyPresent(String),
    /// No child has this id.
    #[error("no child with id {0:?}")]
    NotFound(String),
    /// The child is running; stop it first.
    #[error("child {id:?} is running as {pid}")]
    Running {
        /// The child id.
        id: String,
        /// Its pid.
        pid: Pid,
    },
    /// The child's start function failed.
    #[error("child {id:?} failed to start: {error}")]
    StartFailed {
        /// The child id.
        id: String,
        /// Why.
        error: StartError,
    },
    /// The supervisor could not be reached.
    #[error("supervisor call failed: {0}")]
    Call(CallError),
}
