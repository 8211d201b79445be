//! The end-to-end tests' harness: a broker started in this process on a free port, and real
//! MQTT clients (Mosquitto's command line tools, Python's paho-mqtt) run as child processes
//! with timeouts, their output collected line by line.
//!
//! Included by the end-to-end test files with `#[path = "common/harness.rs"] mod harness;`;
//! each uses part of it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use girder_mqtt::broker::Broker;
use girder_mqtt::config::Config;
use girder_mqtt::stats::Stats;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long anything a test waits for may take before the test fails: generous, for slow
/// 2-core CI machines.
pub const WAIT: Duration = Duration::from_secs(20);

/// A broker running in this process, with a scratch directory of its own.
pub struct TestBroker {
    broker: Option<Broker>,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Its node.
    pub node: girder::Node,
    /// A scratch directory, removed when the broker is dropped (its `data_dir` is in it).
    pub dir: PathBuf,
}

/// A fresh scratch directory under the system's temporary directory.
pub fn scratch_dir(what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "girder-mqtt-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// The settings the tests start from: 127.0.0.1 on a free port, no HTTP listener, anonymous
/// clients allowed, the data directory in `dir`.
pub fn config(dir: &Path) -> Config {
    Config {
        listen: ([127, 0, 0, 1], 0).into(),
        http: None,
        data_dir: Some(dir.join("data")),
        allow_anonymous: Some(true),
        ..Config::default()
    }
}

/// Starts a broker with the test settings changed by `edit` (which is given the scratch
/// directory, to write password or ACL files into).
pub async fn start_with(edit: impl FnOnce(&mut Config, &Path)) -> TestBroker {
    start_edited(edit, None).await
}

/// Starts a broker with the test settings.
pub async fn start() -> TestBroker {
    start_with(|_, _| {}).await
}

/// As [`start_with`], telling `alarms` of the broker's alarms and notices.
#[allow(dead_code)] // not every test file watches alarms
pub async fn start_with_alarms(
    edit: impl FnOnce(&mut Config, &Path),
    alarms: girder_ops::AlarmManager,
) -> TestBroker {
    start_edited(edit, Some(alarms)).await
}

async fn start_edited(
    edit: impl FnOnce(&mut Config, &Path),
    alarms: Option<girder_ops::AlarmManager>,
) -> TestBroker {
    let dir = scratch_dir("broker");
    let mut cfg = config(&dir);
    edit(&mut cfg, &dir);
    let node = girder::Node::new("mqtt-e2e");
    let broker = Broker::start_with(&node, cfg, alarms)
        .await
        .expect("the broker starts");
    TestBroker {
        port: broker.local_addr().port(),
        broker: Some(broker),
        node,
        dir,
    }
}

impl TestBroker {
    /// The broker.
    pub fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("running")
    }

    /// Its counters.
    pub fn stats(&self) -> &Stats {
        self.broker().stats()
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.broker().local_addr()
    }

    /// Waits until the broker has exactly `n` clients connected.
    pub async fn until_connections(&self, n: u64) {
        until(&format!("{n} connections"), || {
            self.stats().connections.get() == n
        })
        .await;
    }

    /// Waits until the broker's subscription table holds exactly `n` subscriptions.
    pub async fn until_subscriptions(&self, n: usize) {
        until(&format!("{n} subscriptions"), || {
            self.broker().shared().router.subscriptions() == n
        })
        .await;
    }

    /// Stops it.
    pub async fn stop(mut self) {
        if let Some(b) = self.broker.take() {
            b.stop().await;
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits (polling) until `cond` holds; fails the test, saying what it waited for, after
/// [`WAIT`].
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Is `program` on the PATH? If not, prints a line saying the test is skipped and how to
/// install it (CI installs it; a developer's machine may not have it).
pub fn found(program: &str, install: &str) -> bool {
    let there = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()));
    if !there {
        eprintln!("SKIPPED: {program} is not installed ({install}); this test needs it");
    }
    there
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    /// How it exited; `None` if it was killed for running past its timeout.
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Output {
    /// Its exit code (`None`: killed, by a signal or for its timeout).
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// Standard output then standard error.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `program` with `args` to its end, killing it after `timeout`.
pub async fn run(program: &str, args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = tokio::spawn(read_all(child.stdout.take().expect("piped")));
    let stderr = tokio::spawn(read_all(child.stderr.take().expect("piped")));
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => Some(s.expect("wait for the child")),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    Output {
        status,
        stdout: stdout.await.expect("read stdout"),
        stderr: stderr.await.expect("read stderr"),
    }
}

async fn read_all(r: impl AsyncRead + Unpin) -> String {
    let mut lines = BufReader::new(r).lines();
    let mut all = String::new();
    while let Ok(Some(l)) = lines.next_line().await {
        all.push_str(&l);
        all.push('\n');
    }
    all
}

/// A program left running (a subscriber, say), whose output lines (standard output and
/// standard error together) the test reads as they come. Killed when dropped.
pub struct Peer {
    /// What it is, for failure messages.
    pub name: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Peer {
    /// Starts `program` with `args`. Its standard output is line buffered (through
    /// coreutils' `stdbuf`): a C program writing to a pipe otherwise holds its lines back
    /// until its buffer fills.
    pub fn spawn(program: &str, args: &[&str]) -> Peer {
        let mut child = Command::new("stdbuf")
            .args(["-oL", "-eL", program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let (tx, lines) = mpsc::unbounded_channel();
        forward(child.stdout.take().expect("piped"), tx.clone());
        forward(child.stderr.take().expect("piped"), tx);
        Peer {
            name: format!("{program} {}", args.join(" ")),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, or `None` if none comes within `timeout` or the program has ended and
    /// said everything.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = tokio::time::timeout(timeout, self.lines.recv())
            .await
            .ok()
            .flatten()?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads lines until one satisfies `pred` and returns it; fails the test (showing
    /// everything the program said) if none does within [`WAIT`].
    pub async fn expect(&mut self, what: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left).await {
                Some(l) if pred(&l) => return l,
                Some(_) => {}
                None => panic!(
                    "{}: no line {what} (it said:\n{})",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Reads lines until one contains `text`.
    pub async fn expect_text(&mut self, text: &str) -> String {
        self.expect(&format!("containing {text:?}"), |l| l.contains(text))
            .await
    }

    /// Its process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Kills it with SIGKILL (no chance to say goodbye) and waits for it to be gone.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Waits for it to end by itself; fails the test if it does not within [`WAIT`]. Reads
    /// what it said until then.
    pub async fn wait(&mut self) -> ExitStatus {
        let status = match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(s) => s.expect("wait for the child"),
            Err(_) => panic!(
                "{}: still running after {WAIT:?} (it said:\n{})",
                self.name,
                self.seen.join("\n")
            ),
        };
        while let Some(l) = self.next_line(Duration::from_secs(2)).await {
            let _ = l;
        }
        status
    }
}

fn forward(r: impl AsyncRead + Unpin + Send + 'static, tx: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
}
