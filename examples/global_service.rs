//! A globally registered service and its users, on two nodes that are two OS processes:
//!
//! ```sh
//! cargo run -p girder-examples --example global_service -- serve 127.0.0.1:4370
//! cargo run -p girder-examples --example global_service -- call 127.0.0.1:4370
//! ```
//!
//! `serve` runs a key-value server registered across the cluster as `kv` and waits; `call`
//! joins through the server node's address, finds `kv` by name, uses it, and watches it: when
//! the serving node goes away (Ctrl-C it), the caller's monitor fires with `noconnection`.
//! With no arguments the example runs both sides itself (the serving side as a child process),
//! as CI does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use girder::{Context, ExitReason, Flow, Node, ReplyTo, Server, ServerContext};
use girder_dist::{global::Global, Cookie, DistConfig, DistNode, NodeName, Wire};
use serde::{Deserialize, Serialize};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The service's requests, serde types with a stable wire name.
#[derive(Serialize, Deserialize)]
enum Kv {
    Put(String, String, ReplyTo<Option<String>>), // the value it replaced
    Get(String, ReplyTo<Option<String>>),
}

impl Wire for Kv {
    const NAME: &'static str = "example.kv.v1";
}

#[derive(Default)]
struct Store(BTreeMap<String, String>);

impl Server for Store {
    type Call = Kv;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, req: Kv, _: &mut ServerContext<Self>) -> Flow {
        match req {
            Kv::Put(k, v, from) => from.reply(self.0.insert(k, v)),
            Kv::Get(k, from) => from.reply(self.0.get(&k).cloned()),
        }
        Flow::Continue
    }
}

async fn node(name: &str, listen: SocketAddr) -> Result<DistNode, Error> {
    // In production the cookie comes from a file only the node's user can read.
    let cookie = Cookie::new("example-global-service-cookie")?;
    let cfg = DistConfig::new(NodeName::new(name)?, cookie, listen);
    Ok(DistNode::start(Node::new(name), cfg).await?)
}

/// The serving side: runs the store, registers it globally, serves until stopped.
async fn serve(listen: SocketAddr) -> Result<(), Error> {
    let dist = node("server@127.0.0.1", listen).await?;
    let global = Global::start(&dist).await?;
    let store = girder::server::start(dist.node(), Store::default()).await?;
    global.register_server("kv", &store)?;
    println!("serving kv on {}", dist.local_addr());
    // Until stdin closes (the parent) or Ctrl-C.
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())) => {}
    }
    // Says goodbye before the process exits: the caller sees a departure, not a failure.
    dist.shutdown_and_wait().await;
    Ok(())
}

/// The calling side's first half: joins through the serving node's address, finds `kv` by its
/// global name and uses it, then has a process monitor it. Returns the node (kept running) and
/// where the monitor's notice arrives.
async fn use_kv(server: SocketAddr) -> Result<(DistNode, Watching), Error> {
    let dist = node("caller@127.0.0.1", "127.0.0.1:0".parse()?).await?;
    let server_name = NodeName::new("server@127.0.0.1")?;
    dist.add_address(server_name.clone(), server);
    let global = Global::start(&dist).await?;
    let used = async {
        dist.connect(&server_name).await?;
        global
            .wait_for("kv", Duration::from_secs(10))
            .await
            .ok_or("kv is not registered")?;
        let kv = global.server::<Store>("kv").ok_or("kv is not registered")?;
        let old = kv
            .call(|r| Kv::Put("colour".into(), "green".into(), r))
            .await?;
        println!("put colour (was {old:?})");
        let got = kv.call(|r| Kv::Get("colour".into(), r)).await?;
        println!("get colour: {got:?}");
        assert_eq!(got.as_deref(), Some("green"));
        Ok::<_, Error>(kv.pid())
    }
    .await;
    let kv = match used {
        Ok(pid) => pid,
        Err(e) => {
            dist.shutdown();
            return Err(e);
        }
    };
    // A process that monitors the service, as a client of a singleton would.
    let (tx, rx) = tokio::sync::oneshot::channel();
    dist.node().spawn(move |mut ctx: Context<()>| async move {
        let m = ctx.monitor(kv);
        let _ = tx.send(ctx.wait_down(m, None).await.map(|d| d.reason));
        ExitReason::Normal
    });
    Ok((dist, rx))
}

type Watching = tokio::sync::oneshot::Receiver<Option<ExitReason>>;

/// Waits for the monitor's notice: the serving node going away fires it with `noconnection`.
async fn watch(watching: Watching) -> Result<(), Error> {
    println!("watching kv; stop the serving node to see its monitor fire");
    let reason = watching.await?.ok_or("no down notice")?;
    println!("kv is down: {reason}");
    Ok(())
}

/// Both sides: the serving node as a child process, then the caller; stops the server once
/// the caller has used it, and sees the monitor fire.
async fn both() -> Result<(), Error> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .args(["serve", &addr.to_string()])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    // Until the child listens (a few tries).
    let mut tries = 0;
    let (_dist, watching) = loop {
        match use_kv(addr).await {
            Ok(used) => break used,
            Err(e) if tries < 50 => {
                tries += 1;
                println!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    };
    // The server stops when its stdin closes.
    drop(server.stdin.take());
    server.wait().await?;
    watch(watching).await
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr] => serve(addr.parse()?).await,
        ["call", addr] => {
            let (_dist, watching) = use_kv(addr.parse()?).await?;
            watch(watching).await
        }
        [] => both().await,
        _ => Err("usage: global_service [serve ADDR | call ADDR]".into()),
    }
}
