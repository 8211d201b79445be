//! `girder node` processes started by this one (the demo's cluster, the `detect` and `attack`
//! benchmarks),
//! with their output lines readable as they come. Dropping one kills it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct NodeProcess {
    pub child: Child,
    lines: mpsc::Receiver<String>,
}

impl NodeProcess {
    /// Starts `girder node ARGS`.
    pub fn start(args: &[&str]) -> Result<NodeProcess, String> {
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
        Ok(NodeProcess { child, lines })
    }

    /// The first line containing `needle`, skipping others.
    pub fn wait_for(&self, needle: &str, within: Duration) -> Result<String, String> {
        self.wait_for_any(&[needle], within)
    }

    /// The first line containing any of `needles`, skipping others.
    pub fn wait_for_any(&self, needles: &[&str], within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if needles.iter().any(|n| line.contains(n)) => return Ok(line),
                Ok(_) => {}
                Err(_) => return Err(format!("none of {needles:?} within {within:?}")),
            }
        }
    }

    /// The lines written since the last look, without waiting.
    pub fn drain(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// The address from the node's `node NAME up (...) on ADDR; ...` line.
    pub fn wait_up(&self, within: Duration) -> Result<String, String> {
        let up = self.wait_for(" up (creation", within)?;
        up.split(" on ")
            .nth(1)
            .and_then(|s| s.split(';').next())
            .map(str::to_string)
            .ok_or_else(|| format!("cannot read the node's address in {up:?}"))
    }

    /// Sends a signal (`-KILL`, `-STOP`, `-TERM`) with `kill`.
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .map_err(|e| e.to_string())
            .map(|_| ())
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
