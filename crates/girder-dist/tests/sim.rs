//! Deterministic simulation with turmoil: nodes on a simulated network with partitions, a crash
//! and restart (a new creation), and message delay. Checks that monitors fire, calls fail
//! cleanly, membership converges, the global registry ends with one owner per name, and a slow
//! receiver holds back only its own senders.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use girder::{CallError, Context, Event, ExitReason, Node, SpawnOptions};
use girder_dist::global::Global;
use girder_dist::membership::{Member, MemberEvent, Membership, MembershipConfig};
use girder_dist::transport::{BoxStream, Datagrams, Listener, Network};
use girder_dist::{Cookie, DistConfig, DistNode, NodeName};
use girder_testkit::dist::COOKIE;
use girder_testkit::procs::{down_reason, idle, Counter};

const PORT: u16 = 9000;

/// turmoil's network behind girder's transport traits.
#[derive(Debug)]
struct SimNet;

struct SimListener(turmoil::net::TcpListener);
struct SimUdp(turmoil::net::UdpSocket);

impl Network for SimNet {
    fn listen(&self, addr: SocketAddr) -> BoxFuture<'_, std::io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let l = turmoil::net::TcpListener::bind(addr).await?;
            Ok(Box::new(SimListener(l)) as Box<dyn Listener>)
        })
    }
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, std::io::Result<BoxStream>> {
        Box::pin(
            async move { Ok(Box::new(turmoil::net::TcpStream::connect(addr).await?) as BoxStream) },
        )
    }
    fn bind_datagrams(
        &self,
        addr: SocketAddr,
    ) -> BoxFuture<'_, std::io::Result<Arc<dyn Datagrams>>> {
        Box::pin(async move {
            Ok(Arc::new(SimUdp(turmoil::net::UdpSocket::bind(addr).await?)) as Arc<dyn Datagrams>)
        })
    }
}

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxStream, SocketAddr)>> {
        Box::pin(async move {
            let (s, from) = self.0.accept().await?;
            Ok((Box::new(s) as BoxStream, from))
        })
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Datagrams for SimUdp {
    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        to: SocketAddr,
    ) -> BoxFuture<'a, std::io::Result<usize>> {
        Box::pin(self.0.send_to(buf, to))
    }
    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, std::io::Result<(usize, SocketAddr)>> {
        Box::pin(self.0.recv_from(buf))
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

fn name(host: &str) -> NodeName {
    NodeName::new(&format!("{host}@sim")).unwrap()
}

fn addr(host: &str) -> SocketAddr {
    (turmoil::lookup(host), PORT).into()
}

/// A node on the simulated network that knows where `peers` are.
async fn node(host: &str, peers: &[&str]) -> DistNode {
    let mut cfg = DistConfig::new(
        name(host),
        Cookie::new(COOKIE).unwrap(),
        (IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT).into(),
    );
    cfg.network = Arc::new(SimNet);
    // Spinning on the real clock means nothing in simulated time.
    cfg.busy_poll = Duration::ZERO;
    cfg.connect_timeout = Duration::from_secs(2);
    let dist = DistNode::start(Node::new(host), cfg).await.unwrap();
    for p in peers {
        dist.add_address(name(p), addr(p));
    }
    dist
}

fn sim(seconds: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(seconds))
        .rng_seed(7)
        .build()
}

/// Host software: a node with a `kv` server registered locally and exported; runs forever.
async fn kv_host(host: &'static str, peers: &'static [&'static str]) -> turmoil::Result {
    serve_kv(node(host, peers).await).await
}

/// Serves a `kv` counter, registered and exported, on `dist`; runs forever.
async fn serve_kv(dist: DistNode) -> turmoil::Result {
    let kv = girder::server::start_with(dist.node(), Counter(0), SpawnOptions::new(), Some("kv"))
        .await?;
    dist.export_server(&kv);
    std::future::pending::<()>().await;
    Ok(())
}

/// Registers `p` as `name` and exports it, then serves a `kv` counter beside it; runs forever.
async fn serve_beside_kv(dist: DistNode, name: &str, p: girder::Addr<u64>) -> turmoil::Result {
    dist.node().register(name, p.pid())?;
    dist.export(&p);
    serve_kv(dist).await
}

#[test]
fn a_partition_fires_monitors_and_fails_calls_cleanly_then_heals() {
    let mut sim = sim(60);
    sim.host("b", || kv_host("b", &["a"]));
    sim.client("a", async {
        let a = node("a", &["b"]).await;
        let pid = a.whereis(&name("b"), "kv").await?.expect("kv on b");
        let kv = a.remote_server::<Counter>(&name("b"), pid);
        assert_eq!(kv.call(|r| (1, r)).await, Ok(1));
        let down = down_reason(a.node(), pid);
        tokio::time::sleep(Duration::from_millis(100)).await;

        turmoil::partition("a", "b");
        let started = tokio::time::Instant::now();
        let r = kv.call_timeout(|r| (2, r), Duration::from_secs(30)).await;
        assert_eq!(r, Err(CallError::Exited(ExitReason::NoConnection)));
        assert_eq!(down.await?, ExitReason::NoConnection);
        // Loss is noticed by silence: a second or so (dead_after), not the call's 30 s.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        turmoil::repair("a", "b");
        // The next call dials again; the server kept its state.
        let mut answer = kv.call(|r| (3, r)).await;
        for _ in 0..20 {
            if answer.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            answer = kv.call(|r| (3, r)).await;
        }
        assert_eq!(answer, Ok(4));
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn a_crashed_node_comes_back_as_a_new_incarnation() {
    let mut sim = sim(60);
    sim.host("b", || kv_host("b", &["a"]));
    let phase = Arc::new(Mutex::new(0));
    let p = phase.clone();
    sim.client("a", async move {
        let a = node("a", &["b"]).await;
        let old = a.whereis(&name("b"), "kv").await?.expect("kv on b");
        assert_eq!(
            a.remote_server::<Counter>(&name("b"), old)
                .call(|r| (5, r))
                .await,
            Ok(5)
        );
        let down = down_reason(a.node(), old);
        *p.lock().unwrap() = 1; // the driver restarts b now
        assert_eq!(down.await?, ExitReason::NoConnection);
        // The restarted b: the same name, a new creation, a fresh kv.
        let mut new = None;
        for _ in 0..50 {
            if let Ok(Some(pid)) = a.whereis(&name("b"), "kv").await {
                new = Some(pid);
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let new = new.expect("kv is back on b");
        assert_ne!(
            new.creation(),
            old.creation(),
            "a restarted node is a new incarnation"
        );
        assert_eq!(
            a.remote_server::<Counter>(&name("b"), new)
                .call(|r| (1, r))
                .await,
            Ok(1)
        );
        // A pid of the old incarnation is dead for good: its monitor fires noproc.
        assert_eq!(down_reason(a.node(), old).await?, ExitReason::NoProc);
        let stale = a.remote_server::<Counter>(&name("b"), old);
        assert_eq!(
            stale.call(|r| (1, r)).await,
            Err(CallError::Exited(ExitReason::NoProc))
        );
        Ok(())
    });
    let mut bounced = false;
    while !sim.step().unwrap() {
        if !bounced && *phase.lock().unwrap() == 1 {
            sim.crash("b");
            // Down for a while, then started again with new software state.
            for _ in 0..200 {
                sim.step().unwrap();
            }
            sim.bounce("b");
            bounced = true;
        }
    }
    assert!(bounced);
}

#[test]
fn delayed_messages_keep_their_order_and_calls_still_work() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(60))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(40))
        .rng_seed(11)
        .build();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    sim.host("b", move || {
        let g = g.clone();
        async move {
            let dist = node("b", &["a"]).await;
            let sink = dist.node().spawn(move |mut ctx: Context<u64>| async move {
                while let Event::Message(n) = ctx.recv().await {
                    g.lock().unwrap().push(n);
                }
                ExitReason::Normal
            });
            serve_beside_kv(dist, "sink", sink).await
        }
    });
    let g = got.clone();
    sim.client("a", async move {
        let a = node("a", &["b"]).await;
        let sink = a.whereis(&name("b"), "sink").await?.expect("sink");
        let sink = a.addr::<u64>(sink);
        let (tx, rx) = tokio::sync::oneshot::channel();
        a.node().spawn(move |_: Context<()>| async move {
            for i in 0..1000u64 {
                sink.send_wait(i).await.unwrap();
            }
            let _ = tx.send(());
            ExitReason::Normal
        });
        rx.await?;
        let kv = a.whereis(&name("b"), "kv").await?.expect("kv");
        let kv = a.remote_server::<Counter>(&name("b"), kv);
        for i in 1..=20 {
            assert_eq!(kv.call(|r| (1, r)).await, Ok(i));
        }
        while g.lock().unwrap().len() < 1000 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    });
    sim.run().unwrap();
    assert_eq!(*got.lock().unwrap(), (0..1000).collect::<Vec<u64>>());
}

type Views = Arc<Mutex<Vec<Option<(u64, u32)>>>>;

#[test]
fn the_global_registry_converges_to_one_owner_after_a_partition() {
    let mut sim = sim(120);
    // What each node (a, b, c) names as "leader": (id, creation) of the holder.
    let seen: Views = Arc::new(Mutex::new(vec![None; 3]));
    let alive = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
    for (i, host) in ["b", "c"].into_iter().enumerate() {
        let (s, al) = (seen.clone(), alive.clone());
        sim.host(host, move || {
            let (s, al) = (s.clone(), al.clone());
            async move {
                let others: Vec<&str> =
                    ["a", "b", "c"].into_iter().filter(|h| *h != host).collect();
                let dist = node(host, &others).await;
                let global = Global::start(&dist).await?;
                // c registers "leader" during the partition (b does not).
                if host == "c" {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let w = idle(dist.node());
                    global.register("leader", w.pid())?;
                    let al2 = al.clone();
                    tokio::spawn(async move {
                        al2.lock().unwrap().push(("c".into(), true));
                        w.wait_exit().await;
                        al2.lock().unwrap().push(("c".into(), false));
                    });
                }
                loop {
                    s.lock().unwrap()[i + 1] =
                        global.whereis("leader").map(|p| (p.id(), p.creation()));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    let (s, al) = (seen.clone(), alive.clone());
    sim.client("a", async move {
        turmoil::partition("a", "b");
        turmoil::partition("a", "c");
        let a = node("a", &["b", "c"]).await;
        let global = Global::start(&a).await?;
        let w = idle(a.node());
        // a registers first (older), during the partition.
        global.register("leader", w.pid())?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        {
            let views = s.lock().unwrap();
            assert!(views[2].is_some(), "c registered its own leader: {views:?}");
        }
        turmoil::repair("a", "b");
        turmoil::repair("a", "c");
        // Converged: every node names a's process, and c's was ended.
        let mine = Some((w.pid().id(), w.pid().creation()));
        for _ in 0..300 {
            s.lock().unwrap()[0] = global.whereis("leader").map(|p| (p.id(), p.creation()));
            let views = s.lock().unwrap().clone();
            let c_ended = al.lock().unwrap().iter().any(|(h, up)| h == "c" && !up);
            if views.iter().all(|v| *v == mine) && c_ended {
                assert!(w.is_alive());
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no convergence: {:?}, {:?}",
            s.lock().unwrap(),
            al.lock().unwrap()
        );
    });
    sim.run().unwrap();
}

#[test]
fn membership_converges_notices_a_partitioned_member_and_takes_it_back() {
    let mut sim = sim(120);
    let cfg = || MembershipConfig {
        cookie: Some(Cookie::new(COOKIE).unwrap()),
        network: Arc::new(SimNet),
        bind: Some((IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT).into()),
        ..MembershipConfig::default()
    };
    // The address is gossiped, so it is the host's own, not 0.0.0.0.
    let member = |host: &str| Member {
        name: name(host),
        addr: addr(host),
        creation: 1,
        roles: vec![],
    };
    for host in ["b", "c"] {
        sim.host(host, move || async move {
            let m = Membership::start(&girder::Node::new("m"), member(host), &[addr("a")], cfg())
                .await?;
            std::future::pending::<()>().await;
            drop(m);
            Ok(())
        });
    }
    sim.client("a", async move {
        let m = Membership::start(&girder::Node::new("m"), member("a"), &[], cfg()).await?;
        let mut events = m.subscribe();
        let count = |m: &Membership| m.members().len();
        while count(&m) < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("converged: {:?}", m.members());
        turmoil::partition("a", "c");
        turmoil::partition("b", "c");
        let started = tokio::time::Instant::now();
        loop {
            match events.recv().await? {
                MemberEvent::Down(x) if x.name == name("c") => break,
                _ => {}
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "detected after {:?}",
            started.elapsed()
        );
        assert_eq!(count(&m), 1);
        eprintln!("c is down after {:?}", started.elapsed());
        turmoil::repair("a", "c");
        turmoil::repair("b", "c");
        for _ in 0..600 {
            if count(&m) == 2 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("c never came back: {:?}", m.members());
    });
    sim.run().unwrap();
}

#[test]
fn a_slow_receiver_slows_only_its_senders_over_a_slow_network() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .rng_seed(13)
        .build();
    let got = Arc::new(Mutex::new(Vec::new()));
    let open = Arc::new(AtomicBool::new(false));
    let (g, o) = (got.clone(), open.clone());
    sim.host("b", move || {
        let (g, o) = (g.clone(), o.clone());
        async move {
            let dist = node("b", &["a"]).await;
            // A bounded receiver that takes nothing until it is opened.
            let slow = dist.node().spawn_opts(
                SpawnOptions::new().capacity(8),
                move |mut ctx: Context<u64>| async move {
                    while !o.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    while let Event::Message(m) = ctx.recv().await {
                        g.lock().unwrap().push(m);
                    }
                    ExitReason::Normal
                },
            );
            serve_beside_kv(dist, "slow", slow).await
        }
    });
    let o = open.clone();
    let g = got.clone();
    sim.client("a", async move {
        let a = node("a", &["b"]).await;
        let mut events = a.subscribe();
        let slow = a.whereis(&name("b"), "slow").await?.expect("slow");
        let slow = a.addr::<u64>(slow);
        for f in 0..4u64 {
            let slow = slow.clone();
            a.node().spawn(move |_: Context<()>| async move {
                for i in 0..1000u64 {
                    slow.send_wait(f * 1_000_000 + i).await.unwrap();
                }
                ExitReason::Normal
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // The flood is held at b, and calls beside it answer as fast as the network lets them.
        let kv = a.whereis(&name("b"), "kv").await?.expect("kv");
        let kv = a.remote_server::<Counter>(&name("b"), kv);
        for i in 1..=50 {
            let t = tokio::time::Instant::now();
            assert_eq!(kv.call(|r| (1, r)).await, Ok(i));
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "call {i}: {:?}",
                t.elapsed()
            );
        }
        assert!(g.lock().unwrap().is_empty());
        o.store(true, Ordering::Relaxed);
        while g.lock().unwrap().len() < 4000 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        while let Ok(ev) = events.try_recv() {
            assert!(!matches!(ev, girder_dist::NodeEvent::Down { .. }), "{ev:?}");
        }
        Ok(())
    });
    sim.run().unwrap();
    let got = got.lock().unwrap();
    for f in 0..4u64 {
        let mine: Vec<u64> = got
            .iter()
            .filter(|m| *m / 1_000_000 == f)
            .map(|m| m % 1_000_000)
            .collect();
        assert_eq!(
            mine,
            (0..1000).collect::<Vec<u64>>(),
            "sender {f}: all, in order"
        );
    }
}
