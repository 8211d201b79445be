//! A call's deadline crosses nodes (issue 14): the remote callee reads the time left, sees that
//! its caller gave up, and drops a request whose deadline passed while it waited.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::{CallError, Flow, ReplyTo, Server, ServerContext};
use girder_testkit::dist::pair;
use girder_testkit::within;
use tokio::sync::mpsc;

/// Answers 0 with the time its caller has left (ms); 1 with it after 50 ms of work, counting
/// the work it started; 2 by holding the handle, and on a cast tells what the held handles say.
struct Callee {
    started: Arc<AtomicU32>,
    held: Vec<ReplyTo<Option<u64>>>,
    seen: mpsc::UnboundedSender<bool>,
}

impl Server for Callee {
    type Call = (u32, ReplyTo<Option<u64>>);
    type Cast = u32;
    type Info = ();

    async fn handle_call(
        &mut self,
        (what, from): (u32, ReplyTo<Option<u64>>),
        _: &mut ServerContext<Self>,
    ) -> Flow {
        match what {
            0 => {
                let left = from.time_left().map(|d| d.as_millis() as u64);
                from.reply(left)
            }
            1 => {
                self.started.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                from.reply(None);
            }
            _ => {
                assert!(!from.caller_gave_up());
                self.held.push(from)
            }
        }
        Flow::Continue
    }

    async fn handle_cast(&mut self, _: u32, _: &mut ServerContext<Self>) -> Flow {
        for from in self.held.drain(..) {
            let _ = self.seen.send(from.caller_gave_up());
        }
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_callee_knows_its_callers_deadline() {
    let (a, b) = pair("dl-a@localhost", "dl-b@localhost").await;
    let started = Arc::new(AtomicU32::new(0));
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let callee = girder::server::start(
        b.node(),
        Callee {
            started: started.clone(),
            held: Vec::new(),
            seen: seen_tx,
        },
    )
    .await
    .unwrap();
    b.export_server(&callee);
    let remote = a.server::<Callee>(a.pid_on(b.name(), callee.pid()));
    // Connected first: a call made while the connection is set up travels without its
    // deadline (the peer's capabilities are not known yet).
    a.connect(b.name()).await.unwrap();

    // The time left travels.
    let left = remote
        .call_timeout(|r| (0, r), Duration::from_millis(800))
        .await
        .unwrap()
        .expect("a call with a timeout has a deadline on the callee's node too");
    assert!(left > 500 && left <= 800, "{left} ms left");
    let none = remote
        .call_timeout(|r| (0, r), Duration::MAX)
        .await
        .unwrap();
    assert_eq!(none, None, "a call without a timeout has no deadline");

    // A remote caller that timed out has given up, as the callee sees it.
    let gave_up = remote
        .call_timeout(|r| (2, r), Duration::from_millis(50))
        .await;
    assert!(matches!(gave_up, Err(CallError::Timeout(_))));
    remote.cast(0).unwrap();
    assert!(within("the callee's view", seen.recv()).await.unwrap());

    // Work whose caller gave up while it waited is dropped unstarted.
    let mut calls = Vec::new();
    for _ in 0..20 {
        let remote = remote.clone();
        calls.push(tokio::spawn(async move {
            remote
                .call_timeout(|r| (1, r), Duration::from_millis(120))
                .await
        }));
    }
    for c in calls {
        match within("a call", c).await.unwrap() {
            Ok(_) | Err(CallError::Timeout(_)) => {}
            Err(e) => panic!("a late remote call ends as a timeout, not {e:?}"),
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = started.load(Ordering::SeqCst);
    assert!(started <= 5, "{started} of 20 started");
    assert_eq!(started as u64 + b.node().stats().calls_expired, 20);
}
