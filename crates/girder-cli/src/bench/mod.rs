//! `girder bench`: the runtime's standard workloads, comparable with the peer benchmarks in
//! `bench/peers` (same names, counts and JSON keys).

mod attack;
mod detect;
mod hol;
mod link;
pub mod overload;
pub mod remote;
mod supervision;
mod timers;
mod workloads;

use std::time::Duration;

use serde_json::{json, Value};

/// One workload's result: its name and its measured keys.
pub struct Outcome {
    pub workload: &'static str,
    pub values: Vec<(&'static str, f64)>,
}

pub const ALL: [&str; 16] = [
    "spawn",
    "ring",
    "pingpong",
    "call_c1",
    "call_c100",
    "fanin",
    "supervisor_churn",
    "timers",
    "dist_link",
    "dist_send",
    "dist_call_c1",
    "dist_call_c50",
    "hol",
    "detect",
    "attack",
    "overload",
];

pub fn run(names: &[String], scale: f64, json: bool, schedulers: bool) -> Result<(), String> {
    let selected: Vec<&'static str> = if names.is_empty() || names.iter().any(|n| n == "all") {
        ALL.to_vec()
    } else {
        for n in names {
            if !ALL.contains(&n.as_str()) {
                return Err(format!("unknown workload {n:?}; known: {}", ALL.join(", ")));
            }
        }
        // The names as `ALL` spells them: a `'static` name can move into a pool's task.
        names
            .iter()
            .filter_map(|n| ALL.iter().copied().find(|a| a == n))
            .collect()
    };
    if !(scale > 0.0 && scale <= 10.0) {
        return Err(format!("--scale must be in (0, 10], got {scale}"));
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let workers = match std::env::var("GIRDER_BENCH_THREADS") {
        Ok(n) => n
            .parse()
            .map_err(|_| "GIRDER_BENCH_THREADS must be a number")?,
        Err(_) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    builder.worker_threads(workers);
    // Schedulers for the workloads that start nodes of their own (0: tokio tasks).
    let pool_threads = if schedulers { workers } else { 0 };
    let rt = builder.enable_all().build().map_err(|e| e.to_string())?;
    if !json {
        println!(
            "{:<10} {:>16} {:>14} {:>10} {:>10}",
            "workload", "rate", "unit", "p50 µs", "p99 µs"
        );
    }
    // Progress on stderr, in table mode only (JSON output stays clean for pipes). indicatif
    // draws nothing when stderr is not a terminal.
    let progress = (!json).then(|| {
        let bar = indicatif::ProgressBar::new(selected.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .expect("a valid template"),
        );
        bar
    });
    for name in selected {
        if let Some(bar) = &progress {
            bar.set_message(format!("running {name}"));
        }
        // `detect` runs two `girder node` OS processes; `overload` a child per case; the rest
        // run in this runtime.
        let outcome = match name {
            "overload" => {
                for o in overload::run(scale, pool_threads)? {
                    match &progress {
                        Some(bar) => bar.suspend(|| report(&o, json, schedulers)),
                        None => report(&o, json, schedulers),
                    }
                }
                if let Some(bar) = &progress {
                    bar.inc(1);
                }
                continue;
            }
            "detect" => detect::run(pool_threads)?,
            "attack" => attack::run(scale, pool_threads)?,
            "dist_send" | "dist_call_c1" | "dist_call_c50" | "hol" => {
                remote::run(name, scale, pool_threads)?
            }
            "dist_link" => {
                rt.block_on(link::run(((1_000_000f64 * scale).round() as u64).max(1)))?
            }
            _ if schedulers => {
                // One scheduler per tokio worker; the workload's driver runs on the pool, as
                // an Erlang benchmark runs in a process, so what it spawns starts beside it.
                let _enter = rt.enter();
                let pool = girder::Schedulers::new(workers);
                let node = girder::Node::builder("bench")
                    .schedulers(pool.clone())
                    .build();
                let outcome = pool.block_on(workloads::run(node, name, scale));
                if std::env::var_os("GIRDER_BENCH_STATS").is_some() {
                    eprintln!("{name}: {:?}", pool.stats());
                }
                pool.shutdown();
                outcome
            }
            _ => rt.block_on(workloads::run(girder::Node::new("bench"), name, scale)),
        };
        match &progress {
            Some(bar) => bar.suspend(|| report(&outcome, json, schedulers)),
            None => report(&outcome, json, schedulers),
        }
        if let Some(bar) = &progress {
            bar.inc(1);
        }
        // Let the runtime settle between workloads.
        std::thread::sleep(Duration::from_millis(200));
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(())
}

/// Keys whose values are yes or no.
const BOOL_KEYS: [&str; 1] = ["regulated"];

fn report(o: &Outcome, json: bool, schedulers: bool) {
    if json {
        let mut obj = serde_json::Map::new();
        obj.insert("system".into(), json!("girder"));
        obj.insert("workload".into(), json!(o.workload));
        // Where the processes ran (`--runtime`), so result files say which placement they hold.
        obj.insert(
            "runtime".into(),
            json!(if schedulers { "girder" } else { "tokio" }),
        );
        for (k, v) in &o.values {
            // Yes/no keys travel as 1.0/0.0 in `values`; the line says true/false.
            if BOOL_KEYS.contains(k) {
                obj.insert((*k).into(), json!(*v != 0.0));
                continue;
            }
            // Whole numbers stay whole; small values keep four decimals, others two.
            let v = if v.fract() == 0.0 {
                json!(*v as i64)
            } else if v.abs() < 1.0 {
                json!((v * 10_000.0).round() / 10_000.0)
            } else {
                json!((v * 100.0).round() / 100.0)
            };
            obj.insert((*k).into(), v);
        }
        println!("{}", Value::Object(obj));
        return;
    }
    if o.workload == "overload" {
        return overload::table_line(o);
    }
    let get = |k: &str| o.values.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let (rate, unit) = match o.workload {
        "spawn" => (get("spawn_ns_per_proc").unwrap_or(0.0), "ns/proc"),
        "ring" => (get("hops_per_s").unwrap_or(0.0), "hops/s"),
        "pingpong" => (get("round_trips_per_s").unwrap_or(0.0), "round trips/s"),
        "fanin" | "dist_link" | "dist_send" => (get("msgs_per_s").unwrap_or(0.0), "msgs/s"),
        "detect" => (
            get("detect_silent_s").unwrap_or(0.0) * 1000.0,
            "ms (silent)",
        ),
        "supervisor_churn" => (get("pair_us_beside").unwrap_or(0.0), "µs/pair"),
        "attack" => (get("handshakes_per_s").unwrap_or(0.0), "handshakes/s"),
        "timers" => (get("arm_ns").unwrap_or(0.0), "ns/arm"),
        _ => (get("calls_per_s").unwrap_or(0.0), "calls/s"),
    };
    let p = |k| {
        get(k)
            .map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "{:<10} {:>16.0} {:>14} {:>10} {:>10}",
        o.workload,
        rate,
        unit,
        p("p50_us"),
        p("p99_us")
    );
    if let Some(m) = get("mem_bytes_per_proc") {
        println!("{:<10} {:>16.0} {:>14}", "", m, "bytes/proc");
    }
    if o.workload == "hol" {
        for (key, unit) in [
            ("p99_us_unloaded", "µs p99 alone"),
            ("p99_us_loaded", "µs p99 beside"),
            ("flood_accepted", "msgs accepted"),
            ("connection_lost", "connections lost"),
        ] {
            println!("{:<10} {:>16.1} {:>14}", "", get(key).unwrap_or(0.0), unit);
        }
    }
    if o.workload == "attack" {
        for (key, unit) in [
            ("refused_per_s", "refused/s"),
            ("hello_flood_connected_pct", "% connected"),
            ("pending_bytes", "bytes/pending"),
            ("udp_sent_per_s", "datagrams/s"),
            ("udp_cpu_pct", "% CPU (a)"),
            ("udp_false_downs", "false downs"),
        ] {
            println!("{:<10} {:>16.0} {:>14}", "", get(key).unwrap_or(0.0), unit);
        }
    }
    if let (Some(r), Some(s)) = (get("churn_ratio"), get("shutdown_s")) {
        println!("{:<10} {:>16.2} {:>14}", "", r, "× alone");
        println!("{:<10} {:>16.2} {:>14}", "", s, "s shutdown");
    }
}
