//! actix 0.13: actors on one System thread, as actix runs them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
