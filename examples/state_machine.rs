//! A state machine with timeouts: a door that unlocks with a code, locks itself again after a
//! while (a state timeout), complains when nobody does anything (an event timeout), and keeps a
//! heartbeat whatever its state (a generic timeout). Traced with `sys` as it runs.

use std::time::Duration;

use girder::statem::{self, Action, StateEvent, StateMachine, StateMachineContext, Transition};
use girder::sys::{StateView, Traced};
use girder::{ExitReason, Node, ReplyTo};

#[derive(Clone, Debug, PartialEq)]
enum Door {
    Locked,
    Open,
}

#[derive(Debug)]
enum Tick {
    Relock,
    Idle,
    Heartbeat,
}

#[derive(Debug)]
struct Lock {
    code: u32,
    heartbeats: u32,
}

impl StateMachine for Lock {
    type State = Door;
    type Call = (u32, ReplyTo<bool>); // try a code; was it right?
    type Cast = ();
    type Info = ();
    type Timeout = Tick;

    async fn init(
        &mut self,
        _: &mut StateMachineContext<Self>,
    ) -> Result<(Door, Vec<Action<Self>>), girder::InitError> {
        let beat = Action::Timeout("heartbeat", Duration::from_millis(100), Tick::Heartbeat);
        Ok((Door::Locked, vec![beat]))
    }

    async fn handle_event(
        &mut self,
        state: &Door,
        event: StateEvent<Self>,
        _: &mut StateMachineContext<Self>,
    ) -> Transition<Self> {
        match (state, event) {
            (Door::Locked, StateEvent::Call((code, from))) if code == self.code => {
                from.reply(true);
                // Locks again after 300 ms unless the state changes first.
                Transition::next(Door::Open).with(Action::StateTimeout(
                    Duration::from_millis(300),
                    Tick::Relock,
                ))
            }
            (_, StateEvent::Call((_, from))) => {
                from.reply(false);
                // Says so if nothing at all happens for 150 ms.
                Transition::keep()
                    .with(Action::EventTimeout(Duration::from_millis(150), Tick::Idle))
            }
            (Door::Open, StateEvent::StateTimeout(Tick::Relock)) => Transition::next(Door::Locked),
            (_, StateEvent::EventTimeout(Tick::Idle)) => {
                println!("nobody has tried a code for a while");
                Transition::keep()
            }
            (
                _,
                StateEvent::Timeout {
                    msg: Tick::Heartbeat,
                    ..
                },
            ) => {
                self.heartbeats += 1;
                let again = Duration::from_millis(100);
                Transition::keep().with(Action::Timeout("heartbeat", again, Tick::Heartbeat))
            }
            _ => Transition::keep(),
        }
    }

    fn state_view(&self) -> StateView {
        StateView::debug(self)
    }
}

#[tokio::main]
async fn main() {
    let node = Node::new("example");
    let door = statem::start(
        &node,
        Lock {
            code: 1234,
            heartbeats: 0,
        },
    )
    .await
    .unwrap();
    let mut trace = door.trace().await.unwrap();

    assert!(!door.call(|r| (1, r)).await.unwrap());
    assert!(door.call(|r| (1234, r)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let state = door.get_state().await.unwrap();
    println!("state {:?}, data {:?}", state.state, state.view);
    assert_eq!(
        state.state.as_deref(),
        Some("Locked"),
        "locked itself again"
    );
    door.stop(ExitReason::Shutdown).await;

    let mut changes = Vec::new();
    while let Some(e) = trace.next().await {
        if let Traced::StateChange { from, to } = e.event {
            changes.push(format!("{from} -> {to}"));
        }
    }
    println!("state changes: {changes:?}");
    assert_eq!(changes, ["Locked -> Open", "Open -> Locked"]);
}
