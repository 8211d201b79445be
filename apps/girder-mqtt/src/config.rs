//! The broker's settings: embedded defaults, a TOML file (`--config`), and flags over both.
//! Every limit a client could otherwise push without bound is here, with its default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What a broker is started with.
///
/// ```
/// let c = girder_mqtt::config::Config::default();
/// assert_eq!(c.listen.port(), 1883);
/// assert_eq!((c.max_inflight, c.max_queued), (20, 1000));
/// ```
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The plain TCP listener.
    pub listen: SocketAddr,
    /// The TLS listener, if any (needs `tls_cert` and `tls_key`).
    pub tls_listen: Option<SocketAddr>,
    /// The TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// The TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The WebSocket listener, if any (for browsers: binary frames, subprotocol `mqtt`).
    pub ws_listen: Option<SocketAddr>,
    /// The ops HTTP listener (metrics, dashboard, health), if any.
    pub http: Option<SocketAddr>,
    /// Where persistent sessions and retained messages are kept (`None`: nowhere; they last
    /// as long as the process).
    pub data_dir: Option<PathBuf>,
    /// Seconds between saves while running (0: only when the broker stops). A broker killed
    /// outright loses what changed since the last save, as Mosquitto's `autosave_interval`.
    pub autosave_secs: u64,
    /// Anonymous clients (no user name) may connect. Unset: allowed when no password file is
    /// configured, refused when one is.
    pub allow_anonymous: Option<bool>,
    /// Users and password hashes in `mosquitto_passwd`'s format.
    pub password_file: Option<PathBuf>,
    /// Topic permissions in Mosquitto's `acl_file` format.
    pub acl_file: Option<PathBuf>,
    /// The largest keep alive a client may ask for, in seconds. A 5.0 client asking more is
    /// told this one (Server Keep Alive); a 3.1.1 client is refused (identifier rejected), as
    /// Mosquitto does, since 3.1.1 has no way to tell it.
    pub max_keepalive: u16,
    /// The largest packet a client may send, in bytes; a larger one closes its connection
    /// (5.0: reason 0x95) before it is read.
    pub max_packet_size: usize,
    /// Clients connected at once; past it a CONNECT is refused (server unavailable / 0x97
    /// quota exceeded).
    pub max_connections: usize,
    /// New connections accepted per second, in bursts of up to a second's worth (`None`: no
    /// limit). Past it the listener accepts more slowly: connecting clients wait in the
    /// kernel's backlog, and those refused by a full backlog retry as TCP does.
    pub max_connection_rate: Option<f64>,
    /// Connections between accept and CONNACK at once (TLS handshakes and WebSocket upgrades
    /// included). Past it the listener waits for one to finish; with the ops endpoint, the
    /// limit is tightened while the node's scheduling lag is high (alarm
    /// `overload:mqtt_admission`), so connects slow down and connected clients keep their
    /// service.
    pub max_connecting: usize,
    /// PUBLISH packets one client may send per second, in bursts of up to a second's worth
    /// (`None`: no limit). Past it the broker stops reading that client's socket until the
    /// rate allows (TCP's back pressure slows the client); nothing is dropped.
    pub max_publish_rate: Option<f64>,
    /// QoS 2 messages one client may have unreleased (sent, PUBREL not yet received). A 5.0
    /// client is told it as its Receive Maximum and disconnected with 0x93 past it; a 3.1.1
    /// client past it is disconnected.
    pub max_inflight_in: u16,
    /// QoS 1 and 2 messages on their way to one client, unacknowledged (a 5.0 client's
    /// receive maximum lowers it).
    pub max_inflight: u16,
    /// Messages a session keeps for its client beyond the in-flight ones (while it is offline
    /// or slow). Past it the newest are dropped and counted, as Mosquitto's
    /// `max_queued_messages`.
    pub max_queued: usize,
    /// Queue QoS 0 messages for an offline persistent session too (Mosquitto's
    /// `queue_qos0_messages`).
    pub queue_qos0: bool,
    /// QoS 1 and 2 messages a connected client's session may hold beyond those in flight
    /// before the connections publishing to it wait (and stop reading their sockets, so TCP
    /// slows their clients): back pressure from a subscriber that is behind to its publishers,
    /// instead of a queue that grows to `max_queued` and drops what was acknowledged. As in
    /// a broadcast with back pressure, the slowest subscriber of a topic sets its pace, as
    /// long as it keeps acknowledging (see `backpressure_timeout_ms`). 0: publishers never
    /// wait for a client (Mosquitto's behaviour: the queue drops past `max_queued`).
    pub backpressure_queued: usize,
    /// Milliseconds publishers wait for one session before it is taken as stalled: its
    /// publishers then pass, and its queue fills to `max_queued`, dropping past it, until it
    /// has drained to half `backpressure_queued` (decision 016).
    pub backpressure_timeout_ms: u64,
    /// Seconds a new connection has to send its CONNECT.
    pub connect_timeout_secs: u64,
    /// Seconds a write to a client may stall before the client is taken to be gone.
    pub write_timeout_secs: u64,
    /// Seconds between `$SYS/broker/...` updates (0: none), as Mosquitto's `sys_interval`.
    pub sys_interval_secs: u64,
    /// Scheduler threads for the broker's processes: Girder's own schedulers, like the BEAM's
    /// `+S` (`None`: one per core). 0 runs the processes as tasks of a tokio runtime
    /// instead. Read by the `girder-mqtt` program; a broker started in a program of one's own
    /// runs on the node it is given.
    pub schedulers: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: ([0, 0, 0, 0], 1883).into(),
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            ws_listen: None,
            http: Some(([127, 0, 0, 1], 8080).into()),
            data_dir: Some(PathBuf::from("./data")),
            autosave_secs: 60,
            allow_anonymous: None,
            password_file: None,
            acl_file: None,
            max_keepalive: 65_535,
            max_packet_size: 1024 * 1024,
            max_connections: 100_000,
            max_connection_rate: None,
            max_connecting: 1000,
            max_publish_rate: None,
            max_inflight_in: 100,
            max_inflight: 20,
            max_queued: 1000,
            queue_qos0: false,
            backpressure_queued: 50,
            backpressure_timeout_ms: 1000,
            connect_timeout_secs: 10,
            write_timeout_secs: 30,
            sys_interval_secs: 10,
            schedulers: None,
        }
    }
}

impl Config {
    /// How long a new connection has to send its CONNECT.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// How long publishers wait for a session that is behind.
    pub fn backpressure_timeout(&self) -> Duration {
        Duration::from_millis(self.backpressure_timeout_ms)
    }

    /// How long a write to a client may stall.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
}
