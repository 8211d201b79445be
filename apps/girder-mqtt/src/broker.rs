//! The broker: its supervision tree, its listeners and what every process of it shares.
//!
//! ```text
//! broker (one_for_one)
//! ├── clients (dynamic supervisor: one Client per connection, temporary; once CONNECT names
//! │            it, registered under its client id, and kept while its session lasts)
//! └── sys     ($SYS/broker/... every sys_interval_secs)
//! ```
//!
//! A listener task accepts sockets and starts a client process for each; the router (the
//! subscription table and the retained store) is shared data, written by sessions as they
//! subscribe and read by clients as they publish.
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! use girder_mqtt::{broker::Broker, config::Config};
//! let node = girder::Node::new("mqtt");
//! let config = Config { listen: "127.0.0.1:1883".parse().unwrap(), ..Config::default() };
//! let broker = Broker::start(&node, config).await.unwrap();
//! println!("listening on {}", broker.local_addr());
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use girder::supervisor::{ChildSpec, RestartStrategy, Supervisor, SupervisorRef};
use girder::Node;
use girder_ops::AlarmManager;
use tokio::net::TcpListener;

use crate::acl::{Acl, AclError};
use crate::auth::{PasswordFile, PasswordFileError};
use crate::client::{self, Client};
use crate::config::Config;
use crate::listener::Transport;
use crate::message::Message;
use crate::router::Router;
use crate::stats::Stats;
use crate::store::{Snapshot, Store, StoreError};
use crate::sys::SysPublisher;

/// What every process of one broker shares.
pub struct Shared {
    /// The node it runs on.
    pub node: Node,
    /// Its settings.
    pub config: Config,
    /// Anonymous clients may connect.
    pub allow_anonymous: bool,
    /// The users, if a password file is configured.
    pub passwords: Option<PasswordFile>,
    /// The topic permissions, if an ACL file is configured.
    pub acl: Option<Arc<Acl>>,
    /// Subscriptions and retained messages.
    pub router: Router,
    /// Counters.
    pub stats: Arc<Stats>,
    /// The client processes' supervisor.
    pub clients: SupervisorRef,
    /// Where snapshots go, if anywhere (taken, and the file closed, when the broker stops).
    pub store: parking_lot::Mutex<Option<Store>>,
    /// Where client notices and alarms go (the node's ops), if anywhere.
    pub alarms: Option<AlarmManager>,
    /// From a PUBLISH read to its copy written to a subscriber.
    pub latency: metrics::Histogram,
    /// Admission: connections between accept and CONNACK at once (`max_connecting`), a
    /// regulated queue the node's load can tighten ([`Broker::admission`]).
    pub admission: girder_regulate::Queue,
}

impl Shared {
    /// Publishes a message to its subscribers (and keeps it if retained). Returns how many
    /// sessions it went to.
    pub fn publish(&self, msg: &Arc<Message>) -> usize {
        self.router.publish(msg)
    }

    /// Every retained message and the state of every session that outlives its connection.
    pub async fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            retained: self.router.all_retained(),
            sessions: Vec::new(),
        };
        for c in self.clients().await {
            if let Ok(Some(saved)) = c.call(client::Call::Save).await {
                snap.sessions.push(saved);
            }
        }
        snap
    }

    /// Every client process.
    async fn clients(&self) -> Vec<girder::ServerRef<Client>> {
        let Ok(children) = self.clients.which_children().await else {
            return Vec::new();
        };
        children
            .into_iter()
            .filter_map(|c| c.pid)
            .filter_map(|pid| girder::ServerRef::<Client>::from_pid(&self.node, pid).ok())
            .collect()
    }

    /// Saves a snapshot, if there is a store. Errors are logged: the broker runs on.
    pub async fn save(&self) {
        if self.store.lock().is_none() {
            return;
        }
        let snap = self.snapshot().await;
        let (r, s) = (snap.retained.len(), snap.sessions.len());
        let started = std::time::Instant::now();
        let saved = match &*self.store.lock() {
            Some(store) => store.save(&snap),
            None => return,
        };
        match saved {
            Ok(()) => {
                tracing::debug!(retained = r, sessions = s, took = ?started.elapsed(), "saved")
            }
            Err(e) => tracing::error!(error = %e, "could not save sessions and retained messages"),
        }
    }
}

/// Why a broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The password file could not be read.
    #[error("password file: {0}")]
    Passwords(#[from] PasswordFileError),
    /// The ACL file could not be read.
    #[error("ACL file: {0}")]
    Acl(#[from] AclError),
    /// The TLS listener's certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::listener::TlsError),
    /// TLS was asked for without a certificate and key.
    #[error("a TLS listener needs tls_cert and tls_key")]
    TlsIncomplete,
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The supervision tree did not start.
    #[error("supervisor: {0}")]
    Supervisor(String),
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A running broker.
pub struct Broker {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    ws_addr: Option<SocketAddr>,
    root: SupervisorRef,
    accept: Vec<girder::OwnedTask>,
    autosave: Option<girder::OwnedTask>,
    _tasks: Vec<girder::OwnedTask>,
}

impl Broker {
    /// Starts a broker on `node` with `config`: reads its files, binds its listener and
    /// starts its supervision tree.
    pub async fn start(node: &Node, config: Config) -> Result<Broker, StartError> {
        Self::start_with(node, config, None).await
    }

    /// Starts a broker as [`start`](Self::start) does, telling `alarms` (the node's ops, see
    /// [`girder_ops::Ops::alarms`]) about clients connecting and going, and raising its
    /// alarms there ([`crate::ops`]).
    pub async fn start_with(
        node: &Node,
        config: Config,
        alarms: Option<AlarmManager>,
    ) -> Result<Broker, StartError> {
        let passwords = match &config.password_file {
            Some(p) => Some(PasswordFile::load(p)?),
            None => None,
        };
        let acl = match &config.acl_file {
            Some(p) => Some(Arc::new(Acl::load(p)?)),
            None => None,
        };
        let allow_anonymous = config.allow_anonymous.unwrap_or(passwords.is_none());
        let config_max_connecting = config.max_connecting;
        let store = match &config.data_dir {
            Some(dir) => Some(Store::open(dir)?),
            None => None,
        };
        let saved = match &store {
            Some(store) => store.load()?,
            None => Snapshot::default(),
        };
        let mut listeners = vec![(bind(config.listen).await?, Transport::Tcp)];
        if let Some(addr) = config.tls_listen {
            let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
                return Err(StartError::TlsIncomplete);
            };
            listeners.push((bind(addr).await?, crate::listener::tls(cert, key)?));
        }
        if let Some(addr) = config.ws_listen {
            listeners.push((bind(addr).await?, Transport::WebSocket));
        }
        let addr_of = |l: &TcpListener| l.local_addr().ok();
        let local_addr = addr_of(&listeners[0].0).unwrap_or(config.listen);
        let find = |t: fn(&Transport) -> bool| {
            listeners
                .iter()
                .find(|(_, tr)| t(tr))
                .and_then(|(l, _)| addr_of(l))
        };
        let tls_addr = find(|t| matches!(t, Transport::Tls(_)));
        let ws_addr = find(|t| matches!(t, Transport::WebSocket));
        let dynamic = || {
            Supervisor::builder()
                .strategy(RestartStrategy::Dynamic)
                .intensity(u32::MAX, std::time::Duration::from_secs(1))
        };
        let root = Supervisor::builder()
            .child(ChildSpec::supervisor("clients", dynamic()))
            .start(node)
            .await
            .map_err(|e| StartError::Supervisor(e.to_string()))?;
        let child = |id: &str| {
            let root = root.clone();
            let node = node.clone();
            let id = id.to_string();
            async move {
                let children = root.which_children().await.map_err(|e| e.to_string())?;
                let pid = children
                    .into_iter()
                    .find(|c| c.id == id)
                    .and_then(|c| c.pid)
                    .ok_or_else(|| format!("no {id} supervisor"))?;
                SupervisorRef::from_pid(&node, pid).map_err(|e| e.to_string())
            }
        };
        let clients = child("clients").await.map_err(StartError::Supervisor)?;
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            node: node.clone(),
            router: Router::new(stats.clone()),
            config,
            allow_anonymous,
            passwords,
            acl,
            stats,
            clients: clients.clone(),
            store: parking_lot::Mutex::new(store),
            alarms,
            latency: metrics::histogram!("mqtt_delivery_latency_seconds"),
            admission: girder_regulate::Queue::builder()
                .count(config_max_connecting)
                .build(),
        });
        let mut tasks = vec![crate::ops::metrics(&shared)];
        if let Some(a) = &shared.alarms {
            tasks.extend(crate::ops::alarms(&shared, a));
        }
        restore(&shared, saved).await;
        if shared.config.sys_interval_secs > 0 {
            let every = std::time::Duration::from_secs(shared.config.sys_interval_secs);
            let s = shared.clone();
            let spec = ChildSpec::server("sys", move || SysPublisher::new(s.clone(), every));
            root.start_child(spec)
                .await
                .map_err(|e| StartError::Supervisor(e.to_string()))?;
        }
        let accept = listeners
            .into_iter()
            .map(|(l, t)| {
                // A socket is driven by the I/O driver of the runtime it was registered on:
                // bound here, on the caller's runtime, the listener would wake that runtime's
                // thread for every accept, which then wakes a scheduler. Handed over as a std
                // listener, it is registered where the accept loop runs.
                let l = l.into_std().expect("a listener just bound");
                shared.node.spawn_owned(crate::listener::accept(
                    l,
                    t,
                    shared.clone(),
                    clients.clone(),
                ))
            })
            .collect();
        let persistent = shared.store.lock().is_some();
        let autosave = (persistent && shared.config.autosave_secs > 0).then(|| {
            let shared = shared.clone();
            let every = std::time::Duration::from_secs(shared.config.autosave_secs);
            shared.node.clone().spawn_owned(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    shared.save().await;
                }
            })
        });
        tracing::info!(%local_addr, "MQTT listener up");
        Ok(Broker {
            shared,
            local_addr,
            tls_addr,
            ws_addr,
            root,
            accept,
            autosave,
            _tasks: tasks,
        })
    }

    /// The address the TCP listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the TLS listener is bound to, if there is one.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// The address the WebSocket listener is bound to, if there is one.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// The admission queue: connections between accept and CONNACK. Put it under the node's
    /// load with [`girder_ops::Ops::govern`], and connects slow down while the node is
    /// overloaded, while the clients already connected keep their service.
    pub fn admission(&self) -> &girder_regulate::Queue {
        &self.shared.admission
    }

    /// The broker's counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// What the broker's processes share.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops gracefully: stops accepting, ends every connection (5.0 clients are told
    /// 0x8B, server shutting down), saves the sessions that outlive them and the retained
    /// messages, then stops the sessions.
    pub async fn stop(self) {
        drop(self.accept);
        drop(self.autosave);
        let closing = self.shared.clients().await.into_iter().map(|c| async move {
            let _ = c
                .call(|r| client::Call::Close(crate::codec::ack::Reason::ServerShuttingDown, r))
                .await;
        });
        futures_util::future::join_all(closing).await;
        self.shared.save().await;
        // Closed now, not when the last process holding `Shared` is gone: a broker started
        // again on the same directory opens it at once.
        self.shared.store.lock().take();
        self.root.stop(girder::ExitReason::Shutdown).await;
    }
}

/// Puts back what the store held: the retained messages, and each saved session, detached.
async fn restore(shared: &Arc<Shared>, saved: Snapshot) {
    let (r, s) = (saved.retained.len(), saved.sessions.len());
    shared.router.restore_retained(saved.retained);
    for session in saved.sessions {
        let spec = Client::restored(session, shared.clone()).spec();
        if let Err(e) = shared.clients.start_child(spec).await {
            tracing::warn!(error = %e, "a saved session did not start");
        }
    }
    if r + s > 0 {
        tracing::info!(retained = r, sessions = s, "restored from the store");
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| StartError::Listen { addr, error })
}
