//! `girder node`: a node that joins a cluster, authenticates its peers and reports membership.
//!
//! The node listens on one address for both membership (UDP, SWIM) and connections (TCP with the
//! cookie handshake). When a member comes up, the node with the smaller name connects to it, so
//! each pair has one connection. Everything it learns is printed as it happens; SIGTERM or Ctrl-C
//! leaves the cluster gracefully.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_dist::connection::{self, ConnectionConfig};
use girder_dist::handshake::{self, HandshakeConfig, Refusal};
use girder_dist::membership::{self, Member, MemberEvent, Membership, MembershipConfig};
use girder_dist::tls::{self, TlsConfig};
use girder_dist::{Cookie, NodeName};
use tokio::net::{TcpListener, TcpStream};

pub struct NodeArgs {
    /// Probe period, probe round trip, suspicion time.
    pub detection: (Duration, Duration, Duration),
    /// CA, certificate and key PEM files; with them, connections run over mutual TLS.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    pub name: String,
    pub listen: SocketAddr,
    pub seeds: Vec<SocketAddr>,
    pub seed_dns: Option<String>,
    pub cookie_file: PathBuf,
    pub roles: Vec<String>,
}

pub fn run(args: NodeArgs) -> Result<(), String> {
    let name = NodeName::new(&args.name).map_err(|e| e.to_string())?;
    let cookie = Cookie::from_file(&args.cookie_file).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(serve(name, cookie, args))
}

fn creation() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    ((nanos >> 20) as u32) | 1
}

async fn serve(name: NodeName, cookie: Cookie, args: NodeArgs) -> Result<(), String> {
    let started = Instant::now();
    let mut seeds = args.seeds.clone();
    if let Some(dns) = &args.seed_dns {
        match membership::discover(dns).await {
            Ok(found) => seeds.extend(found),
            Err(e) => eprintln!("girder node: DNS discovery of {dns} failed: {e}"),
        }
    }
    let tls_cfg = match &args.tls {
        Some((ca, cert, key)) => Some(Arc::new(
            TlsConfig::from_pem_files(ca, cert, key).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    let creation = creation();
    let me = Member {
        name: name.clone(),
        addr: listen,
        creation,
        roles: args.roles.clone(),
    };
    let (probe_period, probe_rtt, suspect_to_down_after) = args.detection;
    let membership_cfg = MembershipConfig {
        cookie: Some(cookie.clone()),
        probe_period,
        probe_rtt,
        suspect_to_down_after,
        ..MembershipConfig::default()
    };
    let membership = Membership::start(me, &seeds, membership_cfg)
        .await
        .map_err(|e| format!("cannot start membership on {listen}: {e}"))?;
    let hs = Arc::new(HandshakeConfig::new(name.clone(), creation, cookie));
    println!("node {name} up (creation {creation}) on {listen}; seeds {seeds:?}");

    // Incoming connections: the cookie handshake, then a connection kept alive by ticks.
    let accept_hs = hs.clone();
    let accept_tls = tls_cfg.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, from)) = listener.accept().await else {
                return;
            };
            let hs = accept_hs.clone();
            let tls_cfg = accept_tls.clone();
            tokio::spawn(async move {
                let admit = |_: &NodeName, _: u32| Ok::<(), Refusal>(());
                let result = match &tls_cfg {
                    Some(t) => match tls::accept(stream, t).await {
                        Ok(s) => handshake::accept(s, &hs, admit).await.map(boxed),
                        Err(e) => return println!("connection from {from} refused: TLS: {e}"),
                    },
                    None => handshake::accept(stream, &hs, admit).await.map(boxed),
                };
                match result {
                    Ok((est, conn)) => {
                        println!("connection from {} ({from}) authenticated", est.peer);
                        conn.keep(est.peer).await;
                    }
                    Err(e) => println!("connection from {from} refused: {e}"),
                }
            });
        }
    });

    let mut events = membership.subscribe();
    let signal = girder::application::shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            event = events.recv() => match event {
                Ok(MemberEvent::Up(m)) => {
                    println!("member up: {} at {} roles {:?} (+{:.2}s)", m.name, m.addr, m.roles, started.elapsed().as_secs_f64());
                    if name < m.name {
                        tokio::spawn(connect(m, hs.clone(), tls_cfg.clone()));
                    }
                }
                Ok(MemberEvent::Down(m)) => {
                    println!("member down: {} (+{:.2}s)", m.name, started.elapsed().as_secs_f64());
                }
                Ok(MemberEvent::Replaced { old, new }) => {
                    println!("member restarted: {} creation {} -> {}", new.name, old.creation, new.creation);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    println!("missed {n} membership events (slow output)");
                }
                Err(_) => break,
            },
        }
    }
    println!("leaving the cluster");
    membership.leave().await;
    println!("node {name} stopped");
    Ok(())
}

async fn connect(to: Member, hs: Arc<HandshakeConfig>, tls_cfg: Option<Arc<TlsConfig>>) {
    let stream =
        match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(to.addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return println!("cannot connect to {}: {e}", to.name),
            Err(_) => return println!("cannot connect to {}: timed out", to.name),
        };
    let result = match &tls_cfg {
        Some(t) => match tls::connect(stream, to.name.host(), t).await {
            Ok(s) => handshake::initiate(s, &hs).await.map(boxed),
            Err(e) => return println!("handshake with {} failed: TLS: {e}", to.name),
        },
        None => handshake::initiate(stream, &hs).await.map(boxed),
    };
    match result {
        Ok((est, conn)) => {
            let how = if tls_cfg.is_some() {
                "TLS + cookie"
            } else {
                "cookie"
            };
            println!(
                "connected to {} (authenticated by {how}, protocol v{})",
                est.peer, est.version
            );
            conn.keep(est.peer).await;
        }
        Err(e) => println!("handshake with {} failed: {e}", to.name),
    }
}

/// A connection after the handshake, over TCP or over TLS.
trait Established: Send {
    fn keep(self: Box<Self>, peer: NodeName) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl<S> Established for handshake::Connection<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn keep(self: Box<Self>, peer: NodeName) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(keep(peer, *self))
    }
}

fn boxed<S>(
    (est, conn): (girder_dist::Established, handshake::Connection<S>),
) -> (girder_dist::Established, Box<dyn Established>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    (est, Box::new(conn))
}

/// Keeps a connection up (ticks both ways) until it is lost, and says why.
async fn keep<S>(peer: NodeName, conn: handshake::Connection<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (handle, _incoming) = connection::start(conn, ConnectionConfig::default());
    let why = handle.lost().await;
    println!("connection to {peer} lost: {why}");
}
