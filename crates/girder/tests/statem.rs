//! Semantics of the StateMachine (gen_statem) behaviour.

use std::time::Duration;

use girder::statem::{
    self, Action, StateEvent, StateMachine, StateMachineContext, StateMachineRef, Transition,
};
use girder::{CallError, ExitReason, Node};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(50);

#[derive(Clone, Debug, PartialEq)]
enum St {
    A,
    B,
    C,
}

type Step = Box<dyn FnOnce(&St) -> Transition<Probe> + Send>;

/// A machine driven by the test: each cast is a function from the state to a transition; every
/// event it sees is logged.
struct Probe {
    log: mpsc::UnboundedSender<String>,
    enter: bool,
    /// What the next enter call returns (for the bad-transition test).
    enter_then: Option<Transition<Probe>>,
}

impl StateMachine for Probe {
    type State = St;
    type Call = ();
    type Reply = St;
    type Cast = Step;
    type Info = &'static str;
    type Timeout = &'static str;

    async fn init(
        &mut self,
        _: &mut StateMachineContext<Self>,
    ) -> Result<(St, Vec<Action<Self>>), ExitReason> {
        Ok((St::A, vec![]))
    }

    fn state_enter() -> bool {
        true
    }

    async fn handle_event(
        &mut self,
        state: &St,
        event: StateEvent<Self>,
        _: &mut StateMachineContext<Self>,
    ) -> Transition<Self> {
        let log = |s: String| {
            let _ = self.log.send(s);
        };
        match event {
            StateEvent::Enter { old } => {
                if self.enter {
                    log(format!("enter {state:?} from {old:?}"));
                }
                self.enter_then.take().unwrap_or_else(Transition::keep)
            }
            StateEvent::Cast(step) => step(state),
            StateEvent::Call((), from) => {
                from.reply(state.clone());
                Transition::keep()
            }
            StateEvent::Info(tag) if *state == St::A && tag.starts_with("p:") => {
                log(format!("postponing {tag}"));
                Transition::keep().postpone(StateEvent::Info(tag))
            }
            StateEvent::Info("panic") => panic!("handler blew up"),
            StateEvent::Info(tag) => {
                log(format!("info {tag} in {state:?}"));
                Transition::keep()
            }
            StateEvent::StateTimeout(m) => {
                log(format!("state_timeout {m} in {state:?}"));
                Transition::keep()
            }
            StateEvent::EventTimeout(m) => {
                log(format!("event_timeout {m} in {state:?}"));
                Transition::keep()
            }
            StateEvent::Timeout { name, msg } => {
                log(format!("timeout {name}={msg} in {state:?}"));
                Transition::keep()
            }
            other => {
                log(format!("other {other:?}"));
                Transition::keep()
            }
        }
    }

    async fn terminate(
        &mut self,
        reason: &ExitReason,
        state: &St,
        _: &mut StateMachineContext<Self>,
    ) {
        let _ = self.log.send(format!("terminate {reason} in {state:?}"));
    }
}

async fn start(
    enter: bool,
) -> (
    Node,
    StateMachineRef<Probe>,
    mpsc::UnboundedReceiver<String>,
) {
    let node = Node::new("t");
    let (tx, rx) = mpsc::unbounded_channel();
    let m = statem::start(
        &node,
        Probe {
            log: tx,
            enter,
            enter_then: None,
        },
    )
    .await
    .unwrap();
    (node, m, rx)
}

fn step(f: impl FnOnce(&St) -> Transition<Probe> + Send + 'static) -> Step {
    Box::new(f)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an event in time")
        .expect("log open")
}

async fn nothing_within(rx: &mut mpsc::UnboundedReceiver<String>, d: Duration) {
    if let Ok(Some(s)) = tokio::time::timeout(d, rx.recv()).await {
        panic!("unexpected event: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changes_calls_and_enter_calls() {
    let (node, m, mut rx) = start(true).await;
    assert_eq!(
        next(&mut rx).await,
        "enter A from A",
        "the initial state gets an enter call"
    );
    assert_eq!(m.call(()).await, Ok(St::A));
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(next(&mut rx).await, "enter B from A");
    assert_eq!(m.call(()).await, Ok(St::B));
    // A transition to the same state is not a state change: no enter call.
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(m.call(()).await, Ok(St::B));
    nothing_within(&mut rx, SHORT).await;
    assert_eq!(node.process_info(m.pid()).unwrap().behaviour, "statem");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_timeout_fires_when_staying_and_is_cancelled_by_a_state_change() {
    let (_node, m, mut rx) = start(false).await;
    m.cast(step(|_| {
        Transition::keep().with(Action::StateTimeout(Duration::from_millis(30), "stay"))
    }))
    .unwrap();
    assert_eq!(next(&mut rx).await, "state_timeout stay in A");
    m.cast(step(|_| {
        Transition::keep().with(Action::StateTimeout(Duration::from_millis(500), "never"))
    }))
    .unwrap();
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    nothing_within(&mut rx, Duration::from_millis(700)).await;
    assert_eq!(m.call(()).await, Ok(St::B));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_timeout_is_cancelled_by_any_event() {
    let (_node, m, mut rx) = start(false).await;
    m.cast(step(|_| {
        Transition::keep().with(Action::EventTimeout(Duration::from_millis(30), "idle"))
    }))
    .unwrap();
    assert_eq!(next(&mut rx).await, "event_timeout idle in A");
    m.cast(step(|_| {
        Transition::keep().with(Action::EventTimeout(Duration::from_millis(500), "idle2"))
    }))
    .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    m.info("poke").unwrap();
    assert_eq!(next(&mut rx).await, "info poke in A");
    nothing_within(&mut rx, Duration::from_millis(700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_timeout_survives_state_changes_and_can_be_cancelled() {
    let (_node, m, mut rx) = start(false).await;
    m.cast(step(|_| {
        Transition::keep().with(Action::Timeout("t1", Duration::from_millis(300), "one"))
    }))
    .unwrap();
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    m.cast(step(|_| Transition::next(St::C))).unwrap();
    assert_eq!(next(&mut rx).await, "timeout t1=one in C");
    m.cast(step(|_| {
        Transition::keep().with(Action::Timeout("t2", Duration::from_millis(500), "two"))
    }))
    .unwrap();
    m.cast(step(|_| {
        Transition::keep().with(Action::CancelTimeout("t2"))
    }))
    .unwrap();
    nothing_within(&mut rx, Duration::from_millis(700)).await;
    // Setting a generic timeout again replaces it.
    m.cast(step(|_| {
        Transition::keep().with(Action::Timeout("t3", Duration::from_millis(500), "first"))
    }))
    .unwrap();
    m.cast(step(|_| {
        Transition::keep().with(Action::Timeout("t3", Duration::from_millis(60), "second"))
    }))
    .unwrap();
    assert_eq!(next(&mut rx).await, "timeout t3=second in C");
    nothing_within(&mut rx, Duration::from_millis(700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postponed_events_come_back_after_a_state_change_in_order() {
    let (_node, m, mut rx) = start(false).await;
    m.info("p:1").unwrap();
    m.info("p:2").unwrap();
    m.info("now").unwrap();
    assert_eq!(next(&mut rx).await, "postponing p:1");
    assert_eq!(next(&mut rx).await, "postponing p:2");
    assert_eq!(next(&mut rx).await, "info now in A");
    m.info("p:3").unwrap();
    assert_eq!(next(&mut rx).await, "postponing p:3");
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    m.info("after").unwrap();
    assert_eq!(next(&mut rx).await, "info p:1 in B");
    assert_eq!(next(&mut rx).await, "info p:2 in B");
    assert_eq!(next(&mut rx).await, "info p:3 in B");
    assert_eq!(next(&mut rx).await, "info after in B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_given_as_actions_and_calls_to_a_dead_machine() {
    let (_node, m, _rx) = start(false).await;
    assert_eq!(m.stop(ExitReason::Normal).await, ExitReason::Normal);
    let t = std::time::Instant::now();
    assert_eq!(m.call(()).await, Err(CallError::Exited(ExitReason::Normal)));
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_ends_the_machine_after_terminate() {
    let (_node, m, mut rx) = start(false).await;
    m.cast(step(|_| Transition::next(St::C))).unwrap();
    m.info("panic").unwrap();
    assert_eq!(next(&mut rx).await, "terminate panic: handler blew up in C");
    assert_eq!(
        m.wait_exit().await,
        ExitReason::Panic("handler blew up".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enter_call_that_changes_state_stops_the_machine() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let m = statem::start(
        &node,
        Probe {
            log: tx,
            enter: false,
            enter_then: Some(Transition::next(St::C)),
        },
    )
    .await
    .unwrap();
    let reason = tokio::time::timeout(WAIT, m.wait_exit()).await.unwrap();
    match reason {
        ExitReason::Error(e) => assert!(e.contains("may not change the state"), "{e}"),
        other => panic!("expected an error, got {other}"),
    }
    assert!(next(&mut rx).await.starts_with("terminate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_runs_terminate_with_the_state() {
    let (_node, m, mut rx) = start(false).await;
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(m.call(()).await, Ok(St::B));
    assert_eq!(m.stop(ExitReason::Shutdown).await, ExitReason::Shutdown);
    assert_eq!(next(&mut rx).await, "terminate shutdown in B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_can_stop_with_a_reply() {
    let (_node, m, mut rx) = start(false).await;
    let (from, reply) = girder::ReplyTo::pair();
    m.cast(step(move |_| {
        Transition::stop(ExitReason::error("done")).with(Action::Reply(from, St::C))
    }))
    .unwrap();
    assert_eq!(reply.await.unwrap(), St::C);
    assert_eq!(next(&mut rx).await, "terminate error: done in A");
}
