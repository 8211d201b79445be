//! `detect`: seconds from SIGKILL of a node to its peer seeing it down, with two `girder node`
//! OS processes on loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::Outcome;

struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn start(args: &[&str]) -> Result<Proc, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("node")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a node: {e}"))?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Proc { child, lines })
    }

    fn wait_for(&self, needle: &str, within: Duration) -> Result<String, String> {
        self.wait_for_any(&[needle], within)
    }

    fn wait_for_any(&self, needles: &[&str], within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if needles.iter().any(|n| line.contains(n)) => return Ok(line),
                Ok(_) => {}
                Err(_) => return Err(format!("detect: none of {needles:?} within {within:?}")),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two measurements, as a peer sees them:
/// * `detect_s`: the peer is killed with SIGKILL: its kernel closes its sockets, so the
///   connection loss is usually what reports it (Erlang sees this at once too);
/// * `detect_silent_s`: the peer is frozen with SIGSTOP, as a hung host or a cut cable would be:
///   nothing is closed and only failure detection can tell (Erlang's net_ticktime: 45–75 s).
pub fn run() -> Result<Outcome, String> {
    let cookie = std::env::temp_dir().join(format!("girder-bench-cookie-{}", std::process::id()));
    std::fs::write(&cookie, "girder-bench-detect-cookie\n").map_err(|e| e.to_string())?;
    let c = cookie.to_str().ok_or("temp path is not UTF-8")?;
    let a = Proc::start(&[
        "--name",
        "a@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        c,
    ])?;
    let up = a.wait_for("node a@127.0.0.1 up", Duration::from_secs(10))?;
    let addr = up
        .split(" on ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .ok_or("cannot read the node's address")?
        .to_string();
    let killed = measure(&a, &addr, c, "b@127.0.0.1", "-KILL")?;
    let frozen = measure(&a, &addr, c, "c@127.0.0.1", "-STOP")?;
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
    ])?;
    a.wait_for(&format!("connected to {name}"), Duration::from_secs(10))?;
    // Let the pair settle into steady probing before the failure.
    std::thread::sleep(Duration::from_millis(500));
    let pid = peer.child.id().to_string();
    let t0 = Instant::now();
    Command::new("kill")
        .args([signal, &pid])
        .status()
        .map_err(|e| e.to_string())?;
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
