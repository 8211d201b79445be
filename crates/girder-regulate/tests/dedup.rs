//! De-duplication: repeats answered from memory, work run once, memory bounded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder_regulate::{Dedup, IdempotencyKey, Retry};
use tokio::time::sleep;

#[tokio::test]
async fn a_repeated_key_gets_the_first_reply() {
    let dedup = Dedup::new(100);
    let ran = AtomicUsize::new(0);
    let work = |reply: &'static str| {
        let ran = &ran;
        move || async move {
            ran.fetch_add(1, Ordering::SeqCst);
            reply
        }
    };
    let k = IdempotencyKey::from_parts(1, 1);
    assert_eq!(dedup.run(k, work("first")).await, Ok("first"));
    assert_eq!(dedup.run(k, work("second")).await, Ok("first"));
    assert_eq!(
        dedup
            .run(IdempotencyKey::from_parts(1, 2), work("other"))
            .await,
        Ok("other")
    );
    assert_eq!(ran.load(Ordering::SeqCst), 2);
    assert_eq!(dedup.stats().hits, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_run_the_work_once() {
    let dedup = Dedup::new(100);
    let ran = Arc::new(AtomicUsize::new(0));
    let key = IdempotencyKey::random();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (dedup, ran) = (dedup.clone(), ran.clone());
        tasks.push(tokio::spawn(async move {
            dedup
                .run(key, || async move {
                    ran.fetch_add(1, Ordering::SeqCst);
                    sleep(Duration::from_millis(50)).await;
                    i
                })
                .await
                .unwrap()
        }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the work ran once");
    assert!(
        replies.iter().all(|r| *r == replies[0]),
        "one reply for all: {replies:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_first_run_is_taken_over_by_a_repeat() {
    let dedup = Dedup::new(100);
    let key = IdempotencyKey::new(5);
    let d = dedup.clone();
    let first = tokio::spawn(async move {
        d.run(key, || async {
            sleep(Duration::from_secs(60)).await;
            "first"
        })
        .await
    });
    tokio::task::yield_now().await;
    let d = dedup.clone();
    let repeat = tokio::spawn(async move { d.run(key, || async { "repeat" }).await });
    tokio::task::yield_now().await;
    first.abort();
    assert_eq!(repeat.await.unwrap(), Ok("repeat"));
    assert_eq!(dedup.run(key, || async { "third" }).await, Ok("repeat"));
}

#[tokio::test(start_paused = true)]
async fn entries_older_than_max_age_are_forgotten() {
    let dedup = Dedup::new(100).max_age(Duration::from_secs(10));
    let key = IdempotencyKey::new(1);
    assert_eq!(dedup.run(key, || async { 1 }).await, Ok(1));
    sleep(Duration::from_secs(9)).await;
    assert_eq!(dedup.run(key, || async { 2 }).await, Ok(1));
    sleep(Duration::from_secs(1)).await;
    assert_eq!(
        dedup.run(key, || async { 3 }).await,
        Ok(3),
        "forgotten after 10 s"
    );
    // Old entries are also dropped as new keys arrive.
    sleep(Duration::from_secs(10)).await;
    dedup
        .run(IdempotencyKey::new(2), || async { 0 })
        .await
        .unwrap();
    assert_eq!(dedup.len(), 1);
    assert_eq!(dedup.stats().expired, 2);
}

#[tokio::test]
async fn memory_stays_bounded_over_a_million_keys() {
    const CAP: usize = 10_000;
    let dedup = Dedup::new(CAP);
    for i in 0..1_000_000u64 {
        let key = IdempotencyKey::from_parts(1, i);
        let reply = dedup.run(key, || async move { i }).await.unwrap();
        assert_eq!(reply, i);
        if i % 1_000 == 0 {
            assert!(dedup.len() <= CAP, "{} keys remembered at {i}", dedup.len());
        }
    }
    let s = dedup.stats();
    assert_eq!(s.entries, CAP);
    assert_eq!(s.evicted, 1_000_000 - CAP as u64);
    // The newest are remembered, the oldest forgotten (first in, first out).
    assert_eq!(
        dedup
            .run(IdempotencyKey::from_parts(1, 999_999), || async { 0 })
            .await,
        Ok(999_999)
    );
    assert_eq!(
        dedup
            .run(IdempotencyKey::from_parts(1, 0), || async { 7 })
            .await,
        Ok(7)
    );
}

#[tokio::test(start_paused = true)]
async fn retry_plus_dedup_is_effectively_once() {
    // The receiver does the work, but the first two replies are "lost": the sender retries
    // with the same key, and the receiver answers the repeats from memory.
    let receiver = Dedup::new(1_000);
    let done = AtomicUsize::new(0);
    let deliveries = AtomicUsize::new(0);
    let reply = Retry::at_least_once()
        .attempts(5)
        .run_keyed(IdempotencyKey::random(), |attempt| {
            let (receiver, done, deliveries) = (&receiver, &done, &deliveries);
            async move {
                let key = attempt.key().unwrap();
                let r = receiver
                    .run(key, || async {
                        done.fetch_add(1, Ordering::SeqCst);
                        "ok"
                    })
                    .await
                    .unwrap();
                if deliveries.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err("reply lost")
                } else {
                    Ok(r)
                }
            }
        })
        .await;
    assert_eq!(reply, Ok("ok"));
    assert_eq!(
        deliveries.load(Ordering::SeqCst),
        3,
        "delivered three times"
    );
    assert_eq!(done.load(Ordering::SeqCst), 1, "done once");
}
