//! `girder demo`: a supervision tree surviving injected crashes, printed as it happens.
//!
//! The tree (an [`Application`]):
//!
//! ```text
//! demo_sup          one_for_one, at most 10 restarts in 5 s
//! ├── kv            a key-value Server
//! ├── pool          one_for_all supervisor, at most 4 restarts in 1.5 s
//! │   ├── worker-1  Servers doing "work"
//! │   ├── worker-2
//! │   └── worker-3
//! └── client        a process calling kv every 20 ms, counting answers and errors
//! ```
//!
//! A chaos task outside the tree crashes kv and the workers (panics, error exits, kills), and once
//! crashes the pool's workers faster than its restart intensity allows, so the pool gives up and
//! the root restarts it: escalation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::supervisor::{ChildSpec, RestartStrategy, Supervisor};
use girder::{
    Application, Context, ExitReason, Flow, Node, Pid, ReplyTo, Server, ServerContext, ServerRef,
};

enum KvCall {
    Put(String, u64),
}

enum Chaos {
    Panic,
}

struct Kv(HashMap<String, u64>);

impl Server for Kv {
    type Call = KvCall;
    type Reply = Option<u64>;
    type Cast = Chaos;
    type Info = ();

    async fn handle_call(
        &mut self,
        req: KvCall,
        from: ReplyTo<Option<u64>>,
        _: &mut ServerContext<Self>,
    ) -> Flow {
        match req {
            KvCall::Put(k, v) => from.reply(self.0.insert(k, v)),
        }
        Flow::Continue
    }

    async fn handle_cast(&mut self, Chaos::Panic: Chaos, _: &mut ServerContext<Self>) -> Flow {
        panic!("injected panic in kv");
    }
}

struct Worker(u64);

impl Server for Worker {
    type Call = u64;
    type Reply = u64;
    type Cast = Chaos;
    type Info = ();

    async fn handle_call(
        &mut self,
        n: u64,
        from: ReplyTo<u64>,
        _: &mut ServerContext<Self>,
    ) -> Flow {
        self.0 += 1;
        from.reply(n * 2);
        Flow::Continue
    }

    async fn handle_cast(&mut self, Chaos::Panic: Chaos, _: &mut ServerContext<Self>) -> Flow {
        panic!("injected panic in worker");
    }
}

#[derive(Default)]
struct ClientStats {
    ok: AtomicU64,
    failed: AtomicU64,
}

fn tree(stats: Arc<ClientStats>) -> Application {
    let mut pool = Supervisor::builder()
        .strategy(RestartStrategy::OneForAll)
        .intensity(4, Duration::from_millis(1500));
    for i in 1..=3 {
        let name = format!("worker-{i}");
        pool = pool.child(ChildSpec::server(name.clone(), || Worker(0)).named(name));
    }
    let client = ChildSpec::process("client", move |ctx: Context<()>| {
        let stats = stats.clone();
        async move {
            let mut visits = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                visits += 1;
                // Looked up each time: after a restart the name points at the new kv.
                let answer = match ServerRef::<Kv>::lookup(ctx.node(), "kv") {
                    Ok(kv) => kv
                        .call(KvCall::Put("visits".into(), visits))
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match answer {
                    Ok(_) => stats.ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }
    });
    Application::new(
        "demo",
        Supervisor::builder()
            .intensity(10, Duration::from_secs(5))
            .child(ChildSpec::server("kv", || Kv(HashMap::new())).named("kv"))
            .child(ChildSpec::supervisor("pool", pool).named("pool"))
            .child(client),
    )
}

pub fn run(duration: Duration, seed: u64) -> Result<(), String> {
    let started = Instant::now();
    // A crash is reported in one line, as an Erlang crash report would be, not as a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("   crash report: {}{place}", panic_text(info.payload()));
    }));
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_target(false)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_writer(std::io::stdout)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let node = Node::new("demo");
        let stats = Arc::new(ClientStats::default());
        println!("girder demo: a supervision tree surviving injected crashes for {duration:?} (seed {seed})");
        let app = tree(stats.clone()).start(&node).await.map_err(|e| e.to_string())?;
        print_tree(&node).await;
        let chaos = tokio::spawn(chaos(node.clone(), duration, seed));
        let stopped_by = tokio::select! {
            _ = tokio::time::sleep(duration) => "time is up",
            exit = app.run_until_signal() => match exit {
                girder::application::AppExit::Signal => "signal",
                girder::application::AppExit::RootExited(_) => "root supervisor exited",
            },
        };
        chaos.abort();
        let report = chaos.await.ok();
        println!("-- stopping ({stopped_by}); the tree shuts down in reverse start order");
        let children = app.root().which_children().await.unwrap_or_default();
        let root_restarts: u32 = children.iter().map(|c| c.restarts).sum();
        let reason = app.stop().await;
        println!("-- root exited: {reason}; processes left: {}", node.process_count());
        let ok = stats.ok.load(Ordering::Relaxed);
        let failed = stats.failed.load(Ordering::Relaxed);
        println!("== summary after {:.1?}", started.elapsed());
        if let Some(r) = report.flatten() {
            println!("   injected crashes: {}", r.injected);
            if !r.recoveries.is_empty() {
                let mut v = r.recoveries.clone();
                v.sort();
                println!(
                    "   back under the same name after: median {:?}, worst {:?}",
                    v[v.len() / 2],
                    v[v.len() - 1]
                );
            }
        }
        println!("   restarts by the root supervisor: {root_restarts} (pool escalations included)");
        println!(
            "   client calls to kv: {ok} answered, {failed} failed cleanly while kv was restarting ({:.1}% answered)",
            100.0 * ok as f64 / (ok + failed).max(1) as f64
        );
        Ok(())
    })
}

async fn print_tree(node: &Node) {
    println!("-- tree started: {} processes", node.process_count());
    for p in node.processes() {
        println!(
            "   {:<12} {:<12} {}",
            p.name.as_deref().unwrap_or("-"),
            p.behaviour,
            p.pid
        );
    }
}

struct ChaosReport {
    injected: u32,
    recoveries: Vec<Duration>,
}

async fn chaos(node: Node, duration: Duration, seed: u64) -> Option<ChaosReport> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut report = ChaosReport {
        injected: 0,
        recoveries: Vec::new(),
    };
    let storm_at = duration.mul_f64(0.6);
    let t0 = Instant::now();
    let mut stormed = false;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if t0.elapsed() + Duration::from_millis(500) > duration {
            return Some(report);
        }
        if !stormed && t0.elapsed() >= storm_at {
            stormed = true;
            println!("-- chaos: crashing pool workers 5 times in a row (pool allows 4 restarts in 1.5 s)");
            let pool_before = node.whereis("pool");
            for _ in 0..5 {
                if let Some(pid) = wait_for(&node, "worker-1", None).await {
                    node.exit(pid, ExitReason::error("storm"));
                    report.injected += 1;
                    wait_gone(&node, pid).await;
                }
            }
            let pool_after = wait_for(&node, "pool", pool_before).await;
            println!(
                "-- chaos: pool escalated; root restarted it: {} -> {}",
                pool_before.map(|p| p.to_string()).unwrap_or_default(),
                pool_after.map(|p| p.to_string()).unwrap_or_default()
            );
            continue;
        }
        let victims = ["kv", "worker-1", "worker-2", "worker-3"];
        let victim = victims[rng.usize(..victims.len())];
        let Some(pid) = node.whereis(victim) else {
            continue;
        };
        let how = rng.u8(..3);
        let what = match how {
            0 => {
                if victim == "kv" {
                    let _ = ServerRef::<Kv>::from_pid(&node, pid).map(|s| s.cast(Chaos::Panic));
                } else {
                    let _ = ServerRef::<Worker>::from_pid(&node, pid).map(|s| s.cast(Chaos::Panic));
                }
                "a panic"
            }
            1 => {
                node.exit(pid, ExitReason::error("injected fault"));
                "an error exit"
            }
            _ => {
                node.exit(pid, ExitReason::Kill);
                "a kill"
            }
        };
        let t = Instant::now();
        println!("-- chaos: {victim} {pid} gets {what}");
        report.injected += 1;
        if let Some(new) = wait_for(&node, victim, Some(pid)).await {
            let took = t.elapsed();
            report.recoveries.push(took);
            println!("-- chaos: {victim} is back as {new} after {took:.1?}");
        }
    }
}

async fn wait_for(node: &Node, name: &str, not: Option<Pid>) -> Option<Pid> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match node.whereis(name) {
            Some(p) if Some(p) != not => return Some(p),
            _ => tokio::time::sleep(Duration::from_micros(200)).await,
        }
    }
    None
}

async fn wait_gone(node: &Node, pid: Pid) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while node.is_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}
