//! `girder demo`: a supervision tree surviving injected crashes, printed as it happens.
//!
//! The tree (an [`Application`]):
//!
//! ```text
//! demo_sup          one_for_one, at most 10 restarts in 5 s
//! ├── events        an EventManager: console, tally and a buggy handler
//! ├── kv            a key-value Server
//! ├── pool          one_for_all supervisor, at most 4 restarts in 1.5 s
//! │   ├── worker-1  Servers
//! │   ├── worker-2
//! │   └── worker-3
//! ├── client        a process calling kv every 20 ms, counting answers and errors
//! └── chaos         a StateMachine injecting faults (see chaos.rs)
//! ```

mod chaos;
pub mod cluster;
mod events;
mod mqtt;
mod services;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use girder::application::AppExit;
use girder::event::EventManager;
use girder::supervisor::{ChildSpec, RestartStrategy, Supervisor};
use girder::{statem, Application, Context, Node, ServerRef};

use chaos::Chaos;
use events::{Console, DemoEvent, Fragile, Tally, TallyHandler};
use services::{Kv, KvCall, Worker};

#[derive(Default)]
struct ClientStats {
    ok: AtomicU64,
    failed: AtomicU64,
}

fn tree(stats: Arc<ClientStats>, seed: u64, storm_after: Duration) -> Application {
    let mut pool = Supervisor::builder()
        .strategy(RestartStrategy::OneForAll)
        .intensity(4, Duration::from_millis(1500));
    for i in 1..=3 {
        let name = format!("worker-{i}");
        pool = pool.child(ChildSpec::server(name.clone(), || Worker).named(name));
    }
    let events = ChildSpec::new("events", |s| async move {
        EventManager::<DemoEvent>::start_with(&s.node, s.spawn_options(), s.name.as_deref())
            .await
            .map(|m| m.pid())
    })
    .named("events");
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
                        .call(|r| (KvCall::Put("visits".into(), visits), r))
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
    let chaos = ChildSpec::new("chaos", move |s| async move {
        statem::start_with(
            &s.node,
            Chaos::new(seed, storm_after),
            s.spawn_options(),
            s.name.as_deref(),
        )
        .await
        .map(|m| m.pid())
    })
    .named("chaos");
    Application::new(
        "demo",
        Supervisor::builder()
            .intensity(10, Duration::from_secs(5))
            .child(events)
            .child(ChildSpec::server("kv", || Kv(HashMap::new())).named("kv"))
            .child(ChildSpec::supervisor("pool", pool).named("pool"))
            .child(client)
            .child(chaos),
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
        // The demo's processes run on Girder's schedulers, one per core (kept to the end).
        let pool = girder::Schedulers::per_core();
        let node = Node::builder("demo").schedulers(pool.clone()).build();
        let stats = Arc::new(ClientStats::default());
        let tally = Arc::new(Mutex::new(Tally::default()));
        println!("girder demo: a supervision tree surviving injected crashes for {duration:?} (seed {seed})");
        let app = tree(stats.clone(), seed, duration.mul_f64(0.6)).start(&node).await.map_err(|e| e.to_string())?;
        let events = EventManager::<DemoEvent>::lookup(&node, "events").map_err(|e| e.to_string())?;
        for added in [
            events.add_handler(Console).await,
            events.add_handler(TallyHandler(tally.clone())).await,
            events.add_handler(Fragile(0)).await,
        ] {
            added.map_err(|e| e.to_string())?;
        }
        print_tree(&node);
        // The node's ops API: the dashboard and `girder status` work while the demo runs.
        let ops = girder_ops::Ops::start(node.clone(), None, None, girder_ops::OpsConfig::new("127.0.0.1:0".parse().expect("an address")))
            .await
            .map_err(|e| e.to_string())?;
        let ops_url = format!("http://{}", ops.local_addr());
        println!("-- dashboard: {ops_url}/  (or: girder status --node {ops_url})");
        let stopped_by = tokio::select! {
            _ = tokio::time::sleep(duration) => "time is up",
            exit = app.run_until_signal() => match exit {
                AppExit::Signal => "signal",
                AppExit::RootExited(_) => "root supervisor exited",
            },
        };
        let status = crate::status::Target { url: ops_url.clone(), token: None };
        match crate::status::snapshot(&status).await {
            Ok(text) => println!("-- girder status --node {ops_url}\n{text}"),
            Err(e) => println!("-- status unavailable: {e}"),
        }
        drop(ops);
        println!("-- stopping ({stopped_by}); the tree shuts down in reverse start order");
        let children = app.root().which_children().await.unwrap_or_default();
        let root_restarts: u32 = children.iter().map(|c| c.restarts).sum();
        let reason = app.stop().await;
        println!("-- root exited: {reason}; processes left: {}", node.process_count());
        let ok = stats.ok.load(Ordering::Relaxed);
        let failed = stats.failed.load(Ordering::Relaxed);
        let (injected, recoveries) = {
            let t = tally.lock().expect("tally lock");
            (t.injected, t.recoveries.clone())
        };
        println!("== summary after {:.1?}", started.elapsed());
        println!("   injected crashes: {injected}");
        if !recoveries.is_empty() {
            let mut v = recoveries;
            v.sort();
            println!("   back under the same name after: median {:?}, worst {:?}", v[v.len() / 2], v[v.len() - 1]);
        }
        println!("   restarts by the root supervisor: {root_restarts} (pool escalations included)");
        println!(
            "   client calls to kv: {ok} answered, {failed} failed cleanly while kv was restarting ({:.1}% answered)",
            100.0 * ok as f64 / (ok + failed).max(1) as f64
        );
        if stopped_by == "signal" {
            return Ok(());
        }
        cluster::run().await?;
        mqtt::run().await
    })
}

fn print_tree(node: &Node) {
    println!("-- tree started: {} processes", node.process_count());
    for p in node.processes() {
        println!(
            "   {:<12} {:<14} {}",
            p.name.as_deref().unwrap_or("-"),
            p.behaviour,
            p.pid
        );
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}
