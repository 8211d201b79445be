//! Membership under a datagram flood on loopback: garbage, forged and replayed datagrams sent
//! as fast as one thread can must not make a healthy member look down, and a replayed
//! announcement of a member that is gone must not bring it back.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_dist::membership::{Member, MemberEvent, Membership, MembershipConfig};
use girder_dist::{Cookie, NodeName};
use girder_testkit::dist::until_members;

fn cookie() -> Cookie {
    Cookie::new("flood-test-cookie-0123456789").unwrap()
}

fn config() -> MembershipConfig {
    MembershipConfig {
        cookie: Some(cookie()),
        ..MembershipConfig::default()
    }
}

async fn start(node: &girder::Node, name: &str, seeds: &[SocketAddr]) -> Membership {
    let me = Member {
        name: NodeName::new(name).unwrap(),
        addr: "127.0.0.1:0".parse().unwrap(),
        creation: 1,
        roles: Vec::new(),
    };
    Membership::start(node, me, seeds, config()).await.unwrap()
}

/// One valid datagram of a real member: a third member is started with a plain UDP socket
/// as its only seed, and its first announcement is captured there. Also where it was sent.
async fn capture_a_real_datagram(node: &girder::Node) -> (Vec<u8>, Membership, SocketAddr) {
    let trap = UdpSocket::bind("127.0.0.1:0").unwrap();
    trap.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let c = start(node, "c@127.0.0.1", &[trap.local_addr().unwrap()]).await;
    let mut buf = vec![0u8; 65_536];
    let n = tokio::task::block_in_place(|| trap.recv(&mut buf)).unwrap();
    buf.truncate(n);
    (buf, c, trap.local_addr().unwrap())
}

struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    /// Sends `per_second` datagrams a second to `to`, cycling through `kinds`; those marked
    /// get a new sequence number each time (a forger's fresh datagram, which only the key can
    /// tell from a real one).
    fn start(to: SocketAddr, per_second: u64, mut kinds: Vec<(Vec<u8>, bool)>) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                let started = Instant::now();
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let due = started.elapsed().as_secs_f64() * per_second as f64;
                    if (n as f64) >= due {
                        std::thread::sleep(Duration::from_micros(200));
                        continue;
                    }
                    let k = n as usize % kinds.len();
                    let (datagram, fresh) = &mut kinds[k];
                    if *fresh {
                        datagram[17..25].copy_from_slice(&n.to_be_bytes());
                    }
                    let _ = socket.send_to(datagram, to);
                    n += 1;
                    sent.store(n, Ordering::Relaxed);
                }
            })
        };
        Flood {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.sent.load(Ordering::Relaxed)
    }
}

fn rate() -> u64 {
    std::env::var("GIRDER_FLOOD_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

fn seconds() -> u64 {
    std::env::var("GIRDER_FLOOD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_forged_and_replayed_datagrams_causes_no_false_down() {
    let node = girder::Node::new("flood");
    let mut a = start(&node, "a@127.0.0.1", &[]).await;
    let mut b = start(&node, "b@127.0.0.1", &[a.me().addr]).await;
    let (replayed, c, _) = capture_a_real_datagram(&node).await;
    until_members(&mut a, 1).await;
    until_members(&mut b, 1).await;
    drop(c);
    // Let a and b see c come and go before the flood, so the only downs left are false ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut a_events, mut b_events) = (a.subscribe(), b.subscribe());

    let mut forged = replayed.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let garbage: Vec<u8> = (0..600u32).map(|i| (i * 7919) as u8).collect();
    let flood = Flood::start(
        a.me().addr,
        rate(),
        vec![(garbage, false), (forged, true), (replayed.clone(), false)],
    );
    let started = Instant::now();
    let mut downs = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        for events in [&mut a_events, &mut b_events] {
            while let Ok(e) = events.try_recv() {
                if let MemberEvent::Down(m) = e {
                    if m.name.as_str() != "c@127.0.0.1" {
                        downs.push((started.elapsed(), m.name.to_string()));
                    }
                }
            }
        }
    }
    let sent = flood.stop();
    let secs = started.elapsed().as_secs_f64();
    let stats = a.datagram_stats();
    eprintln!(
        "flood: {sent} datagrams in {secs:.1} s ({:.0}/s); {stats:?}",
        sent as f64 / secs
    );
    assert!(downs.is_empty(), "false downs under the flood: {downs:?}");
    assert_eq!(
        a.members().len(),
        1,
        "a still sees b (and not c): {:?}",
        a.members()
    );
    // Each kind was seen and dropped for what it is (the kernel may drop some of the flood).
    assert!(stats.malformed > 0 && stats.replayed > 0, "{stats:?}");
    assert!(
        stats.unauthenticated > 0 && stats.rate_limited > 0,
        "{stats:?}"
    );
    assert!(stats.dropped() > sent / 10, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_announcement_does_not_bring_back_a_member_after_a_restart() {
    let node = girder::Node::new("replay");
    // c's announcement to an address, recorded; a starts there later.
    let (recorded, c, at) = capture_a_real_datagram(&node).await;
    let start_at = async || {
        let me = Member {
            name: NodeName::new("a@127.0.0.1").unwrap(),
            addr: at,
            creation: 1,
            roles: Vec::new(),
        };
        let cfg = MembershipConfig {
            freshness: Duration::from_secs(1),
            ..config()
        };
        Membership::start(&node, me, &[], cfg).await.unwrap()
    };
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();

    // While fresh, the recording is as good as the real thing: it introduces c.
    let mut a = start_at().await;
    sender.send_to(&recorded, at).unwrap();
    until_members(&mut a, 1).await;
    assert_eq!(a.members()[0].name.as_str(), "c@127.0.0.1");

    // c dies; a restarts (no memory of what it has seen) and gets the recording once it is
    // older than the freshness window: c stays dead.
    drop(c);
    drop(a);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let a = start_at().await;
    for _ in 0..5 {
        sender.send_to(&recorded, at).unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut events = a.subscribe();
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(seen.is_empty(), "resurrected: {seen:?}");
    let stats = a.datagram_stats();
    assert_eq!((stats.received, stats.stale), (5, 5), "{stats:?}");
}
