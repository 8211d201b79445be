//! `girder node`: a node that joins a cluster, authenticates its peers and hosts processes
//! that other nodes reach.
//!
//! The node listens on one address for both membership (UDP, SWIM) and connections (TCP with the
//! cookie handshake, optionally under mutual TLS). Membership tells the node where its peers are
//! and when one is down; connections are made on demand, and the global registry and the
//! `default` process-group scope it runs connect to every member. Everything it learns is
//! printed as it happens; SIGTERM or Ctrl-C leaves the cluster gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder::Node;
use girder_dist::global::Global;
use girder_dist::groups::Groups;
use girder_dist::membership::{self, Member, MemberEvent, Membership, MembershipConfig};
use girder_dist::tls::TlsConfig;
use girder_dist::{Cookie, DistConfig, DistNode, NodeEvent, NodeName};

pub struct NodeArgs {
    /// Scheduler threads for processes; `Some(0)`: tokio tasks; `None`: one per core.
    pub schedulers: Option<usize>,
    /// Probe period, probe round trip, suspicion time.
    pub detection: (Duration, Duration, Duration),
    /// CA, certificate and key PEM files; with them, connections run over mutual TLS.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub name: String,
    pub listen: SocketAddr,
    /// What other nodes dial (see [`advertised`]).
    pub advertise: Option<SocketAddr>,
    pub seeds: Vec<SocketAddr>,
    pub seed_dns: Option<String>,
    pub cookie_file: PathBuf,
    pub roles: Vec<String>,
    /// Runs the demo's failover singleton (`girder demo` starts nodes with it).
    pub demo_service: bool,
    /// Where to serve the ops API.
    pub http: Option<SocketAddr>,
    /// The ops API's admin token file.
    pub admin_token_file: Option<PathBuf>,
    /// Where notices are posted.
    pub webhook: Option<String>,
    /// Reads need the token too.
    pub protect_reads: bool,
    /// The `girder.loadgen` server's cost and concurrency; `None`: not started.
    pub loadgen: Option<(Duration, usize)>,
}

pub fn run(args: NodeArgs) -> Result<(), String> {
    log_to_stderr();
    let name = NodeName::new(&args.name).map_err(|e| e.to_string())?;
    let cookie = Cookie::from_file(&args.cookie_file).map_err(|e| e.to_string())?;
    if let Some(weak) = cookie.weakness() {
        eprintln!("girder node: warning: the cookie is weak: {weak}");
    }
    if let Some(f) = &args.admin_token_file {
        admin_token(f)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(serve(name, cookie, args))
}

/// Reads the admin token: one line, at least 16 characters, no spaces.
fn admin_token(path: &std::path::Path) -> Result<String, String> {
    let text =
        girder_dist::read_secret_file(path, 4096).map_err(|e| format!("admin token file: {e}"))?;
    let token = text.trim_end_matches(['\n', '\r']).to_string();
    if token.len() < 16 || token.chars().any(char::is_whitespace) {
        return Err(format!(
            "admin token in {} must be at least 16 characters without spaces",
            path.display()
        ));
    }
    Ok(token)
}

/// The address other nodes dial to reach this one: `advertise` if given; the bound address if
/// it is a specific one; with a wildcard bind (`0.0.0.0`, `[::]`), the node name's host if it is an
/// IP address. A wildcard is never advertised: peers would dial themselves.
fn advertised(
    name: &NodeName,
    bound: SocketAddr,
    advertise: Option<SocketAddr>,
) -> Result<SocketAddr, String> {
    if let Some(a) = advertise {
        if a.ip().is_unspecified() || a.port() == 0 {
            return Err(format!(
                "--advertise {a}: give an address and port other nodes can dial"
            ));
        }
        return Ok(a);
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    match name.host().parse::<std::net::IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => Ok(SocketAddr::new(ip, bound.port())),
        _ => Err(format!(
            "listening on {bound} (every interface) needs --advertise ADDR, the address other \
             nodes dial: the node name's host {:?} is not an IP address to use instead",
            name.host()
        )),
    }
}

/// The libraries' log lines to stderr, so what the node's own lines do not say still makes a
/// sound: refused peers, a failing listener, alarms and notices, admin actions through the ops
/// API. Warnings and errors from everything, and the ops layer's notices (alarms raised and
/// cleared) at info; `GIRDER_LOG=info|debug|trace` shows more of everything.
fn log_to_stderr() {
    use tracing::Level;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let level = std::env::var("GIRDER_LOG")
        .ok()
        .and_then(|l| l.parse::<Level>().ok());
    let filter = Targets::new()
        .with_default(level.unwrap_or(Level::WARN))
        .with_target("girder_ops", level.unwrap_or(Level::INFO).max(Level::INFO));
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}

/// Raises the soft limit on open files to the hard limit, as servers do: every connection (a
/// peer, an ops API client) is a file descriptor, and the usual soft default of 1,024 is reached
/// by a modest cluster or a small attack. Says what it did.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => println!("open files limit: {limit}"),
        Err(e) => eprintln!("girder node: cannot raise the open files limit: {e}"),
    }
}

async fn serve(name: NodeName, cookie: Cookie, args: NodeArgs) -> Result<(), String> {
    let started = Instant::now();
    // SIGTERM and Ctrl-C are caught from here on: one that comes while the node is still
    // starting is a graceful leave as soon as it is up, rather than the default action, an
    // abrupt exit that the other nodes see as a crash.
    let signal = girder::application::shutdown_signal();
    tokio::pin!(signal);
    let mut signalled = false;
    raise_open_files_limit();
    let mut seeds = args.seeds.clone();
    if let Some(dns) = &args.seed_dns {
        match membership::discover(dns).await {
            Ok(found) => seeds.extend(found),
            Err(e) => eprintln!("girder node: DNS discovery of {dns} failed: {e}"),
        }
    }
    let tls_cfg = match &args.tls {
        Some((ca, cert, key)) => Some(Arc::new(
            TlsConfig::from_pem_files(ca, cert, key).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let how = if tls_cfg.is_some() {
        "TLS + cookie"
    } else {
        "cookie"
    };
    let mut cfg = DistConfig::new(name.clone(), cookie.clone(), args.listen);
    cfg.tls = tls_cfg;
    // Kept for the life of the node: the last handle dropped stops the schedulers.
    let pool = girder::Schedulers::from_setting(args.schedulers);
    let node = Node::builder(name.as_str()).schedulers_or_tasks(pool.clone());
    // The node's own creation: the clock's milliseconds, compared across a wrap as serial
    // numbers (`Node::is_newer_creation`).
    let node = node.build();
    let creation = node.creation();
    let dist = DistNode::start(node, cfg)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let bound = dist.local_addr();
    let listen = advertised(&name, bound, args.advertise)?;
    if listen != bound {
        println!("advertising {listen} to other nodes (listening on {bound})");
    }
    let mut node_events = dist.subscribe();
    let me = Member {
        name: name.clone(),
        addr: listen,
        creation,
        roles: args.roles.clone(),
    };
    let (probe_period, probe_rtt, suspect_to_down_after) = args.detection;
    let membership_cfg = MembershipConfig {
        cookie: Some(cookie),
        probe_period,
        probe_rtt,
        suspect_to_down_after,
        bind: (listen != bound).then_some(bound),
        ..MembershipConfig::default()
    };
    let membership = Arc::new(
        Membership::start(dist.node(), me, &seeds, membership_cfg)
            .await
            .map_err(|e| format!("cannot start membership on {listen}: {e}"))?,
    );
    let mut events = membership.subscribe();
    dist.follow(&membership);
    let global = Global::start(&dist).await.map_err(|e| e.to_string())?;
    let _groups = Groups::start(&dist, "default")
        .await
        .map_err(|e| e.to_string())?;
    let _ops = match args.http {
        Some(addr) => {
            if !addr.ip().is_loopback() && (args.admin_token_file.is_none() || !args.protect_reads)
            {
                eprintln!(
                    "girder node: warning: the ops API on {addr} can be reached from the network \
                     and anyone who reaches it can read the cluster's processes, state and \
                     metrics{}; give --admin-token-file and --protect-reads, or --http on \
                     127.0.0.1",
                    if args.admin_token_file.is_none() {
                        " (admin actions are refused: no admin token)"
                    } else {
                        ""
                    }
                );
            }
            let mut cfg = girder_ops::OpsConfig::new(addr);
            cfg.admin_token = args
                .admin_token_file
                .as_deref()
                .map(admin_token)
                .transpose()?;
            cfg.expect_peers = !seeds.is_empty();
            cfg.protect_reads = args.protect_reads;
            cfg.webhook = args
                .webhook
                .clone()
                .map(girder_ops::webhook::WebhookConfig::new);
            let ops = girder_ops::Ops::start(
                dist.node().clone(),
                Some(dist.clone()),
                Some(membership.clone()),
                cfg,
            )
            .await
            .map_err(|e| format!("cannot serve the ops API on {addr}: {e}"))?;
            println!("ops API on http://{}", ops.local_addr());
            Some(ops)
        }
        None => None,
    };
    println!("node {name} up (creation {creation}) on {listen}; seeds {seeds:?}");
    if let Some((cost, concurrency)) = args.loadgen {
        // What `girder loadgen` drives out of the box: a known capacity (concurrency ÷ cost)
        // that costs nothing until called. Its backlog is bounded: past it, `Busy`.
        let server = crate::loadgen::service::Simulated::new(cost, concurrency, 100_000);
        let server = girder::server::start_with(
            dist.node(),
            server,
            Default::default(),
            Some(crate::loadgen::service::NAME),
        )
        .await
        .map_err(|e| format!("cannot start {}: {e}", crate::loadgen::service::NAME))?;
        dist.export_server(&server);
    }
    if args.demo_service {
        crate::demo::cluster::singleton(&dist, &global);
    }

    let at = || format!("+{:.2}s", started.elapsed().as_secs_f64());
    // A line a second at most for each: a flood of bad peers must not flood the output.
    let (mut refused, mut dial_failed) = (LineBudget::default(), LineBudget::default());
    // Girder's own services (global names, process groups, the alarm service) run under
    // `girder.kernel_sup`; if it gives up, the node stops, as an OTP node halts when its kernel
    // application's supervisor dies, so that whatever supervises the node starts it afresh.
    let services = dist.services().pid();
    let services_exit = dist.node().wait_exit(services);
    tokio::pin!(services_exit);
    let mut status = Ok(());
    while !signalled {
        tokio::select! {
            _ = &mut signal => signalled = true,
            reason = &mut services_exit => {
                println!(
                    "{} exited ({reason}): Girder's own services are down; stopping ({})",
                    girder_dist::node::KERNEL_SUP,
                    at()
                );
                status = Err(format!("{} exited: {reason}", girder_dist::node::KERNEL_SUP));
                break;
            }
            event = events.recv() => match event {
                Ok(MemberEvent::Up(m)) => {
                    println!("member up: {} at {} roles {:?} ({})", m.name, m.addr, m.roles, at());
                }
                Ok(MemberEvent::Down(m)) => println!("member down: {} ({})", m.name, at()),
                Ok(MemberEvent::Replaced { old, new }) => {
                    println!("member restarted: {} creation {} -> {}", new.name, old.creation, new.creation);
                }
                Ok(MemberEvent::Forgotten(m)) => {
                    println!("member forgotten: {} (down for too long) ({})", m.name, at());
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("missed {n} membership events (slow output)");
                }
                Err(_) => break,
            },
            event = node_events.recv() => match event {
                Ok(NodeEvent::Up(peer)) => {
                    println!("connected to {peer} (authenticated by {how}) ({})", at());
                }
                Ok(NodeEvent::Down { node, reason }) => {
                    println!("connection to {node} lost: {reason} ({})", at());
                }
                Ok(NodeEvent::Left { node, reason }) => {
                    println!("{node} left: {reason} ({})", at());
                }
                Ok(NodeEvent::Forgotten(node)) => println!("{node} forgotten ({})", at()),
                Ok(NodeEvent::DialFailed { node, reason }) => {
                    if let Some(more) = dial_failed.spend() {
                        println!("handshake with {node} failed: {reason}{more}");
                    }
                }
                Ok(NodeEvent::Refused { from, reason }) => {
                    if let Some(more) = refused.spend() {
                        println!("connection from {from} refused: {reason}{more}");
                    }
                }
                Ok(NodeEvent::Discovered(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("missed {n} connection events (slow output)");
                }
                Err(_) => break,
            },
        }
    }
    println!("leaving the cluster");
    // The goodbyes first: the peers hear them, and report a departure (no `node_down` alarm),
    // before membership tells them the member is gone.
    dist.shutdown_and_wait().await;
    membership.leave().await;
    println!("node {name} stopped");
    status
}

/// One line a second at most for something that can happen a thousand times a second: `Some`
/// suffix telling how many were left out, if a line may be printed now.
#[derive(Default)]
struct LineBudget(girder::log::LogBudget);

impl LineBudget {
    fn spend(&mut self) -> Option<String> {
        self.0.spend().map(|n| match n {
            0 => String::new(),
            n => format!(" ({n} more since the last line)"),
        })
    }
}
