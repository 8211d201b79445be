//! `sys` for every behaviour, after the cases of OTP's `sys_SUITE` and the `sys` cases of
//! `gen_server_SUITE` and `gen_statem_SUITE`: get_state, suspend/resume (messages and calls wait,
//! timeouts wait, a stop does not), traces (order, contents only when shown, a slow reader, too
//! many), and what a plain process, a dead one and a busy one answer.

use std::time::Duration;

use girder::server::TraceMsg;
use girder::statem::{self, Action, StateEvent, StateMachine, StateMachineContext, Transition};
use girder::supervisor::{ChildSpec, RestartStrategy, Supervisor};
use girder::sys::{self, StateView, SysError, Traced, MAX_TRACES};
use girder::{
    CallError, Context, EventHandler, EventManager, ExitReason, Flow, Node, Pid, ReplyTo, Server,
    ServerContext,
};
use girder_testkit::{eventually_async, within};

/// A counter that shows its state (through Debug) and its messages.
#[derive(Debug, Default)]
struct Counter {
    n: u64,
}

#[derive(Debug)]
enum Req {
    Get(ReplyTo<u64>),
}

impl Server for Counter {
    type Call = Req;
    type Cast = u64;
    type Info = &'static str;

    async fn handle_call(&mut self, req: Req, _: &mut ServerContext<Self>) -> Flow {
        let Req::Get(from) = req;
        from.reply(self.n);
        Flow::Continue
    }

    async fn handle_cast(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
        self.n += n;
        Flow::Continue
    }

    fn state_view(&self) -> StateView {
        StateView::debug(self)
    }

    fn trace_view(msg: TraceMsg<'_, Self>) -> Option<String> {
        Some(format!("{msg:?}"))
    }
}

/// The same, showing nothing (the default).
struct Private(u64);

impl Server for Private {
    type Call = ();
    type Cast = u64;
    type Info = ();
    async fn handle_cast(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
        self.0 += n;
        Flow::Continue
    }
}

async fn next(trace: &mut sys::Trace) -> sys::TraceEvent {
    within("a trace event", trace.next())
        .await
        .expect("the trace is open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_state_shows_only_what_the_server_opts_into() {
    let node = Node::new("t");
    let shown = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    shown.cast(5).unwrap();
    assert_eq!(shown.call(Req::Get).await.unwrap(), 5);
    let state = shown.get_state().await.unwrap();
    assert_eq!(state.pid, shown.pid());
    assert_eq!(state.behaviour, "server");
    assert_eq!(
        state.view,
        StateView::Text("Counter {\n    n: 5,\n}".into())
    );
    assert_eq!(
        (state.state, state.suspended, state.tracers),
        (None, false, 0)
    );

    let hidden = girder::server::start(&node, Private(0)).await.unwrap();
    let state = sys::get_state(&node, hidden.pid()).await.unwrap();
    assert_eq!(state.view, StateView::Hidden);
    // Serializable (the ops API writes its own view of it, with pids as they print).
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(json["view"], serde_json::json!({"kind": "hidden"}));
}

/// sys_SUITE suspend/resume: messages and calls wait while suspended; `sys` still answers;
/// nothing is lost or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_server_handles_nothing_until_resumed() {
    let node = Node::new("t");
    let s = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    s.suspend().await.unwrap();
    s.suspend().await.unwrap(); // twice is once
    for i in 1..=100 {
        s.cast(i).unwrap();
    }
    let call = s.call_timeout(Req::Get, Duration::from_millis(100)).await;
    assert!(matches!(call, Err(CallError::Timeout(_))), "{call:?}");
    let state = s.get_state().await.unwrap();
    assert!(state.suspended);
    assert_eq!(
        state.view,
        StateView::Text("Counter {\n    n: 0,\n}".into())
    );
    // The casts and the call that timed out (handled after the resume; its caller has gone).
    assert_eq!(s.mailbox_len(), 101);
    s.resume().await.unwrap();
    assert_eq!(s.call(Req::Get).await.unwrap(), 5050);
    assert!(!s.get_state().await.unwrap().suspended);
    s.resume().await.unwrap(); // resuming a running server does nothing
}

/// A suspended server still stops: from `stop`, and from its supervisor's shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_server_still_stops() {
    let node = Node::new("t");
    let s = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    s.suspend().await.unwrap();
    assert_eq!(
        within("a suspended server to stop", s.stop(ExitReason::Shutdown)).await,
        ExitReason::Shutdown
    );

    let sup = Supervisor::builder()
        .child(ChildSpec::server("counter", Counter::default).trap_exit(true))
        .start(&node)
        .await
        .unwrap();
    let child: Pid = sup.which_children().await.unwrap()[0].pid.unwrap();
    sys::suspend(&node, child).await.unwrap();
    within(
        "the supervisor stops its suspended child",
        sup.stop(ExitReason::Shutdown),
    )
    .await;
    assert!(!node.is_alive(child));
}

/// Trace: each event in order, with contents the server shows; suspend and resume; the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_shows_each_event_in_order() {
    let node = Node::new("t");
    let s = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    let mut trace = s.trace().await.unwrap();
    assert_eq!(trace.pid(), s.pid());
    s.cast(7).unwrap();
    s.info("ping").unwrap();
    assert_eq!(s.call(Req::Get).await.unwrap(), 7);
    s.suspend().await.unwrap();
    s.resume().await.unwrap();
    s.stop(ExitReason::Normal).await;

    let e = next(&mut trace).await;
    assert_eq!(
        (e.event, e.detail.as_deref()),
        (Traced::Cast, Some("Cast(7)"))
    );
    let e = next(&mut trace).await;
    assert_eq!(
        (e.event, e.detail.as_deref()),
        (Traced::Info, Some("Info(\"ping\")"))
    );
    let e = next(&mut trace).await;
    assert_eq!(e.event, Traced::Call);
    assert!(
        e.detail.unwrap().starts_with("Call(Get("),
        "the request shows"
    );
    assert_eq!(next(&mut trace).await.event, Traced::Suspended);
    assert_eq!(next(&mut trace).await.event, Traced::Resumed);
    assert_eq!(
        next(&mut trace).await.event,
        Traced::Stopping {
            reason: "normal".into()
        }
    );
    assert!(
        trace.next().await.is_none(),
        "the trace ends with the process"
    );
}

/// A server that shows nothing traces kinds only; a dropped trace detaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contents_are_hidden_unless_shown_and_a_dropped_trace_detaches() {
    let node = Node::new("t");
    let s = girder::server::start(&node, Private(0)).await.unwrap();
    let mut trace = s.trace().await.unwrap();
    s.cast(1).unwrap();
    let e = next(&mut trace).await;
    assert_eq!((e.event, e.detail), (Traced::Cast, None));
    assert_eq!(s.get_state().await.unwrap().tracers, 1);
    drop(trace);
    assert_eq!(s.get_state().await.unwrap().tracers, 0);
}

/// A trace read too slowly drops events (and counts them, and says so in the stream once the
/// reader has read up, whether or not another event comes); the server never waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_trace_never_holds_the_server_back() {
    let node = Node::new("t");
    let s = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    let mut trace = s.trace().await.unwrap();
    let n = sys::TRACE_CAPACITY as u64 * 3;
    for _ in 0..n {
        s.cast(1).unwrap();
    }
    assert_eq!(s.call(Req::Get).await.unwrap(), n);
    // The call itself is one more event.
    let dropped = n + 1 - sys::TRACE_CAPACITY as u64;
    assert_eq!(trace.dropped(), dropped);
    for _ in 0..sys::TRACE_CAPACITY {
        next(&mut trace).await;
    }
    // Read up: the notice of what was missed comes next, with no further event needed (the
    // last events were the dropped ones; before, the notice waited for an event that might
    // never come, and a reader waiting for it waited for good).
    assert_eq!(
        next(&mut trace).await.event,
        Traced::Dropped { count: dropped }
    );
    // Told once: the next event is just the event.
    s.cast(1).unwrap();
    assert_eq!(next(&mut trace).await.event, Traced::Cast);
    assert_eq!(trace.dropped(), dropped);
}

/// A server whose views panic, or are huge: looking at it never stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_panics_or_is_huge_harms_nothing() {
    struct Fragile;
    impl Server for Fragile {
        type Call = ReplyTo<u32>;
        type Cast = usize;
        type Info = ();
        async fn handle_call(&mut self, from: ReplyTo<u32>, _: &mut ServerContext<Self>) -> Flow {
            from.reply(7);
            Flow::Continue
        }
        fn state_view(&self) -> StateView {
            panic!("cannot show this")
        }
        fn trace_view(msg: TraceMsg<'_, Self>) -> Option<String> {
            match msg {
                TraceMsg::Cast(n) => Some("x".repeat(*n)),
                _ => panic!("cannot show that"),
            }
        }
    }
    let node = Node::new("t");
    let s = girder::server::start(&node, Fragile).await.unwrap();
    let mut trace = s.trace().await.unwrap();
    let state = s.get_state().await.unwrap();
    let StateView::Text(text) = state.view else {
        panic!("a failed view says so")
    };
    assert!(text.contains("cannot show this"), "{text}");
    assert_eq!(s.call(|r| r).await.unwrap(), 7, "still serving");
    let e = next(&mut trace).await;
    assert_eq!(e.event, Traced::Call);
    assert!(e.detail.unwrap().contains("cannot show that"));
    s.cast(1 << 20).unwrap();
    let detail = next(&mut trace).await.detail.unwrap();
    assert!(
        detail.len() <= sys::MAX_DETAIL + 16,
        "{} bytes",
        detail.len()
    );
    assert!(detail.ends_with("(cut)"));
    assert!(s.is_alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_limited_per_process() {
    let node = Node::new("t");
    let s = girder::server::start(&node, Private(0)).await.unwrap();
    let mut traces = Vec::new();
    for _ in 0..MAX_TRACES {
        traces.push(s.trace().await.unwrap());
    }
    assert_eq!(
        s.trace().await.unwrap_err(),
        SysError::TooManyTraces(s.pid())
    );
    traces.pop();
    traces.push(s.trace().await.expect("room again once one is dropped"));
}

/// What is not a running local behaviour says so, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_dead_and_remote_processes_are_refused() {
    let node = Node::new("t");
    let plain = node.spawn(|mut ctx: Context<u32>| async move {
        loop {
            if let girder::Event::Message(0) = ctx.recv().await {
                return ExitReason::Normal;
            }
        }
    });
    let pid = plain.pid();
    assert_eq!(
        sys::get_state(&node, pid).await,
        Err(SysError::NotABehaviour(pid))
    );
    assert_eq!(
        sys::suspend(&node, pid).await,
        Err(SysError::NotABehaviour(pid))
    );
    // The plain process goes on as before.
    plain.send(0).unwrap();
    plain.wait_exit().await;
    assert_eq!(sys::get_state(&node, pid).await, Err(SysError::NoProc(pid)));
    let remote = Pid::new(3, 1, 7);
    assert_eq!(
        sys::resume(&node, remote).await,
        Err(SysError::Remote(remote))
    );
}

/// A behaviour busy in a long callback answers when it returns, or the request times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_behaviour_times_out() {
    struct Busy;
    impl Server for Busy {
        type Call = ();
        type Cast = Duration;
        type Info = ();
        async fn handle_cast(&mut self, d: Duration, _: &mut ServerContext<Self>) -> Flow {
            tokio::time::sleep(d).await;
            Flow::Continue
        }
    }
    let node = Node::new("t");
    let s = girder::server::start(&node, Busy).await.unwrap();
    s.cast(sys::TIMEOUT + Duration::from_secs(1)).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        s.get_state().await,
        Err(SysError::Timeout(s.pid(), sys::TIMEOUT))
    );
}

#[derive(Clone, Debug, PartialEq)]
enum Light {
    Off,
    On,
}

/// A light that switches off by itself after a state timeout.
#[derive(Debug)]
struct Switch {
    flips: u32,
}

impl StateMachine for Switch {
    type State = Light;
    type Call = ReplyTo<Light>;
    type Cast = ();
    type Info = ();
    type Timeout = ();

    async fn init(
        &mut self,
        _: &mut StateMachineContext<Self>,
    ) -> Result<(Light, Vec<Action<Self>>), girder::InitError> {
        Ok((Light::Off, vec![]))
    }

    async fn handle_event(
        &mut self,
        state: &Light,
        event: StateEvent<Self>,
        _: &mut StateMachineContext<Self>,
    ) -> Transition<Self> {
        match (state, event) {
            (_, StateEvent::Call(from)) => {
                from.reply(state.clone());
                Transition::keep()
            }
            (Light::Off, StateEvent::Cast(())) => {
                self.flips += 1;
                Transition::next(Light::On)
                    .with(Action::StateTimeout(Duration::from_millis(50), ()))
            }
            (Light::On, StateEvent::StateTimeout(())) => Transition::next(Light::Off),
            _ => Transition::keep(),
        }
    }

    fn state_view(&self) -> StateView {
        StateView::debug(self)
    }
}

/// gen_statem_SUITE's sys cases: the current state and data; a suspended machine's timeouts
/// wait for the resume, its calls time out, and its state changes are traced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_shows_its_state_and_its_timeouts_wait_while_suspended() {
    let node = Node::new("t");
    let m = statem::start(&node, Switch { flips: 0 }).await.unwrap();
    let mut trace = m.trace().await.unwrap();
    let state = m.get_state().await.unwrap();
    assert_eq!(state.behaviour, "statem");
    assert_eq!(state.state.as_deref(), Some("Off"));
    assert_eq!(
        state.view,
        StateView::Text("Switch {\n    flips: 0,\n}".into())
    );

    m.cast(()).unwrap();
    assert_eq!(m.call(|r| r).await.unwrap(), Light::On);
    m.suspend().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = m.get_state().await.unwrap();
    assert_eq!(
        (state.state.as_deref(), state.suspended),
        (Some("On"), true),
        "the state timeout waits while suspended"
    );
    let call = m.call_timeout(|r| r, Duration::from_millis(50)).await;
    assert!(matches!(call, Err(CallError::Timeout(_))));
    m.resume().await.unwrap();
    eventually_async("the overdue timeout to fire once resumed", async || {
        m.get_state().await.unwrap().state.as_deref() == Some("Off")
    })
    .await;

    let events: Vec<Traced> = [
        next(&mut trace).await,
        next(&mut trace).await,
        next(&mut trace).await,
    ]
    .into_iter()
    .map(|e| e.event)
    .collect();
    assert_eq!(
        events,
        [
            Traced::Cast,
            Traced::StateChange {
                from: "Off".into(),
                to: "On".into()
            },
            Traced::Call
        ]
    );
    assert_eq!(next(&mut trace).await.event, Traced::Suspended);
    assert_eq!(next(&mut trace).await.event, Traced::Resumed);
    // The call that timed out is still handled after the resume (its caller has gone).
    assert_eq!(next(&mut trace).await.event, Traced::Call);
    assert_eq!(next(&mut trace).await.event, Traced::Timeout);
    assert_eq!(
        next(&mut trace).await.event,
        Traced::StateChange {
            from: "On".into(),
            to: "Off".into()
        }
    );
}

/// A supervisor shows its strategy and children; an event manager its handlers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_and_event_managers_show_their_children_and_handlers() {
    let node = Node::new("t");
    let sup = Supervisor::builder()
        .strategy(RestartStrategy::OneForAll)
        .child(ChildSpec::server("a", Counter::default))
        .child(ChildSpec::server("b", Counter::default))
        .start(&node)
        .await
        .unwrap();
    let state = sup.get_state().await.unwrap();
    assert_eq!(state.behaviour, "supervisor");
    let StateView::Json(view) = state.view else {
        panic!("a supervisor shows JSON")
    };
    assert_eq!(view["strategy"], "OneForAll");
    let ids: Vec<&str> = view["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    // Pids as they print, as the person reading the state knows them.
    let first = sup.which_children().await.unwrap()[0].pid.unwrap();
    assert_eq!(view["children"][0]["pid"], first.to_string());
    sup.suspend().await.unwrap();
    assert!(sup.get_state().await.unwrap().suspended);
    sup.resume().await.unwrap();

    struct Log;
    impl EventHandler<u32> for Log {
        async fn handle_event(&mut self, _: &u32) -> girder::event::HandlerFlow {
            girder::event::HandlerFlow::Continue
        }
    }
    let events: EventManager<u32> = EventManager::start(&node).await.unwrap();
    events.add_handler(Log).await.unwrap();
    let state = events.get_state().await.unwrap();
    assert_eq!(state.behaviour, "event_manager");
    let StateView::Json(view) = state.view else {
        panic!("an event manager shows JSON")
    };
    assert_eq!(view["handlers"].as_array().unwrap().len(), 1);
}

/// A suspended server takes nothing from its event sources either; nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_server_takes_nothing_from_its_sources() {
    struct Sink {
        got: Vec<u32>,
        rx: Option<tokio::sync::mpsc::Receiver<u32>>,
    }
    impl Server for Sink {
        type Call = ReplyTo<Vec<u32>>;
        type Cast = ();
        type Info = Option<u32>;
        async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
            let rx = self.rx.take().unwrap();
            ctx.add_source(tokio_stream_from(rx), |item| item);
            Ok(())
        }
        async fn handle_call(&mut self, from: Self::Call, _: &mut ServerContext<Self>) -> Flow {
            from.reply(self.got.clone());
            Flow::Continue
        }
        async fn handle_info(&mut self, item: Option<u32>, _: &mut ServerContext<Self>) -> Flow {
            self.got.extend(item);
            Flow::Continue
        }
    }
    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<u32>,
    ) -> impl futures_util::Stream<Item = u32> + Send {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
    let node = Node::new("t");
    let (tx, rx) = tokio::sync::mpsc::channel(100);
    let s = girder::server::start(
        &node,
        Sink {
            got: vec![],
            rx: Some(rx),
        },
    )
    .await
    .unwrap();
    s.suspend().await.unwrap();
    for i in 0..10 {
        tx.send(i).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(tx.capacity(), 90, "the items wait in the source");
    s.resume().await.unwrap();
    // Mailbox and sources take turns, so a call may come between two items.
    let got = eventually_async("all ten items to come through", async || {
        let got = s.call(|r| r).await.unwrap();
        (got.len() == 10).then_some(got)
    })
    .await;
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}
