//! Calls carry their deadline (issue 14): the callee reads the time left, sees that its caller
//! gave up, and a request whose deadline passed while it waited is dropped before it starts.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::statem::{Action, StateEvent, StateMachineContext, Transition};
use girder::{CallError, Flow, Node, ReplyTo, Server, ServerContext, StateMachine};
use girder_testkit::within;

/// Takes 50 ms per call and counts the calls it started.
struct Slow(Arc<AtomicU32>);

impl Server for Slow {
    type Call = ReplyTo<u32>;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<u32>, _: &mut ServerContext<Self>) -> Flow {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        from.reply(n);
        Flow::Continue
    }
}

#[tokio::test]
async fn requests_whose_callers_gave_up_are_not_started() {
    let node = Node::new("deadlines");
    let started = Arc::new(AtomicU32::new(0));
    let slow = girder::server::start(&node, Slow(started.clone()))
        .await
        .unwrap();
    // 20 callers who each wait 120 ms: the server gets through two or three in that time.
    let mut calls = Vec::new();
    for _ in 0..20 {
        let slow = slow.clone();
        calls.push(tokio::spawn(async move {
            slow.call_timeout(|r| r, Duration::from_millis(120)).await
        }));
    }
    let mut answered = 0;
    for c in calls {
        match within("a call", c).await.unwrap() {
            Ok(_) => answered += 1,
            Err(CallError::Timeout(_)) => {}
            Err(e) => panic!("a late call ends as a timeout, not {e:?}"),
        }
    }
    // Let the server get through its queue.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = started.load(Ordering::SeqCst);
    let expired = node.stats().calls_expired;
    assert!((1..=4).contains(&answered), "{answered} answered");
    assert!(
        started <= 5,
        "work for callers that gave up is not started: {started} of 20 started"
    );
    assert_eq!(
        started as u64 + expired,
        20,
        "each request either started or counted as expired"
    );
}

/// Holds each call's handle and answers when asked, saying what it saw.
struct Holder(Vec<ReplyTo<(bool, Option<Duration>)>>);

impl Server for Holder {
    type Call = ReplyTo<(bool, Option<Duration>)>;
    type Cast = ();
    type Info = ();

    async fn handle_call(
        &mut self,
        from: ReplyTo<(bool, Option<Duration>)>,
        _: &mut ServerContext<Self>,
    ) -> Flow {
        assert!(
            !from.caller_gave_up(),
            "the caller waits when the call starts"
        );
        self.0.push(from);
        Flow::Continue
    }

    async fn handle_cast(&mut self, _: (), _: &mut ServerContext<Self>) -> Flow {
        for from in self.0.drain(..) {
            let seen = (from.caller_gave_up(), from.time_left());
            from.reply(seen);
        }
        Flow::Continue
    }
}

#[tokio::test]
async fn a_callee_sees_its_caller_give_up() {
    let node = Node::new("deadlines");
    let holder = girder::server::start(&node, Holder(Vec::new()))
        .await
        .unwrap();
    let gave_up = holder.call_timeout(|r| r, Duration::from_millis(30)).await;
    assert!(matches!(gave_up, Err(CallError::Timeout(_))));
    // The handle it holds knows.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let h = holder.clone();
    tokio::spawn(async move {
        let _ = tx.send(h.call_timeout(|r| r, Duration::from_secs(5)).await);
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    holder.cast(()).unwrap();
    let (gave_up, left) = within("the reply", rx).await.unwrap().unwrap();
    assert!(!gave_up, "a caller still waiting has not given up");
    let left = left.expect("a call with a timeout has a deadline");
    assert!(
        left > Duration::from_secs(4) && left <= Duration::from_secs(5),
        "{left:?}"
    );
    // A call with no timeout has no deadline.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let h = holder.clone();
    tokio::spawn(async move {
        let _ = tx.send(h.call_timeout(|r| r, Duration::MAX).await);
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    holder.cast(()).unwrap();
    assert_eq!(within("the reply", rx).await.unwrap(), Ok((false, None)));
}

/// A state machine that takes 50 ms per call.
struct SlowMachine(Arc<AtomicU32>);

impl StateMachine for SlowMachine {
    type State = ();
    type Call = ReplyTo<u32>;
    type Cast = ();
    type Info = ();
    type Timeout = ();

    async fn init(
        &mut self,
        _: &mut StateMachineContext<Self>,
    ) -> Result<((), Vec<Action<Self>>), girder::InitError> {
        Ok(((), vec![]))
    }

    async fn handle_event(
        &mut self,
        _: &(),
        event: StateEvent<Self>,
        _: &mut StateMachineContext<Self>,
    ) -> Transition<Self> {
        if let StateEvent::Call(from) = event {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            from.reply(n);
        }
        Transition::keep()
    }
}

#[tokio::test]
async fn a_state_machine_drops_calls_whose_callers_gave_up_too() {
    let node = Node::new("deadlines");
    let started = Arc::new(AtomicU32::new(0));
    let m = girder::statem::start(&node, SlowMachine(started.clone()))
        .await
        .unwrap();
    let mut calls = Vec::new();
    for _ in 0..20 {
        let m = m.clone();
        calls.push(tokio::spawn(async move {
            m.call_timeout(|r| r, Duration::from_millis(120)).await
        }));
    }
    for c in calls {
        let _ = within("a call", c).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = started.load(Ordering::SeqCst);
    assert!(started <= 5, "{started} of 20 started");
    assert_eq!(started as u64 + node.stats().calls_expired, 20);
}
