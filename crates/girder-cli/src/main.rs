//! The `girder` command: run the demo, benchmark the runtime.

mod alloc;
mod bench;
mod child;
mod demo;
mod loadgen;
mod node;
mod status;
mod sys;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[derive(Parser)]
#[command(
    name = "girder",
    version,
    about = "Erlang/OTP-grade middleware for Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// A supervision tree surviving injected crashes, printed as it happens.
    Demo {
        /// How long to run before stopping gracefully (Ctrl-C or SIGTERM also stop it).
        #[arg(long, default_value = "8s", value_parser = parse_duration)]
        duration: std::time::Duration,
        /// Seed for the crash schedule (the same seed injects the same crashes).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Runs a node: joins the cluster through seeds, authenticates peers, prints membership.
    Node {
        /// The node's name, `name@host`.
        #[arg(long)]
        name: String,
        /// Address for membership (UDP) and connections (TCP).
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// The address other nodes reach this one at. Needed when --listen is 0.0.0.0 or ::
        /// (every interface) unless the node name's host is an IP address, which is then used.
        #[arg(long)]
        advertise: Option<std::net::SocketAddr>,
        /// Address of another node to join through (repeatable).
        #[arg(long = "seed")]
        seeds: Vec<std::net::SocketAddr>,
        /// A DNS name whose records are seeds, as `host:port` (a headless service).
        #[arg(long)]
        seed_dns: Option<String>,
        /// File holding the cluster cookie (16+ printable characters).
        #[arg(long)]
        cookie_file: std::path::PathBuf,
        /// Roles of this node, comma separated (e.g. `edge,core`).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// With --tls-cert and --tls-key: run connections over mutual TLS trusting this CA (PEM).
        #[arg(long, requires_all = ["tls_cert", "tls_key"])]
        tls_ca: Option<std::path::PathBuf>,
        /// This node's certificate chain (PEM).
        #[arg(long, requires_all = ["tls_ca", "tls_key"])]
        tls_cert: Option<std::path::PathBuf>,
        /// This node's private key (PEM).
        #[arg(long, requires_all = ["tls_ca", "tls_cert"])]
        tls_key: Option<std::path::PathBuf>,
        /// How often a random member is probed (failure detection).
        #[arg(long, default_value = "200ms", value_parser = parse_duration)]
        probe_period: std::time::Duration,
        /// How long a probe may take before others are asked to probe too.
        #[arg(long, default_value = "100ms", value_parser = parse_duration)]
        probe_rtt: std::time::Duration,
        /// How long a suspected member has to answer before it is declared down.
        #[arg(long, default_value = "400ms", value_parser = parse_duration)]
        suspect_after: std::time::Duration,
        /// Serves the ops API (health, metrics, processes, alarms, events) on this address.
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// File holding the bearer token for the ops API's admin actions.
        #[arg(long, requires = "http")]
        admin_token_file: Option<std::path::PathBuf>,
        /// Require the admin token for reads too (dashboard: open it as URL/#token=TOKEN).
        #[arg(long, requires = "admin_token_file")]
        protect_reads: bool,
        /// POST alarms and node events as JSON to this URL (retried with back-off).
        #[arg(long, requires = "http")]
        webhook: Option<String>,
        /// Runs the demo's failover service (used by `girder demo`).
        #[arg(long, hide = true)]
        demo_service: bool,
        /// Simulated work per request of the `girder.loadgen` server this node hosts (what
        /// `girder loadgen` drives), unless a request names its own.
        #[arg(long, default_value = "1ms", value_parser = parse_duration)]
        loadgen_cost: std::time::Duration,
        /// Requests the `girder.loadgen` server works on at once (its capacity is this ÷ the
        /// cost); 0: no loadgen server.
        #[arg(long, default_value_t = 4)]
        loadgen_concurrency: usize,
        /// Scheduler threads for the node's processes (Girder's schedulers, like `+S`); 0 runs
        /// them as tasks of the tokio runtime instead. Default: one per core.
        #[arg(long)]
        schedulers: Option<usize>,
    },
    /// A node's cluster view, alarms and busiest processes, from its ops API.
    Status {
        /// The node's ops API: host:port (plain HTTP, e.g. 127.0.0.1:8080) or a URL
        /// (http://... or https://...).
        #[arg(long, value_parser = status::parse_node)]
        node: String,
        /// File holding the bearer token, if the node protects reads.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
    },
    /// A live view of a node (like observer_cli): redrawn every second until Ctrl-C.
    Top {
        /// The node's ops API: host:port (plain HTTP, e.g. 127.0.0.1:8080) or a URL
        /// (http://... or https://...).
        #[arg(long, value_parser = status::parse_node)]
        node: String,
        /// File holding the bearer token, if the node protects reads.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// How often to redraw.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        every: std::time::Duration,
    },
    /// OTP's sys for a behaviour on a node, through its ops API: its state, suspend and
    /// resume, a live trace.
    Sys {
        #[command(subcommand)]
        command: sys::SysCommand,
    },
    /// Capacity planning: throughput and latency against a stepped offered load, the knee marked.
    ///
    /// Drives a server at a stepped, open-loop load and writes throughput and p50/p99 latency
    /// against offered load (loadgen.csv, loadgen.png in --out). Without --target, starts a
    /// local `girder node` and drives its `girder.loadgen` server.
    Loadgen(loadgen::LoadgenArgs),
    /// The server node of the remote benchmarks (started by `girder bench`).
    #[command(hide = true)]
    BenchPeer,
    /// One case of the `overload` benchmark, in a fresh process (started by `girder bench`).
    #[command(hide = true)]
    BenchOverload {
        /// Measure the service's capacity instead of running a case.
        #[arg(long)]
        calibrate: bool,
        #[arg(long, default_value_t = 1.0)]
        offered_x: f64,
        #[arg(long)]
        regulated: bool,
        #[arg(long, default_value_t = 0.0)]
        capacity: f64,
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
    },
    /// Runs the runtime's benchmark workloads and prints a table (or JSON lines).
    Bench {
        /// Workloads to run: spawn, ring, pingpong, call_c1, call_c100, fanin, dist_link,
        /// dist_send, dist_call_c1, dist_call_c50, hol, detect, attack, overload, or all.
        #[arg(long = "workload", short = 'w')]
        workloads: Vec<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Multiplies every count (0.01 for a quick smoke run).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// `off` turns the runtime's call timing off, to measure what visibility costs.
        #[arg(long, default_value = "on", value_parser = ["on", "off"])]
        visibility: String,
        /// Where the local workloads' processes run: `girder` (Girder's schedulers, one per
        /// core) or `tokio` (tasks of a multi-threaded tokio runtime).
        #[arg(long, default_value = "girder", value_parser = ["girder", "tokio"])]
        runtime: String,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 10s or 500ms)"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (use ms, s or m)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

fn target(url: String, token_file: Option<std::path::PathBuf>) -> Result<status::Target, String> {
    let token = match token_file {
        Some(f) => Some(
            girder_dist::read_secret_file(&f, 4096)
                .map_err(|e| format!("token file: {e}"))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    Ok(status::Target { url, token })
}

fn main() {
    alloc::one_arena_unless_set();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { duration, seed } => demo::run(duration, seed),
        Command::BenchPeer => bench::remote::serve(),
        Command::BenchOverload {
            calibrate,
            offered_x,
            regulated,
            capacity,
            scale,
        } => bench::overload::case(bench::overload::CaseArgs {
            calibrate,
            offered_x,
            regulated,
            capacity,
            scale,
        }),
        Command::Status { node, token_file } => target(node, token_file).and_then(status::status),
        Command::Top {
            node,
            token_file,
            every,
        } => target(node, token_file).and_then(|t| status::top(t, every)),
        Command::Sys { command } => sys::run(command),
        Command::Loadgen(args) => loadgen::run(args),
        Command::Bench {
            workloads,
            json,
            scale,
            visibility,
            runtime,
        } => {
            if visibility == "off" {
                girder::stats::set_call_sampling(0);
            } else {
                // As a node serving /metrics records: into the Prometheus recorder.
                girder_ops::exporter::install();
            }
            bench::run(&workloads, scale, json, runtime == "girder")
        }
        Command::Node {
            name,
            listen,
            advertise,
            seeds,
            seed_dns,
            cookie_file,
            roles,
            tls_ca,
            tls_cert,
            tls_key,
            probe_period,
            probe_rtt,
            suspect_after,
            demo_service,
            http,
            admin_token_file,
            webhook,
            protect_reads,
            schedulers,
            loadgen_cost,
            loadgen_concurrency,
        } => node::run(node::NodeArgs {
            schedulers,
            loadgen: (loadgen_concurrency > 0).then_some((loadgen_cost, loadgen_concurrency)),
            webhook,
            protect_reads,
            demo_service,
            http,
            admin_token_file,
            detection: (probe_period, probe_rtt, suspect_after),
            tls: tls_ca
                .zip(tls_cert)
                .zip(tls_key)
                .map(|((a, b), c)| (a, b, c)),
            name,
            listen,
            advertise,
            seeds,
            seed_dns,
            cookie_file,
            roles,
        }),
    };
    if let Err(e) = result {
        eprintln!("girder: {e}");
        std::process::exit(2);
    }
}
