//! actix 0.13: actors on one System thread, as actix runs them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::common::{self, Outcome};

pub fn run(workload: &str, scale: f64) -> Outcome {
    let c = common::counts(scale);
    let sys = actix::System::new();
    let out = sys.block_on(async move {
        match workload {
            "spawn" => spawn(c.spawn).await,
            "ring" => ring(c.ring_procs, c.ring_hops).await,
            "pingpong" => pingpong(c.pingpong).await,
            "call_c1" => calls(1, c.c1_calls).await,
            "call_c100" => calls(c.c100_callers, c.c100_calls).await,
            "fanin" => fanin(c.fanin_producers, c.fanin_each).await,
            "timers" => timers(c.timers).await,
            _ => unreachable!(),
        }
    });
    out
}

#[derive(Message)]
#[rtype(result = "()")]
struct Wake;

/// Counts starts, then stops: `n` once all are idle, `2 * n` once all are gone.
struct Idle(Arc<AtomicU64>);

impl Actor for Idle {
    type Context = Context<Self>;
    fn started(&mut self, _: &mut Context<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    fn stopped(&mut self, _: &mut Context<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Handler<Wake> for Idle {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

async fn spawn(n: u64) -> Outcome {
    let waiting = Arc::new(AtomicU64::new(0));
    let mut addrs = Vec::with_capacity(n as usize);
    common::count_start();
    let t0 = Instant::now();
    for _ in 0..n {
        addrs.push(Idle(waiting.clone()).start());
    }
    let elapsed = t0.elapsed();
    // Measure once every process is idle in its first receive.
    common::wait_count(&waiting, n).await;
    let bytes = common::count_stop();
    let per = common::per_proc(bytes, n);
    for a in &addrs {
        a.do_send(Wake);
    }
    drop(addrs);
    common::wait_count(&waiting, 2 * n).await;
    vec![("spawn_ns_per_proc", elapsed.as_nanos() as f64 / n as f64), ("mem_bytes_per_proc", per)]
}

type Done = Arc<Mutex<Option<oneshot::Sender<()>>>>;

fn fire(done: &Done) {
    if let Some(tx) = done.lock().unwrap().take() {
        let _ = tx.send(());
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Next(Addr<RingNode>);

#[derive(Message)]
#[rtype(result = "()")]
struct Token(u64);

struct RingNode {
    next: Option<Addr<RingNode>>,
    done: Done,
}

impl Actor for RingNode {
    type Context = Context<Self>;
}

impl Handler<Next> for RingNode {
    type Result = ();
    fn handle(&mut self, Next(next): Next, _: &mut Context<Self>) {
        self.next = Some(next);
    }
}

impl Handler<Token> for RingNode {
    type Result = ();
    fn handle(&mut self, Token(left): Token, ctx: &mut Context<Self>) {
        let next = self.next.as_ref().expect("ring is wired");
        if left == 0 {
            fire(&self.done);
            next.do_send(Token(0));
            ctx.stop();
        } else {
            next.do_send(Token(left - 1));
        }
    }
}

async fn ring(procs: usize, hops: u64) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let done: Done = Arc::new(Mutex::new(Some(tx)));
    let nodes: Vec<_> = (0..procs).map(|_| RingNode { next: None, done: done.clone() }.start()).collect();
    for i in 0..procs {
        nodes[i].do_send(Next(nodes[(i + 1) % procs].clone()));
    }
    let t0 = Instant::now();
    nodes[0].do_send(Token(hops));
    rx.await.unwrap();
    vec![("hops_per_s", hops as f64 / t0.elapsed().as_secs_f64())]
}

#[derive(Message)]
#[rtype(result = "()")]
struct Ball(u64);

struct Pong {
    ping: Option<Addr<Ping>>,
}
struct Ping {
    pong: Addr<Pong>,
    done: Done,
}

#[derive(Message)]
#[rtype(result = "()")]
struct PingIs(Addr<Ping>);

impl Actor for Pong {
    type Context = Context<Self>;
}
impl Actor for Ping {
    type Context = Context<Self>;
}

impl Handler<PingIs> for Pong {
    type Result = ();
    fn handle(&mut self, PingIs(p): PingIs, _: &mut Context<Self>) {
        self.ping = Some(p);
    }
}

impl Handler<Ball> for Pong {
    type Result = ();
    fn handle(&mut self, Ball(k): Ball, ctx: &mut Context<Self>) {
        if k == 0 {
            ctx.stop();
        } else {
            self.ping.as_ref().unwrap().do_send(Ball(k));
        }
    }
}

impl Handler<Ball> for Ping {
    type Result = ();
    fn handle(&mut self, Ball(k): Ball, ctx: &mut Context<Self>) {
        if k == 1 {
            self.pong.do_send(Ball(0));
            fire(&self.done);
            ctx.stop();
        } else {
            self.pong.do_send(Ball(k - 1));
        }
    }
}

async fn pingpong(n: u64) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let pong = Pong { ping: None }.start();
    let ping = Ping { pong: pong.clone(), done: Arc::new(Mutex::new(Some(tx))) }.start();
    pong.do_send(PingIs(ping));
    let t0 = Instant::now();
    pong.do_send(Ball(n));
    rx.await.unwrap();
    vec![("round_trips_per_s", n as f64 / t0.elapsed().as_secs_f64())]
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Req(u64);

struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Handler<Req> for Echo {
    type Result = u64;
    fn handle(&mut self, Req(n): Req, _: &mut Context<Self>) -> u64 {
        n + 1
    }
}

async fn calls(callers: usize, per_caller: u64) -> Outcome {
    let echo = Echo.start();
    let t0 = Instant::now();
    let mut results = Vec::new();
    for _ in 0..callers {
        let echo = echo.clone();
        let (tx, rx) = oneshot::channel();
        results.push(rx);
        actix_rt::spawn(async move {
            let mut h = common::histogram();
            for i in 0..per_caller {
                let start = Instant::now();
                let r = echo.send(Req(i)).await.unwrap();
                h.saturating_record(start.elapsed().as_nanos() as u64);
                debug_assert_eq!(r, i + 1);
            }
            let _ = tx.send(h);
        });
    }
    let mut all = common::histogram();
    for rx in results {
        all.add(rx.await.unwrap()).unwrap();
    }
    common::call_outcome(callers as u64 * per_caller, t0.elapsed().as_secs_f64(), &all)
}

#[derive(Message)]
#[rtype(result = "()")]
struct Item(#[allow(dead_code)] u64);

struct Sink {
    seen: u64,
    total: u64,
    done: Done,
}

impl Actor for Sink {
    type Context = Context<Self>;
}

impl Handler<Item> for Sink {
    type Result = ();
    fn handle(&mut self, _: Item, ctx: &mut Context<Self>) {
        self.seen += 1;
        if self.seen == self.total {
            fire(&self.done);
            ctx.stop();
        }
    }
}

async fn fanin(producers: usize, each: u64) -> Outcome {
    let total = producers as u64 * each;
    let (tx, rx) = oneshot::channel();
    let sink = Sink { seen: 0, total, done: Arc::new(Mutex::new(Some(tx))) }.start();
    let t0 = Instant::now();
    for _ in 0..producers {
        let sink = sink.clone();
        actix_rt::spawn(async move {
            for i in 0..each {
                sink.do_send(Item(i));
            }
        });
    }
    rx.await.unwrap();
    vec![("msgs_per_s", total as f64 / t0.elapsed().as_secs_f64())]
}

// `timers`: `ctx.notify_later(msg, d)` inside an actor (a boxed future in the actor's context,
// holding a tokio `Sleep`), cancelled with `ctx.cancel_future(handle)`.
//
// `cancel_future` only records the handle. The context removes a cancelled future the next time
// it polls its futures, by a linear search of all of them per handle (actix's own comment: "not
// very efficient, relaying on fact that cancellation should be rare also number of futures in
// actor context should be small"): cancelling all of n armed timers costs O(n²) (measured per
// timer: 0.4 µs at 1,000, 3.6 µs at 10,000, 39 µs at 100,000; so some 0.4 ms at a million, over
// six minutes a round). So each round's actor stops right after its timed cancel loop (a
// stopping context drops its futures without that search), the line has `cancel_call_ns` (the
// `cancel_future` calls) and no `cancel_ns`, and the removal is timed once on `REAP_MAX`
// timers: `reap_ns` (ns per timer from the first `cancel_future` until all are removed, for
// `reap_timers` timers; it grows linearly with their number).
// Also, a context polls every future it holds each time it wakes: `msg_us_armed` is the round
// trip of one message to the actor while its n timers are armed.

/// The most timers whose removal after `cancel_future` is timed (O(n²)).
const REAP_MAX: u64 = 10_000;

#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

struct TimerActor {
    handles: Vec<SpawnHandle>,
    stopped: Option<oneshot::Sender<()>>,
}

impl Actor for TimerActor {
    type Context = Context<Self>;
    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(tx) = self.stopped.take() {
            let _ = tx.send(());
        }
    }
}

impl Handler<Tick> for TimerActor {
    type Result = ();
    fn handle(&mut self, _: Tick, _: &mut Context<Self>) {
        unreachable!("no timer fires within the hour");
    }
}

/// Arms `n` timers for itself; answers the time taken, when it started and, if `count`, the net
/// bytes allocated.
#[derive(Message)]
#[rtype(result = "()")]
struct Arm {
    n: u64,
    count: bool,
    reply: oneshot::Sender<(Duration, Instant, isize)>,
}

impl Handler<Arm> for TimerActor {
    type Result = ();
    fn handle(&mut self, Arm { n, count, reply }: Arm, ctx: &mut Context<Self>) {
        if count {
            common::count_start();
        }
        let t0 = Instant::now();
        for _ in 0..n {
            self.handles.push(ctx.notify_later(Tick, common::TIMER_DELAY));
        }
        let elapsed = t0.elapsed();
        let bytes = if count { common::count_stop() } else { 0 };
        let _ = reply.send((elapsed, t0, bytes));
    }
}

/// Cancels every armed timer; answers the time taken and when it started. With `stop`, the
/// actor stops too.
#[derive(Message)]
#[rtype(result = "()")]
struct Cancel {
    stop: bool,
    reply: oneshot::Sender<(Duration, Instant)>,
}

impl Handler<Cancel> for TimerActor {
    type Result = ();
    fn handle(&mut self, Cancel { stop, reply }: Cancel, ctx: &mut Context<Self>) {
        let t0 = Instant::now();
        for h in &self.handles {
            ctx.cancel_future(*h);
        }
        let elapsed = t0.elapsed();
        self.handles.clear();
        if stop {
            ctx.stop();
        }
        let _ = reply.send((elapsed, t0));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Probe(oneshot::Sender<()>);

impl Handler<Probe> for TimerActor {
    type Result = ();
    fn handle(&mut self, Probe(reply): Probe, _: &mut Context<Self>) {
        let _ = reply.send(());
    }
}

/// A timer actor with room for `n` handles, and the signal of its stop.
fn timer_actor(n: u64) -> (Addr<TimerActor>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    (TimerActor { handles: Vec::with_capacity(n as usize), stopped: Some(tx) }.start(), rx)
}

async fn arm(addr: &Addr<TimerActor>, n: u64, count: bool) -> (Duration, Instant, isize) {
    let (tx, rx) = oneshot::channel();
    addr.do_send(Arm { n, count, reply: tx });
    rx.await.unwrap()
}

async fn cancel(addr: &Addr<TimerActor>, stop: bool) -> (Duration, Instant) {
    let (tx, rx) = oneshot::channel();
    addr.do_send(Cancel { stop, reply: tx });
    rx.await.unwrap()
}

async fn timers(n: u64) -> Outcome {
    let (mut arms, mut armed, mut cancels, mut pings) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0;
    for round in 0..common::TIMER_ROUNDS {
        // A new actor each round: one that removed its cancelled timers would take O(n²).
        let (addr, stopped) = timer_actor(n);
        let (elapsed, t0, b) = arm(&addr, n, round == 0).await;
        // The actor runs on this thread: its reply is read once its context has taken in the
        // new futures and polled each once (its Sleep enters tokio's time wheel then).
        armed.push(t0.elapsed());
        arms.push(elapsed);
        if round == 0 {
            bytes = b;
        }
        let t0 = Instant::now();
        let (tx, rx) = oneshot::channel();
        addr.do_send(Probe(tx));
        rx.await.unwrap();
        pings.push(t0.elapsed());
        cancels.push(cancel(&addr, true).await.0);
        stopped.await.unwrap();
    }
    let reap_n = n.min(REAP_MAX);
    let (addr, stopped) = timer_actor(reap_n);
    arm(&addr, reap_n, false).await;
    let (_, t0) = cancel(&addr, false).await;
    // Read once the context has removed the cancelled futures (this thread ran it until then).
    let reap = t0.elapsed();
    drop(addr);
    stopped.await.unwrap();
    pings.sort();
    vec![
        ("timers", n as f64),
        ("arm_ns", common::median_ns(arms, n)),
        ("bytes_per_timer", common::per_proc(bytes, n)),
        ("arm_done_ns", common::median_ns(armed, n)),
        ("cancel_call_ns", common::median_ns(cancels, n)),
        ("msg_us_armed", pings[pings.len() / 2].as_secs_f64() * 1e6),
        ("reap_timers", reap_n as f64),
        ("reap_ns", reap.as_secs_f64() * 1e9 / reap_n as f64),
    ]
}
