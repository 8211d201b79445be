//! A process reuses one reply slot per reply type across its calls (each call a new
//! generation of it, like a fresh Erlang reference). These tests hold that reuse to the call
//! contract: a late reply never answers a later call, a reply handle knows when its caller
//! gave up, calls polled under other wakers (inside `FuturesUnordered`, `select!`) and calls
//! from outside any process complete, and replies racing timeouts never cross.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use girder::{
    server, CallError, Context, ExitReason, Flow, Node, ReplyTo, Schedulers, Server, ServerContext,
    ServerRef,
};
use girder_testkit::{within, WAIT};

/// Replies to `(tag, delay)` with `tag` after `delay`, from a thread of its own, so replies
/// land while the caller runs, sleeps or has given up.
struct Delayed {
    replier: std_mpsc::Sender<(ReplyTo<u64>, u64, Duration)>,
    kept: Option<ReplyTo<u64>>,
}

enum Req {
    After(u64, Duration, ReplyTo<u64>),
    /// Keep the reply handle without answering.
    Keep(ReplyTo<u64>),
    /// Is the kept handle's caller still waiting?
    KeptIsClosed(ReplyTo<u64>),
}

impl Server for Delayed {
    type Call = Req;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, req: Req, _: &mut ServerContext<Self>) -> Flow {
        match req {
            Req::After(tag, delay, from) => self.replier.send((from, tag, delay)).unwrap(),
            Req::Keep(from) => self.kept = Some(from),
            Req::KeptIsClosed(from) => {
                let closed = self.kept.as_ref().map_or(2, |k| u64::from(k.is_closed()));
                from.reply(closed);
            }
        }
        Flow::Continue
    }
}

fn start(node: &Node, rt: &tokio::runtime::Handle) -> ServerRef<Delayed> {
    let (tx, rx) = std_mpsc::channel::<(ReplyTo<u64>, u64, Duration)>();
    std::thread::spawn(move || {
        // Each reply is due on its own: a late one does not hold up the next.
        let mut due: Vec<(Instant, ReplyTo<u64>, u64)> = Vec::new();
        loop {
            let next = due.iter().map(|d| d.0).min();
            let got = match next {
                None => rx
                    .recv()
                    .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected),
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            };
            match got {
                Ok((from, tag, delay)) => due.push((Instant::now() + delay, from, tag)),
                Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            let (ready, waiting) = due.into_iter().partition(|d| d.0 <= now);
            due = waiting;
            for (_, from, tag) in ready {
                from.reply(tag);
            }
        }
    });
    rt.block_on(server::start(
        node,
        Delayed {
            replier: tx,
            kept: None,
        },
    ))
    .unwrap()
}

/// Runs `body` in a process on `node` and returns what it sends back.
fn in_process<T: Send + 'static, F>(
    node: &Node,
    rt: &tokio::runtime::Handle,
    body: impl FnOnce() -> F + Send + 'static,
) -> T
where
    F: std::future::Future<Output = T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.spawn(move |_: Context<()>| async move {
        let _ = tx.send(body().await);
        ExitReason::Normal
    });
    rt.block_on(async { within("the body to finish", rx).await.unwrap() })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_late_reply_never_answers_the_next_call() {
    let rt = runtime();
    let _in_rt = rt.enter();
    let pool = Schedulers::new(2);
    let node = Node::builder("slots").schedulers(pool.clone()).build();
    let s = start(&node, rt.handle());
    let (first, second, third) = in_process(&node, rt.handle(), move || async move {
        let ms = Duration::from_millis;
        // Answered at ~100 ms, long after this call gave up at 20 ms...
        let first = s.call_timeout(|r| Req::After(1, ms(100), r), ms(20)).await;
        // ...and while this one, on the same slot, waits for its own answer.
        let second = s
            .call_timeout(|r| Req::After(2, ms(300), r), ms(5_000))
            .await;
        let third = s.call_timeout(|r| Req::After(3, ms(0), r), ms(5_000)).await;
        (first, second, third)
    });
    assert_eq!(first, Err(CallError::Timeout(Duration::from_millis(20))));
    assert_eq!(second, Ok(2));
    assert_eq!(third, Ok(3));
}

#[test]
fn a_reply_handle_knows_when_its_caller_gave_up() {
    let rt = runtime();
    let _in_rt = rt.enter();
    let node = Node::new("slots");
    let s = start(&node, rt.handle());
    let (gave_up, closed_after) = in_process(&node, rt.handle(), move || async move {
        let gave_up = s.call_timeout(Req::Keep, Duration::from_millis(20)).await;
        // The same slot is now on its next call; the kept handle still belongs to the old one.
        let closed_after = s.call(Req::KeptIsClosed).await;
        (gave_up, closed_after)
    });
    assert_eq!(gave_up, Err(CallError::Timeout(Duration::from_millis(20))));
    assert_eq!(closed_after, Ok(1));
}

#[test]
fn calls_polled_under_other_wakers_complete() {
    let rt = runtime();
    let _in_rt = rt.enter();
    let pool = Schedulers::new(2);
    let node = Node::builder("slots").schedulers(pool.clone()).build();
    let s = start(&node, rt.handle());
    let s2 = s.clone();
    let got = in_process(&node, rt.handle(), move || async move {
        // A first call leaves the slot holding the process's own waker.
        let mut got = vec![s.call(|r| Req::After(0, Duration::ZERO, r)).await.unwrap()];
        // Each of these is polled with a waker of FuturesUnordered's, not the process's.
        let mut calls: FuturesUnordered<_> = (1..=3u64)
            .map(|i| s.call(move |r| Req::After(i, Duration::from_millis(10 * i), r)))
            .collect();
        while let Some(r) = calls.next().await {
            got.push(r.unwrap());
        }
        drop(calls);
        // Back under the process's waker, with a select around it.
        tokio::select! {
            r = s.call(|rt| Req::After(4, Duration::from_millis(5), rt)) => got.push(r.unwrap()),
            _ = tokio::time::sleep(WAIT) => {}
        }
        got
    });
    assert_eq!(got, [0, 1, 2, 3, 4]);
    // Outside any process: a slot per call, same answers.
    rt.block_on(async {
        for i in 0..100u64 {
            assert_eq!(s2.call(|r| Req::After(i, Duration::ZERO, r)).await, Ok(i));
        }
    });
}

#[test]
fn replies_racing_timeouts_never_cross() {
    let rt = runtime();
    let _in_rt = rt.enter();
    let pool = Schedulers::new(2);
    let node = Node::builder("slots").schedulers(pool.clone()).build();
    let s = start(&node, rt.handle());
    let callers: Vec<_> = (0..2u64)
        .map(|c| {
            let s = s.clone();
            let (tx, rx) = tokio::sync::oneshot::channel();
            node.spawn(move |_: Context<()>| async move {
                let (mut answered, mut timed_out) = (0u32, 0u32);
                // Replies from 0 to 4 ms against a 1 ms timeout: some in time, some late,
                // some landing just as the caller gives up.
                for i in 0..400u64 {
                    let tag = c << 32 | i;
                    let delay = Duration::from_micros((i * 7919 + c * 31) % 4_000);
                    match s
                        .call_timeout(|r| Req::After(tag, delay, r), Duration::from_millis(1))
                        .await
                    {
                        Ok(v) => {
                            assert_eq!(v, tag, "call {i} of caller {c} got another call's reply");
                            answered += 1;
                        }
                        Err(CallError::Timeout(_)) => timed_out += 1,
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
                let _ = tx.send((answered, timed_out));
                ExitReason::Normal
            });
            rx
        })
        .collect();
    for rx in callers {
        let (answered, timed_out) = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), rx).await })
            .expect("the caller finished")
            .expect("the caller did not panic");
        assert_eq!(answered + timed_out, 400);
        assert!(
            answered > 0 && timed_out > 0,
            "{answered} answered, {timed_out} timed out"
        );
    }
}
