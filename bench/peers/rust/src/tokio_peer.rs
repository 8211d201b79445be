//! Raw tokio, the floor: each process is a task with an unbounded mpsc receiver; a call is
//! mpsc + oneshot; a timer is a task that sleeps, then sends (and tokio-util's `DelayQueue`
//! beside it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::time::DelayQueue;

use crate::common::{self, Outcome};

pub fn run(workload: &str, scale: f64) -> Outcome {
    let c = common::counts(scale);
    let workload = workload.to_string();
    let rt = common::multi_thread();
    rt.block_on(async move {
        tokio::spawn(async move {
            match workload.as_str() {
                "spawn" => spawn(c.spawn).await,
                "ring" => ring(c.ring_procs, c.ring_hops).await,
                "pingpong" => pingpong(c.pingpong).await,
                "call_c1" => calls(1, c.c1_calls).await,
                "call_c100" => calls(c.c100_callers, c.c100_calls).await,
                "fanin" => fanin(c.fanin_producers, c.fanin_each).await,
                "timers" => timers(c.timers).await,
                _ => unreachable!(),
            }
        })
        .await
        .unwrap()
    })
}

async fn spawn(n: u64) -> Outcome {
    let mut senders = Vec::with_capacity(n as usize);
    let waiting = Arc::new(AtomicU64::new(0));
    let before = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    common::count_start();
    let t0 = Instant::now();
    for _ in 0..n {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let waiting = waiting.clone();
        tokio::spawn(async move {
            waiting.fetch_add(1, Ordering::Relaxed);
            drop(waiting);
            rx.recv().await;
        });
        senders.push(tx);
    }
    let elapsed = t0.elapsed();
    // Measure once every process is idle in its first receive.
    common::wait_count(&waiting, n).await;
    let bytes = common::count_stop();
    let per = common::per_proc(bytes, n);
    for s in &senders {
        let _ = s.send(());
    }
    common::wait_alive_tasks(before).await;
    vec![("spawn_ns_per_proc", elapsed.as_nanos() as f64 / n as f64), ("mem_bytes_per_proc", per)]
}

async fn ring(procs: usize, hops: u64) -> Outcome {
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let done = Arc::new(Mutex::new(Some(done_tx)));
    let mut txs = Vec::with_capacity(procs);
    let mut rxs = Vec::with_capacity(procs);
    for _ in 0..procs {
        let (tx, rx) = mpsc::unbounded_channel::<u64>();
        txs.push(tx);
        rxs.push(rx);
    }
    for (i, mut rx) in rxs.into_iter().enumerate() {
        let next = txs[(i + 1) % procs].clone();
        let done = done.clone();
        tokio::spawn(async move {
            while let Some(left) = rx.recv().await {
                if left == 0 {
                    if let Some(tx) = done.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    let _ = next.send(0);
                    return;
                }
                let _ = next.send(left - 1);
            }
        });
    }
    let t0 = Instant::now();
    txs[0].send(hops).unwrap();
    done_rx.await.unwrap();
    vec![("hops_per_s", hops as f64 / t0.elapsed().as_secs_f64())]
}

async fn pingpong(n: u64) -> Outcome {
    let (to_pong, mut pong_rx) = mpsc::unbounded_channel::<u64>();
    let (to_ping, mut ping_rx) = mpsc::unbounded_channel::<u64>();
    tokio::spawn(async move {
        while let Some(k) = pong_rx.recv().await {
            if k == 0 {
                return;
            }
            let _ = to_ping.send(k);
        }
    });
    let (done_tx, done_rx) = oneshot::channel();
    let t0 = Instant::now();
    tokio::spawn(async move {
        to_pong.send(n).unwrap();
        while let Some(k) = ping_rx.recv().await {
            if k == 1 {
                let _ = to_pong.send(0);
                let _ = done_tx.send(());
                return;
            }
            let _ = to_pong.send(k - 1);
        }
    });
    done_rx.await.unwrap();
    vec![("round_trips_per_s", n as f64 / t0.elapsed().as_secs_f64())]
}

async fn calls(callers: usize, per_caller: u64) -> Outcome {
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
    tokio::spawn(async move {
        while let Some((n, reply)) = rx.recv().await {
            let _ = reply.send(n + 1);
        }
    });
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..callers {
        let tx = tx.clone();
        handles.push(tokio::spawn(async move {
            let mut h = common::histogram();
            for i in 0..per_caller {
                let start = Instant::now();
                let (rtx, rrx) = oneshot::channel();
                tx.send((i, rtx)).unwrap();
                let r = rrx.await.unwrap();
                h.saturating_record(start.elapsed().as_nanos() as u64);
                debug_assert_eq!(r, i + 1);
            }
            h
        }));
    }
    let mut all = common::histogram();
    for h in handles {
        all.add(h.await.unwrap()).unwrap();
    }
    common::call_outcome(callers as u64 * per_caller, t0.elapsed().as_secs_f64(), &all)
}

async fn fanin(producers: usize, each: u64) -> Outcome {
    let total = producers as u64 * each;
    let (tx, mut rx) = mpsc::unbounded_channel::<u64>();
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut seen = 0;
        while seen < total {
            rx.recv().await.unwrap();
            seen += 1;
        }
        let _ = done_tx.send(());
    });
    let t0 = Instant::now();
    for _ in 0..producers {
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0..each {
                let _ = tx.send(i);
            }
        });
    }
    done_rx.await.unwrap();
    vec![("msgs_per_s", total as f64 / t0.elapsed().as_secs_f64())]
}

/// `timers`, as a tokio user sends a message later: a task that sleeps, then sends to the
/// arming process's mailbox; cancelled with `abort()` on its `JoinHandle` (see
/// `common::task_timers`). Then the same with a `tokio_util::time::DelayQueue` owned by the
/// arming task (`insert`, `remove` by key): the `dq_` keys.
async fn timers(n: u64) -> Outcome {
    let (tx, _mailbox) = mpsc::unbounded_channel::<()>();
    let mut out = common::task_timers(
        n,
        || {
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(common::TIMER_DELAY).await;
                let _ = tx.send(());
            })
        },
        |h| h.abort(),
    )
    .await;
    out.extend(delay_queue(n));
    out
}

/// One `DelayQueue` for every round (reused, as Girder's per-thread wheel is: only the first
/// round grows its slab). `remove` takes the entry out at once; the slab keeps its capacity
/// until the queue is dropped or shrunk: `dq_retained_bytes_per_timer`.
fn delay_queue(n: u64) -> Outcome {
    let mut dq: DelayQueue<()> = DelayQueue::new();
    let mut keys = Vec::with_capacity(n as usize);
    let (mut arms, mut cancels) = (Vec::new(), Vec::new());
    let (mut bytes, mut retained) = (0, 0);
    for round in 0..common::TIMER_ROUNDS {
        if round == 0 {
            common::count_start();
        }
        let t0 = Instant::now();
        for _ in 0..n {
            keys.push(dq.insert((), common::TIMER_DELAY));
        }
        arms.push(t0.elapsed());
        if round == 0 {
            bytes = common::count_peek();
        }
        let t0 = Instant::now();
        for k in &keys {
            dq.remove(k);
        }
        cancels.push(t0.elapsed());
        keys.clear();
        if round == 0 {
            retained = common::count_stop();
        }
    }
    assert!(dq.is_empty());
    vec![
        ("dq_arm_ns", common::median_ns(arms, n)),
        ("dq_cancel_ns", common::median_ns(cancels, n)),
        ("dq_bytes_per_timer", common::per_proc(bytes, n)),
        ("dq_retained_bytes_per_timer", common::per_proc(retained, n)),
    ]
}
