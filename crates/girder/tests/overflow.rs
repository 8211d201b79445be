//! Bounded mailboxes' overflow policies (issue 14): wait, fail fast, drop newest and drop
//! oldest, each counted per process and per node; a capacity changed while the process runs;
//! and a dropped call's caller told so.

use std::time::Duration;

use girder::{
    CallError, Context, Event, ExitReason, Flow, Node, Overflow, ReplyTo, SendError, Server,
    ServerContext, SpawnOptions,
};
use girder_testkit::within;
use tokio::sync::{mpsc, oneshot};

/// A process that takes nothing until `gate` opens, then forwards everything it gets.
fn gated(
    node: &Node,
    opts: SpawnOptions,
) -> (
    girder::Addr<u32>,
    oneshot::Sender<()>,
    mpsc::UnboundedReceiver<u32>,
) {
    let (open, gate) = oneshot::channel::<()>();
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = node.spawn_opts(opts, move |mut ctx: Context<u32>| async move {
        let _ = gate.await;
        loop {
            match ctx.recv().await {
                Event::Message(m) => {
                    let _ = tx.send(m);
                }
                Event::Stop(r) => return r,
                _ => {}
            }
        }
    });
    (addr, open, rx)
}

async fn drain(rx: &mut mpsc::UnboundedReceiver<u32>, n: usize) -> Vec<u32> {
    let mut got = Vec::new();
    for _ in 0..n {
        got.push(within("a message", rx.recv()).await.unwrap());
    }
    // Nothing more comes.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), rx.recv())
            .await
            .is_err(),
        "more than {n} messages"
    );
    got
}

#[tokio::test]
async fn wait_refuses_send_and_holds_send_wait_until_room() {
    let node = Node::new("overflow");
    let (p, open, mut rx) = gated(&node, SpawnOptions::new().capacity(2));
    p.send(0).unwrap();
    p.send(1).unwrap();
    assert!(matches!(p.send(2), Err(SendError::Full(2))));
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.send_wait(3).await })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiter.is_finished(), "send_wait waits for room");
    open.send(()).unwrap();
    within("send_wait to finish", waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drain(&mut rx, 3).await, vec![0, 1, 3]);
    let s = p.mailbox_stats().unwrap();
    assert_eq!((s.overflow, s.refused, s.dropped), (Overflow::Wait, 1, 0));
}

#[tokio::test]
async fn fail_fast_refuses_even_send_wait_at_once() {
    let node = Node::new("overflow");
    let (p, _open, _rx) = gated(
        &node,
        SpawnOptions::new().capacity(1).overflow(Overflow::FailFast),
    );
    p.send(0).unwrap();
    let refused = within("send_wait to answer at once", p.send_wait(1)).await;
    assert!(matches!(refused, Err(SendError::Full(1))));
    assert!(matches!(p.send(2), Err(SendError::Full(2))));
    assert_eq!(p.mailbox_stats().unwrap().refused, 2);
}

#[tokio::test]
async fn drop_newest_keeps_the_first_and_counts_the_rest() {
    let node = Node::new("overflow");
    let (p, open, mut rx) = gated(
        &node,
        SpawnOptions::new()
            .capacity(3)
            .overflow(Overflow::DropNewest),
    );
    for i in 0..10 {
        p.send(i).unwrap();
        // Never waits either.
        within("send_wait", p.send_wait(100 + i)).await.unwrap();
    }
    open.send(()).unwrap();
    assert_eq!(drain(&mut rx, 3).await, vec![0, 100, 1]);
    assert_eq!(p.mailbox_stats().unwrap().dropped, 17);
    assert_eq!(node.stats().mailbox_dropped, 17);
}

#[tokio::test]
async fn drop_oldest_keeps_the_latest_in_order() {
    let node = Node::new("overflow");
    let (p, open, mut rx) = gated(
        &node,
        SpawnOptions::new()
            .capacity(3)
            .overflow(Overflow::DropOldest),
    );
    for i in 0..100 {
        p.send(i).unwrap();
    }
    assert_eq!(p.mailbox_len(), 3);
    open.send(()).unwrap();
    assert_eq!(drain(&mut rx, 3).await, vec![97, 98, 99]);
    assert_eq!(p.mailbox_stats().unwrap().dropped, 97);
    // The counts outlive the process, in the node's totals.
    p.stop(ExitReason::Shutdown);
    p.wait_exit().await;
    let s = node.stats();
    assert_eq!((s.mailbox_dropped, s.processes), (97, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_under_concurrent_senders_never_exceeds_capacity_or_loses_count() {
    let node = Node::new("overflow");
    let (p, open, mut rx) = gated(
        &node,
        SpawnOptions::new()
            .capacity(16)
            .overflow(Overflow::DropOldest),
    );
    let mut senders = Vec::new();
    for s in 0..4u32 {
        let p = p.clone();
        senders.push(tokio::spawn(async move {
            for i in 0..10_000 {
                p.send(s * 100_000 + i).unwrap();
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    assert!(p.mailbox_len() <= 16);
    open.send(()).unwrap();
    let kept = drain(&mut rx, 16).await;
    let dropped = p.mailbox_stats().unwrap().dropped;
    assert_eq!(
        dropped + kept.len() as u64,
        40_000,
        "every message kept or counted"
    );
    // Each sender's survivors are in its order.
    for s in 0..4u32 {
        let mine: Vec<_> = kept.iter().filter(|m| *m / 100_000 == s).collect();
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "sender {s}: {mine:?}");
    }
}

#[tokio::test]
async fn capacity_changes_while_the_process_runs() {
    let node = Node::new("overflow");
    let (p, open, mut rx) = gated(&node, SpawnOptions::new().capacity(4));
    for i in 0..4 {
        p.send(i).unwrap();
    }
    // Shrink below what is queued: nothing is dropped, nothing new fits.
    assert!(p.set_mailbox_capacity(2));
    assert!(matches!(p.send(4), Err(SendError::Full(4))));
    assert_eq!(p.mailbox_stats().unwrap().capacity, 2);
    // Grow: room at once, and a waiting sender goes on.
    let waiter = {
        let p = p.clone();
        tokio::spawn(async move { p.send_wait(5).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished());
    assert!(p.set_mailbox_capacity(6));
    within("the waiter to get room", waiter)
        .await
        .unwrap()
        .unwrap();
    p.send(6).unwrap();
    assert!(matches!(p.send(7), Err(SendError::Full(7))));
    open.send(()).unwrap();
    assert_eq!(drain(&mut rx, 6).await, vec![0, 1, 2, 3, 5, 6]);
    // With the queue drained, the bound is 6 again.
    for i in 0..6 {
        p.send(10 + i).unwrap();
    }
    // An unbounded mailbox has no capacity to change.
    let unbounded = node.spawn(|_: Context<u32>| std::future::pending());
    assert!(!unbounded.set_mailbox_capacity(3));
    assert!(unbounded.mailbox_stats().is_none());
}

#[tokio::test]
async fn shrinking_holds_new_messages_out_until_the_queue_is_under_the_new_bound() {
    let node = Node::new("overflow");
    let (step_tx, mut step) = mpsc::unbounded_channel::<()>();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let p = node.spawn_opts(
        SpawnOptions::new().capacity(4),
        move |mut ctx: Context<u32>| async move {
            while step.recv().await.is_some() {
                if let Event::Message(m) = ctx.recv().await {
                    let _ = tx.send(m);
                }
            }
            ExitReason::Normal
        },
    );
    for i in 0..4 {
        p.send(i).unwrap();
    }
    p.set_mailbox_capacity(1);
    // Three taken: the queue holds one, the new bound; still no room.
    for _ in 0..3 {
        step_tx.send(()).unwrap();
        rx.recv().await.unwrap();
    }
    assert!(matches!(p.send(9), Err(SendError::Full(9))));
    step_tx.send(()).unwrap();
    rx.recv().await.unwrap();
    // Empty: room for one.
    p.send(9).unwrap();
    assert!(matches!(p.send(10), Err(SendError::Full(10))));
}

struct Slow;

impl Server for Slow {
    type Call = ReplyTo<u32>;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<u32>, _: &mut ServerContext<Self>) -> Flow {
        tokio::time::sleep(Duration::from_millis(100)).await;
        from.reply(1);
        Flow::Continue
    }
}

/// A `Slow` server whose one-message mailbox has `policy`, busy with a first call and with a
/// second waiting: the two calls' tasks, and the server.
async fn busy_slow_server(
    policy: Overflow,
) -> (
    girder::ServerRef<Slow>,
    [tokio::task::JoinHandle<Result<u32, CallError>>; 2],
) {
    let node = Node::new("overflow");
    let opts = SpawnOptions::new().capacity(1).overflow(policy);
    let server = girder::server::start_with(&node, Slow, opts, None)
        .await
        .unwrap();
    let call = || {
        let s = server.clone();
        tokio::spawn(async move { s.call(|r| r).await })
    };
    let first = call();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = call();
    tokio::time::sleep(Duration::from_millis(20)).await;
    (server, [first, second])
}

#[tokio::test]
async fn a_call_dropped_by_drop_oldest_fails_its_caller_at_once() {
    // The first call is being handled; the second waits in the mailbox; the third pushes the
    // second out.
    let (server, [first, second]) = busy_slow_server(Overflow::DropOldest).await;
    let third = tokio::spawn(async move { server.call(|r| r).await });
    let second = within("the dropped call to fail", second).await.unwrap();
    assert!(
        matches!(second, Err(CallError::NoReply)),
        "the pushed-out call: {second:?}"
    );
    assert_eq!(within("first", first).await.unwrap(), Ok(1));
    assert_eq!(within("third", third).await.unwrap(), Ok(1));
}

#[tokio::test]
async fn a_call_to_a_full_fail_fast_server_is_refused_as_overloaded() {
    // The first is being handled, the second fills the mailbox: the third is refused at once.
    let (server, [first, second]) = busy_slow_server(Overflow::FailFast).await;
    let third = within("the refusal", server.call(|r| r)).await;
    assert_eq!(third, Err(CallError::Overloaded));
    assert_eq!(within("first", first).await.unwrap(), Ok(1));
    assert_eq!(within("second", second).await.unwrap(), Ok(1));
}
