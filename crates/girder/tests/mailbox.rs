//! Property tests of the mailbox: whatever the number of senders, the bound and the receiver's
//! pace, every message arrives exactly once, each sender's messages in the order sent, and a
//! bounded mailbox never holds more than its capacity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder::{Context, Event, ExitReason, Node, SendError, SpawnOptions};
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
                if slow_every > 0 && n % slow_every == 0 {
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
    let (got, max_in_flight) = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("all delivered")
        .unwrap();
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
