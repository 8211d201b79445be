//! The brokers under test, each started by the bench as a child process on a free loopback
//! port with the same limits, and measured from outside (`/proc/PID/status`).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// QoS 1 and 2 messages in flight to one client, for every broker (Mosquitto's
/// `max_inflight_messages` and Girder's `max_inflight` defaults; rumqttd's is built in).
pub const MAX_INFLIGHT: u16 = 20;

/// Messages queued for one client beyond those in flight, for Mosquitto and Girder (ten times
/// their default of 1,000, so a QoS 1 run at full rate measures the broker, not the bound).
/// rumqttd has no such bound: its subscribers read a shared log of segments instead.
pub const MAX_QUEUED: usize = 10_000;

/// The brokers the bench knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// This broker: the bench's own executable, run as a broker.
    Girder,
    /// Eclipse Mosquitto 2, Debian's `mosquitto` package.
    Mosquitto,
    /// rumqttd, `cargo install rumqttd`.
    Rumqttd,
}

impl Kind {
    /// Its name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Girder => "girder",
            Kind::Mosquitto => "mosquitto",
            Kind::Rumqttd => "rumqttd",
        }
    }

    /// The executable, or why there is none.
    pub fn locate(self) -> Result<PathBuf, String> {
        match self {
            Kind::Girder => std::env::current_exe().map_err(|e| format!("no current exe: {e}")),
            Kind::Mosquitto => ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .or_else(|| on_path("mosquitto"))
                .ok_or_else(|| "mosquitto not found (apt-get install mosquitto)".to_string()),
            Kind::Rumqttd => on_path("rumqttd")
                .ok_or_else(|| "rumqttd not found on PATH (cargo install rumqttd)".to_string()),
        }
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    // Where `cargo install` puts binaries, when it is not on PATH.
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo").into_os_string()))
    {
        dirs.push(Path::new(&home).join("bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// A free loopback port (bound, read and let go: the broker binds it a moment later).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A broker running as a child process.
pub struct Running {
    /// Which broker.
    pub kind: Kind,
    /// Where it listens for MQTT.
    pub addr: SocketAddr,
    child: Child,
    dir: PathBuf,
}

/// Memory of a process, from `/proc/PID/status`, in kB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident now (VmRSS).
    pub rss_kb: u64,
    /// Resident at its peak (VmHWM).
    pub hwm_kb: u64,
}

impl Running {
    /// Starts `kind` (at `exe`) on a free loopback port and waits until it accepts
    /// connections.
    pub fn start(kind: Kind, exe: &Path) -> Result<Running, String> {
        // Girder's broker takes a port of its own and says which (a port picked here and freed
        // could be taken by anyone, the broker's own ops listener included, before it binds).
        let port = match kind {
            Kind::Girder => 0,
            _ => free_port().map_err(|e| format!("no free port: {e}"))?,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "girder-mqtt-bench-{}-{}-{}",
            std::process::id(),
            kind.name(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok::<_, String>(path)
        };
        let mut cmd = Command::new(exe);
        match kind {
            Kind::Girder => {
                let conf = write(
                    "girder.toml",
                    format!(
                        "max_inflight = {MAX_INFLIGHT}\nmax_queued = {MAX_QUEUED}\n\
                         data_dir = {:?}\n",
                        dir.join("data")
                    ),
                )?;
                cmd.arg("--config")
                    .arg(conf)
                    .args(["--listen", &addr.to_string()])
                    .args(["--http", "127.0.0.1:0", "--allow-anonymous"])
                    .env("RUST_LOG", "warn");
            }
            Kind::Mosquitto => {
                // TCP_NODELAY as Girder sets it (Mosquitto's default leaves Nagle on); `user root`
                // keeps it from changing user, which would clear its parent-death signal.
                let conf = write(
                    "mosquitto.conf",
                    format!(
                        "listener {port} 127.0.0.1\nallow_anonymous true\n\
                         max_inflight_messages {MAX_INFLIGHT}\n\
                         max_queued_messages {MAX_QUEUED}\n\
                         set_tcp_nodelay true\npersistence false\nuser root\nlog_dest stderr\nlog_type error\nlog_type warning\n"
                    ),
                )?;
                cmd.arg("-c").arg(conf);
            }
            Kind::Rumqttd => {
                // rumqttd's own defaults, but for the listener, the connection limit and the
                // pause it takes between accepts (1 ms by default, which would cap connects/s
                // at 1,000).
                let conf = write(
                    "rumqttd.toml",
                    format!(
                        "id = 0\n\n[router]\nid = 0\nmax_connections = 30000\n\
                         max_outgoing_packet_count = 200\nmax_segment_size = 104857600\n\
                         max_segment_count = 10\n\n[v4.1]\nname = \"v4-1\"\n\
                         listen = \"{addr}\"\nnext_connection_delay_ms = 0\n\
                         [v4.1.connections]\nconnection_timeout_ms = 60000\n\
                         max_payload_size = 20480\nmax_inflight_count = 100\n\
                         dynamic_filters = true\n"
                    ),
                )?;
                cmd.arg("--quiet").arg("--config").arg(conf);
            }
        }
        // A bench that is killed (a CI timeout) takes its broker with it.
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl(2) is async-signal-safe and touches only the child being started.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let log = dir.join("stderr.log");
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let stdout = match kind {
            Kind::Girder => Stdio::piped(),
            _ => Stdio::null(),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut running = Running {
            kind,
            addr,
            child,
            dir,
        };
        if let Some(out) = running.child.stdout.take() {
            running.addr = running.announced(out)?;
        }
        running.wait_ready()?;
        Ok(running)
    }

    /// The address the broker says it listens on (`girder-mqtt listening on ADDR` on its
    /// standard output), read within 15 s; the rest of its output is drained meanwhile.
    fn announced(&mut self, out: std::process::ChildStdout) -> Result<SocketAddr, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("girder-mqtt listening on ") {
                    let _ = tx.send(addr.trim().parse::<SocketAddr>());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(Ok(addr)) => Ok(addr),
            Ok(Err(e)) => Err(format!("{} announced a bad address: {e}", self.kind.name())),
            Err(_) => Err(format!(
                "{} did not say where it listens within 15 s: {}",
                self.kind.name(),
                self.log_tail()
            )),
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} exited at start ({status}): {}",
                    self.kind.name(),
                    self.log_tail()
                ));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                // Let the probe's connection be gone before the run measures anything.
                std::thread::sleep(Duration::from_millis(100));
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on {} within 15 s: {}",
                    self.kind.name(),
                    self.addr,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines the broker wrote on stderr.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("stderr.log")) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its memory now, if it still runs.
    pub fn memory(&self) -> Option<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        };
        Some(Memory {
            rss_kb: field("VmRSS:")?,
            hwm_kb: field("VmHWM:")?,
        })
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it: SIGTERM, then SIGKILL after five seconds.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid, which we have not yet reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Raises this process's open-file limit to its hard limit (children inherit it): 15,000
/// idle connections need a socket each on both sides.
pub fn raise_fd_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}
