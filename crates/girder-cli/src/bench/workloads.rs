//! The workloads themselves, written against Girder's public API only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use girder::{
    server, Addr, Context, Event, ExitReason, Flow, Node, ReplyTo, Server, ServerContext, ServerRef,
};
use hdrhistogram::Histogram;
use tokio::sync::oneshot;

use super::Outcome;
use crate::alloc;

fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64 * scale).round() as u64).max(1)
}

pub async fn run(node: Node, name: &'static str, scale: f64) -> Outcome {
    match name {
        // Spawned from a runtime thread, as a process would spawn others (on the schedulers
        // this future already runs on one).
        "spawn" if node.runs_on_schedulers() => spawn(&node, scaled(1_000_000, scale)).await,
        "spawn" => {
            let n = node.clone();
            tokio::spawn(async move { spawn(&n, scaled(1_000_000, scale)).await })
                .await
                .expect("spawn workload runs")
        }
        "ring" => ring(&node, 1_000, scaled(10_000_000, scale)).await,
        "pingpong" => pingpong(&node, scaled(2_000_000, scale)).await,
        "call_c1" => calls(&node, "call_c1", 1, scaled(1_000_000, scale)).await,
        "call_c100" => calls(&node, "call_c100", 100, scaled(10_000, scale)).await,
        "fanin" => fanin(&node, 100, scaled(100_000, scale)).await,
        "supervisor_churn" => {
            let (idle, pairs) = (scaled(100_000, scale), scaled(1_000, scale));
            super::supervision::supervisor_churn(&node, idle, pairs).await
        }
        "timers" => super::timers::timers(&node, scaled(1_000_000, scale)).await,
        other => unreachable!("unknown workload {other}"),
    }
}

/// N idle processes, each waiting for one message; then all are stopped.
async fn spawn(node: &Node, n: u64) -> Outcome {
    let mut addrs = Vec::with_capacity(n as usize);
    let waiting = Arc::new(AtomicU64::new(0));
    alloc::start();
    let t0 = Instant::now();
    for _ in 0..n {
        let waiting = waiting.clone();
        addrs.push(node.spawn(move |mut ctx: Context<()>| async move {
            waiting.fetch_add(1, Ordering::Relaxed);
            drop(waiting);
            ctx.recv().await;
            ExitReason::Normal
        }));
    }
    let spawn_elapsed = t0.elapsed();
    // Measure once every process is idle in its first receive.
    while waiting.load(Ordering::Relaxed) < n {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let bytes = alloc::stop();
    // The handles vector was allocated before counting started, so it is not in `bytes`.
    let per_proc = bytes as f64 / n as f64;
    for a in &addrs {
        let _ = a.send(());
    }
    drop(addrs);
    while node.process_count() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Outcome {
        workload: "spawn",
        values: vec![
            (
                "spawn_ns_per_proc",
                spawn_elapsed.as_nanos() as f64 / n as f64,
            ),
            ("mem_bytes_per_proc", per_proc.round()),
        ],
    }
}

enum RingMsg {
    Next(Addr<RingMsg>),
    Token(u64),
}

/// `procs` processes in a ring pass a token `hops` times in all.
async fn ring(node: &Node, procs: usize, hops: u64) -> Outcome {
    let (done_tx, done_rx) = oneshot::channel::<()>();
    // Every process sees the final token on its way round; the first one reports.
    let done = Arc::new(Mutex::new(Some(done_tx)));
    let mut ring: Vec<Addr<RingMsg>> = Vec::with_capacity(procs);
    for _ in 0..procs {
        let done = done.clone();
        ring.push(node.spawn(move |mut ctx: Context<RingMsg>| async move {
            let Event::Message(RingMsg::Next(next)) = ctx.recv().await else {
                return ExitReason::error("ring: expected Next");
            };
            loop {
                match ctx.recv().await {
                    Event::Message(RingMsg::Token(0)) => {
                        if let Some(tx) = done.lock().expect("not poisoned").take() {
                            let _ = tx.send(());
                        }
                        let _ = next.send(RingMsg::Token(0));
                        return ExitReason::Normal;
                    }
                    Event::Message(RingMsg::Token(left)) => {
                        let _ = next.send(RingMsg::Token(left - 1));
                    }
                    _ => {}
                }
            }
        }));
    }
    for i in 0..procs {
        let _ = ring[i].send(RingMsg::Next(ring[(i + 1) % procs].clone()));
    }
    let t0 = Instant::now();
    let _ = ring[0].send(RingMsg::Token(hops));
    let _ = done_rx.await;
    let elapsed = t0.elapsed();
    drop(ring);
    wait_empty(node).await;
    Outcome {
        workload: "ring",
        values: vec![("hops_per_s", hops as f64 / elapsed.as_secs_f64())],
    }
}

enum Ping {
    Peer(Addr<Ping>),
    Ball(u64),
}

/// Two processes bounce a ball `n` round trips.
async fn pingpong(node: &Node, n: u64) -> Outcome {
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let pong = node.spawn(|mut ctx: Context<Ping>| async move {
        let Event::Message(Ping::Peer(ping)) = ctx.recv().await else {
            return ExitReason::error("pong: expected Peer");
        };
        loop {
            match ctx.recv().await {
                Event::Message(Ping::Ball(0)) => return ExitReason::Normal,
                Event::Message(Ping::Ball(k)) => {
                    let _ = ping.send(Ping::Ball(k));
                }
                _ => {}
            }
        }
    });
    let pong2 = pong.clone();
    let ping = node.spawn(move |mut ctx: Context<Ping>| async move {
        let _ = pong2.send(Ping::Peer(ctx.addr()));
        let _ = pong2.send(Ping::Ball(n));
        loop {
            if let Event::Message(Ping::Ball(k)) = ctx.recv().await {
                if k == 1 {
                    let _ = pong2.send(Ping::Ball(0));
                    let _ = done_tx.send(());
                    return ExitReason::Normal;
                }
                let _ = pong2.send(Ping::Ball(k - 1));
            }
        }
    });
    let t0 = Instant::now();
    let _ = done_rx.await;
    let elapsed = t0.elapsed();
    drop((ping, pong));
    wait_empty(node).await;
    Outcome {
        workload: "pingpong",
        values: vec![("round_trips_per_s", n as f64 / elapsed.as_secs_f64())],
    }
}

struct Echo;

impl Server for Echo {
    type Call = (u64, ReplyTo<u64>);
    type Cast = ();
    type Info = ();

    async fn handle_call(
        &mut self,
        (n, from): (u64, ReplyTo<u64>),
        _: &mut ServerContext<Self>,
    ) -> Flow {
        from.reply(n + 1);
        Flow::Continue
    }
}

/// `callers` processes each make `per_caller` calls to one trivial server.
async fn calls(node: &Node, name: &'static str, callers: usize, per_caller: u64) -> Outcome {
    let echo: ServerRef<Echo> = server::start(node, Echo).await.expect("echo server starts");
    let mut results = Vec::with_capacity(callers);
    let t0 = Instant::now();
    for _ in 0..callers {
        let echo = echo.clone();
        let (tx, rx) = oneshot::channel();
        results.push(rx);
        node.spawn(move |_: Context<()>| async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 2).expect("histogram bounds");
            for i in 0..per_caller {
                let start = Instant::now();
                let r = echo.call(|r| (i, r)).await;
                hist.saturating_record(start.elapsed().as_nanos() as u64);
                debug_assert_eq!(r, Ok(i + 1));
            }
            let _ = tx.send(hist);
            ExitReason::Normal
        });
    }
    let mut all =
        Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 2).expect("histogram bounds");
    for rx in results {
        all.add(rx.await.expect("caller reports"))
            .expect("same bounds");
    }
    let elapsed = t0.elapsed();
    echo.stop(ExitReason::Normal).await;
    wait_empty(node).await;
    let total = callers as u64 * per_caller;
    Outcome {
        workload: name,
        values: vec![
            ("calls_per_s", total as f64 / elapsed.as_secs_f64()),
            ("p50_us", all.value_at_quantile(0.50) as f64 / 1000.0),
            ("p99_us", all.value_at_quantile(0.99) as f64 / 1000.0),
        ],
    }
}

/// `producers` processes each send `per_producer` messages to one consumer.
async fn fanin(node: &Node, producers: usize, per_producer: u64) -> Outcome {
    let total = producers as u64 * per_producer;
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let sink = node.spawn(move |mut ctx: Context<u64>| async move {
        let mut seen = 0u64;
        while seen < total {
            if let Event::Message(_) = ctx.recv().await {
                seen += 1;
            }
        }
        let _ = done_tx.send(());
        ExitReason::Normal
    });
    let t0 = Instant::now();
    for _ in 0..producers {
        let sink = sink.clone();
        node.spawn(move |_: Context<()>| async move {
            for i in 0..per_producer {
                let _ = sink.send(i);
            }
            ExitReason::Normal
        });
    }
    let _ = done_rx.await;
    let elapsed = t0.elapsed();
    drop(sink);
    wait_empty(node).await;
    Outcome {
        workload: "fanin",
        values: vec![("msgs_per_s", total as f64 / elapsed.as_secs_f64())],
    }
}

async fn wait_empty(node: &Node) {
    while node.process_count() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
