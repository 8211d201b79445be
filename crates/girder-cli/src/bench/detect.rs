//! `detect`: seconds from SIGKILL of a node to its peer seeing it down, with two `girder node`
//! OS processes on loopback.

use std::time::{Duration, Instant};

use crate::child::NodeProcess as Proc;

use super::Outcome;

/// Two measurements, as a peer sees them:
/// * `detect_s`: the peer is killed with SIGKILL: its kernel closes its sockets, so the
///   connection loss is usually what reports it (Erlang sees this at once too);
/// * `detect_silent_s`: the peer is frozen with SIGSTOP, as a hung host or a cut cable would be:
///   nothing is closed and only failure detection can tell (Erlang's net_ticktime: 45–75 s).
///
/// The nodes run their processes on `schedulers` Girder schedulers (0: tokio tasks).
pub fn run(schedulers: usize) -> Result<Outcome, String> {
    let sched = schedulers.to_string();
    let cookie = std::env::temp_dir().join(format!("girder-bench-cookie-{}", std::process::id()));
    girder_dist::write_secret_file(&cookie, "girder-bench-detect-cookie\n")
        .map_err(|e| e.to_string())?;
    let c = cookie.to_str().ok_or("temp path is not UTF-8")?;
    let a = Proc::start(&[
        "--name",
        "a@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        c,
        "--schedulers",
        &sched,
    ])?;
    let addr = a.wait_up(Duration::from_secs(10))?;
    let killed = measure(&a, &addr, c, "b@127.0.0.1", "-KILL", &sched)?;
    let frozen = measure(&a, &addr, c, "c@127.0.0.1", "-STOP", &sched)?;
    let _ = std::fs::remove_file(&cookie);
    Ok(Outcome {
        workload: "detect",
        values: vec![
            ("detect_s", killed.as_secs_f64()),
            ("detect_silent_s", frozen.as_secs_f64()),
        ],
    })
}

/// Starts `name`, waits until `a` is connected to it, sends it `signal`, and times how long `a`
/// takes to report it down (membership) or its connection lost.
fn measure(
    a: &Proc,
    seed: &str,
    cookie: &str,
    name: &str,
    signal: &str,
    schedulers: &str,
) -> Result<Duration, String> {
    let peer = Proc::start(&[
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--seed",
        seed,
        "--cookie-file",
        cookie,
        "--schedulers",
        schedulers,
    ])?;
    a.wait_for(&format!("connected to {name}"), Duration::from_secs(10))?;
    // Let the pair settle into steady probing before the failure.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    peer.signal(signal)?;
    a.wait_for_any(
        &[
            &format!("member down: {name}"),
            &format!("connection to {name} lost"),
        ],
        Duration::from_secs(30),
    )?;
    let took = t0.elapsed();
    drop(peer);
    Ok(took)
}
