//! `girder-mqtt bench`: this broker beside Mosquitto 2 and rumqttd, each started as a child
//! process on a free loopback port with the same limits, driven by a load generator of plain
//! tokio tasks in this process (64-byte payloads, MQTT 3.1.1).
//!
//! Workloads (issue 15's list): `fan_in` (100 publishers, 1 subscriber), `fan_out`
//! (1 publisher, 1,000 subscribers), `p2p` (1,000 pairs), each at QoS 0 and 1, at full rate
//! (delivered msgs/s, p50/p99 end-to-end latency) and paced below saturation (10,000
//! deliveries/s: p99 latency); and `idle` (15,000 connections: connects/s and the broker's
//! memory per connection; then, once they have gone, 15,000 more: connects/s again, a
//! reconnect storm into memory the broker has held before). Every run gets a fresh broker,
//! so its peak resident memory (`rss_mb`, VmHWM) is that run's.
//!
//! ```text
//! girder-mqtt bench                                # every broker found, every workload
//! girder-mqtt bench --broker girder --workload p2p --qos 1 --json
//! girder-mqtt bench --scale 0.01                   # a smoke run: seconds
//! ```
//!
//! The clients are tokio tasks: the subscribers on one worker thread, the publishers on
//! another, connection set-up and the idle workload on a runtime of one worker per core.
//! The load generator shares the machine with the broker under test, so it keeps its own cost
//! down: on loopback each client binds a source address and port of its own (`dial`: the
//! kernel's search for a free port was half its CPU), 64 tasks connect the clients in turn,
//! and a client's read buffer is allocated when it first reads.
//!
//! `--scale` multiplies the durations (a 2 s warm-up and a 10 s window at 1); below 0.1 it
//! shrinks the client counts too.

mod brokers;
mod client;
mod dial;
mod workloads;

use std::time::Duration;

use girder_mqtt::codec::connect::QoS;
use serde_json::json;

use brokers::{Kind, Running};
use workloads::{Mode, Shape, Timing, Workload};

/// Which brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerChoice {
    /// Girder's.
    Girder,
    /// Mosquitto 2.
    Mosquitto,
    /// rumqttd.
    Rumqttd,
    /// Each of them that is installed.
    All,
}

/// Which workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadChoice {
    /// 100 publishers to 1 subscriber.
    #[value(name = "fan_in")]
    FanIn,
    /// 1 publisher to 1,000 subscribers.
    #[value(name = "fan_out")]
    FanOut,
    /// 1,000 publisher–subscriber pairs.
    P2p,
    /// 15,000 idle connections.
    Idle,
    /// All of them.
    All,
}

/// Full rate, paced or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeChoice {
    /// As fast as the broker takes.
    Max,
    /// Below saturation.
    Paced,
    /// Both.
    All,
}

/// `girder-mqtt bench`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The broker to measure.
    #[arg(long, value_enum, default_value = "all")]
    broker: BrokerChoice,
    /// The workload.
    #[arg(long, value_enum, default_value = "all")]
    workload: WorkloadChoice,
    /// QoS of the messaging workloads (both if not given).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: Option<u8>,
    /// Full rate, paced, or both.
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeChoice,
    /// Multiplies durations (and below 0.1, client counts): 0.01 is a smoke run.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// The Girder broker to start (default: this binary): another build of `girder-mqtt`, so
    /// that two builds are compared by one load generator.
    #[arg(long, value_name = "PATH")]
    girder_exe: Option<std::path::PathBuf>,
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Runs the bench; returns the process's exit code (1 if any run failed).
pub fn main(args: BenchArgs) -> i32 {
    if !(args.scale > 0.0 && args.scale.is_finite()) {
        eprintln!("girder-mqtt bench: --scale must be a positive number");
        return 2;
    }
    let fds = brokers::raise_fd_limit();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let side = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    };
    let (subs, pubs) = (side("bench-subs"), side("bench-pubs"));
    let sides = workloads::Sides {
        subs: subs.handle().clone(),
        pubs: pubs.handle().clone(),
    };
    let kinds: Vec<Kind> = match args.broker {
        BrokerChoice::Girder => vec![Kind::Girder],
        BrokerChoice::Mosquitto => vec![Kind::Mosquitto],
        BrokerChoice::Rumqttd => vec![Kind::Rumqttd],
        BrokerChoice::All => vec![Kind::Girder, Kind::Mosquitto, Kind::Rumqttd],
    };
    let workloads: Vec<Workload> = match args.workload {
        WorkloadChoice::FanIn => vec![Workload::FanIn],
        WorkloadChoice::FanOut => vec![Workload::FanOut],
        WorkloadChoice::P2p => vec![Workload::P2p],
        WorkloadChoice::Idle => vec![Workload::Idle],
        WorkloadChoice::All => vec![
            Workload::FanIn,
            Workload::FanOut,
            Workload::P2p,
            Workload::Idle,
        ],
    };
    let qoses: Vec<QoS> = match args.qos {
        Some(0) => vec![QoS::AtMostOnce],
        Some(_) => vec![QoS::AtLeastOnce],
        None => vec![QoS::AtMostOnce, QoS::AtLeastOnce],
    };
    let modes: Vec<Mode> = match args.mode {
        ModeChoice::Max => vec![Mode::Max],
        ModeChoice::Paced => vec![Mode::Paced],
        ModeChoice::All => vec![Mode::Max, Mode::Paced],
    };
    let s = args.scale;
    let timing = Timing {
        warmup: secs((2.0 * s).max(0.1)),
        window: secs((10.0 * s).max(0.25)),
        drain: secs(s.clamp(0.2, 1.0)),
    };
    let settle = secs(s.clamp(0.2, 1.0));
    if !args.json {
        println!(
            "girder-mqtt bench: scale {s}, {} s windows, 64-byte payloads, open files {fds}",
            timing.window.as_secs_f64()
        );
    }
    let mut failed = 0;
    for kind in kinds {
        let located = match (&args.girder_exe, kind) {
            (Some(path), Kind::Girder) if path.is_file() => Ok(path.clone()),
            (Some(path), Kind::Girder) => Err(format!("{}: no such file", path.display())),
            _ => kind.locate(),
        };
        let exe = match located {
            Ok(exe) => exe,
            Err(why) if args.broker == BrokerChoice::All => {
                eprintln!("girder-mqtt bench: skipping {}: {why}", kind.name());
                continue;
            }
            Err(why) => {
                eprintln!("girder-mqtt bench: {why}");
                return 1;
            }
        };
        for &w in &workloads {
            let shape = Shape::of(w, s);
            let cases: Vec<(Option<QoS>, Option<Mode>)> = if w == Workload::Idle {
                vec![(None, None)]
            } else {
                qoses
                    .iter()
                    .flat_map(|&q| modes.iter().map(move |&m| (Some(q), Some(m))))
                    .collect()
            };
            for (qos, mode) in cases {
                let label = format!(
                    "{} {} {} {}",
                    kind.name(),
                    w.name(),
                    qos.map_or("-".into(), |q| format!("qos{}", q as u8)),
                    mode.map_or("-", Mode::name)
                );
                match run_one(kind, &exe, w, qos, mode, shape, timing, settle, &rt, &sides) {
                    Ok(mut line) => {
                        line["scale"] = json!(s);
                        if args.json {
                            println!("{line}");
                        } else {
                            println!("{}", text(&line));
                        }
                    }
                    Err(why) => {
                        failed += 1;
                        eprintln!("girder-mqtt bench: {label}: failed: {why}");
                    }
                }
            }
        }
    }
    i32::from(failed > 0)
}

/// One run on a fresh broker: its JSON line.
#[allow(clippy::too_many_arguments)]
fn run_one(
    kind: Kind,
    exe: &std::path::Path,
    w: Workload,
    qos: Option<QoS>,
    mode: Option<Mode>,
    shape: Shape,
    timing: Timing,
    settle: Duration,
    rt: &tokio::runtime::Runtime,
    sides: &workloads::Sides,
) -> Result<serde_json::Value, String> {
    let mut broker = Running::start(kind, exe)?;
    let result = match (qos, mode) {
        (Some(qos), Some(mode)) => rt
            .block_on(workloads::messaging(
                sides,
                broker.addr,
                w,
                qos,
                mode,
                shape,
                timing,
            ))
            .map(|o| {
                json!({
                    "system": kind.name(), "workload": w.name(), "qos": qos as u8,
                    "mode": mode.name(), "msgs_per_s": o.msgs_per_s.round(),
                    "p50_us": o.p50_us, "p99_us": o.p99_us,
                    "target_msgs_per_s": o.target_msgs_per_s,
                    "sent": o.sent, "delivered": o.delivered,
                    "delivered_pct": pct(o.delivered, o.expected),
                    "clients": o.clients,
                })
            }),
        _ => rt
            .block_on(workloads::idle(&broker, shape.subs, settle))
            .map(|o| {
                json!({
                    "system": kind.name(), "workload": w.name(), "qos": null, "mode": "idle",
                    "conns": o.conns, "connects_per_s": o.connects_per_s.round(),
                    "kb_per_conn": (o.kb_per_conn * 100.0).round() / 100.0,
                    "reconnects_per_s": o.reconnects_per_s.round(),
                })
            }),
    };
    let memory = broker.memory();
    let alive = broker.alive();
    let tail = broker.log_tail();
    broker.stop();
    let mut line = result?;
    if !alive {
        return Err(format!("the broker died during the run: {tail}"));
    }
    let mb = memory.map(|m| (m.hwm_kb as f64 / 102.4).round() / 10.0);
    line["rss_mb"] = json!(mb);
    // Let the closed sockets go before the next broker starts.
    std::thread::sleep(Duration::from_millis(200));
    Ok(line)
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).round() / 10.0
}

/// A result line for people.
fn text(v: &serde_json::Value) -> String {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let n = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    if v["mode"] == "idle" {
        return format!(
            "{:<10} {:<8} {:<10} {:>7} conns {:>10.0} connects/s {:>8.2} kB/conn  rss {:>7.1} MB  again {:>8.0} connects/s",
            s("system"),
            s("workload"),
            "",
            n("conns"),
            n("connects_per_s"),
            n("kb_per_conn"),
            n("rss_mb"),
            n("reconnects_per_s"),
        );
    }
    format!(
        "{:<10} {:<8} qos{} {:<5} {:>10.0} msgs/s  p50 {:>8.0} µs  p99 {:>8.0} µs  rss {:>7.1} MB  delivered {:>5.1}%",
        s("system"),
        s("workload"),
        n("qos"),
        s("mode"),
        n("msgs_per_s"),
        n("p50_us"),
        n("p99_us"),
        n("rss_mb"),
        n("delivered_pct"),
    )
}
