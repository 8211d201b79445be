//! One slow receiver across nodes slows only its own senders (issue 14, decision 014): a
//! bounded process on node B that does not receive, flooded from node A, while A calls a
//! healthy server on B. The calls keep their latency, no `noconnection` fires, the flooders get
//! `Full` (`send`) or wait (`send_wait`), and once the slow receiver drains it has every message
//! that was accepted, in order.

use std::time::{Duration, Instant};

use girder::{Context, ExitReason, Flow, ReplyTo, SendError, Server, ServerContext, SpawnOptions};
use girder_dist::{DistNode, NodeEvent};
use girder_testkit::dist::pair;
use girder_testkit::within;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

#[derive(Serialize, Deserialize, Debug)]
struct Ping(u64);

impl girder_dist::Wire for Ping {
    const NAME: &'static str = "test.slow.ping.v1";
}

/// Answers with its request, after `.0` of work.
struct Echo(Duration);

impl Server for Echo {
    type Call = (Ping, ReplyTo<u64>);
    type Cast = ();
    type Info = ();

    async fn handle_call(
        &mut self,
        (Ping(n), from): Self::Call,
        _: &mut ServerContext<Self>,
    ) -> Flow {
        if !self.0.is_zero() {
            tokio::time::sleep(self.0).await;
        }
        from.reply(n);
        Flow::Continue
    }

    async fn handle_cast(&mut self, _: (), _: &mut ServerContext<Self>) -> Flow {
        Flow::Continue
    }
}

/// Sequence-numbered messages from one flooder (`(flooder, seq)`).
type Tagged = (u64, u64);

#[derive(Serialize, Deserialize, Debug)]
struct Tag(u64, u64);

impl girder_dist::Wire for Tag {
    const NAME: &'static str = "test.slow.tag.v1";
}

/// A bounded process that takes nothing until `gate` opens, then forwards all it gets.
fn slow_receiver(
    node: &DistNode,
    capacity: usize,
    gate: oneshot::Receiver<()>,
    out: mpsc::UnboundedSender<Tagged>,
) -> girder::Addr<Tag> {
    let addr = node.node().spawn_opts(
        SpawnOptions::new().capacity(capacity),
        move |mut ctx: Context<Tag>| async move {
            let _ = gate.await;
            loop {
                match ctx.recv().await {
                    girder::Event::Message(m) if out.send((m.0, m.1)).is_err() => break,
                    girder::Event::Stop(_) => break,
                    _ => {}
                }
            }
            ExitReason::Normal
        },
    );
    node.export(&addr);
    addr
}

async fn call_p99(server: &girder::ServerRef<Echo>, n: u64) -> Duration {
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let t = Instant::now();
        let got = server
            .call_timeout(|r| (Ping(i), r), Duration::from_secs(10))
            .await
            .expect("a call to the healthy server answers");
        assert_eq!(got, i);
        lat.push(t.elapsed());
    }
    lat.sort();
    lat[(lat.len() * 99 / 100).min(lat.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_slows_only_its_own_senders() {
    let (a, b) = pair("slow-a@localhost", "slow-b@localhost").await;
    let mut events = a.subscribe();

    let echo = girder::server::start(b.node(), Echo(Duration::ZERO))
        .await
        .unwrap();
    b.export_server(&echo);
    let remote_echo = a.server::<Echo>(a.pid_on(b.name(), echo.pid()));

    let (gate_tx, gate) = oneshot::channel();
    let (out_tx, mut out) = mpsc::unbounded_channel();
    let slow = slow_receiver(&b, 16, gate, out_tx);
    let remote_slow = a.remote::<Tag>(b.name(), slow.pid());

    // Warm the connection, then the unloaded latency.
    call_p99(&remote_echo, 200).await;
    let unloaded = call_p99(&remote_echo, 500).await;

    // Flooder 0 uses `send` and keeps what was accepted; flooder 1 waits with `send_wait`.
    let flood_for = Duration::from_secs(3);
    let (acc_tx, acc_rx) = oneshot::channel::<(Vec<u64>, u64)>();
    let to = remote_slow.clone();
    a.node().spawn(move |_: Context<()>| async move {
        let (mut accepted, mut full) = (Vec::new(), 0u64);
        let until = Instant::now() + flood_for;
        let mut seq = 0;
        while Instant::now() < until {
            match to.send(Tag(0, seq)) {
                Ok(()) => accepted.push(seq),
                Err(SendError::Full(_)) => {
                    full += 1;
                    tokio::time::sleep(Duration::from_micros(200)).await;
                }
                Err(e) => panic!("flooder 0: {e}"),
            }
            seq += 1;
            if seq % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let _ = acc_tx.send((accepted, full));
        ExitReason::Normal
    });
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<u64>();
    let to = remote_slow.clone();
    let waiter = a.node().spawn(move |_: Context<()>| async move {
        let mut seq = 0;
        loop {
            if to.send_wait(Tag(1, seq)).await.is_err() {
                break;
            }
            let _ = sent_tx.send(seq);
            seq += 1;
        }
        ExitReason::Normal
    });

    // Let the mailbox fill and the flood pile up, then measure the innocent calls.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let loaded = within("calls beside the flood", call_p99(&remote_echo, 500)).await;
    let (accepted, full) = within("the send flooder", acc_rx).await.unwrap();
    eprintln!(
        "unloaded p99 {unloaded:?}, loaded p99 {loaded:?}; flooder 0: {} accepted, {full} Full",
        accepted.len()
    );
    assert!(full > 0, "a slow receiver's sender is told Full");
    let bound = (unloaded * 2).max(unloaded + Duration::from_millis(25));
    assert!(
        loaded <= bound,
        "calls beside a slow receiver: p99 {loaded:?}, unloaded {unloaded:?}"
    );
    // The waiting flooder is held back: it got no further than the mailbox and the parking.
    let mut waited = 0;
    while let Ok(s) = sent_rx.try_recv() {
        waited = s + 1;
    }
    assert!(
        waited < 200_000,
        "send_wait waits for a slow receiver ({waited} sent)"
    );
    assert!(
        a.connected().contains(b.name()),
        "the connection stays up beside a slow receiver"
    );

    // Drain: everything accepted arrives, in order per flooder.
    gate_tx.send(()).unwrap();
    let mut next = [0usize, 0usize];
    let deadline = Instant::now() + Duration::from_secs(30);
    while next[0] < accepted.len() {
        let (f, seq) = tokio::time::timeout(deadline - Instant::now(), out.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "flooder 0's message {} of {} not delivered",
                    next[0],
                    accepted.len()
                )
            })
            .unwrap();
        match f {
            0 => {
                assert_eq!(seq, accepted[next[0]], "flooder 0's messages in order");
                next[0] += 1;
            }
            _ => {
                assert_eq!(seq, next[1] as u64, "flooder 1's messages in order");
                next[1] += 1;
            }
        }
    }
    // The waiting flooder flows again once the receiver takes.
    within("send_wait to make progress after the drain", async {
        loop {
            let (f, seq) = out.recv().await.unwrap();
            if f == 1 {
                assert_eq!(seq, next[1] as u64, "flooder 1's messages in order");
                next[1] += 1;
                if next[1] as u64 > waited + 1000 {
                    break;
                }
            }
        }
    })
    .await;
    waiter.stop(ExitReason::Shutdown);

    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(ev, NodeEvent::Down { .. }),
            "no node down beside a slow receiver: {ev:?}"
        );
    }
}

/// Floods `to` from `senders` processes on `a`, each with `send_wait`, `n` messages each.
fn flood(a: &DistNode, to: &girder::Addr<Tag>, senders: u64, n: u64) {
    for f in 0..senders {
        let to = to.clone();
        a.node().spawn(move |_: Context<()>| async move {
            for seq in 0..n {
                if to.send_wait(Tag(f, seq)).await.is_err() {
                    break;
                }
            }
            ExitReason::Normal
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parking_is_visible_and_a_receiver_that_exits_releases_its_senders() {
    let (a, b) = pair("slow-c@localhost", "slow-d@localhost").await;
    let (_gate_tx, gate) = oneshot::channel();
    let (out_tx, _out) = mpsc::unbounded_channel();
    let slow = slow_receiver(&b, 4, gate, out_tx);
    let remote_slow = a.remote::<Tag>(b.name(), slow.pid());
    flood(&a, &remote_slow, 8, 1_000_000);

    let peer = |n: &DistNode| {
        n.peers()
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{} knows a peer", n.name()))
    };
    girder_testkit::eventually("b to park and a to pause", || {
        if b.peers().is_empty() {
            return None;
        }
        let (pb, pa) = (peer(&b), peer(&a));
        (pb.parked > 0 && pb.pauses_sent >= 1 && pa.paused == 1 && pa.pauses_received >= 1)
            .then_some(())
    })
    .await;
    // A send now is told Full at once, without crossing.
    assert!(matches!(
        remote_slow.send(Tag(99, 0)),
        Err(SendError::Full(_))
    ));

    // The receiver exits: its parked messages are dropped (as any to a dead process), its
    // senders resume, and nothing stays parked.
    b.node().exit(slow.pid(), ExitReason::Kill);
    girder_testkit::eventually("the parking to empty and the pause to lift", || {
        let (pb, pa) = (peer(&b), peer(&a));
        (pb.parked == 0 && pb.parked_bytes == 0 && pa.paused == 0).then_some(())
    })
    .await;
    assert!(a.connected().contains(b.name()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_parking_bound_the_connection_waits_and_loses_nothing() {
    // A bound of one byte: every parked message passes it, so delivery from the peer waits
    // for each, as it did before parking (the safety net for a peer that does not pause).
    let start = |name: &str| {
        let mut cfg = girder_testkit::dist::config(name, girder_testkit::dist::COOKIE);
        cfg.connection.max_parked = 1;
        DistNode::start(girder::Node::new(name), cfg)
    };
    let (a, b) = (
        start("slow-e@localhost").await.unwrap(),
        start("slow-f@localhost").await.unwrap(),
    );
    a.add_address(b.name().clone(), b.local_addr());
    b.add_address(a.name().clone(), a.local_addr());
    let (gate_tx, gate) = oneshot::channel();
    let (out_tx, mut out) = mpsc::unbounded_channel();
    let slow = slow_receiver(&b, 4, gate, out_tx);
    let remote_slow = a.remote::<Tag>(b.name(), slow.pid());
    flood(&a, &remote_slow, 4, 500);
    girder_testkit::eventually("the bound to be passed", || {
        b.peers()
            .first()
            .is_some_and(|p| p.parked_stalls > 0)
            .then_some(())
    })
    .await;
    gate_tx.send(()).unwrap();
    let mut next = [0u64; 4];
    while next.iter().sum::<u64>() < 4 * 500 {
        let (f, seq) = within("every message, in order", out.recv()).await.unwrap();
        assert_eq!(seq, next[f as usize], "flooder {f}'s messages in order");
        next[f as usize] += 1;
    }
    assert!(a.connected().contains(b.name()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_fail_fast_server_refuses_remote_calls_as_overloaded() {
    let (a, b) = pair("slow-g@localhost", "slow-h@localhost").await;
    let opts = SpawnOptions::new()
        .capacity(1)
        .overflow(girder::Overflow::FailFast);
    let server =
        girder::server::start_with(b.node(), Echo(Duration::from_millis(1000)), opts, None)
            .await
            .unwrap();
    b.export_server(&server);
    a.connect(b.name()).await.unwrap();
    let remote = a.server::<Echo>(a.pid_on(b.name(), server.pid()));
    // One being handled, one waiting: the mailbox of one is full.
    let call = |n| {
        let remote = remote.clone();
        tokio::spawn(async move { remote.call(|r| (Ping(n), r)).await })
    };
    // Known states, not sleeps: the first taken (being handled), then the second queued.
    let node = b.node().clone();
    let pid = server.pid();
    let state = move || {
        let info = node.process_info(pid).expect("the server runs");
        (info.messages_in, info.mailbox_len)
    };
    let first = call(1);
    let s = state.clone();
    girder_testkit::eventually("the first call to be taken", move || {
        (s() == (1, 0)).then_some(())
    })
    .await;
    let second = call(2);
    let s = state.clone();
    girder_testkit::eventually("the second call to wait", move || {
        (s() == (2, 1)).then_some(())
    })
    .await;
    let third = within("the refusal", remote.call(|r| (Ping(3), r))).await;
    assert_eq!(third, Err(girder::CallError::Overloaded));
    assert_eq!(within("first", first).await.unwrap(), Ok(1));
    assert_eq!(within("second", second).await.unwrap(), Ok(2));
    assert_eq!(server.addr().mailbox_stats().unwrap().refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_full_of_messages_delays_lookups_and_monitors_but_never_fails_them() {
    // B's delivery stalls on a parked message (a parking bound of one byte); a flood to a
    // healthy process then fills B's delivery queue, the socket and A's send queue. A lookup
    // or a monitor sent then waits its turn: it must not fail as if B were unreachable.
    let start = |name: &str, tune: fn(&mut girder_dist::ConnectionConfig)| {
        let mut cfg = girder_testkit::dist::config(name, girder_testkit::dist::COOKIE);
        tune(&mut cfg.connection);
        DistNode::start(girder::Node::new(name), cfg)
    };
    let (a, b) = (
        start("slow-i@localhost", |c| c.send_queue = 8)
            .await
            .unwrap(),
        start("slow-j@localhost", |c| {
            c.max_parked = 1;
            c.delivery_queue = 8;
        })
        .await
        .unwrap(),
    );
    a.add_address(b.name().clone(), b.local_addr());
    b.add_address(a.name().clone(), a.local_addr());
    let mut events = a.subscribe();

    let (gate_tx, gate) = oneshot::channel();
    let (out_tx, _out) = mpsc::unbounded_channel();
    let slow = slow_receiver(&b, 1, gate, out_tx);
    let sink = b.node().spawn(|mut ctx: Context<Tag>| async move {
        while !matches!(ctx.recv().await, girder::Event::Stop(_)) {}
        ExitReason::Normal
    });
    b.export(&sink);
    b.node().register("healthy", sink.pid()).unwrap();
    let victim = b.node().spawn(|mut ctx: Context<()>| async move {
        let _ = ctx.recv().await;
        ExitReason::Normal
    });
    b.export(&victim);

    // Two messages for the slow receiver: one in its mailbox, one parked past the bound.
    let remote_slow = a.remote::<Tag>(b.name(), slow.pid());
    flood(&a, &remote_slow, 1, 2);
    girder_testkit::eventually("b's delivery to stall", || {
        b.peers()
            .first()
            .is_some_and(|p| p.parked_stalls > 0)
            .then_some(())
    })
    .await;
    let remote_sink = a.remote::<Tag>(b.name(), sink.pid());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for f in 0..4 {
        let (to, stop) = (remote_sink.clone(), stop.clone());
        a.node().spawn(move |_: Context<()>| async move {
            let mut seq = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent =
                    tokio::time::timeout(Duration::from_millis(50), to.send_wait(Tag(f, seq)));
                if let Ok(Err(_)) = sent.await {
                    break;
                }
                seq += 1;
            }
            ExitReason::Normal
        });
    }
    girder_testkit::eventually("a's send queue to fill", || {
        matches!(remote_sink.send(Tag(9, 0)), Err(SendError::Full(_))).then_some(())
    })
    .await;

    let lookup = {
        let (a, name) = (a.clone(), b.name().clone());
        tokio::spawn(async move { a.whereis(&name, "healthy").await })
    };
    let remote_victim = a.remote::<()>(b.name(), victim.pid());
    let exited = tokio::spawn(async move { remote_victim.wait_exit().await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !lookup.is_finished(),
        "the lookup waits for room: {lookup:?}"
    );
    assert!(!exited.is_finished(), "the monitor waits for room");

    // The slow receiver takes its messages: B's delivery goes on and everything drains.
    gate_tx.send(()).unwrap();
    let found = within("the lookup", lookup).await.unwrap();
    assert_eq!(found, Ok(Some(a.pid_on(b.name(), sink.pid()))));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (node, pid) = (b.node().clone(), victim.pid());
    girder_testkit::eventually("the monitor to arrive", move || {
        (node.process_info(pid)?.monitored_by == 1).then_some(())
    })
    .await;
    b.node().exit(victim.pid(), ExitReason::Kill);
    assert_eq!(
        within("the monitor", exited).await.unwrap(),
        ExitReason::Killed
    );
    assert!(a.connected().contains(b.name()));
    while let Ok(ev) = events.try_recv() {
        assert!(
            !matches!(ev, NodeEvent::Down { .. }),
            "no connection lost: {ev:?}"
        );
    }
}
