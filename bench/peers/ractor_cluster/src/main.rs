//! The girder remote workloads on ractor_cluster: a server node (a sink and an echo actor,
//! published in `pg` groups) and a client node, two OS processes on loopback.
//!
//! `girder-peer-ractor-cluster [--workload dist_send|dist_call_c1|dist_call_c50|all] [--scale F]`
//! prints one JSON line per workload with the same names and keys as `girder bench --json`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ractor::{pg, Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::NodeConnectionMode;
use ractor_cluster::{NodeServer, RactorClusterMessage};

const COOKIE: &str = "girder-ractor-cluster-bench";

#[derive(RactorClusterMessage)]
enum SinkMsg {
    Data(u64),
    /// Answers once this many `Data` messages have arrived.
    #[rpc]
    Await(u64, RpcReplyPort<u64>),
}

struct Sink;

struct SinkState {
    seen: u64,
    waiting: Option<(u64, RpcReplyPort<u64>)>,
}

impl Actor for Sink {
    type Msg = SinkMsg;
    type State = SinkState;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<SinkMsg>, _: ()) -> Result<SinkState, ActorProcessingErr> {
        Ok(SinkState { seen: 0, waiting: None })
    }

    async fn handle(&self, _: ActorRef<SinkMsg>, msg: SinkMsg, s: &mut SinkState) -> Result<(), ActorProcessingErr> {
        match msg {
            SinkMsg::Data(_) => s.seen += 1,
            SinkMsg::Await(n, port) => s.waiting = Some((n, port)),
        }
        if let Some((n, _)) = &s.waiting {
            if s.seen >= *n {
                let (_, port) = s.waiting.take().expect("checked");
                let _ = port.send(s.seen);
                s.seen = 0;
            }
        }
        Ok(())
    }
}

#[derive(RactorClusterMessage)]
enum EchoMsg {
    #[rpc]
    Echo(u64, RpcReplyPort<u64>),
}

struct Echo;

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<EchoMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _: ActorRef<EchoMsg>, msg: EchoMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
        let EchoMsg::Echo(n, port) = msg;
        let _ = port.send(n);
        Ok(())
    }
}

async fn node_server(port: u16, name: &str) -> ActorRef<ractor_cluster::NodeServerMessage> {
    let server = NodeServer::new(
        port,
        COOKIE.to_string(),
        name.to_string(),
        "localhost".to_string(),
        None,
        Some(NodeConnectionMode::Isolated),
    );
    Actor::spawn(None, server, ()).await.expect("node server starts").0
}

/// The server node: publishes the actors and serves until stdin closes.
async fn serve(port: u16) {
    let _ns = node_server(port, "server").await;
    let (sink, _) = Actor::spawn(None, Sink, ()).await.expect("sink starts");
    let (echo, _) = Actor::spawn(None, Echo, ()).await.expect("echo starts");
    pg::join("bench_sink".to_string(), vec![sink.get_cell()]);
    pg::join("bench_echo".to_string(), vec![echo.get_cell()]);
    println!("ready");
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().read_line(&mut line).map(|n| n > 0).unwrap_or(false) {}
    })
    .await
    .ok();
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_server(port: u16) -> Server {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("server node starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "server said {line:?}");
    Server(child)
}

/// Waits until the remote actor published under `group` shows up here.
async fn remote<M: ractor::Message>(group: &str) -> ActorRef<M> {
    for _ in 0..500 {
        if let Some(cell) = pg::get_members(&group.to_string()).into_iter().next() {
            return cell.into();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{group} never appeared");
}

fn print(workload: &str, fields: &[(&str, f64)]) {
    let mut s = format!("{{\"system\":\"ractor_cluster\",\"workload\":\"{workload}\"");
    for (k, v) in fields {
        if v.fract() == 0.0 {
            s += &format!(",\"{k}\":{}", *v as i64);
        } else {
            s += &format!(",\"{k}\":{:.2}", v);
        }
    }
    println!("{s}}}");
}

async fn client(workload: &str, scale: f64) {
    let port = free_port();
    let _server = start_server(port);
    let ns = node_server(free_port(), "client").await;
    ractor_cluster::client_connect(&ns, format!("127.0.0.1:{port}"))
        .await
        .expect("connects");
    let scaled = |n: f64| ((n * scale).round() as u64).max(1);
    match workload {
        "dist_send" => {
            let sink: ActorRef<SinkMsg> = remote("bench_sink").await;
            let n = scaled(1_000_000.0);
            // Warm-up, as the other systems: 1% of the messages.
            let warm = (n / 100).max(10);
            for i in 0..warm {
                sink.cast(SinkMsg::Data(i)).expect("cast");
            }
            ractor::call_t!(sink, SinkMsg::Await, 60_000, warm).expect("the sink answers");
            let t0 = Instant::now();
            for i in 0..n {
                sink.cast(SinkMsg::Data(i)).expect("cast");
            }
            let got = ractor::call_t!(sink, SinkMsg::Await, 300_000, n).expect("the sink answers");
            assert_eq!(got, n);
            print("dist_send", &[("msgs_per_s", n as f64 / t0.elapsed().as_secs_f64())]);
        }
        w => {
            let echo: ActorRef<EchoMsg> = remote("bench_echo").await;
            let (callers, per) = if w == "dist_call_c1" { (1, scaled(100_000.0)) } else { (50, scaled(4_000.0)) };
            for i in 0..(per / 100).max(10) {
                ractor::call_t!(echo, EchoMsg::Echo, 5_000, i).expect("warm-up call");
            }
            let t0 = Instant::now();
            let tasks: Vec<_> = (0..callers)
                .map(|_| {
                    let echo = echo.clone();
                    tokio::spawn(async move {
                        let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 2).unwrap();
                        for i in 0..per {
                            let s = Instant::now();
                            let r = ractor::call_t!(echo, EchoMsg::Echo, 5_000, i).expect("call");
                            h.saturating_record(s.elapsed().as_nanos() as u64);
                            assert_eq!(r, i);
                        }
                        h
                    })
                })
                .collect();
            let mut all = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 2).unwrap();
            for t in tasks {
                all.add(t.await.unwrap()).unwrap();
            }
            let secs = t0.elapsed().as_secs_f64();
            print(
                w,
                &[
                    ("calls_per_s", (callers as u64 * per) as f64 / secs),
                    ("p50_us", all.value_at_quantile(0.5) as f64 / 1000.0),
                    ("p99_us", all.value_at_quantile(0.99) as f64 / 1000.0),
                ],
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if args.first().map(String::as_str) == Some("--serve") {
        let port = args[1].parse().expect("--serve PORT");
        rt.block_on(serve(port));
        return;
    }
    let mut workload = "all".to_string();
    let mut scale = 1.0;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--workload" => workload = args[i + 1].clone(),
            "--scale" => scale = args[i + 1].parse().expect("--scale takes a number"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    let all = ["dist_send", "dist_call_c1", "dist_call_c50"];
    let selected: Vec<&str> = if workload == "all" {
        all.to_vec()
    } else {
        assert!(all.contains(&workload.as_str()), "unknown workload {workload}: one of {all:?} or all");
        vec![workload.as_str()]
    };
    for w in selected {
        // A fresh pair of nodes per workload, as for girder and Erlang.
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        rt.block_on(client(w, scale));
        drop(rt);
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(rt);
}
