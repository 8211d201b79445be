//! Property tests of the mailbox: whatever the number of senders, the bound and the receiver's
//! pace, every message arrives exactly once, each sender's messages in the order sent, and a
//! bounded mailbox never holds more than its capacity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use girder::{Context, Event, ExitReason, Node, SendError, SpawnOptions};
use girder_testkit::within;
use proptest::prelude::*;

async fn run_case(senders: usize, per_sender: u64, capacity: Option<usize>, slow_every: u64) {
    let node = Node::new("mailbox");
    let total = senders as u64 * per_sender;
    // Sends completed so far; the receiver compares it with what it has taken.
    let sent = Arc::new(AtomicU64::new(0));
    let sent_seen = sent.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = match capacity {
        Some(c) => SpawnOptions::new().capacity(c),
        None => SpawnOptions::new(),
    };
    let receiver = node.spawn_opts(opts, move |mut ctx: Context<(usize, u64)>| async move {
        let mut got: Vec<Vec<u64>> = vec![Vec::new(); senders];
        let mut n = 0u64;
        let mut max_in_flight = 0;
        while n < total {
            if let Event::Message((s, i)) = ctx.recv().await {
                got[s].push(i);
                n += 1;
                // Every counted send finished before this load, so these are in the mailbox.
                max_in_flight =
                    max_in_flight.max(sent_seen.load(Ordering::SeqCst).saturating_sub(n));
                if slow_every > 0 && n.is_multiple_of(slow_every) {
                    tokio::task::yield_now().await;
                }
            }
        }
        tx.send((got, max_in_flight)).unwrap();
        ExitReason::Normal
    });
    let pid = receiver.pid();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let to = receiver.clone();
        let sent = sent.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_sender {
                // Alternate the two ways to send to a bounded mailbox.
                if i % 2 == 0 {
                    to.send_wait((s, i)).await.unwrap();
                } else {
                    let mut m = (s, i);
                    loop {
                        match to.send(m) {
                            Ok(()) => break,
                            Err(SendError::Full(back)) => {
                                m = back;
                                tokio::task::yield_now().await;
                            }
                            Err(SendError::NoProc(_)) => panic!("receiver died"),
                        }
                    }
                }
                sent.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (got, max_in_flight) = within("all delivered", rx).await.unwrap();
    for (s, seq) in got.iter().enumerate() {
        assert_eq!(
            *seq,
            (0..per_sender).collect::<Vec<_>>(),
            "sender {s}: lost, duplicated or reordered"
        );
    }
    if let Some(c) = capacity {
        assert!(
            max_in_flight as usize <= c,
            "mailbox held {max_in_flight} > capacity {c}"
        );
    }
    assert_eq!(pid, receiver.pid());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_message_arrives_once_in_per_sender_order(
        senders in 1usize..6,
        per_sender in 0u64..400,
        capacity in prop::option::of(1usize..16),
        slow_every in 0u64..7,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_case(senders, per_sender, capacity, slow_every));
    }
}

/// Yields once, re-queued at once (tokio's `yield_now` defers its wake on the schedulers).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// Sends `0..n` one at a time, each once the previous one's echo came back, then waits for the
/// receiver to end normally.
async fn send_and_expect_echoes(
    receiver: &girder::Addr<u64>,
    echoes: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    n: u64,
) {
    for i in 0..n {
        receiver.send(i).unwrap();
        let echo = within(format!("message {i} to wake the receiver"), echoes.recv()).await;
        assert_eq!(echo, Some(i));
    }
    assert_eq!(receiver.wait_exit().await, ExitReason::Normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_last_looked_with_another_waker_is_still_woken() {
    // The mailbox lets a receiver whose batch ran out wait without locking when its waker is
    // still the one left in the mailbox. Here the receiver's last look was `try_recv`, which
    // leaves a no-op waker: the next `recv` must put the task's own waker back, or the next
    // message never wakes it.
    let node = Node::new("mailbox-wakers");
    let (tx, mut echoes) = tokio::sync::mpsc::unbounded_channel();
    let receiver = node.spawn(move |mut ctx: Context<u64>| async move {
        loop {
            let Event::Message(a) = ctx.recv().await else {
                continue;
            };
            tx.send(a).unwrap();
            // The sender now sends the next one; look for it with the no-op waker only.
            let b = loop {
                match ctx.try_recv() {
                    Some(Event::Message(b)) => break b,
                    _ => yield_once().await,
                }
            };
            tx.send(b).unwrap();
            if b == 19 {
                return ExitReason::Normal;
            }
        }
    });
    send_and_expect_echoes(&receiver, &mut echoes, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_waited_for_a_down_under_another_waker_is_still_woken() {
    // As above, with the other waker left by a selective receive (`wait_down`) polled inside
    // a `FuturesUnordered` and then given up.
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let node = Node::new("mailbox-wakers-down");
    let (tx, mut echoes) = tokio::sync::mpsc::unbounded_channel();
    let watched = node.spawn(|mut ctx: Context<()>| async move {
        ctx.recv().await;
        ExitReason::Normal
    });
    let watched_pid = watched.pid();
    let receiver = node.spawn(move |mut ctx: Context<u64>| async move {
        let m = ctx.monitor(watched_pid);
        loop {
            let Event::Message(a) = ctx.recv().await else {
                continue;
            };
            tx.send(a).unwrap();
            {
                let mut inner = FuturesUnordered::new();
                inner.push(ctx.wait_down(m, None));
                std::future::poll_fn(|cx| {
                    assert!(inner.poll_next_unpin(cx).is_pending());
                    std::task::Poll::Ready(())
                })
                .await;
            }
            if a == 9 {
                return ExitReason::Normal;
            }
        }
    });
    send_and_expect_echoes(&receiver, &mut echoes, 10).await;
}
