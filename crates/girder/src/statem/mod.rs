//! State machines: the `gen_statem` behaviour.
//!
//! A [`StateMachine`] has explicit states and one event callback, `handle_event(state, event)`,
//! that returns a [`Transition`]: stay or move to another state, plus [`Action`]s. The library
//! owns the loop: calls and casts, state-enter calls, timeouts, postponed events, trapped exits,
//! crash handling and `terminate`.
//!
//! * **State enter calls**: with [`StateMachine::state_enter`] on, every state change (and the
//!   initial state) is followed by an [`StateEvent::Enter`] call in the new state. It may set
//!   timeouts and reply, but not change the state (that stops the machine with an error, as in
//!   OTP).
//! * **Timeouts**: a *state timeout* is cancelled by any state change; an *event timeout* is
//!   cancelled by any event; a *generic timeout* has a name, survives state changes and is
//!   cancelled only by setting it again or by [`Action::CancelTimeout`]. A cancelled timeout
//!   never fires.
//! * **Postpone**: [`Transition::postpone`] keeps the current event and delivers it again after
//!   the next state change, before newer events, in the original order.

mod error;
mod run;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

pub use run::{StateMachineContext, StateMachineMsg};

use crate::server::{CallError, ReplyTo, StartError, DEFAULT_CALL_TIMEOUT};
use crate::{Addr, Down, ExitReason, LookupError, Node, Pid, SendError, SpawnOptions};

/// An event handed to [`StateMachine::handle_event`].
pub enum StateEvent<S: StateMachine> {
    /// A call; reply through the handle (now, later, or with [`Action::Reply`]).
    Call(S::Call, ReplyTo<S::Reply>),
    /// A cast.
    Cast(S::Cast),
    /// Any other message.
    Info(S::Info),
    /// The state-enter call after a state change (or for the initial state, where `old` is the
    /// initial state itself). Only sent when [`StateMachine::state_enter`] is true.
    Enter {
        /// The state left.
        old: S::State,
    },
    /// The state timeout fired.
    StateTimeout(S::Timeout),
    /// The event timeout fired.
    EventTimeout(S::Timeout),
    /// A generic named timeout fired.
    Timeout {
        /// Its name.
        name: &'static str,
        /// Its content.
        msg: S::Timeout,
    },
    /// A trapped exit signal from a process other than the parent.
    Exit {
        /// Who exited.
        from: Pid,
        /// Why.
        reason: ExitReason,
    },
    /// A monitored process exited.
    Down(Down),
}

impl<S: StateMachine> Debug for StateEvent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateEvent::Call(..) => f.write_str("Call(..)"),
            StateEvent::Cast(_) => f.write_str("Cast(..)"),
            StateEvent::Info(_) => f.write_str("Info(..)"),
            StateEvent::Enter { old } => write!(f, "Enter {{ old: {old:?} }}"),
            StateEvent::StateTimeout(_) => f.write_str("StateTimeout(..)"),
            StateEvent::EventTimeout(_) => f.write_str("EventTimeout(..)"),
            StateEvent::Timeout { name, .. } => write!(f, "Timeout({name})"),
            StateEvent::Exit { from, reason } => write!(f, "Exit({from}, {reason})"),
            StateEvent::Down(d) => write!(f, "Down({d:?})"),
        }
    }
}

/// Something the machine does as part of a transition.
pub enum Action<S: StateMachine> {
    /// Sends `msg` as [`StateEvent::StateTimeout`] after the delay unless the state changes
    /// first. Setting it again replaces it.
    StateTimeout(Duration, S::Timeout),
    /// Sends `msg` as [`StateEvent::EventTimeout`] after the delay unless any event arrives
    /// first.
    EventTimeout(Duration, S::Timeout),
    /// Starts (or restarts) the generic timeout `name`; it survives state changes.
    Timeout(&'static str, Duration, S::Timeout),
    /// Cancels the generic timeout `name`, if set.
    CancelTimeout(&'static str),
    /// Cancels the state timeout, if set.
    CancelStateTimeout,
    /// Replies to a call.
    Reply(ReplyTo<S::Reply>, S::Reply),
}

/// The outcome of handling an event: the next state (or the same), actions, maybe a postponed
/// event, or a stop.
///
/// ```
/// use girder::statem::{Action, StateMachine, Transition};
/// # use girder::statem::{StateEvent, StateMachineContext};
/// # struct M;
/// # impl StateMachine for M {
/// #     type State = u8; type Call = (); type Reply = (); type Cast = (); type Info = (); type Timeout = ();
/// #     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<(u8, Vec<Action<Self>>), girder::ExitReason> { Ok((0, vec![])) }
/// #     async fn handle_event(&mut self, _: &u8, _: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> { Transition::keep() }
/// # }
/// let t: Transition<M> = Transition::next(1).with(Action::StateTimeout(std::time::Duration::from_secs(1), ()));
/// ```
pub struct Transition<S: StateMachine> {
    pub(crate) next: Option<S::State>,
    pub(crate) actions: Vec<Action<S>>,
    pub(crate) postponed: Option<StateEvent<S>>,
    pub(crate) stop: Option<ExitReason>,
}

impl<S: StateMachine> Transition<S> {
    /// Stay in the current state.
    pub fn keep() -> Self {
        Transition {
            next: None,
            actions: Vec::new(),
            postponed: None,
            stop: None,
        }
    }

    /// Move to `state` (a move to the same state is not a state change).
    pub fn next(state: S::State) -> Self {
        Transition {
            next: Some(state),
            ..Self::keep()
        }
    }

    /// Run `terminate` and exit with `reason`.
    pub fn stop(reason: ExitReason) -> Self {
        Transition {
            stop: Some(reason),
            ..Self::keep()
        }
    }

    /// Adds an action.
    pub fn with(mut self, action: Action<S>) -> Self {
        self.actions.push(action);
        self
    }

    /// Keeps `event` to be delivered again after the next state change.
    pub fn postpone(mut self, event: StateEvent<S>) -> Self {
        self.postponed = Some(event);
        self
    }
}

/// The `gen_statem` behaviour (handle-event-function mode).
///
/// ```
/// use std::time::Duration;
/// use girder::statem::{self, Action, StateEvent, StateMachine, StateMachineContext, Transition};
/// use girder::{ExitReason, Node};
///
/// #[derive(Clone, Debug, PartialEq)]
/// enum Door { Locked, Open }
///
/// struct Lock { code: u32 }
///
/// impl StateMachine for Lock {
///     type State = Door;
///     type Call = u32;          // try a code
///     type Reply = bool;
///     type Cast = ();
///     type Info = ();
///     type Timeout = ();
///
///     async fn init(&mut self, _: &mut StateMachineContext<Self>) -> Result<(Door, Vec<Action<Self>>), ExitReason> {
///         Ok((Door::Locked, vec![]))
///     }
///
///     async fn handle_event(&mut self, state: &Door, event: StateEvent<Self>, _: &mut StateMachineContext<Self>) -> Transition<Self> {
///         match (state, event) {
///             (Door::Locked, StateEvent::Call(code, from)) if code == self.code => {
///                 from.reply(true);
///                 // Lock again after a while unless something else happens to the state.
///                 Transition::next(Door::Open).with(Action::StateTimeout(Duration::from_millis(20), ()))
///             }
///             (_, StateEvent::Call(_, from)) => { from.reply(false); Transition::keep() }
///             (Door::Open, StateEvent::StateTimeout(())) => Transition::next(Door::Locked),
///             _ => Transition::keep(),
///         }
///     }
/// }
///
/// # #[tokio::main] async fn main() {
/// let node = Node::new("docs");
/// let door = statem::start(&node, Lock { code: 1234 }).await.unwrap();
/// assert!(!door.call(1).await.unwrap());
/// assert!(door.call(1234).await.unwrap());
/// # }
/// ```
pub trait StateMachine: Sized + Send + 'static {
    /// The machine's states.
    type State: Clone + PartialEq + Debug + Send + Sync + 'static;
    /// Requests that expect a reply.
    type Call: Send + 'static;
    /// The reply to a call.
    type Reply: Send + 'static;
    /// Fire-and-forget requests.
    type Cast: Send + 'static;
    /// Other messages.
    type Info: Send + 'static;
    /// The content of timeout events.
    type Timeout: Send + 'static;

    /// The initial state and actions (timeouts to start).
    fn init(
        &mut self,
        ctx: &mut StateMachineContext<Self>,
    ) -> impl Future<Output = Result<(Self::State, Vec<Action<Self>>), ExitReason>> + Send;

    /// Whether state-enter calls are made. Default: no.
    fn state_enter() -> bool {
        false
    }

    /// Handles one event in `state`.
    fn handle_event(
        &mut self,
        state: &Self::State,
        event: StateEvent<Self>,
        ctx: &mut StateMachineContext<Self>,
    ) -> impl Future<Output = Transition<Self>> + Send;

    /// Runs when the machine stops (not when it is killed outright).
    fn terminate(
        &mut self,
        reason: &ExitReason,
        state: &Self::State,
        ctx: &mut StateMachineContext<Self>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (reason, state, ctx);
        async {}
    }
}

/// A typed handle to a running [`StateMachine`].
pub struct StateMachineRef<S: StateMachine> {
    addr: Addr<StateMachineMsg<S>>,
}

impl<S: StateMachine> Clone for StateMachineRef<S> {
    fn clone(&self) -> Self {
        StateMachineRef {
            addr: self.addr.clone(),
        }
    }
}

impl<S: StateMachine> Debug for StateMachineRef<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateMachineRef({})", self.pid())
    }
}

impl<S: StateMachine> StateMachineRef<S> {
    /// The machine's pid.
    pub fn pid(&self) -> Pid {
        self.addr.pid()
    }

    /// The machine registered under `name`.
    pub fn lookup(node: &Node, name: &str) -> Result<Self, LookupError> {
        node.lookup(name).map(|addr| StateMachineRef { addr })
    }

    /// Calls the machine, waiting up to [`DEFAULT_CALL_TIMEOUT`].
    pub async fn call(&self, req: S::Call) -> Result<S::Reply, CallError> {
        self.call_timeout(req, DEFAULT_CALL_TIMEOUT).await
    }

    /// Calls the machine, waiting up to `timeout`.
    pub async fn call_timeout(
        &self,
        req: S::Call,
        timeout: Duration,
    ) -> Result<S::Reply, CallError> {
        crate::behaviour::call(&self.addr, timeout, |from| StateMachineMsg::Call(req, from)).await
    }

    /// Sends a cast.
    pub fn cast(&self, msg: S::Cast) -> Result<(), SendError<S::Cast>> {
        crate::behaviour::send_as(&self.addr, msg, StateMachineMsg::Cast, |m| match m {
            StateMachineMsg::Cast(c) => Some(c),
            _ => None,
        })
    }

    /// Sends an info message.
    pub fn info(&self, msg: S::Info) -> Result<(), SendError<S::Info>> {
        crate::behaviour::send_as(&self.addr, msg, StateMachineMsg::Info, |m| match m {
            StateMachineMsg::Info(i) => Some(i),
            _ => None,
        })
    }

    /// Asks the machine to stop (overtaking queued events), runs `terminate`, waits for the exit.
    pub async fn stop(&self, reason: ExitReason) -> ExitReason {
        self.addr.stop(reason);
        self.addr.wait_exit().await
    }

    /// Waits until the machine exits and returns why.
    pub async fn wait_exit(&self) -> ExitReason {
        self.addr.wait_exit().await
    }
}

/// Starts `machine` in a new, unlinked process and waits for its `init`.
pub async fn start<S: StateMachine>(
    node: &Node,
    machine: S,
) -> Result<StateMachineRef<S>, StartError> {
    start_with(node, machine, SpawnOptions::new(), None).await
}

/// Starts `machine` with spawn options and an optional registered name.
pub async fn start_with<S: StateMachine>(
    node: &Node,
    machine: S,
    opts: SpawnOptions,
    name: Option<&str>,
) -> Result<StateMachineRef<S>, StartError> {
    run::start(node, machine, opts, name)
        .await
        .map(|addr| StateMachineRef { addr })
}

pub use error::BadTransition;
