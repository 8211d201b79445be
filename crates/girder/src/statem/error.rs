/// Why a state machine stopped itself: a state-enter call asked for something only an event
/// may do. The machine exits with [`ExitReason::Error`](crate::ExitReason::Error) carrying this
/// text, and its `terminate` runs (OTP stops with `bad_state_enter_return_from_state_function`
/// or `bad_state_enter_action_from_state_function` in the same places).
///
/// ```
/// use girder::statem::BadTransition;
/// let e = BadTransition::StateChange { from: "Locked".into(), to: "Open".into() };
/// assert_eq!(
///     e.to_string(),
///     "a state enter call may not change the state (from Locked to Open)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTransition {
    /// The enter call returned another state.
    #[error("a state enter call may not change the state (from {from} to {to})")]
    StateChange {
        /// The state being entered.
        from: String,
        /// The state the enter call asked for.
        to: String,
    },
    /// The enter call postponed its event (there is no event to postpone).
    #[error("a state enter call may not postpone (in {state})")]
    Postpone {
        /// The state being entered.
        state: String,
    },
    /// The enter call asked for [`Action::NextEvent`](super::Action::NextEvent).
    #[error("a state enter call may not insert events (in {state})")]
    NextEvent {
        /// The state being entered.
        state: String,
    },
}
