//! Semantics of the EventManager (gen_event) behaviour.

use std::sync::{Arc, Mutex};

use girder::event::{
    EventError, EventHandler, EventManager, HandlerFlow, HandlerRemoved, RemoveReason,
};
use girder::{Context, Event, ExitReason, Node, SpawnOptions};
use girder_testkit::within;
use tokio::sync::mpsc;

type Seen = Arc<Mutex<Vec<String>>>;

/// Records events; panics on "boom"; asks to be removed on "bye"; refuses init if told to.
struct Recorder {
    tag: &'static str,
    seen: Seen,
    refuse: bool,
}

impl EventHandler<String> for Recorder {
    async fn init(&mut self) -> Result<(), String> {
        if self.refuse {
            return Err("not today".into());
        }
        Ok(())
    }

    async fn handle_event(&mut self, event: &String) -> HandlerFlow {
        if event == "boom" && self.tag == "fragile" {
            panic!("fragile handler broke");
        }
        self.seen
            .lock()
            .unwrap()
            .push(format!("{}:{event}", self.tag));
        if event == "bye" {
            return HandlerFlow::Remove;
        }
        HandlerFlow::Continue
    }

    async fn terminate(&mut self, reason: &RemoveReason) {
        self.seen
            .lock()
            .unwrap()
            .push(format!("{}:terminate:{reason:?}", self.tag));
    }
}

fn rec(tag: &'static str, seen: &Seen) -> Recorder {
    Recorder {
        tag,
        seen: seen.clone(),
        refuse: false,
    }
}

fn take(seen: &Seen) -> Vec<String> {
    std::mem::take(&mut *seen.lock().unwrap())
}

/// A subscriber process that forwards every removal report it gets.
async fn watch(node: &Node, m: &EventManager<String>) -> mpsc::UnboundedReceiver<HandlerRemoved> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = node.spawn(move |mut ctx: Context<HandlerRemoved>| async move {
        while let Event::Message(report) = ctx.recv().await {
            if tx.send(report).is_err() {
                break;
            }
        }
        ExitReason::Normal
    });
    m.subscribe_removals(watcher).await.unwrap();
    rx
}

async fn report(rx: &mut mpsc::UnboundedReceiver<HandlerRemoved>) -> HandlerRemoved {
    within("a report", rx.recv()).await.expect("watcher alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_exactly_the_events_sent_while_installed() {
    let node = Node::new("t");
    let m = EventManager::<String>::start(&node).await.unwrap();
    let seen = Seen::default();
    m.sync_notify("before".into()).await.unwrap();
    let a = m.add_handler(rec("a", &seen)).await.unwrap();
    m.notify("one".into()).unwrap();
    let b = m.add_handler(rec("b", &seen)).await.unwrap();
    m.notify("two".into()).unwrap();
    m.remove_handler(a).await.unwrap();
    m.sync_notify("three".into()).await.unwrap();
    assert_eq!(
        take(&seen),
        ["a:one", "a:two", "b:two", "a:terminate:Removed", "b:three"],
        "sync_notify returns after every handler has seen it, in order"
    );
    let which = m.which_handlers().await.unwrap();
    assert_eq!(which.len(), 1);
    assert_eq!(which[0].id, b);
    assert!(which[0].handler.ends_with("Recorder"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_of_one_handler_type_coexist() {
    let node = Node::new("t");
    let m = EventManager::<String>::start(&node).await.unwrap();
    let seen = Seen::default();
    let x = m.add_handler(rec("x", &seen)).await.unwrap();
    let y = m.add_handler(rec("y", &seen)).await.unwrap();
    assert_ne!(x, y);
    m.sync_notify("e".into()).await.unwrap();
    assert_eq!(take(&seen), ["x:e", "y:e"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_removed_and_reported_and_the_rest_carry_on() {
    let node = Node::new("t");
    let m = EventManager::<String>::start(&node).await.unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let watcher = node.spawn(move |mut ctx: Context<HandlerRemoved>| async move {
        if let Event::Message(report) = ctx.recv().await {
            tx.send(report).unwrap();
        }
        ExitReason::Normal
    });
    m.subscribe_removals(watcher.clone()).await.unwrap();
    let seen = Seen::default();
    m.add_handler(rec("steady", &seen)).await.unwrap();
    let fragile = m.add_handler(rec("fragile", &seen)).await.unwrap();
    m.add_handler(rec("last", &seen)).await.unwrap();
    m.notify("boom".into()).unwrap();
    m.sync_notify("after".into()).await.unwrap();
    let report = within("the removal report", rx).await.unwrap();
    assert_eq!(report.id, fragile);
    assert_eq!(report.manager, m.pid());
    assert_eq!(
        report.reason,
        RemoveReason::Panicked("fragile handler broke".into())
    );
    assert_eq!(
        take(&seen),
        [
            "steady:boom",
            "fragile:terminate:Panicked(\"fragile handler broke\")",
            "last:boom",
            "steady:after",
            "last:after"
        ]
    );
    assert_eq!(m.which_handlers().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_can_remove_itself() {
    let node = Node::new("t");
    let m = EventManager::<String>::start(&node).await.unwrap();
    let seen = Seen::default();
    m.add_handler(rec("h", &seen)).await.unwrap();
    m.sync_notify("bye".into()).await.unwrap();
    m.sync_notify("later".into()).await.unwrap();
    assert_eq!(take(&seen), ["h:bye", "h:terminate:Finished"]);
    assert!(m.which_handlers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let node = Node::new("t");
    let m = EventManager::<String>::start(&node).await.unwrap();
    let seen = Seen::default();
    let refused = m
        .add_handler(Recorder {
            tag: "r",
            seen: seen.clone(),
            refuse: true,
        })
        .await;
    assert!(
        matches!(refused, Err(EventError::InitFailed { ref reason, .. }) if reason == "not today"),
        "{refused:?}"
    );
    let id = m.add_handler(rec("h", &seen)).await.unwrap();
    m.remove_handler(id).await.unwrap();
    let err = m.remove_handler(id).await.unwrap_err();
    assert_eq!(err, EventError::UnknownHandler(id));
    assert_eq!(
        err.to_string(),
        format!("no handler with id {id} is installed")
    );
    assert_eq!(m.stop(ExitReason::Normal).await, ExitReason::Normal);
    assert_eq!(m.notify("x".into()), Err(EventError::NotRunning(m.pid())));
    assert_eq!(
        m.sync_notify("x".into()).await,
        Err(EventError::NotRunning(m.pid()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_manager_terminates_every_handler() {
    let node = Node::new("t");
    let m = EventManager::<String>::start(&node).await.unwrap();
    let seen = Seen::default();
    m.add_handler(rec("a", &seen)).await.unwrap();
    m.add_handler(rec("b", &seen)).await.unwrap();
    m.stop(ExitReason::Normal).await;
    let mut got = take(&seen);
    got.sort();
    assert_eq!(
        got,
        [
            "a:terminate:ManagerStopped(normal)",
            "b:terminate:ManagerStopped(normal)"
        ]
    );
    assert_eq!(node.process_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_whose_init_panics_is_refused_and_the_manager_lives() {
    struct Explodes;
    impl EventHandler<String> for Explodes {
        async fn init(&mut self) -> Result<(), String> {
            panic!("init blew up");
        }
        async fn handle_event(&mut self, _: &String) -> HandlerFlow {
            HandlerFlow::Continue
        }
    }
    let node = Node::new("t");
    let m = EventManager::<String>::start(&node).await.unwrap();
    let mut reports = watch(&node, &m).await;
    let r = m.add_handler(Explodes).await;
    assert!(
        matches!(r, Err(EventError::InitFailed { ref reason, .. }) if reason.contains("init blew up")),
        "{r:?}"
    );
    let got = report(&mut reports).await;
    assert!(got.handler.ends_with("Explodes"), "{got:?}");
    assert_eq!(
        got.reason,
        RemoveReason::InitFailed("panic: init blew up".into())
    );
    assert!(m.which_handlers().await.unwrap().is_empty());
    let seen = Seen::default();
    m.add_handler(rec("h", &seen)).await.unwrap();
    m.sync_notify("still here".into()).await.unwrap();
    assert_eq!(take(&seen), ["h:still here"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_leaving_is_reported_to_subscribers() {
    let node = Node::new("t");
    let m = EventManager::<String>::start(&node).await.unwrap();
    let mut reports = watch(&node, &m).await;
    let seen = Seen::default();

    let refused = m
        .add_handler(Recorder {
            tag: "r",
            seen: seen.clone(),
            refuse: true,
        })
        .await;
    assert!(refused.is_err());
    assert_eq!(
        report(&mut reports).await.reason,
        RemoveReason::InitFailed("not today".into())
    );

    let removed = m.add_handler(rec("removed", &seen)).await.unwrap();
    let finished = m.add_handler(rec("finished", &seen)).await.unwrap();
    m.remove_handler(removed).await.unwrap();
    let got = report(&mut reports).await;
    assert_eq!((got.id, got.reason), (removed, RemoveReason::Removed));
    assert_eq!(got.manager, m.pid());

    m.sync_notify("bye".into()).await.unwrap();
    let got = report(&mut reports).await;
    assert_eq!((got.id, got.reason), (finished, RemoveReason::Finished));

    let last = m.add_handler(rec("last", &seen)).await.unwrap();
    m.stop(ExitReason::Normal).await;
    let got = report(&mut reports).await;
    assert_eq!(
        (got.id, got.reason),
        (last, RemoveReason::ManagerStopped(ExitReason::Normal))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_manager_is_found_by_name() {
    let node = Node::new("t");
    let m = EventManager::<String>::start_with(&node, SpawnOptions::new(), Some("alarms"))
        .await
        .unwrap();
    let found = EventManager::<String>::lookup(&node, "alarms").unwrap();
    assert_eq!(found.pid(), m.pid());
    assert_eq!(
        node.process_info(m.pid()).unwrap().behaviour,
        "event_manager"
    );
    let seen = Seen::default();
    found.add_handler(rec("h", &seen)).await.unwrap();
    m.sync_notify("via the other handle".into()).await.unwrap();
    assert_eq!(take(&seen), ["h:via the other handle"]);
    assert!(
        EventManager::<String>::start_with(&node, SpawnOptions::new(), Some("alarms"))
            .await
            .is_err()
    );
}
