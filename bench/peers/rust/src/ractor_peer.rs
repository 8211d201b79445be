//! ractor 0.16 on the multi-threaded tokio runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
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

type Done = Arc<Mutex<Option<oneshot::Sender<()>>>>;

fn fire(done: &Done) {
    if let Some(tx) = done.lock().unwrap().take() {
        let _ = tx.send(());
    }
}

struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = Arc<AtomicU64>;
    async fn pre_start(&self, _: ActorRef<()>, waiting: Arc<AtomicU64>) -> Result<(), ActorProcessingErr> {
        waiting.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn handle(&self, myself: ActorRef<()>, _: (), _: &mut ()) -> Result<(), ActorProcessingErr> {
        myself.stop(None);
        Ok(())
    }
}

async fn spawn(n: u64) -> Outcome {
    let waiting = Arc::new(AtomicU64::new(0));
    let mut refs = Vec::with_capacity(n as usize);
    let before = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    common::count_start();
    let t0 = Instant::now();
    for _ in 0..n {
        let (r, _join) = Actor::spawn(None, Idle, waiting.clone()).await.unwrap();
        refs.push(r);
    }
    let elapsed = t0.elapsed();
    // Measure once every process is idle in its first receive.
    common::wait_count(&waiting, n).await;
    let bytes = common::count_stop();
    let per = common::per_proc(bytes, n);
    for r in &refs {
        let _ = r.cast(());
    }
    drop(refs);
    common::wait_alive_tasks(before).await;
    vec![("spawn_ns_per_proc", elapsed.as_nanos() as f64 / n as f64), ("mem_bytes_per_proc", per)]
}

enum RingMsg {
    Next(ActorRef<RingMsg>),
    Token(u64),
}

struct RingNode;

impl Actor for RingNode {
    type Msg = RingMsg;
    type State = (Option<ActorRef<RingMsg>>, Done);
    type Arguments = Done;
    async fn pre_start(&self, _: ActorRef<RingMsg>, done: Done) -> Result<Self::State, ActorProcessingErr> {
        Ok((None, done))
    }
    async fn handle(&self, myself: ActorRef<RingMsg>, msg: RingMsg, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match msg {
            RingMsg::Next(n) => state.0 = Some(n),
            RingMsg::Token(0) => {
                fire(&state.1);
                let _ = state.0.as_ref().unwrap().cast(RingMsg::Token(0));
                myself.stop(None);
            }
            RingMsg::Token(left) => {
                let _ = state.0.as_ref().unwrap().cast(RingMsg::Token(left - 1));
            }
        }
        Ok(())
    }
}

async fn ring(procs: usize, hops: u64) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let done: Done = Arc::new(Mutex::new(Some(tx)));
    let mut nodes = Vec::new();
    for _ in 0..procs {
        nodes.push(Actor::spawn(None, RingNode, done.clone()).await.unwrap().0);
    }
    for i in 0..procs {
        nodes[i].cast(RingMsg::Next(nodes[(i + 1) % procs].clone())).unwrap();
    }
    let t0 = Instant::now();
    nodes[0].cast(RingMsg::Token(hops)).unwrap();
    rx.await.unwrap();
    vec![("hops_per_s", hops as f64 / t0.elapsed().as_secs_f64())]
}

enum Ball {
    Peer(ActorRef<Ball>),
    Hit(u64),
}

struct Player {
    done: Option<Done>,
}

impl Actor for Player {
    type Msg = Ball;
    type State = Option<ActorRef<Ball>>;
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Ball>, _: ()) -> Result<Self::State, ActorProcessingErr> {
        Ok(None)
    }
    async fn handle(&self, myself: ActorRef<Ball>, msg: Ball, peer: &mut Self::State) -> Result<(), ActorProcessingErr> {
        match (msg, &self.done) {
            (Ball::Peer(p), _) => *peer = Some(p),
            // pong
            (Ball::Hit(0), None) => myself.stop(None),
            (Ball::Hit(k), None) => peer.as_ref().unwrap().cast(Ball::Hit(k))?,
            // ping
            (Ball::Hit(1), Some(done)) => {
                peer.as_ref().unwrap().cast(Ball::Hit(0))?;
                fire(done);
                myself.stop(None);
            }
            (Ball::Hit(k), Some(_)) => peer.as_ref().unwrap().cast(Ball::Hit(k - 1))?,
        }
        Ok(())
    }
}

async fn pingpong(n: u64) -> Outcome {
    let (tx, rx) = oneshot::channel();
    let (pong, _) = Actor::spawn(None, Player { done: None }, ()).await.unwrap();
    let (ping, _) = Actor::spawn(None, Player { done: Some(Arc::new(Mutex::new(Some(tx)))) }, ()).await.unwrap();
    pong.cast(Ball::Peer(ping.clone())).unwrap();
    ping.cast(Ball::Peer(pong.clone())).unwrap();
    let t0 = Instant::now();
    pong.cast(Ball::Hit(n)).unwrap();
    rx.await.unwrap();
    vec![("round_trips_per_s", n as f64 / t0.elapsed().as_secs_f64())]
}

struct Echo;

impl Actor for Echo {
    type Msg = (u64, RpcReplyPort<u64>);
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(&self, _: ActorRef<Self::Msg>, (n, reply): Self::Msg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(n + 1);
        Ok(())
    }
}

async fn calls(callers: usize, per_caller: u64) -> Outcome {
    let (echo, _) = Actor::spawn(None, Echo, ()).await.unwrap();
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..callers {
        let echo = echo.clone();
        handles.push(tokio::spawn(async move {
            let mut h = common::histogram();
            for i in 0..per_caller {
                let start = Instant::now();
                let r = echo.call(|reply| (i, reply), None).await.unwrap();
                h.saturating_record(start.elapsed().as_nanos() as u64);
                debug_assert!(matches!(r, ractor::rpc::CallResult::Success(v) if v == i + 1));
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

struct Sink;

impl Actor for Sink {
    type Msg = u64;
    type State = (u64, u64, Done);
    type Arguments = (u64, Done);
    async fn pre_start(&self, _: ActorRef<u64>, (total, done): (u64, Done)) -> Result<Self::State, ActorProcessingErr> {
        Ok((0, total, done))
    }
    async fn handle(&self, myself: ActorRef<u64>, _: u64, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        state.0 += 1;
        if state.0 == state.1 {
            fire(&state.2);
            myself.stop(None);
        }
        Ok(())
    }
}

async fn fanin(producers: usize, each: u64) -> Outcome {
    let total = producers as u64 * each;
    let (tx, rx) = oneshot::channel();
    let (sink, _) = Actor::spawn(None, Sink, (total, Arc::new(Mutex::new(Some(tx))))).await.unwrap();
    let t0 = Instant::now();
    for _ in 0..producers {
        let sink = sink.clone();
        tokio::spawn(async move {
            for i in 0..each {
                let _ = sink.cast(i);
            }
        });
    }
    rx.await.unwrap();
    vec![("msgs_per_s", total as f64 / t0.elapsed().as_secs_f64())]
}

enum TimerMsg {
    Start(oneshot::Sender<Outcome>),
    Tick,
}

/// Arms its timers for itself with ractor's timer API, `ActorRef::send_after` (a tokio task
/// that sleeps, then sends; `ractor::time::send_after` underneath), and cancels them with
/// `abort()` on the returned `JoinHandle`: the rounds of `common::task_timers`, in its handler.
struct TimerActor;

impl Actor for TimerActor {
    type Msg = TimerMsg;
    type State = u64;
    type Arguments = u64;
    async fn pre_start(&self, _: ActorRef<TimerMsg>, n: u64) -> Result<u64, ActorProcessingErr> {
        Ok(n)
    }
    async fn handle(&self, myself: ActorRef<TimerMsg>, msg: TimerMsg, n: &mut u64) -> Result<(), ActorProcessingErr> {
        match msg {
            TimerMsg::Start(reply) => {
                let n = *n;
                let out = common::task_timers(
                    n,
                    || myself.send_after(common::TIMER_DELAY, || TimerMsg::Tick),
                    |h| h.abort(),
                )
                .await;
                let _ = reply.send(out);
            }
            TimerMsg::Tick => unreachable!("no timer fires within the hour"),
        }
        Ok(())
    }
}

async fn timers(n: u64) -> Outcome {
    let (actor, join) = Actor::spawn(None, TimerActor, n).await.unwrap();
    let (tx, rx) = oneshot::channel();
    actor.cast(TimerMsg::Start(tx)).unwrap();
    let out = rx.await.unwrap();
    actor.stop(None);
    join.await.unwrap();
    out
}
