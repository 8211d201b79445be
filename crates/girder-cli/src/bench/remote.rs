//! `dist_send`, `dist_call_c1`, `dist_call_c50`, `hol`: processes on two nodes that are two OS
//! processes on loopback. This process is the client node; it starts a copy of itself as the
//! server node (`girder bench-peer`), which runs a sink process, an echo server and a slow
//! receiver (`hol`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use girder::{Context, Event, ExitReason, Flow, Node, Pid, ReplyTo, Server, ServerContext};
use girder_dist::{Cookie, DistConfig, DistNode, NodeName, Wire};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::Outcome;

const COOKIE: &str = "girder-bench-remote-cookie";

/// What the sink takes: how many to expect and whom to tell, then the messages.
#[derive(Serialize, Deserialize)]
pub enum SinkMsg {
    Expect { n: u64, notify: Pid },
    Data(u64),
}

impl Wire for SinkMsg {
    const NAME: &'static str = "bench.sink.v1";
}

/// A trivial server: replies with its request.
pub struct Echo;

impl Server for Echo {
    type Call = (u64, ReplyTo<u64>);
    type Cast = ();
    type Info = ();

    async fn handle_call(
        &mut self,
        (n, from): (u64, ReplyTo<u64>),
        _: &mut ServerContext<Self>,
    ) -> Flow {
        from.reply(n);
        Flow::Continue
    }
}

fn config(name: &str) -> Result<DistConfig, String> {
    Ok(DistConfig::new(
        NodeName::new(name).map_err(|e| e.to_string())?,
        Cookie::new(COOKIE).map_err(|e| e.to_string())?,
        "127.0.0.1:0".parse().expect("a valid address"),
    ))
}

/// The server node: prints `ready ADDR` and serves until its stdin closes (the client ended).
pub fn serve() -> Result<(), String> {
    let rt = runtime()?;
    rt.block_on(async {
        let dist = DistNode::start(Node::new("bench-server"), config("server@127.0.0.1")?)
            .await
            .map_err(|e| e.to_string())?;
        let d = dist.clone();
        let sink = dist
            .node()
            .spawn(move |mut ctx: Context<SinkMsg>| async move {
                let (mut expect, mut seen, mut notify) = (u64::MAX, 0u64, None);
                loop {
                    match ctx.recv().await {
                        Event::Message(SinkMsg::Expect { n, notify: who }) => {
                            (expect, seen, notify) = (n, 0, Some(who));
                        }
                        Event::Message(SinkMsg::Data(_)) => seen += 1,
                        Event::Stop(r) => return r,
                        _ => {}
                    }
                    if seen == expect {
                        if let Some(who) = notify.take() {
                            let _ = d.addr::<u64>(who).send(seen);
                        }
                    }
                }
            });
        dist.export(&sink);
        dist.node()
            .register("sink", sink.pid())
            .map_err(|e| e.to_string())?;
        // `hol`'s slow receiver: a bounded mailbox that is never read.
        let slow = dist.node().spawn_opts(
            girder::SpawnOptions::new().capacity(super::hol::SLOW_CAPACITY),
            |_: Context<SinkMsg>| std::future::pending::<ExitReason>(),
        );
        dist.export(&slow);
        dist.node()
            .register("slow", slow.pid())
            .map_err(|e| e.to_string())?;
        let echo = girder::server::start_with(dist.node(), Echo, Default::default(), Some("echo"))
            .await
            .map_err(|e| e.to_string())?;
        dist.export_server(&echo);
        let mut out = std::io::stdout();
        writeln!(out, "ready {}", dist.local_addr()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        // Serve until the client closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut buf = String::new();
            while std::io::stdin()
                .read_line(&mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await
        .map_err(|e| e.to_string())
    })
}

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_peer(schedulers: usize) -> Result<(Peer, std::net::SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("bench-peer")
        // The server node's `Node::new` takes its pool from this (0: tokio tasks).
        .env(girder::scheduler::SCHEDULERS_ENV, schedulers.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the server node: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let peer = Peer(child);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .strip_prefix("ready ")
        .ok_or_else(|| format!("the server node said {line:?}"))?
        .parse()
        .map_err(|e| format!("bad address from the server node: {e}"))?;
    Ok((peer, addr))
}

/// Runs one remote workload against a fresh server node; both nodes run their processes on
/// `schedulers` Girder schedulers (0: as tokio tasks).
pub fn run(workload: &'static str, scale: f64, schedulers: usize) -> Result<Outcome, String> {
    let (_peer, addr) = start_peer(schedulers)?;
    let rt = runtime()?;
    let pool = (schedulers > 0).then(|| girder::Schedulers::new(schedulers));
    let mut node = Node::builder("bench-client");
    if let Some(pool) = &pool {
        node = node.schedulers(pool.clone());
    }
    let node = node.build();
    rt.block_on(async move {
        let dist = DistNode::start(node, config("client@127.0.0.1")?)
            .await
            .map_err(|e| e.to_string())?;
        let server = NodeName::new("server@127.0.0.1").map_err(|e| e.to_string())?;
        dist.add_address(server.clone(), addr);
        let mut events = dist.subscribe();
        if let Err(e) = dist.connect(&server).await {
            // Say why, if the dial said.
            let mut why = e.to_string();
            while let Ok(ev) = events.try_recv() {
                if let girder_dist::NodeEvent::DialFailed { reason, .. } = ev {
                    why = format!("{why}: {reason}");
                }
            }
            return Err(why);
        }
        let count = |n: f64| ((n * scale).round() as u64).max(1);
        match workload {
            "dist_send" => send(&dist, &server, count(1_000_000.0)).await,
            "dist_call_c1" => calls(&dist, &server, workload, 1, count(100_000.0)).await,
            "hol" => super::hol::run(&dist, &server, count(20_000.0)).await,
            _ => calls(&dist, &server, workload, 50, count(4_000.0)).await,
        }
    })
}

async fn send(dist: &DistNode, server: &NodeName, n: u64) -> Result<Outcome, String> {
    let sink_pid = dist
        .whereis(server, "sink")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no sink on the server node")?;
    let sink = dist.addr::<SinkMsg>(sink_pid);
    let (done_tx, done_rx) = oneshot::channel();
    let done = dist.node().spawn(move |mut ctx: Context<u64>| async move {
        if let Event::Message(n) = ctx.recv().await {
            let _ = done_tx.send(n);
        }
        ExitReason::Normal
    });
    dist.export(&done);
    let notify = done.pid();
    // Warm-up, as the other systems: 1% of the messages, acknowledged.
    let warm = (n / 100).max(10);
    let (warm_tx, warm_rx) = oneshot::channel();
    let warm_done = dist.node().spawn(move |mut ctx: Context<u64>| async move {
        if let Event::Message(n) = ctx.recv().await {
            let _ = warm_tx.send(n);
        }
        ExitReason::Normal
    });
    dist.export(&warm_done);
    let (w_sink, w_notify) = (sink.clone(), warm_done.pid());
    dist.node().spawn(move |_: Context<()>| async move {
        let _ = w_sink
            .send_wait(SinkMsg::Expect {
                n: warm,
                notify: w_notify,
            })
            .await;
        for i in 0..warm {
            let _ = w_sink.send_wait(SinkMsg::Data(i)).await;
        }
        ExitReason::Normal
    });
    tokio::time::timeout(Duration::from_secs(60), warm_rx)
        .await
        .map_err(|_| "dist_send: warm-up not acknowledged")?
        .map_err(|_| "dist_send: warm-up acknowledgement lost")?;
    let t0 = Instant::now();
    // One sending process: its messages share one ordered stream, as in Erlang.
    dist.node().spawn(move |_: Context<()>| async move {
        let _ = sink.send_wait(SinkMsg::Expect { n, notify }).await;
        for i in 0..n {
            if sink.send_wait(SinkMsg::Data(i)).await.is_err() {
                break;
            }
        }
        ExitReason::Normal
    });
    let got = tokio::time::timeout(Duration::from_secs(120), done_rx)
        .await
        .map_err(|_| "dist_send: no acknowledgement within 120 s")?
        .map_err(|_| "dist_send: the acknowledging process ended")?;
    let elapsed = t0.elapsed();
    if got != n {
        return Err(format!("dist_send: sink saw {got} of {n}"));
    }
    Ok(Outcome {
        workload: "dist_send",
        values: vec![("msgs_per_s", n as f64 / elapsed.as_secs_f64())],
    })
}

async fn calls(
    dist: &DistNode,
    server: &NodeName,
    workload: &'static str,
    callers: usize,
    per_caller: u64,
) -> Result<Outcome, String> {
    let t0 = Instant::now();
    let all = call_histogram(dist, server, callers, per_caller).await?;
    let elapsed = t0.elapsed();
    let total = callers as u64 * per_caller;
    Ok(Outcome {
        workload,
        values: vec![
            ("calls_per_s", total as f64 / elapsed.as_secs_f64()),
            ("p50_us", all.value_at_quantile(0.50) as f64 / 1000.0),
            ("p99_us", all.value_at_quantile(0.99) as f64 / 1000.0),
        ],
    })
}

/// `callers` processes each calling the echo server `per_caller` times (after a warm-up): the
/// calls' latencies in nanoseconds.
pub(super) async fn call_histogram(
    dist: &DistNode,
    server: &NodeName,
    callers: usize,
    per_caller: u64,
) -> Result<Histogram<u64>, String> {
    let echo_pid = dist
        .whereis(server, "echo")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no echo server on the server node")?;
    let echo = dist.remote_server::<Echo>(server, echo_pid);
    // Warm-up: the connection and both ends' caches.
    for i in 0..(per_caller / 100).max(10) {
        echo.call(|r| (i, r)).await.map_err(|e| e.to_string())?;
    }
    let mut results = Vec::with_capacity(callers);
    for _ in 0..callers {
        let echo = echo.clone();
        let (tx, rx) = oneshot::channel();
        results.push(rx);
        dist.node().spawn(move |_: Context<()>| async move {
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 2).expect("histogram bounds");
            for i in 0..per_caller {
                let start = Instant::now();
                let r = echo.call(|r| (i, r)).await;
                hist.saturating_record(start.elapsed().as_nanos() as u64);
                if r != Ok(i) {
                    let _ = tx.send(Err(format!("call {i} returned {r:?}")));
                    return ExitReason::Normal;
                }
            }
            let _ = tx.send(Ok(hist));
            ExitReason::Normal
        });
    }
    let mut all =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 2).expect("histogram bounds");
    for rx in results {
        let hist = rx.await.map_err(|_| "a caller ended early")??;
        all.add(hist).map_err(|e| e.to_string())?;
    }
    Ok(all)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}
