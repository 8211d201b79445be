//! The demo's second act: failover across OS processes.
//!
//! Three `girder node` processes on loopback form a cluster (SWIM membership, cookie-checked
//! connections). Each runs a *singleton* manager: whichever node registers `demo.counter` in the
//! global registry first runs the counter server; the others monitor it. This process joins the
//! cluster as a client, calls the counter through its global name, then kills the node running
//! it with SIGKILL and reports how long detection and failover took.

use std::time::{Duration, Instant};

use girder::{Context, ExitReason, Flow, Node, ReplyTo, Server, ServerContext};
use girder_dist::global::Global;
use girder_dist::membership::{Member, MemberEvent, Membership, MembershipConfig};
use girder_dist::{Cookie, DistConfig, DistNode, NodeEvent, NodeName, Wire};
use serde::{Deserialize, Serialize};

use crate::child::NodeProcess;

/// The service's global name.
pub const SERVICE: &str = "demo.counter";
const COOKIE: &str = "girder-demo-cluster-cookie";

#[derive(Serialize, Deserialize)]
pub struct Increment(pub ReplyTo<Count>);

impl Wire for Increment {
    const NAME: &'static str = "demo.counter.increment.v2";
}

/// Which node answered, and the count there.
#[derive(Serialize, Deserialize, Debug)]
pub struct Count {
    pub node: String,
    pub count: u64,
}

pub struct Counter {
    node: String,
    count: u64,
}

impl Server for Counter {
    type Call = Increment;
    type Cast = ();
    type Info = ();

    async fn handle_call(
        &mut self,
        Increment(from): Increment,
        _: &mut ServerContext<Self>,
    ) -> Flow {
        self.count += 1;
        from.reply(Count {
            node: self.node.clone(),
            count: self.count,
        });
        Flow::Continue
    }
}

/// Runs the singleton manager on a node: run the counter if nobody does, else watch whoever
/// does and take over when it goes.
pub fn singleton(dist: &DistNode, global: &Global) {
    let (dist, global) = (dist.clone(), global.clone());
    let me = dist.name().to_string();
    dist.node()
        .clone()
        .spawn(move |mut ctx: Context<()>| async move {
            // Let the cluster meet first, so the first registration is usually not a conflict (one
            // would be resolved anyway: the older registration wins).
            tokio::time::sleep(Duration::from_millis(1500)).await;
            loop {
                if let Some(owner) = global.whereis(SERVICE) {
                    let m = ctx.monitor(owner);
                    if let Some(down) = ctx.wait_down(m, None).await {
                        if !owner.is_local() {
                            println!(
                                "singleton: {SERVICE} on {} is down ({})",
                                dist.node_of(owner)
                                    .map(|n| n.to_string())
                                    .unwrap_or_default(),
                                down.reason
                            );
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                // Survivors do not all rush in at once.
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..30))).await;
                if global.whereis(SERVICE).is_some() {
                    continue;
                }
                let counter = Counter {
                    node: me.clone(),
                    count: 0,
                };
                let Ok(server) = girder::server::start(dist.node(), counter).await else {
                    continue;
                };
                dist.export_server(&server);
                if global.register(SERVICE, server.pid()).is_ok() {
                    println!("singleton: this node now runs {SERVICE}");
                } else {
                    server.stop(ExitReason::Normal).await;
                }
            }
        });
}

/// Starts the cluster, fails the service's node, prints what happened.
pub async fn run() -> Result<(), String> {
    println!();
    println!("girder demo, act 2: a globally registered service fails over across OS processes");
    let dir = std::env::temp_dir().join(format!("girder-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cookie_file = dir.join("cookie");
    girder_dist::write_secret_file(&cookie_file, COOKIE).map_err(|e| e.to_string())?;
    let cookie_path = cookie_file
        .to_str()
        .ok_or("temp path is not UTF-8")?
        .to_string();
    let result = act(&cookie_path).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn act(cookie_path: &str) -> Result<(), String> {
    let names = ["n1@127.0.0.1", "n2@127.0.0.1", "n3@127.0.0.1"];
    let node_args = |name: &'static str, seed: Option<&str>| {
        let mut v = vec![
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--cookie-file",
            cookie_path,
            "--demo-service",
            "--http",
            "127.0.0.1:0",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if let Some(s) = seed {
            v.extend(["--seed".to_string(), s.to_string()]);
        }
        v
    };
    let start = |args: Vec<String>| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        NodeProcess::start(&refs)
    };
    let first = start(node_args(names[0], None))?;
    let first_ops = first.wait_for("ops API on ", Duration::from_secs(10))?;
    let seed = first.wait_up(Duration::from_secs(10))?;
    let mut dashboards = vec![(names[0], first_ops)];
    let mut procs = vec![(names[0], first)];
    for name in &names[1..] {
        let p = start(node_args(name, Some(&seed)))?;
        dashboards.push((name, p.wait_for("ops API on ", Duration::from_secs(10))?));
        p.wait_up(Duration::from_secs(10))?;
        procs.push((name, p));
    }
    println!("-- 3 nodes started: {} (seed {seed})", names.join(", "));
    for (name, line) in &dashboards {
        let url = line.trim_start_matches("ops API on ").trim();
        println!("   {name} dashboard: {url}/");
    }

    // This process joins as a client node.
    let me = NodeName::new("client@127.0.0.1").map_err(|e| e.to_string())?;
    let cookie = Cookie::new(COOKIE).map_err(|e| e.to_string())?;
    let dist = DistNode::start(
        Node::new(me.as_str()),
        DistConfig::new(
            me.clone(),
            cookie.clone(),
            "127.0.0.1:0".parse().expect("an address"),
        ),
    )
    .await
    .map_err(|e| e.to_string())?;
    let membership = Membership::start(
        dist.node(),
        Member {
            name: me,
            addr: dist.local_addr(),
            creation: dist.node().creation(),
            roles: vec!["client".into()],
        },
        &[seed.parse().map_err(|e| format!("bad seed address: {e}"))?],
        MembershipConfig {
            cookie: Some(cookie),
            ..MembershipConfig::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    dist.follow(&membership);
    let global = Global::start(&dist).await.map_err(|e| e.to_string())?;
    let mut node_events = dist.subscribe();
    let mut member_events = membership.subscribe();

    let deadline = Instant::now() + Duration::from_secs(15);
    let owner = loop {
        if let Some(pid) = global.whereis(SERVICE) {
            if let Some(node) = dist.node_of(pid) {
                break node;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{SERVICE} was not registered within 15 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("-- {SERVICE} is registered globally; it runs on {owner}");
    for _ in 0..5 {
        let answer = call(&global).await?;
        println!(
            "   call -> answered by {} (count {})",
            answer.node, answer.count
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let victim = procs
        .iter()
        .position(|(n, _)| *n == owner.as_str())
        .ok_or("the owner is not one of our nodes")?;
    let (victim_name, victim_proc) = procs.remove(victim);
    // Drain old events so the timings below are about this failure only.
    while node_events.try_recv().is_ok() {}
    while member_events.try_recv().is_ok() {}
    println!("-- SIGKILL {victim_name} (pid {})", victim_proc.child.id());
    let killed = Instant::now();
    victim_proc.signal("-KILL")?;

    let (mut connection_lost, mut member_down, mut back) = (None, None, None);
    let mut failed_calls = 0u32;
    let deadline = killed + Duration::from_secs(20);
    while back.is_none() || member_down.is_none() {
        if Instant::now() > deadline {
            return Err("no failover within 20 s".into());
        }
        while let Ok(ev) = node_events.try_recv() {
            if matches!(&ev, NodeEvent::Down { node, .. } if node.as_str() == victim_name)
                && connection_lost.is_none()
            {
                connection_lost = Some(killed.elapsed());
            }
        }
        while let Ok(ev) = member_events.try_recv() {
            if matches!(&ev, MemberEvent::Down(m) if m.name.as_str() == victim_name)
                && member_down.is_none()
            {
                member_down = Some(killed.elapsed());
            }
        }
        if back.is_none() {
            match call(&global).await {
                Ok(a) if a.node != victim_name => {
                    back = Some((killed.elapsed(), a));
                }
                _ => failed_calls += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (took, answer) = back.expect("loop ends with an answer");
    let ms = |d: Option<Duration>| {
        d.map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "   connection to {victim_name} lost after {} (its kernel closed the socket)",
        ms(connection_lost)
    );
    println!(
        "   membership (SWIM) declared {victim_name} down after {}",
        ms(member_down)
    );
    println!(
        "   {SERVICE} answered again from {} after {} (count restarted at {}); {failed_calls} calls failed cleanly meanwhile",
        answer.node,
        ms(Some(took)),
        answer.count
    );
    for _ in 0..3 {
        let answer = call(&global).await?;
        println!(
            "   call -> answered by {} (count {})",
            answer.node, answer.count
        );
    }
    println!(
        "== failover: detection {} (connection), {} (membership); service back after {}",
        ms(connection_lost),
        ms(member_down),
        ms(Some(took))
    );

    // What an operator sees on a survivor: the dead node as a down connection and an alarm.
    if let Some((name, line)) = dashboards.iter().find(|(n, _)| **n != *victim_name) {
        let url = line.trim_start_matches("ops API on ").trim().to_string();
        let target = crate::status::Target {
            url: url.clone(),
            token: None,
        };
        if let Ok(text) = crate::status::snapshot(&target).await {
            println!("-- girder status --node {url}   ({name})");
            for l in text.lines().take_while(|l| !l.starts_with("TOP PROCESSES")) {
                println!("   {l}");
            }
        }
    }
    // The goodbyes first, so the nodes see a departure before membership says the member is
    // gone.
    dist.shutdown_and_wait().await;
    membership.leave().await;
    for (name, p) in &procs {
        p.signal("-TERM")?;
        p.wait_for(&format!("node {name} stopped"), Duration::from_secs(10))?;
    }
    println!("-- remaining nodes stopped gracefully");
    Ok(())
}

/// One call to the service by its global name.
async fn call(global: &Global) -> Result<Count, String> {
    let server = global
        .server::<Counter>(SERVICE)
        .ok_or_else(|| format!("{SERVICE} is not registered"))?;
    server
        .call_timeout(Increment, Duration::from_millis(500))
        .await
        .map_err(|e| e.to_string())
}
