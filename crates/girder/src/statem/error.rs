/// Why a state machine stopped itself: an enter call tried to change the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a state enter call may not change the state (from {from} to {to})")]
pub struct BadTransition {
    /// The state being entered.
    pub from: String,
    /// The state the enter call asked for.
    pub to: String,
}
