//! A regulated queue in front of a Girder server: the server never sees more than the queue's
//! count, and callers past the queue's length are told no at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::{Flow, Node, ReplyTo, Server, ServerContext};
use girder_regulate::{Queue, Rejected};
use girder_testkit::{eventually, within};
use tokio::sync::watch;

/// A server that hands each request to a worker task and answers from there (a deferred reply),
/// so many requests are in its hands at once; it counts them.
struct Backend {
    in_hand: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    gate: watch::Receiver<bool>,
}

struct Work(ReplyTo<()>);

impl Server for Backend {
    type Call = Work;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, Work(from): Work, _: &mut ServerContext<Self>) -> Flow {
        let now = self.in_hand.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let (in_hand, mut gate) = (self.in_hand.clone(), self.gate.clone());
        tokio::spawn(async move {
            let _ = gate.wait_for(|open| *open).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
            in_hand.fetch_sub(1, Ordering::SeqCst);
            from.reply(());
        });
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_never_sees_more_than_the_count() {
    const CALLERS: usize = 100;
    const COUNT: usize = 4;
    const WAITING: usize = 50;
    let node = Node::new("regulated");
    let (open, gate) = watch::channel(false);
    let in_hand = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let backend = Backend {
        in_hand: in_hand.clone(),
        most: most.clone(),
        gate,
    };
    let server = girder::server::start(&node, backend).await.unwrap();
    let queue = Queue::builder().count(COUNT).max_queue_len(WAITING).build();

    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let (queue, server) = (queue.clone(), server.clone());
        callers.push(tokio::spawn(async move {
            let permit = queue.ask().await?;
            server
                .call_timeout(Work, Duration::from_secs(30))
                .await
                .expect("served");
            drop(permit);
            Ok::<(), Rejected>(())
        }));
    }
    // Everyone has asked before anything is served: four in the server's hands, fifty
    // waiting, the rest told no.
    eventually("every caller asked", || {
        let s = queue.stats();
        s.in_use + s.queued + s.rejected.total() as usize == CALLERS
    })
    .await;
    eventually("four in the server's hands", || {
        in_hand.load(Ordering::SeqCst) == COUNT
    })
    .await;
    let s = queue.stats();
    assert_eq!((s.in_use, s.queued), (COUNT, WAITING));
    open.send_replace(true);

    let mut served = 0;
    let mut full = 0;
    for c in callers {
        match within("a caller", c).await.unwrap() {
            Ok(()) => served += 1,
            Err(Rejected::QueueFull { max: WAITING }) => full += 1,
            Err(other) => panic!("unexpected rejection: {other}"),
        }
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        COUNT,
        "never more than {COUNT} at once"
    );
    assert_eq!((served, full), (COUNT + WAITING, CALLERS - COUNT - WAITING));
    let s = queue.stats();
    assert_eq!((s.granted, s.rejected.queue_full), (54, 46));
    assert_eq!((s.in_use, s.queued), (0, 0));
}

/// Processes on Girder's own schedulers wait in a queue with `tokio::time` timers: the
/// schedulers' runtimes drive them, and the rejections say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_on_girder_schedulers_wait_and_time_out() {
    let pool = girder::Schedulers::new(2);
    let node = Node::builder("scheduled").schedulers(pool.clone()).build();
    let queue = Queue::builder()
        .count(1)
        .max_queue_time(Duration::from_millis(30))
        .build();
    let held = queue.try_ask().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..4 {
        let (queue, tx) = (queue.clone(), tx.clone());
        node.spawn(move |_: girder::Context<()>| async move {
            let _ = tx.send(queue.ask().await.map(drop));
            girder::ExitReason::Normal
        });
    }
    for _ in 0..4 {
        match within("a process's answer", rx.recv()).await.unwrap() {
            Err(Rejected::QueueTimeout { waited }) => assert!(waited >= Duration::from_millis(30)),
            other => panic!("expected a queue timeout, got {other:?}"),
        }
    }
    drop(held);
    let (queue2, tx2) = (queue.clone(), tx.clone());
    node.spawn(move |_: girder::Context<()>| async move {
        let _ = tx2.send(queue2.ask().await.map(drop));
        girder::ExitReason::Normal
    });
    assert_eq!(within("the grant", rx.recv()).await.unwrap(), Ok(()));
    assert_eq!(queue.stats().rejected.queue_timeout, 4);
    pool.shutdown();
}
