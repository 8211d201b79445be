//! kameo 0.22 on the multi-threaded tokio runtime, with unbounded mailboxes (as Girder's
//! default) so no workload is throttled by kameo's default capacity of 64.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use kameo::Actor;
use tokio::sync::oneshot;

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

fn unbounded<A: Actor>(args: A::Args) -> ActorRef<A> {
    A::spawn_with_mailbox(args, kameo::mailbox::unbounded())
}

type Done = Arc<Mutex<Option<oneshot::Sender<()>>>>;

fn fire(done: &Done) {
    if let Some(tx) = done.lock().unwrap().take() {
        let _ = tx.send(());
    }
}

struct Idle;

impl Actor for Idle {
    type Args = Arc<AtomicU64>;
    type Error = Infallible;
    async fn on_start(waiting: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        waiting.fetch_add(1, Ordering::Relaxed);
        Ok(Idle)
    }
}

struct Wake;

impl Message<Wake> for Idle {
    type Reply = ();
    async fn handle(&mut self, _: Wake, ctx: &mut Context<Self, ()>) {
        ctx.stop();
    }
}

async fn spawn(n: u64) -> Outcome {
    let waiting = Arc::new(AtomicU64::new(0));
    let mut refs = Vec::with_capacity(n as usize);
    let before = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    common::count_start();
    let t0 = Instant::now();
    for _ in 0..n {
        refs.push(unbounded::<Idle>(waiting.clone()));
    }
    let elapsed = t0.elapsed();
    // Measure once every process is idle in its first receive.
    common::wait_count(&waiting, n).await;
    let bytes = common::count_stop();
    let per = common::per_proc(bytes, n);
    for r in &refs {
        let _ = r.tell(Wake).try_send();
    }
    drop(refs);
    common::wait_alive_tasks(before).await;
    vec![("spawn_ns_per_proc", elapsed.as_nanos() as f64 / n as f64), ("mem_bytes_per_proc", per)]
}

struct RingNode {
    next: Option<ActorRef<RingNode>>,
    done: Done,
}

impl Actor for RingNode {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(this: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(this)
    }
}

struct Next(ActorRef<RingNode>);
struct Token(u64);

impl Message<Next> for RingNode {
    type Reply = ();
    async fn handle(&mut self, Next(n): Next, _: &mut Context<Self, ()>) {
        self.next = Some(n);
    }
}

impl Message<Token> for RingNode {
    type Reply = ();
    async fn handle(&mut self, Token(left): Token, ctx: &mut Context<Self, ()>) {
        let next = self.next.as_ref().unwrap();
        if left == 0 {
            fire(&self.done);
            let _ = next.tell(Token(0)).try_send();
            ctx.stop();
        } else {
            let _ = next.tell(Token(left - 1)).try_send();
        }
    }
}

async fn ring(procs: usize, hops: u64) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let done: Done = Arc::new(Mutex::new(Some(tx)));
    let nodes: Vec<_> = (0..procs).map(|_| unbounded::<RingNode>(RingNode { next: None, done: done.clone() })).collect();
    for i in 0..procs {
        nodes[i].tell(Next(nodes[(i + 1) % procs].clone())).try_send().unwrap();
    }
    let t0 = Instant::now();
    nodes[0].tell(Token(hops)).try_send().unwrap();
    rx.await.unwrap();
    vec![("hops_per_s", hops as f64 / t0.elapsed().as_secs_f64())]
}

struct Player {
    peer: Option<ActorRef<Player>>,
    done: Option<Done>,
}

impl Actor for Player {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(this: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(this)
    }
}

struct Peer(ActorRef<Player>);
struct Hit(u64);

impl Message<Peer> for Player {
    type Reply = ();
    async fn handle(&mut self, Peer(p): Peer, _: &mut Context<Self, ()>) {
        self.peer = Some(p);
    }
}

impl Message<Hit> for Player {
    type Reply = ();
    async fn handle(&mut self, Hit(k): Hit, ctx: &mut Context<Self, ()>) {
        let peer = self.peer.as_ref().unwrap();
        match &self.done {
            None if k == 0 => ctx.stop(),
            None => {
                let _ = peer.tell(Hit(k)).try_send();
            }
            Some(done) if k == 1 => {
                let _ = peer.tell(Hit(0)).try_send();
                fire(done);
                ctx.stop();
            }
            Some(_) => {
                let _ = peer.tell(Hit(k - 1)).try_send();
            }
        }
    }
}

async fn pingpong(n: u64) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let pong = unbounded::<Player>(Player { peer: None, done: None });
    let ping = unbounded::<Player>(Player { peer: None, done: Some(Arc::new(Mutex::new(Some(tx)))) });
    pong.tell(Peer(ping.clone())).try_send().unwrap();
    ping.tell(Peer(pong.clone())).try_send().unwrap();
    let t0 = Instant::now();
    pong.tell(Hit(n)).try_send().unwrap();
    rx.await.unwrap();
    vec![("round_trips_per_s", n as f64 / t0.elapsed().as_secs_f64())]
}

struct Echo;

impl Actor for Echo {
    type Args = ();
    type Error = Infallible;
    async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Echo)
    }
}

struct Req(u64);

impl Message<Req> for Echo {
    type Reply = u64;
    async fn handle(&mut self, Req(n): Req, _: &mut Context<Self, u64>) -> u64 {
        n + 1
    }
}

async fn calls(callers: usize, per_caller: u64) -> Outcome {
    let echo = unbounded::<Echo>(());
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..callers {
        let echo = echo.clone();
        handles.push(tokio::spawn(async move {
            let mut h = common::histogram();
            for i in 0..per_caller {
                let start = Instant::now();
                let r = echo.ask(Req(i)).await.unwrap();
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

struct Sink {
    seen: u64,
    total: u64,
    done: Done,
}

impl Actor for Sink {
    type Args = Self;
    type Error = Infallible;
    async fn on_start(this: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(this)
    }
}

struct Item(#[allow(dead_code)] u64);

impl Message<Item> for Sink {
    type Reply = ();
    async fn handle(&mut self, _: Item, ctx: &mut Context<Self, ()>) {
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
    let sink = unbounded::<Sink>(Sink { seen: 0, total, done: Arc::new(Mutex::new(Some(tx))) });
    let t0 = Instant::now();
    for _ in 0..producers {
        let sink = sink.clone();
        tokio::spawn(async move {
            for i in 0..each {
                let _ = sink.tell(Item(i)).try_send();
            }
        });
    }
    rx.await.unwrap();
    vec![("msgs_per_s", total as f64 / t0.elapsed().as_secs_f64())]
}

/// Arms its timers for itself with kameo's delayed send, `actor_ref.tell(msg).send_after(d)`
/// (a tokio task that sleeps, then sends), and cancels them with `abort()` on the returned
/// `JoinHandle`: the rounds of `common::task_timers`, in its handler.
struct TimerActor {
    n: u64,
}

impl Actor for TimerActor {
    type Args = u64;
    type Error = Infallible;
    async fn on_start(n: u64, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(TimerActor { n })
    }
}

struct StartTimers(oneshot::Sender<Outcome>);
struct Tick;

impl Message<StartTimers> for TimerActor {
    type Reply = ();
    async fn handle(&mut self, StartTimers(reply): StartTimers, ctx: &mut Context<Self, ()>) {
        let me = ctx.actor_ref();
        let out = common::task_timers(self.n, || me.tell(Tick).send_after(common::TIMER_DELAY), |h| h.abort()).await;
        let _ = reply.send(out);
    }
}

impl Message<Tick> for TimerActor {
    type Reply = ();
    async fn handle(&mut self, _: Tick, _: &mut Context<Self, ()>) {
        unreachable!("no timer fires within the hour");
    }
}

async fn timers(n: u64) -> Outcome {
    let actor = unbounded::<TimerActor>(n);
    let (tx, rx) = oneshot::channel();
    actor.tell(StartTimers(tx)).try_send().unwrap();
    let out = rx.await.unwrap();
    let _ = actor.stop_gracefully().await;
    actor.wait_for_shutdown().await;
    out
}
