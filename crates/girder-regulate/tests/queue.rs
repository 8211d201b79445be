//! The regulated queue's semantics: each regulator, bounded waiting, order, cancellation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use girder_regulate::queue::Adaptive;
use girder_regulate::{Ask, Queue, Rejected};
use parking_lot::Mutex;
use tokio::time::{sleep, Instant};

/// Lets spawned tasks run until they wait (a current-thread runtime runs them in order).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn rate_admits_the_burst_then_the_rate() {
    let queue = Queue::builder().rate(10.0, 5).max_queue_len(10_000).build();
    let t0 = Instant::now();
    for _ in 0..5 {
        let _p = queue.ask().await.unwrap();
    }
    assert_eq!(t0.elapsed(), Duration::ZERO, "the burst is granted at once");
    let mut granted = 0;
    while t0.elapsed() < Duration::from_secs(2) {
        let _p = queue.ask().await.unwrap();
        granted += 1;
    }
    // Two seconds at 10 a second (the last grant may land just past the 2 s mark).
    assert!(
        (19..=21).contains(&granted),
        "granted {granted} in 2 s at 10/s"
    );
    assert!(queue.try_ask().is_err(), "no token left right after");
}

#[tokio::test(start_paused = true)]
async fn rate_waiters_are_served_in_order_by_the_tokens() {
    let queue = Queue::builder().rate(100.0, 1).build();
    let order = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (q, order) = (queue.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = q.ask().await.unwrap();
            order.lock().push((i, t0.elapsed()));
        }));
        settle().await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let order = order.lock();
    let ids: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
    let last = order.last().unwrap().1;
    assert!(
        last >= Duration::from_millis(480) && last <= Duration::from_millis(560),
        "49 tokens at 100/s: {last:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_never_exceeds_its_limit_under_stress() {
    let queue = Queue::builder().count(8).max_queue_len(100_000).build();
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (q, now, max) = (queue.clone(), now.clone(), max.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let permit = q.ask().await.unwrap();
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                if i % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                now.fetch_sub(1, Ordering::SeqCst);
                drop(permit);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(max.load(Ordering::SeqCst) <= 8);
    assert_eq!(max.load(Ordering::SeqCst), 8, "the limit was reached");
    let s = queue.stats();
    assert_eq!((s.granted, s.in_use, s.queued), (10_000, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn adaptive_limit_shrinks_as_latency_rises_and_grows_back() {
    let queue = Queue::builder()
        .adaptive(Adaptive::gradient().initial(20).max(200))
        .max_queue_len(10_000)
        .build();
    let latency = Arc::new(Mutex::new(Duration::from_millis(10)));
    let mut workers = Vec::new();
    for _ in 0..300 {
        let (q, latency) = (queue.clone(), latency.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let permit = q.ask().await.unwrap();
                let l = *latency.lock();
                sleep(l).await;
                drop(permit);
            }
        }));
    }
    sleep(Duration::from_secs(2)).await;
    let calm = queue.limit().unwrap();
    assert!(calm >= 20, "grows under steady latency: {calm}");

    *latency.lock() = Duration::from_millis(100);
    sleep(Duration::from_secs(1)).await;
    let loaded = queue.limit().unwrap();
    assert!(
        loaded < calm / 2,
        "latency 10x: the limit shrinks from {calm} to {loaded}"
    );

    *latency.lock() = Duration::from_millis(10);
    sleep(Duration::from_secs(2)).await;
    let recovered = queue.limit().unwrap();
    assert!(
        recovered > loaded * 2,
        "latency back: the limit grows from {loaded} to {recovered}"
    );
    for w in workers {
        w.abort();
    }
}

#[tokio::test]
async fn a_dropped_permit_is_an_overload_signal() {
    let queue = Queue::builder()
        .adaptive(Adaptive::aimd(Duration::from_secs(1)).initial(10))
        .build();
    queue.ask().await.unwrap().dropped();
    queue.ask().await.unwrap().dropped();
    assert_eq!(queue.limit(), Some(8));
    queue.ask().await.unwrap().ignore();
    assert_eq!(queue.limit(), Some(8));
}

#[tokio::test]
async fn a_full_queue_rejects_at_once() {
    let queue = Queue::builder().count(1).max_queue_len(2).build();
    let held = queue.ask().await.unwrap();
    let q = queue.clone();
    let w1 = tokio::spawn(async move { q.ask().await.map(drop) });
    let q = queue.clone();
    let w2 = tokio::spawn(async move { q.ask().await.map(drop) });
    settle().await;
    assert_eq!(queue.stats().queued, 2);
    let t0 = std::time::Instant::now();
    assert_eq!(
        queue.ask().await.unwrap_err(),
        Rejected::QueueFull { max: 2 }
    );
    assert!(t0.elapsed() < Duration::from_millis(50));
    drop(held);
    w1.await.unwrap().unwrap();
    w2.await.unwrap().unwrap();
    assert_eq!(queue.stats().rejected.queue_full, 1);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_past_max_queue_time_is_rejected() {
    let max = Duration::from_millis(300);
    let queue = Queue::builder().count(1).max_queue_time(max).build();
    let _held = queue.ask().await.unwrap();
    let t0 = Instant::now();
    match queue.ask().await {
        Err(Rejected::QueueTimeout { waited }) => assert_eq!(waited, max),
        other => panic!("expected a queue timeout, got {other:?}"),
    }
    assert_eq!(t0.elapsed(), max, "never waits past it");
    assert_eq!(queue.stats().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_rejects_in_the_queue_or_early() {
    // Count: the deadline ends the wait.
    let queue = Queue::builder()
        .count(1)
        .max_queue_time(Duration::from_secs(10))
        .build();
    let held = queue.ask().await.unwrap();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_millis(50);
    assert_eq!(
        queue.ask_until(deadline).await.unwrap_err(),
        Rejected::DeadlinePassed
    );
    assert_eq!(t0.elapsed(), Duration::from_millis(50));
    // Already passed: rejected on arrival.
    assert_eq!(
        queue.ask_until(t0).await.unwrap_err(),
        Rejected::DeadlinePassed
    );
    drop(held);

    // Rate: 20 waiting for 10 tokens a second cannot be met within a second: rejected at once.
    let queue = Queue::builder().rate(10.0, 1).build();
    let _first = queue.ask().await.unwrap();
    let asks = Ask::new()
        .client("c")
        .deadline(Instant::now() + Duration::from_secs(1));
    let mut waiting = Vec::new();
    for _ in 0..9 {
        let (q, a) = (queue.clone(), asks.clone());
        waiting.push(tokio::spawn(async move { q.ask_with(a).await.map(drop) }));
        settle().await;
    }
    let t0 = Instant::now();
    assert_eq!(
        queue.ask_with(asks).await.unwrap_err(),
        Rejected::DeadlinePassed
    );
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "rejected early, not at the deadline"
    );
    for w in waiting {
        w.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_ask_leaves_no_ghost() {
    let queue = Queue::builder().count(1).build();
    let held = queue.ask().await.unwrap();
    let q = queue.clone();
    let ghost = tokio::spawn(async move { q.ask().await.map(drop) });
    let q = queue.clone();
    let next = tokio::spawn(async move { q.ask().await.map(|p| p.held_for()) });
    settle().await;
    assert_eq!(queue.stats().queued, 2);
    // The release hands the grant to the first waiter, whose task is cancelled before it runs
    // to take it: the grant must pass on.
    drop(held);
    ghost.abort();
    assert!(ghost.await.unwrap_err().is_cancelled());
    next.await.unwrap().unwrap();
    let s = queue.stats();
    assert_eq!((s.queued, s.in_use), (0, 0));
    assert!(queue.try_ask().is_ok());

    // Cancelled while still waiting: taken out of the queue at once.
    let held = queue.ask().await.unwrap();
    let q = queue.clone();
    let gone = tokio::spawn(async move { q.ask().await.map(drop) });
    settle().await;
    assert_eq!(queue.stats().queued, 1);
    gone.abort();
    settle().await;
    assert_eq!(queue.stats().queued, 0);
    drop(held);
    assert_eq!(queue.stats().in_use, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn higher_priority_is_served_first() {
    let queue = Queue::builder().count(1).priority_levels(3).build();
    let held = queue.ask().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, p) in [
        ("low-1", 0),
        ("low-2", 0),
        ("mid", 1),
        ("high", 2),
        ("top", 9),
    ] {
        let (q, order) = (queue.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = q.ask_with(Ask::new().priority(p)).await.unwrap();
            order.lock().push(name);
        }));
        settle().await;
    }
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    // 9 is served at the highest level, 2, after the "high" that came first.
    assert_eq!(*order.lock(), ["high", "top", "mid", "low-1", "low-2"]);
}

#[tokio::test(flavor = "current_thread")]
async fn a_noisy_client_does_not_starve_another() {
    let queue = Queue::builder().count(1).max_queue_len(2_000).build();
    let held = queue.ask().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (q, order) = (queue.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let _p = q.ask_with(Ask::new().client("noisy")).await.unwrap();
            order.lock().push(i);
        }));
    }
    settle().await;
    let (q, o) = (queue.clone(), order.clone());
    tasks.push(tokio::spawn(async move {
        let _p = q.ask_with(Ask::new().client("quiet")).await.unwrap();
        o.lock().push(usize::MAX);
    }));
    settle().await;
    assert_eq!(queue.stats().queued, 1001);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    let at = order.lock().iter().position(|&i| i == usize::MAX).unwrap();
    assert!(
        at <= 2,
        "the quiet client was served after {at} of the noisy one's grants"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_over_its_cap_is_rejected_while_others_still_queue() {
    let queue = Queue::builder().count(1).max_client_queue_len(2).build();
    let held = queue.ask().await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let q = queue.clone();
        tasks.push(tokio::spawn(async move {
            q.ask_with(Ask::new().client(1)).await.map(drop)
        }));
    }
    settle().await;
    let third = queue.ask_with(Ask::new().client(1)).await.unwrap_err();
    assert_eq!(third, Rejected::ClientQueueFull { max: 2 });
    let q = queue.clone();
    tasks.push(tokio::spawn(async move {
        q.ask_with(Ask::new().client(2)).await.map(drop)
    }));
    settle().await;
    assert_eq!(queue.stats().queued, 3);
    drop(held);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "current_thread")]
async fn run_time_limits_shed_and_restore() {
    let queue = Queue::builder().count(2).build();
    let held = queue.ask().await.unwrap();
    let q = queue.clone();
    let waiting = tokio::spawn(async move {
        let _a = q.ask().await?;
        q.ask().await.map(drop)
    });
    settle().await;
    assert_eq!(queue.stats().queued, 1);
    queue.set_limit(0); // shed: the waiter and new asks are refused
    assert_eq!(waiting.await.unwrap().unwrap_err(), Rejected::Overloaded);
    assert_eq!(queue.ask().await.unwrap_err(), Rejected::Overloaded);
    queue.set_limit(3);
    let more: Vec<_> = (0..2).map(|_| queue.try_ask().unwrap()).collect();
    assert_eq!(queue.stats().in_use, 3);
    // Tightened below what is held: nothing new until enough are released.
    assert_eq!(queue.tighten(), Some(2));
    assert_eq!(queue.tighten(), Some(1));
    assert!(queue.try_ask().is_err());
    drop(more);
    assert!(queue.try_ask().is_err(), "one held, limit one");
    drop(held);
    assert!(queue.try_ask().is_ok());
    assert_eq!(queue.loosen(), Some(2));
    assert_eq!(queue.loosen(), Some(3));
    assert_eq!(queue.loosen(), Some(3), "the set limit is the ceiling");
}

#[tokio::test(start_paused = true)]
async fn stats_count_grants_rejections_and_waits() {
    let queue = Queue::builder().count(1).max_queue_len(1).build();
    let held = queue.ask().await.unwrap();
    let q = queue.clone();
    let waiter = tokio::spawn(async move { q.ask().await.map(drop) });
    settle().await;
    assert!(queue.ask().await.is_err());
    sleep(Duration::from_millis(100)).await;
    drop(held);
    waiter.await.unwrap().unwrap();
    let s = queue.stats();
    assert_eq!(
        (s.granted, s.rejected.queue_full, s.in_use, s.queued),
        (2, 1, 0, 0)
    );
    assert!(s.wait_max >= Duration::from_millis(99), "{:?}", s.wait_max);
    assert!(s.wait_p50 <= s.wait_max);
    let shown = format!("{queue:?}");
    assert!(
        shown.contains("limit: Some(1)") && shown.contains("in_use: 0"),
        "{shown}"
    );
}

/// The uncontended cost of `try_ask` + drop, for the queue module's documentation:
/// `cargo test -p girder-regulate --release --test queue -- --ignored --nocapture fast_path`.
#[test]
#[ignore = "a measurement, not a test"]
fn fast_path_cost() {
    let queue = Queue::builder().count(64).build();
    const N: u32 = 1_000_000;
    for _ in 0..N / 10 {
        drop(queue.try_ask().unwrap());
    }
    let t0 = std::time::Instant::now();
    for _ in 0..N {
        drop(std::hint::black_box(queue.try_ask().unwrap()));
    }
    let per = t0.elapsed() / N;
    println!("try_ask + drop, count regulator: {per:?}");
    let queue = Queue::builder().build();
    let t0 = std::time::Instant::now();
    for _ in 0..N {
        drop(std::hint::black_box(queue.try_ask().unwrap()));
    }
    println!("try_ask + drop, no regulator: {:?}", t0.elapsed() / N);
}

#[tokio::test(start_paused = true)]
async fn the_next_token_is_kept_when_its_timekeeper_gives_up() {
    let queue = Queue::builder().rate(10.0, 1).build();
    let _first = queue.ask().await.unwrap();
    let t0 = Instant::now();
    let q = queue.clone();
    let keeper = tokio::spawn(async move { q.ask().await.map(drop) });
    settle().await;
    let q = queue.clone();
    let next = tokio::spawn(async move { q.ask().await.map(|_| t0.elapsed()) });
    settle().await;
    sleep(Duration::from_millis(50)).await;
    keeper.abort(); // the waiter whose timer stood for the next token
    let waited = next.await.unwrap().unwrap();
    assert!(
        waited <= Duration::from_millis(101),
        "served at the next token: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_giving_up_at_random_leave_the_queue_sound() {
    let queue = Queue::builder()
        .count(3)
        .rate(20_000.0, 10)
        .priority_levels(2)
        .max_queue_len(10_000)
        .max_queue_time(Duration::from_millis(30))
        .build();
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let (q, now, max) = (queue.clone(), now.clone(), max.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = [0u32; 3];
            for i in 0..100u64 {
                let ask = Ask::new().client(t % 5).priority((i % 2) as u8);
                let patience = Duration::from_micros((t * 131 + i * 71) % 2_000);
                match tokio::time::timeout(patience, q.ask_with(ask)).await {
                    Ok(Ok(permit)) => {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(n, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        drop(permit);
                        outcomes[0] += 1;
                    }
                    Ok(Err(_)) => outcomes[1] += 1,
                    Err(_) => outcomes[2] += 1, // gave up: the ask was dropped
                }
            }
            outcomes
        }));
    }
    let mut totals = [0u32; 3];
    for t in tasks {
        let o = girder_testkit::within("a caller", t).await.unwrap();
        (0..3).for_each(|i| totals[i] += o[i]);
    }
    assert_eq!(totals.iter().sum::<u32>(), 6_400);
    assert!(
        totals[0] > 0 && totals[2] > 0,
        "some served, some gave up: {totals:?}"
    );
    assert!(max.load(Ordering::SeqCst) <= 3);
    let s = queue.stats();
    assert_eq!((s.in_use, s.queued), (0, 0), "no ghost: {s:?}");
    assert_eq!(s.granted, u64::from(totals[0]));
    // The queue still works at full capacity, once the rate's bucket has refilled (the flurry
    // may have spent it: 10 tokens at 20,000/s come back in half a millisecond).
    sleep(Duration::from_millis(5)).await;
    let held: Vec<_> = (0..3).map(|_| queue.try_ask().unwrap()).collect();
    assert!(queue.try_ask().is_err());
    drop(held);
}
