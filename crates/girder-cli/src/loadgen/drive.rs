//! Driving the target: connect with the cookie, find the server, then one open-loop step after
//! another.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use girder::{Context, ExitReason, Node, ServerRef};
use girder_dist::{Cookie, DistConfig, DistNode, NodeName};
use hdrhistogram::Histogram;

use super::service::{Simulated, Work, WorkReply};
use super::{LoadgenArgs, Step};

/// A node to drive: its name and where to dial it.
pub struct Target {
    pub name: NodeName,
    pub addr: SocketAddr,
}

impl Target {
    /// `NAME@HOST:PORT`: the node is `NAME@HOST` and listens on `HOST:PORT` (HOST resolved
    /// if it is not an address).
    pub fn parse(s: &str) -> Result<Target, String> {
        let bad = |why: &str| {
            format!("--target {s:?}: {why} (expected NAME@HOST:PORT, e.g. a@10.0.0.5:7000)")
        };
        let (name, port) = s.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?;
        let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
        let (who, host) = name.split_once('@').ok_or_else(|| bad("no @HOST"))?;
        // Brackets, as around an IPv6 address, are not part of a host (node names refuse
        // colons, so `a@[::1]:7000` is refused there, clearly).
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let node = NodeName::new(&format!("{who}@{host}")).map_err(|e| bad(&e.to_string()))?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| bad(&format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| bad(&format!("{host} resolves to no address")))?;
        Ok(Target { name: node, addr })
    }
}

/// How a step's calls came out.
#[derive(Default)]
struct Tally {
    /// Successful replies received during the step's span (the throughput's numerator).
    ok_in_span: AtomicU64,
    errors: AtomicU64,
    resolved: AtomicU64,
    outstanding: AtomicUsize,
}

/// Connects, then runs every step in `offered`, calling `each` with each step's result.
pub fn run(
    args: &LoadgenArgs,
    target: &Target,
    cookie: &Path,
    offered: &[f64],
    mut each: impl FnMut(&Step),
) -> Result<Vec<Step>, String> {
    let cookie = Cookie::from_file(cookie).map_err(|e| format!("cookie file: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let me = NodeName::new(&format!("loadgen-{}@127.0.0.1", std::process::id()))
            .map_err(|e| e.to_string())?;
        // Loopback for a target on loopback; otherwise every interface, so the connection
        // leaves by whichever reaches the target.
        let listen = match target.addr {
            a if a.ip().is_loopback() => "127.0.0.1:0",
            a if a.is_ipv4() => "0.0.0.0:0",
            _ => "[::]:0",
        };
        let cfg = DistConfig::new(me, cookie, listen.parse().expect("a valid address"));
        let dist = DistNode::start(Node::new("loadgen"), cfg)
            .await
            .map_err(|e| format!("cannot start the client node: {e}"))?;
        dist.add_address(target.name.clone(), target.addr);
        let unreachable = |why: String| {
            format!(
                "cannot reach {} at {}: {why} (is the node running, and is the cookie the \
                 cluster's?)",
                target.name, target.addr
            )
        };
        tokio::time::timeout(Duration::from_secs(10), dist.connect(&target.name))
            .await
            .map_err(|_| unreachable("no connection within 10 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let pid = dist
            .whereis(&target.name, &args.server)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .ok_or_else(|| {
                format!(
                    "no process named {:?} on {} (girder node serves {:?}; name yours with \
                     --server)",
                    args.server,
                    target.name,
                    super::service::NAME
                )
            })?;
        let server = dist.remote_server::<Simulated>(&target.name, pid);
        // A first call: a server that does not speak loadgen.work.v1 fails here, clearly.
        server
            .call_timeout(|r| (work(args), r), args.timeout)
            .await
            .map_err(|e| format!("{:?} does not answer loadgen.work.v1: {e}", args.server))?;
        let mut steps = Vec::with_capacity(offered.len());
        for &rate in offered {
            let s = step(dist.node(), &server, args, rate).await;
            each(&s);
            steps.push(s);
        }
        Ok(steps)
    })
}

fn work(args: &LoadgenArgs) -> Work {
    Work {
        cost_us: args.cost.map(|c| c.as_micros() as u64),
        budget_ms: Some(args.timeout.as_millis() as u64),
    }
}

/// One step against the server: each arrival a process calling it.
async fn step(node: &Node, server: &ServerRef<Simulated>, args: &LoadgenArgs, rate: f64) -> Step {
    paced(args, rate, |arrival, rec| {
        let (server, req, timeout) = (server.clone(), work(args), args.timeout);
        node.spawn(move |_: Context<()>| async move {
            let ok = matches!(
                server.call_timeout(|r| (req, r), timeout).await,
                Ok(WorkReply::Done { .. })
            );
            rec.resolve(arrival, ok);
            ExitReason::Normal
        });
    })
    .await
}

/// What a step's calls came to, shared with each call: one is told [`resolve`](Self::resolve).
pub struct Recorder {
    tally: Tally,
    hist: Mutex<Histogram<u64>>,
    span_end: Instant,
}

impl Recorder {
    /// A call that arrived (was scheduled) at `arrival` has ended, with success or not.
    pub fn resolve(&self, arrival: Instant, ok: bool) {
        let done = Instant::now();
        if ok {
            self.hist
                .lock()
                .expect("not poisoned")
                .saturating_record((done - arrival).as_micros() as u64);
            if done <= self.span_end {
                self.tally.ok_in_span.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.tally.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.tally.outstanding.fetch_sub(1, Ordering::Relaxed);
        self.tally.resolved.fetch_add(1, Ordering::Relaxed);
    }
}

/// One step: `rate` arrivals a second for `step_secs`, each handed to `launch` (which starts
/// the call and has it [`Recorder::resolve`]d, by its timeout at the latest), paced by the
/// clock (open loop), then a wait for the stragglers.
pub async fn paced(
    args: &LoadgenArgs,
    rate: f64,
    mut launch: impl FnMut(Instant, Arc<Recorder>),
) -> Step {
    let span = Duration::from_secs_f64(args.step_secs);
    let total = (rate * args.step_secs).round().max(1.0) as u64;
    let t0 = Instant::now();
    let rec = Arc::new(Recorder {
        tally: Tally::default(),
        hist: Mutex::new(
            Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
        ),
        span_end: t0 + span,
    });
    let tally = &rec.tally;
    let mut sent = 0u64;
    while sent < total {
        let due = ((t0.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while sent < due {
            // Latency from the scheduled arrival: a late pacer does not hide waiting.
            let arrival = t0 + Duration::from_secs_f64(sent as f64 / rate);
            sent += 1;
            if tally.outstanding.load(Ordering::Relaxed) >= args.max_outstanding {
                tally.errors.fetch_add(1, Ordering::Relaxed);
                tally.resolved.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            tally.outstanding.fetch_add(1, Ordering::Relaxed);
            launch(arrival, rec.clone());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Every call ends by its timeout: wait for them all, so that a step does not leak load
    // into the next (the server skips what waited past the calls' budget).
    tokio::time::sleep_until(rec.span_end.into()).await;
    let drain = Instant::now() + args.timeout + Duration::from_secs(1);
    while tally.resolved.load(Ordering::Relaxed) < total && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let unresolved = total - tally.resolved.load(Ordering::Relaxed).min(total);
    let hist = rec.hist.lock().expect("not poisoned");
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Step {
        offered_per_s: rate,
        throughput_per_s: tally.ok_in_span.load(Ordering::Relaxed) as f64 / span.as_secs_f64(),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        errors: tally.errors.load(Ordering::Relaxed) + unresolved,
        arrivals: total,
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn a_target_is_a_node_name_and_a_port() {
        let t = Target::parse("a@127.0.0.1:7000").unwrap();
        assert_eq!(t.name.as_str(), "a@127.0.0.1");
        assert_eq!(t.addr, "127.0.0.1:7000".parse().unwrap());
        let t = Target::parse("b@localhost:7001").unwrap();
        assert!(t.addr.ip().is_loopback(), "{}", t.addr);
        for (bad, why) in [
            ("a@127.0.0.1", "no :PORT"),
            ("127.0.0.1:7000", "no @HOST"),
            ("a@127.0.0.1:http", "the port is not a number"),
            // A node name's host has no colons, so an IPv6 address cannot be one.
            ("b@[::1]:7001", "invalid node name"),
        ] {
            let err = Target::parse(bad).err().unwrap();
            assert!(
                err.contains(why) && err.contains("NAME@HOST:PORT"),
                "{bad}: {err}"
            );
        }
    }
}
