//! OS processes driven by their output: [`NodeProc`] starts a binary (the caller passes the
//! path, as `env!("CARGO_BIN_EXE_girder")`), reads its stdout and stderr line by line, waits for
//! lines with a deadline, sends it signals and kills it when dropped. [`run`] runs one to the
//! end.
//!
//! Everything here blocks the calling thread (plain `#[test]`s), with no runtime needed.

use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Which of a process's outputs a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a [`NodeProc`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where it was written.
    pub stream: Stream,
    /// The line, without its end.
    pub text: String,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.stream {
            Stream::Stdout => "out",
            Stream::Stderr => "err",
        };
        write!(f, "[{tag}] {}", self.text)
    }
}

/// What a [`NodeProc`] left when it ended ([`NodeProc::finish`]): its exit status and the
/// lines not yet taken by [`NodeProc::expect`] or [`NodeProc::saw`].
#[derive(Debug)]
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// The rest of its standard output, a line a line.
    pub stdout: String,
    /// The rest of its standard error, a line a line.
    pub stderr: String,
}

/// A running OS process whose output lines the test waits for; killed when dropped.
///
/// ```
/// use std::time::Duration;
/// use girder_testkit::NodeProc;
///
/// // Each stream has its own reader, so lines of the two streams arrive in no set order: the
/// // pause keeps "warming" behind "node up", which `expect` would otherwise pass over.
/// let p = NodeProc::start("sh", &["-c", "echo node up on 127.0.0.1:4000; sleep 1; echo warming >&2; exec sleep 30"]);
/// let up = p.expect("node up", Duration::from_secs(10));
/// assert_eq!(up, "node up on 127.0.0.1:4000");
/// assert!(p.saw("warming", Duration::from_secs(10)), "stderr counts too");
/// p.signal("-TERM");
/// let end = p.finish(Duration::from_secs(10));
/// assert!(!end.status.success(), "ended by the signal");
/// ```
pub struct NodeProc {
    child: Child,
    lines: mpsc::Receiver<Line>,
}

impl NodeProc {
    /// Starts `bin` with `args`, reading its stdout and stderr (stdin is closed).
    pub fn start(bin: impl AsRef<OsStr>, args: &[&str]) -> NodeProc {
        let bin = bin.as_ref();
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", bin.to_string_lossy()));
        let (tx, lines) = mpsc::channel();
        read_lines(child.stdout.take().unwrap(), Stream::Stdout, tx.clone());
        read_lines(child.stderr.take().unwrap(), Stream::Stderr, tx);
        NodeProc { child, lines }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line (on stdout or stderr) containing `needle` and returns it; the lines
    /// before it are passed over. Panics, showing the lines seen, if none comes within
    /// `within` or the process closes its outputs first.
    pub fn expect(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.text.contains(needle) => return line.text,
                Ok(line) => seen.push(line.to_string()),
                Err(e) => panic!(
                    "no line containing {needle:?} within {within:?} ({}); saw {seen:#?}",
                    match e {
                        mpsc::RecvTimeoutError::Timeout => "timed out",
                        mpsc::RecvTimeoutError::Disconnected => "the process closed its output",
                    }
                ),
            }
        }
    }

    /// True if a line containing `needle` comes within `within` (on stdout or stderr); the
    /// lines before it are passed over. For asserting that something does *not* happen.
    pub fn saw(&self, needle: &str, within: Duration) -> bool {
        self.seen(needle, within).is_some()
    }

    /// The first line containing `needle` that comes within `within`, if one does: as
    /// [`saw`](Self::saw), for a failure that should say what it saw.
    pub fn seen(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.text.contains(needle) => return Some(line.text),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends the signal `sig` (as `kill` takes it: `"-TERM"`, `"-KILL"`, ...).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} {} failed", self.child.id());
    }

    /// Waits for the process to exit and close its outputs, and returns its status and the
    /// lines not yet taken. Panics if that takes longer than `within`.
    pub fn finish(mut self, within: Duration) -> Finished {
        let deadline = Instant::now() + within;
        let (mut stdout, mut stderr) = (String::new(), String::new());
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let out = match line.stream {
                        Stream::Stdout => &mut stdout,
                        Stream::Stderr => &mut stderr,
                    };
                    out.push_str(&line.text);
                    out.push('\n');
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("the process did not end within {within:?}; its output so far:\n{stdout}{stderr}")
                }
            }
        }
        let status = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .expect("the process can be waited for")
            {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the process closed its output but did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        Finished {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bin` with `args` to the end and returns what it wrote and how it exited (stdin
/// closed).
///
/// ```
/// let out = girder_testkit::node_proc::run("sh", &["-c", "echo hi; exit 2"]);
/// assert_eq!(out.status.code(), Some(2));
/// assert_eq!(out.stdout, b"hi\n");
/// ```
pub fn run(bin: impl AsRef<OsStr>, args: &[&str]) -> Output {
    let bin = bin.as_ref();
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} does not run: {e}", bin.to_string_lossy()))
}

/// Sends each line `from` writes to `to`, from a thread of its own, until the end or until
/// nobody listens.
fn read_lines(from: impl Read + Send + 'static, stream: Stream, to: mpsc::Sender<Line>) {
    std::thread::spawn(move || {
        for text in BufReader::new(from).lines().map_while(Result::ok) {
            if to.send(Line { stream, text }).is_err() {
                return;
            }
        }
    });
}
