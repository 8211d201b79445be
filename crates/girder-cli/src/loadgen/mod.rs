//! `girder loadgen`: capacity planning. Drives a server at a stepped, open-loop offered load
//! and reports, per step, the throughput it got and the latency (p50, p99), as a table, a CSV
//! and a PNG plot, with the knee marked: the most load the server takes before it stops
//! keeping up.
//!
//! The target is a Girder server on a running node, reached over the network with the
//! cluster's cookie, that takes [`service::Work`] (`loadgen.work.v1`); `girder node` hosts one,
//! [`service::Simulated`], as `girder.loadgen`. Without `--target`, loadgen starts such a node
//! itself (a `girder node` child on loopback) and drives that.

mod drive;
mod mqtt;
mod plot;
pub mod service;

use std::path::PathBuf;
use std::time::Duration;

use crate::child::NodeProcess;

/// What `girder loadgen` was asked.
#[derive(clap::Args, Debug)]
pub struct LoadgenArgs {
    /// The node to drive, NAME@HOST:PORT (the node `NAME@HOST`, listening on HOST:PORT).
    #[arg(long, requires = "cookie_file")]
    pub target: Option<String>,
    /// File holding the cluster cookie (with --target).
    #[arg(long)]
    pub cookie_file: Option<std::path::PathBuf>,
    /// The server's registered name on the target node; it must take loadgen.work.v1.
    #[arg(long, default_value = service::NAME)]
    pub server: String,
    /// Offered load of the first step, calls a second.
    #[arg(long, default_value_t = 500.0)]
    pub from: f64,
    /// Offered load of the last step, calls a second.
    #[arg(long, default_value_t = 5000.0)]
    pub to: f64,
    /// Steps from --from to --to, evenly spaced.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Seconds each step lasts.
    #[arg(long, default_value_t = 3.0)]
    pub step_secs: f64,
    /// Calls outstanding at most; arrivals past it are dropped and counted as errors.
    #[arg(long, default_value_t = 10_000)]
    pub max_outstanding: usize,
    /// A call not answered within this counts as an error.
    #[arg(long, default_value = "2s", value_parser = crate::parse_duration)]
    pub timeout: std::time::Duration,
    /// Simulated work each request asks for (default: the server's own).
    #[arg(long, value_parser = crate::parse_duration)]
    pub cost: Option<std::time::Duration>,
    /// Drive the MQTT broker at HOST:PORT instead of a node: each call is a PUBLISH, done
    /// when a subscriber of ours has received it (end-to-end latency).
    #[arg(long, conflicts_with_all = ["target", "cookie_file"])]
    pub mqtt: Option<String>,
    /// QoS of the messages (with --mqtt).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Publishing connections, taking turns (with --mqtt).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Directory for loadgen.csv and loadgen.png.
    #[arg(long, default_value = ".")]
    pub out: std::path::PathBuf,
}

/// One step's result: one row of the table, the CSV and the plot.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub offered_per_s: f64,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Calls not answered with success: dropped at the outstanding cap, timed out, refused.
    pub errors: u64,
    /// Arrivals in the step (for the error share).
    pub arrivals: u64,
}

/// Throughput must be at least this share of the offered load for a step to be under the knee.
const TRACKS: f64 = 0.95;
/// A step's p99 may be at most this multiple of the lowest step's.
const P99_BLOWUP: f64 = 3.0;
/// At most this share of a step's arrivals may fail.
const MAX_ERRORS: f64 = 0.01;

/// The knee: the last step of the run of steps, from the lowest, in which each step's
/// throughput is at least 95% of its offered load, its p99 at most 3× the lowest step's, and
/// at most 1% of its calls failed. `None` when the lowest step already fails one of these.
pub fn knee(steps: &[Step]) -> Option<usize> {
    let base = steps.first()?.p99_ms;
    steps
        .iter()
        .take_while(|s| {
            s.throughput_per_s >= TRACKS * s.offered_per_s
                && s.p99_ms <= P99_BLOWUP * base
                && (s.errors as f64) <= MAX_ERRORS * s.arrivals as f64
        })
        .count()
        .checked_sub(1)
}

/// The offered loads of the steps: `from` to `to`, evenly spaced.
fn plan(args: &LoadgenArgs) -> Result<Vec<f64>, String> {
    if !(args.from.is_finite() && args.from > 0.0) {
        return Err(format!("--from must be a positive rate, got {}", args.from));
    }
    if !(args.to.is_finite() && args.to >= args.from) {
        return Err(format!(
            "--to ({}) must be at least --from ({}): the load steps up",
            args.to, args.from
        ));
    }
    if args.steps == 0 || args.steps > 1000 {
        return Err(format!("--steps must be 1 to 1000, got {}", args.steps));
    }
    if !(args.step_secs.is_finite() && args.step_secs > 0.0 && args.step_secs <= 3600.0) {
        return Err(format!(
            "--step-secs must be in (0, 3600], got {}",
            args.step_secs
        ));
    }
    if args.max_outstanding == 0 {
        return Err("--max-outstanding must be at least 1".into());
    }
    if args.steps == 1 {
        return Ok(vec![args.from]);
    }
    let gap = (args.to - args.from) / (args.steps - 1) as f64;
    Ok((0..args.steps)
        .map(|i| args.from + gap * i as f64)
        .collect())
}

pub fn run(args: LoadgenArgs) -> Result<(), String> {
    let offered = plan(&args)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create --out {}: {e}", args.out.display()))?;
    if let Some(m) = &args.mqtt {
        let addr = mqtt::parse(m)?;
        let what = format!(
            "QoS {} messages through the MQTT broker at {addr}",
            args.qos
        );
        announce(&args, &what, &offered, "messages");
        let steps = mqtt::run(&args, addr, &offered, print_step)?;
        return report(&args, &steps, &what, "messages");
    }
    // Self-contained: a node of our own, kept until the run ends (dropping it kills it).
    let (local, target, cookie) = match (&args.target, &args.cookie_file) {
        (Some(t), Some(c)) => (None, drive::Target::parse(t)?, c.clone()),
        (Some(_), None) => return Err("--target needs --cookie-file (the cluster's cookie)".into()),
        (None, _) => {
            let (node, target, cookie) = local_target(&args.out)?;
            (Some(node), target, cookie)
        }
    };
    let what = format!("{} on {} ({})", args.server, target.name, target.addr);
    announce(&args, &what, &offered, "calls");
    let steps = drive::run(&args, &target, &cookie, &offered, print_step)?;
    report(
        &args,
        &steps,
        &format!("{} on {}", args.server, target.name),
        "calls",
    )?;
    if local.is_some() {
        // The self-contained run's own cookie: its node is gone with `local`.
        drop(local);
        let _ = std::fs::remove_file(&cookie);
    }
    Ok(())
}

fn announce(args: &LoadgenArgs, what: &str, offered: &[f64], unit: &str) {
    println!(
        "driving {what} in {} steps of {} s, {:.0} to {:.0} {unit}/s",
        offered.len(),
        args.step_secs,
        args.from,
        args.to
    );
    println!(
        "{:>12} {:>12} {:>9} {:>9} {:>8}",
        "offered/s", "throughput/s", "p50 ms", "p99 ms", "errors"
    );
}

fn print_step(s: &Step) {
    println!(
        "{:>12.0} {:>12.0} {:>9.2} {:>9.2} {:>8}",
        s.offered_per_s, s.throughput_per_s, s.p50_ms, s.p99_ms, s.errors
    );
}

/// The knee, the CSV and the plot.
fn report(args: &LoadgenArgs, steps: &[Step], title: &str, unit: &str) -> Result<(), String> {
    let knee = knee(steps);
    match knee {
        Some(k) => println!(
            "knee: {:.0} {unit}/s offered, {:.0} served, p99 {:.2} ms (the highest step from \
             the lowest up with throughput ≥ 95% of offered, p99 ≤ 3× the lowest step's and \
             ≤ 1% errors)",
            steps[k].offered_per_s, steps[k].throughput_per_s, steps[k].p99_ms
        ),
        None => println!(
            "knee: none: the lowest step ({:.0}/s) is already past it; start lower with --from",
            args.from
        ),
    }
    let csv = args.out.join("loadgen.csv");
    plot::write_csv(&csv, steps).map_err(|e| format!("cannot write {}: {e}", csv.display()))?;
    let png = args.out.join("loadgen.png");
    plot::write_png(&png, steps, knee, title)?;
    println!("wrote {} and {}", csv.display(), png.display());
    Ok(())
}

/// Starts `girder node` on loopback with a fresh cookie in `dir`: the target of a
/// self-contained run.
fn local_target(dir: &std::path::Path) -> Result<(NodeProcess, drive::Target, PathBuf), String> {
    let cookie = dir.join(".loadgen-cookie");
    let secret = format!(
        "loadgen-{:016x}{:016x}",
        fastrand::u64(..),
        fastrand::u64(..)
    );
    girder_dist::write_secret_file(&cookie, &format!("{secret}\n"))
        .map_err(|e| format!("cannot write a cookie in {}: {e}", dir.display()))?;
    let name = "loadgen-target@127.0.0.1";
    let node = NodeProcess::start(&[
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        cookie.to_str().ok_or("the --out path is not UTF-8")?,
    ])?;
    let addr = node
        .wait_up(Duration::from_secs(30))
        .map_err(|e| format!("the local target node did not start: {e}"))?;
    let target = drive::Target::parse(&format!("loadgen-target@{addr}"))?;
    Ok((node, target, cookie))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(offered: f64, through: f64, p99: f64, errors: u64) -> Step {
        Step {
            offered_per_s: offered,
            throughput_per_s: through,
            p50_ms: p99 / 2.0,
            p99_ms: p99,
            errors,
            arrivals: offered as u64,
        }
    }

    #[test]
    fn the_knee_is_the_last_step_that_keeps_up() {
        let steps = [
            step(100.0, 100.0, 2.0, 0),
            step(200.0, 199.0, 2.5, 0),
            step(300.0, 290.0, 5.9, 1),
            step(400.0, 350.0, 40.0, 0), // throughput falls behind
            step(500.0, 500.0, 2.0, 0),  // a fluke above does not count
        ];
        assert_eq!(knee(&steps), Some(2));
        // p99 past 3× the lowest step's ends the run too.
        assert_eq!(
            knee(&[step(100.0, 100.0, 2.0, 0), step(200.0, 200.0, 6.1, 0)]),
            Some(0)
        );
        // So do errors past 1%.
        assert_eq!(
            knee(&[step(100.0, 100.0, 2.0, 0), step(200.0, 200.0, 2.0, 3)]),
            Some(0)
        );
        assert_eq!(knee(&[step(100.0, 50.0, 2.0, 0)]), None);
        assert_eq!(knee(&[]), None);
    }
}
