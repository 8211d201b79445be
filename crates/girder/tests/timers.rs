//! `send_after` and `TimerRef`, after the cases of OTP's `timer_bif_SUITE` (order, big timeouts,
//! `read_timer`, cleanup when the receiver dies) and at a million timers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::{send_after, Addr, Context, Event, ExitReason, Node, SpawnOptions, TimerRef};
use girder_testkit::procs::forwarder;
use girder_testkit::{eventually, within};
use tokio::sync::mpsc;

async fn collect_until<M: PartialEq>(rx: &mut mpsc::UnboundedReceiver<M>, last: M) -> Vec<M> {
    let mut got = Vec::new();
    loop {
        let m = within("a timer's message", rx.recv()).await.unwrap();
        let done = m == last;
        got.push(m);
        if done {
            return got;
        }
    }
}

/// send_after_2: messages arrive in the order of their timeouts, not of arming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_the_order_of_their_timeouts() {
    let node = Node::new("t");
    let (p, mut rx) = forwarder(&node);
    for (ms, m) in [
        (1_000, "last"),
        (0, "a0"),
        (200, "a2"),
        (100, "a1"),
        (500, "a5"),
        (300, "a3"),
        (400, "a4"),
    ] {
        send_after(&p, m, Duration::from_millis(ms));
    }
    assert_eq!(
        collect_until(&mut rx, "last").await,
        ["a0", "a1", "a2", "a3", "a4", "a5", "last"]
    );
}

/// send_after_3: a millisecond apart is enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_millisecond_apart_keeps_the_order() {
    let node = Node::new("t");
    let (p, mut rx) = forwarder(&node);
    for round in 0..20u64 {
        let base = 50 + round;
        send_after(&p, (round, 1), Duration::from_millis(base));
        send_after(&p, (round, 2), Duration::from_millis(base + 1));
        send_after(&p, (round, 3), Duration::from_millis(base + 2));
        send_after(&p, (round, 4), Duration::from_millis(base + 3));
        let got = collect_until(&mut rx, (round, 4)).await;
        assert_eq!(got, [(round, 1), (round, 2), (round, 3), (round, 4)]);
    }
}

/// Never early, whatever the delay; a thousand timers over many processes all fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_timer_fires_early_and_none_is_lost() {
    let node = Node::new("t");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let procs: Vec<Addr<(Instant, Duration)>> = (0..50)
        .map(|_| {
            let tx = tx.clone();
            node.spawn(move |mut ctx: Context<(Instant, Duration)>| async move {
                while let Event::Message((armed, delay)) = ctx.recv().await {
                    tx.send(armed.elapsed() >= delay).unwrap();
                }
                ExitReason::Normal
            })
        })
        .collect();
    let n = 1_000;
    for i in 0..n {
        let delay = Duration::from_micros((i * 7_919) % 150_000);
        send_after(
            &procs[i as usize % procs.len()],
            (Instant::now(), delay),
            delay,
        );
    }
    for _ in 0..n {
        let on_time = within("a timer's message", rx.recv()).await.unwrap();
        assert!(on_time, "a timer fired before its delay");
    }
}

/// start_timer_big / read_timer: a 2³¹ ms timer tells the time left, and cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_timeout_reads_its_time_left_and_cancels() {
    let node = Node::new("t");
    let (p, _rx) = forwarder::<&str>(&node);
    let big = Duration::from_millis(1 << 31);
    let t = send_after(&p, "hej", big);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = t.remaining().expect("armed");
    let waited = big - left;
    assert!(
        waited >= Duration::from_millis(199) && waited < Duration::from_secs(10),
        "{waited:?} of a big timer gone after 200 ms"
    );
    assert!(t.cancel());
    assert_eq!(t.remaining(), None);
    assert!(!t.has_fired());
    assert!(!t.cancel());
}

/// start_timer_1: a fired timer reads as gone and does not cancel; a cancelled one never
/// delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fired_and_cancelled_timers_read_as_gone() {
    let node = Node::new("t");
    let (p, mut rx) = forwarder(&node);
    let fired = send_after(&p, "plopp", Duration::from_millis(20));
    assert_eq!(rx.recv().await, Some("plopp"));
    assert!(fired.has_fired());
    assert_eq!(fired.remaining(), None);
    assert!(!fired.cancel());
    let cancelled = send_after(&p, "plapp", Duration::from_millis(20));
    let left = cancelled.remaining().unwrap();
    assert!(
        left <= Duration::from_millis(20) && left > Duration::ZERO,
        "{left:?}"
    );
    assert!(cancelled.cancel());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rx.try_recv().is_err(), "a cancelled timer delivered");
    assert!(!cancelled.has_fired());
}

/// A message that counts its drops: proof that a timer let go of it.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// cleanup: a timer for a dead process is gone at once; a process's timers are cancelled when
/// it dies (their messages dropped then, not at their deadline), as the BEAM does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_process_keeps_no_timers() {
    let node = Node::new("t");
    let dropped = Arc::new(AtomicUsize::new(0));

    let dead = node.spawn(|_ctx: Context<Counted>| async { ExitReason::Normal });
    dead.wait_exit().await;
    let t = send_after(&dead, Counted(dropped.clone()), Duration::from_secs(3600));
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "dropped at once");
    assert_eq!(t.remaining(), None);
    assert!(!t.cancel());

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let dies = node.spawn(|_ctx: Context<Counted>| async move {
        let _ = stop_rx.await;
        ExitReason::error("died")
    });
    let timers: Vec<TimerRef> = (0..100)
        .map(|_| send_after(&dies, Counted(dropped.clone()), Duration::from_secs(3600)))
        .collect();
    assert!(timers.iter().all(|t| t.remaining().is_some()));
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    stop_tx.send(()).unwrap();
    dies.wait_exit().await;
    assert_eq!(dropped.load(Ordering::SeqCst), 101, "cancelled at the exit");
    assert!(timers
        .iter()
        .all(|t| t.remaining().is_none() && !t.cancel()));
}

/// A process that arms a timer per message for ever keeps only the armed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rearming_for_ever_keeps_only_the_armed_timers() {
    let node = Node::new("t");
    let dropped = Arc::new(AtomicUsize::new(0));
    let (p, mut rx) = forwarder::<Counted>(&node);
    // Each fires and is dropped by the test; 20,000 armed in all, never more than 100 at once.
    for round in 0..200 {
        for _ in 0..100 {
            send_after(&p, Counted(dropped.clone()), Duration::from_millis(1));
        }
        for _ in 0..100 {
            drop(within("a timer's message", rx.recv()).await.unwrap());
        }
        assert_eq!(dropped.load(Ordering::SeqCst), (round + 1) * 100);
    }
    // Then one long timer: cancelled (so dropped) at the exit, with nothing else left.
    send_after(&p, Counted(dropped.clone()), Duration::from_secs(3600));
    drop(rx);
    send_after(&p, Counted(dropped.clone()), Duration::ZERO);
    p.wait_exit().await;
    eventually("every message dropped", || {
        dropped.load(Ordering::SeqCst) == 20_002
    })
    .await;
}

/// A full bounded mailbox gets a timer's message once there is room; none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_gets_the_message_when_there_is_room() {
    let node = Node::new("t");
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let p = node.spawn_opts(
        SpawnOptions::new().capacity(2),
        move |mut ctx: Context<u32>| async move {
            let _ = go_rx.await;
            while let Event::Message(m) = ctx.recv().await {
                tx.send(m).unwrap();
            }
            ExitReason::Normal
        },
    );
    p.send(1).unwrap();
    p.send(2).unwrap();
    let t = send_after(&p, 3, Duration::from_millis(10));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(t.has_fired());
    go_tx.send(()).unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(within("a timer's message", rx.recv()).await.unwrap());
    }
    assert_eq!(got, [1, 2, 3]);
}

/// Cancelled from another process (so, often, another thread than the wheel's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_from_another_process() {
    let node = Node::new("t");
    let (p, mut rx) = forwarder::<u32>(&node);
    let timers: Vec<TimerRef> = (0..1_000)
        .map(|i| send_after(&p, i, Duration::from_millis(300)))
        .collect();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    node.spawn(move |_ctx: Context<()>| async move {
        let cancelled = timers.iter().filter(|t| t.cancel()).count();
        done_tx.send(cancelled).unwrap();
        ExitReason::Normal
    });
    assert_eq!(done_rx.await.unwrap(), 1_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.try_recv().is_err());
}

/// A million timers armed and cancelled: each cancel finds its timer, none delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_timers_arm_and_cancel() {
    let node = Node::new("t");
    let (p, mut rx) = forwarder::<u32>(&node);
    let n = 1_000_000u32;
    let timers: Vec<TimerRef> = (0..n)
        .map(|i| send_after(&p, i, Duration::from_secs(3_600 + u64::from(i % 1_000))))
        .collect();
    assert!(timers.iter().all(|t| t.cancel()), "every timer was armed");
    assert!(timers
        .iter()
        .all(|t| !t.cancel() && t.remaining().is_none()));
    // The wheel goes on: a short timer is the first (and only) message.
    send_after(&p, n, Duration::from_millis(5));
    assert_eq!(rx.recv().await, Some(n));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(rx.try_recv().is_err());
}

/// A thread's wheel belongs to the runtime it was started on: a thread that moves to another
/// runtime (the first shut down, or kept but no longer driven) still gets its timers.
#[test]
fn timers_follow_the_thread_to_a_new_runtime() {
    fn round(rt: &tokio::runtime::Runtime) {
        rt.block_on(async {
            let node = Node::new("t");
            let (p, mut rx) = forwarder(&node);
            send_after(&p, "tick", Duration::from_millis(10));
            assert_eq!(within("a timer's message", rx.recv()).await, Some("tick"));
        });
    }
    let current = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let first = current();
    round(&first);
    // Kept, not driven: its wheel's task cannot run while this thread is in `second`.
    let second = current();
    round(&second);
    drop(first);
    drop(second);
    // Both shut down: a third still works.
    round(&current());
}
