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
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(_) => {}
                Err(_) => return Err(format!("detect: no {needle:?} within {within:?}")),
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
    let b = Proc::start(&[
        "--name",
        "b@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        &addr,
        "--cookie-file",
        c,
    ])?;
    a.wait_for("member up: b@127.0.0.1", Duration::from_secs(10))?;
    // Let the pair settle into steady probing before the crash.
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    let mut b = b;
    b.child.kill().map_err(|e| e.to_string())?;
    a.wait_for("member down: b@127.0.0.1", Duration::from_secs(30))?;
    let detect = killed.elapsed();
    let _ = std::fs::remove_file(&cookie);
    Ok(Outcome {
        workload: "detect",
        values: vec![("detect_s", (detect.as_secs_f64() * 1000.0).round() / 1000.0)],
    })
}
