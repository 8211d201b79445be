//! Why a process ended.

use std::any::Any;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The reason a process exited, or the reason carried by an exit signal.
///
/// The variants mirror Erlang's conventions:
///
/// | Girder | Erlang | propagates over links? |
/// |---|---|---|
/// | `Normal` | `normal` | no: linked processes are not killed |
/// | `Shutdown` | `shutdown` | yes (supervisors use it to stop children) |
/// | `Kill` | `kill` | only as a signal: it cannot be trapped, and the target exits with `Killed` |
/// | `Killed` | `killed` | yes, and it is trappable |
/// | `NoProc` | `noproc` | the target of a link or monitor did not exist |
/// | `NoConnection` | `noconnection` | the node of the target was lost |
/// | `Error(text)` | any other term | yes |
/// | `Panic(text)` | a crash | yes |
///
/// ```
/// use girder::ExitReason;
/// assert!(ExitReason::Normal.is_normal());
/// assert!(!ExitReason::error("disk full").is_normal());
/// assert_eq!(ExitReason::error("disk full").to_string(), "error: disk full");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExitReason {
    /// The process finished its work.
    Normal,
    /// The process was asked to stop (by its supervisor or the node).
    Shutdown,
    /// An untrappable kill signal. A process never exits with this reason: it exits `Killed`.
    Kill,
    /// The process was killed by a `Kill` signal.
    Killed,
    /// The target process did not exist.
    NoProc,
    /// The connection to the target's node was lost.
    NoConnection,
    /// The process failed with an error.
    Error(String),
    /// The process panicked; the text is the panic message.
    Panic(String),
}

impl ExitReason {
    /// An error reason with a message.
    pub fn error(msg: impl Into<String>) -> Self {
        ExitReason::Error(msg.into())
    }

    /// True for `Normal`, the only reason a link does not propagate to a non-trapping process.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal)
    }

    /// True for `Normal` and `Shutdown`: the exits a `transient` child is not restarted for.
    pub fn is_clean(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }

    /// Turns a caught panic payload into a reason.
    pub(crate) fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let msg = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "panic with a non-string payload".to_string()
        };
        ExitReason::Panic(msg)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Kill => f.write_str("kill"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::NoProc => f.write_str("noproc"),
            ExitReason::NoConnection => f.write_str("noconnection"),
            ExitReason::Error(e) => write!(f, "error: {e}"),
            ExitReason::Panic(p) => write!(f, "panic: {p}"),
        }
    }
}

impl fmt::Debug for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
