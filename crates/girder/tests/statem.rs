//! Semantics of the StateMachine (gen_statem) behaviour.

use std::time::Duration;

use girder::statem::{
    self, Action, StateEvent, StateMachine, StateMachineContext, StateMachineRef, Transition,
};
use girder::{CallError, Context, ExitReason, Node, ReplyTo, SpawnOptions, StartError};
use girder_testkit::within;
use tokio::sync::mpsc;

const SHORT: Duration = Duration::from_millis(50);

#[derive(Clone, Debug, PartialEq)]
enum St {
    A,
    B,
    C,
}

type Step = Box<dyn FnOnce(&St) -> Transition<Probe> + Send>;

/// What a call asks for.
#[derive(Debug)]
enum Ask {
    /// The current state, replied at once through the handle.
    State,
    /// The current state, replied with [`Action::Reply`].
    StateByAction,
    /// Panic while handling the call.
    Panic,
}

/// A machine driven by the test: each cast is a function from the state to a transition; every
/// event it sees is logged.
struct Probe {
    log: mpsc::UnboundedSender<String>,
    /// Log enter calls.
    enter: bool,
    /// A state timeout every enter call sets.
    enter_timeout: Option<Duration>,
    /// What the enter call into this state returns (for the bad-transition tests).
    enter_then: Option<(St, Transition<Probe>)>,
}

impl Probe {
    fn new(log: mpsc::UnboundedSender<String>) -> Self {
        Probe {
            log,
            enter: false,
            enter_timeout: None,
            enter_then: None,
        }
    }
}

impl StateMachine for Probe {
    type State = St;
    type Call = (Ask, ReplyTo<St>);
    type Cast = Step;
    type Info = &'static str;
    type Timeout = &'static str;

    async fn init(
        &mut self,
        _: &mut StateMachineContext<Self>,
    ) -> Result<(St, Vec<Action<Self>>), girder::InitError> {
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
                if matches!(&self.enter_then, Some((s, _)) if s == state) {
                    return self.enter_then.take().expect("matched").1;
                }
                match self.enter_timeout {
                    Some(d) => Transition::keep().with(Action::StateTimeout(d, "entered")),
                    None => Transition::keep(),
                }
            }
            StateEvent::Cast(step) => step(state),
            StateEvent::Call((Ask::State, from)) => {
                from.reply(state.clone());
                Transition::keep()
            }
            StateEvent::Call((Ask::StateByAction, from)) => {
                Transition::keep().with(Action::reply(from, state.clone()))
            }
            StateEvent::Call((Ask::Panic, _)) => panic!("call blew up"),
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

type Started = (
    Node,
    StateMachineRef<Probe>,
    mpsc::UnboundedReceiver<String>,
);

async fn start(enter: bool) -> Started {
    start_probe(|p| Probe { enter, ..p }).await
}

async fn start_probe(set: impl FnOnce(Probe) -> Probe) -> Started {
    let node = Node::new("t");
    let (tx, rx) = mpsc::unbounded_channel();
    let m = statem::start(&node, set(Probe::new(tx))).await.unwrap();
    (node, m, rx)
}

fn step(f: impl FnOnce(&St) -> Transition<Probe> + Send + 'static) -> Step {
    Box::new(f)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<String>) -> String {
    within("an event", rx.recv()).await.expect("log open")
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
    assert_eq!(m.call(|r| (Ask::State, r)).await, Ok(St::A));
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(next(&mut rx).await, "enter B from A");
    assert_eq!(m.call(|r| (Ask::State, r)).await, Ok(St::B));
    // A transition to the same state is not a state change: no enter call.
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(m.call(|r| (Ask::State, r)).await, Ok(St::B));
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
    assert_eq!(m.call(|r| (Ask::State, r)).await, Ok(St::B));
    // Setting it again restarts it with the new content; an explicit cancel also works.
    m.cast(step(|_| {
        Transition::keep().with(Action::StateTimeout(Duration::from_millis(500), "old"))
    }))
    .unwrap();
    m.cast(step(|_| {
        Transition::keep().with(Action::StateTimeout(Duration::from_millis(50), "new"))
    }))
    .unwrap();
    assert_eq!(next(&mut rx).await, "state_timeout new in B");
    m.cast(step(|_| {
        Transition::keep()
            .with(Action::StateTimeout(
                Duration::from_millis(300),
                "cancelled",
            ))
            .with(Action::CancelStateTimeout)
    }))
    .unwrap();
    nothing_within(&mut rx, Duration::from_millis(700)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enter_calls_set_actions_for_the_initial_state_and_every_entered_state() {
    let (_node, m, mut rx) = start_probe(|p| Probe {
        enter: true,
        enter_timeout: Some(Duration::from_millis(50)),
        ..p
    })
    .await;
    assert_eq!(next(&mut rx).await, "enter A from A");
    assert_eq!(next(&mut rx).await, "state_timeout entered in A");
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(next(&mut rx).await, "enter B from A");
    assert_eq!(next(&mut rx).await, "state_timeout entered in B");
    // Leaving C before its enter timeout fires cancels it; A's own runs. (The move on to A is
    // an inserted event, so it comes right after C's enter call whatever the scheduling.)
    m.cast(step(|_| {
        Transition::next(St::C).with(Action::NextEvent(StateEvent::Cast(step(|_| {
            Transition::next(St::A)
        }))))
    }))
    .unwrap();
    assert_eq!(next(&mut rx).await, "enter C from B");
    assert_eq!(next(&mut rx).await, "enter A from C");
    assert_eq!(next(&mut rx).await, "state_timeout entered in A");
    nothing_within(&mut rx, Duration::from_millis(300)).await;
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
async fn inserted_events_come_first_in_order_then_released_postponed_ones() {
    let (_node, m, mut rx) = start(false).await;
    m.cast(step(|_| {
        Transition::keep()
            .with(Action::NextEvent(StateEvent::Info("n1")))
            .with(Action::NextEvent(StateEvent::Info("n2")))
    }))
    .unwrap();
    m.info("queued").unwrap();
    assert_eq!(next(&mut rx).await, "info n1 in A");
    assert_eq!(next(&mut rx).await, "info n2 in A");
    assert_eq!(next(&mut rx).await, "info queued in A");
    // With a state change: inserted events, then the released postponed ones, then the mailbox.
    m.info("p:1").unwrap();
    assert_eq!(next(&mut rx).await, "postponing p:1");
    m.cast(step(|_| {
        Transition::next(St::B).with(Action::NextEvent(StateEvent::Info("n3")))
    }))
    .unwrap();
    m.info("later").unwrap();
    assert_eq!(next(&mut rx).await, "info n3 in B");
    assert_eq!(next(&mut rx).await, "info p:1 in B");
    assert_eq!(next(&mut rx).await, "info later in B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_answered_directly_or_by_a_reply_action() {
    let (_node, m, _rx) = start(false).await;
    assert_eq!(m.call(|r| (Ask::State, r)).await, Ok(St::A));
    m.cast(step(|_| Transition::next(St::C))).unwrap();
    assert_eq!(m.call(|r| (Ask::StateByAction, r)).await, Ok(St::C));
    assert_eq!(
        m.call_timeout(|r| (Ask::StateByAction, r), Duration::from_secs(1))
            .await,
        Ok(St::C)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_dead_machine_errors_at_once() {
    let (_node, m, _rx) = start(false).await;
    assert_eq!(m.stop(ExitReason::Normal).await, ExitReason::Normal);
    let t = std::time::Instant::now();
    assert_eq!(
        m.call(|r| (Ask::State, r)).await,
        Err(CallError::Exited(ExitReason::Normal))
    );
    assert!(m.cast(step(|_| Transition::keep())).is_err());
    assert!(t.elapsed() < Duration::from_secs(1));

    // A machine that dies while handling the call: the caller learns why, at once.
    let (_node, m, mut rx) = start(false).await;
    let t = std::time::Instant::now();
    assert_eq!(
        m.call(|r| (Ask::Panic, r)).await,
        Err(CallError::Exited(ExitReason::Panic("call blew up".into())))
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(next(&mut rx).await, "terminate panic: call blew up in A");
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

async fn exit_error(m: &StateMachineRef<Probe>) -> String {
    match within("the machine to exit", m.wait_exit()).await {
        ExitReason::Error(e) => e,
        other => panic!("expected an error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enter_call_that_changes_state_stops_the_machine() {
    // In the initial state's enter call: the start succeeded, then the machine stops.
    let (_node, m, mut rx) = start_probe(|p| Probe {
        enter_then: Some((St::A, Transition::next(St::C))),
        ..p
    })
    .await;
    assert_eq!(
        exit_error(&m).await,
        "a state enter call may not change the state (from A to C)"
    );
    assert_eq!(
        next(&mut rx).await,
        "terminate error: a state enter call may not change the state (from A to C) in A"
    );

    // In a later state's enter call.
    let (_node, m, mut rx) = start_probe(|p| Probe {
        enter_then: Some((St::B, Transition::next(St::A))),
        ..p
    })
    .await;
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(
        exit_error(&m).await,
        "a state enter call may not change the state (from B to A)"
    );
    assert!(next(&mut rx).await.ends_with("in B"), "terminate in B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enter_call_may_not_postpone_or_insert_events() {
    let (_node, m, _rx) = start_probe(|p| Probe {
        enter_then: Some((St::B, Transition::keep().postpone(StateEvent::Info("x")))),
        ..p
    })
    .await;
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(
        exit_error(&m).await,
        "a state enter call may not postpone (in B)"
    );

    let (_node, m, _rx) = start_probe(|p| Probe {
        enter_then: Some((
            St::B,
            Transition::keep().with(Action::NextEvent(StateEvent::Info("x"))),
        )),
        ..p
    })
    .await;
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(
        exit_error(&m).await,
        "a state enter call may not insert events (in B)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_linked_to_a_trapping_parent_stops_with_terminate_on_parent_exit() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (mtx, mrx) = tokio::sync::oneshot::channel();
    let parent = node.spawn(move |mut ctx: Context<()>| async move {
        let m = statem::start_with(
            ctx.node(),
            Probe::new(tx),
            SpawnOptions::new().link(ctx.pid()).trap_exit(true),
            None,
        )
        .await
        .unwrap();
        mtx.send(m).unwrap();
        ctx.recv().await;
        ExitReason::error("parent failed")
    });
    let m = mrx.await.unwrap();

    // An exit from another linked process is an event the machine handles (and survives).
    let (machine, (linked, is_linked)) = (m.pid(), tokio::sync::oneshot::channel());
    let other = node.spawn(move |mut ctx: Context<()>| async move {
        ctx.link(machine).unwrap();
        linked.send(()).unwrap();
        ctx.recv().await;
        ExitReason::error("other failed")
    });
    is_linked.await.unwrap();
    other.send(()).unwrap();
    assert_eq!(
        next(&mut rx).await,
        format!("other Exit({}, error: other failed)", other.pid())
    );
    assert_eq!(m.call(|r| (Ask::State, r)).await, Ok(St::A));

    parent.send(()).unwrap();
    assert_eq!(next(&mut rx).await, "terminate error: parent failed in A");
    assert_eq!(m.wait_exit().await, ExitReason::error("parent failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_machine_is_found_and_a_failing_init_aborts_the_start() {
    let node = Node::new("t");
    let (tx, _rx) = mpsc::unbounded_channel();
    let m = statem::start_with(
        &node,
        Probe::new(tx.clone()),
        SpawnOptions::new(),
        Some("probe"),
    )
    .await
    .unwrap();
    let again = statem::start_with(&node, Probe::new(tx), SpawnOptions::new(), Some("probe")).await;
    assert_eq!(again.unwrap_err(), StartError::AlreadyStarted(m.pid()));
    let found = StateMachineRef::<Probe>::lookup(&node, "probe").unwrap();
    assert_eq!(found.call(|r| (Ask::State, r)).await, Ok(St::A));

    struct Refuses;
    impl StateMachine for Refuses {
        type State = ();
        type Call = ((), ReplyTo<()>);
        type Cast = ();
        type Info = ();
        type Timeout = ();
        async fn init(
            &mut self,
            _: &mut StateMachineContext<Self>,
        ) -> Result<((), Vec<Action<Self>>), girder::InitError> {
            Err(ExitReason::error("bad config").into())
        }
        async fn handle_event(
            &mut self,
            _: &(),
            _: StateEvent<Self>,
            _: &mut StateMachineContext<Self>,
        ) -> Transition<Self> {
            Transition::keep()
        }
    }
    let before = node.process_count();
    assert_eq!(
        statem::start(&node, Refuses).await.unwrap_err(),
        StartError::Init(ExitReason::error("bad config"))
    );
    assert_eq!(node.process_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_runs_terminate_with_the_state() {
    let (_node, m, mut rx) = start(false).await;
    m.cast(step(|_| Transition::next(St::B))).unwrap();
    assert_eq!(m.call(|r| (Ask::State, r)).await, Ok(St::B));
    assert_eq!(m.stop(ExitReason::Shutdown).await, ExitReason::Shutdown);
    assert_eq!(next(&mut rx).await, "terminate shutdown in B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_can_stop_with_a_reply() {
    let (_node, m, mut rx) = start(false).await;
    let (from, reply) = girder::ReplyTo::pair();
    m.cast(step(move |_| {
        Transition::stop(ExitReason::error("done")).with(Action::reply(from, St::C))
    }))
    .unwrap();
    assert_eq!(reply.await.unwrap(), St::C);
    assert_eq!(next(&mut rx).await, "terminate error: done in A");
}
