//! `attack`: the main attacks of issue 13 replayed against two running `girder node` processes
//! (a and b, connected, on loopback), with what each costs and what it changes. This process is
//! the attacker; it knows the cookie only where a phase says so.
//!
//! * `hello_flood_connected_pct`: Hellos without the cookie, claiming to be b with ever newer
//!   creations, from 8 connections at a time for 20 s: the share of that time a stayed
//!   connected to b (must be 100), and `refused_per_s`, how many such handshakes a refused a
//!   second.
//! * `handshakes_per_s`: handshakes with the cookie (a new name each, 8 at a time) that a
//!   completes a second.
//! * `pending_bytes`: a's resident memory per connection that connected and said nothing,
//!   held at the listener's bound (256, from 16 source addresses).
//! * `udp_false_downs`: member-down or connection-lost reports on a or b while a's membership
//!   port takes 200,000 datagrams a second for 60 s (garbage, forgeries with fresh sequence
//!   numbers, replays of a real member's datagram); must be 0. `udp_sent_per_s` is the rate
//!   reached, `udp_cpu_pct` what a spent meanwhile (percent of one core).
//!
//! Durations and counts scale with `--scale`.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use girder_dist::handshake::{self, HandshakeConfig};
use girder_dist::membership::{Member, Membership, MembershipConfig};
use girder_dist::{Cookie, NodeName};

use crate::child::NodeProcess as Proc;

use super::Outcome;

const COOKIE: &str = "girder-bench-attack-cookie-0123456789";
const WRONG: &str = "not-the-cluster-cookie-at-all-000";
const A: &str = "a@127.0.0.1";
const B: &str = "b@127.0.0.1";

pub fn run(scale: f64, schedulers: usize) -> Result<Outcome, String> {
    let sched = schedulers.to_string();
    let cookie = std::env::temp_dir().join(format!("girder-bench-attack-{}", std::process::id()));
    girder_dist::write_secret_file(&cookie, &format!("{COOKIE}\n")).map_err(|e| e.to_string())?;
    let c = cookie.to_str().ok_or("temp path is not UTF-8")?;
    let node = |name: &str, seed: Option<&str>| {
        let mut args = vec![
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--cookie-file",
            c,
            "--schedulers",
            &sched,
        ];
        if let Some(s) = seed {
            args.extend(["--seed", s]);
        }
        Proc::start(&args)
    };
    let a = node(A, None)?;
    let addr_text = a.wait_up(Duration::from_secs(10))?;
    let b = node(B, Some(&addr_text))?;
    a.wait_for(&format!("connected to {B}"), Duration::from_secs(10))?;
    let addr: SocketAddr = addr_text.parse().map_err(|e| format!("{addr_text}: {e}"))?;
    let _ = std::fs::remove_file(&cookie);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let secs = |full: f64| Duration::from_secs_f64((full * scale).max(1.0));

    // Let the pair settle, then forget what was said so far.
    std::thread::sleep(Duration::from_millis(500));
    a.drain();
    let (connected_pct, refused_per_s) = rt.block_on(hello_flood(addr, &a, secs(20.0)))?;
    let handshakes = ((2_000.0 * scale).round() as usize).max(50);
    let handshakes_per_s = rt.block_on(handshakes_with_the_cookie(addr, handshakes))?;
    let pending_bytes = rt.block_on(pending_memory(addr, &a))?;
    let (false_downs, sent_per_s, cpu_pct) = udp_flood(&rt, addr, &a, &b, secs(60.0))?;
    Ok(Outcome {
        workload: "attack",
        values: vec![
            ("hello_flood_connected_pct", connected_pct),
            ("refused_per_s", refused_per_s),
            ("handshakes_per_s", handshakes_per_s),
            ("pending_bytes", pending_bytes),
            ("udp_false_downs", false_downs as f64),
            ("udp_sent_per_s", sent_per_s),
            ("udp_cpu_pct", cpu_pct),
        ],
    })
}

fn hs_config(name: &str, creation: u32, cookie: &str) -> HandshakeConfig {
    let mut cfg = HandshakeConfig::new(
        NodeName::new(name).expect("a valid name"),
        creation,
        Cookie::new(cookie).expect("a valid cookie"),
    );
    cfg.timeout = Duration::from_secs(5);
    cfg
}

/// Hellos without the cookie claiming to be b, 8 at a time; the share of the time a stayed
/// connected to b (from a's own reports), and refusals a second.
async fn hello_flood(addr: SocketAddr, a: &Proc, length: Duration) -> Result<(f64, f64), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU64::new(0));
    let creation = Arc::new(AtomicU64::new(u64::from(u32::MAX / 2)));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (stop, refused, creation) = (stop.clone(), refused.clone(), creation.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let newer = creation.fetch_add(1, Ordering::Relaxed) as u32;
                let cfg = hs_config(B, newer, WRONG);
                if handshake::initiate(stream, &cfg).await.is_err() {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let started = Instant::now();
    let mut down_since: Option<Instant> = None;
    let mut down = Duration::ZERO;
    while started.elapsed() < length {
        tokio::time::sleep(Duration::from_millis(20)).await;
        for line in a.drain() {
            if line.contains(&format!("connection to {B} lost")) {
                down_since.get_or_insert_with(Instant::now);
            } else if line.contains(&format!("connected to {B}")) {
                if let Some(at) = down_since.take() {
                    down += at.elapsed();
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let length = started.elapsed();
    if let Some(at) = down_since {
        down += at.elapsed();
    }
    let connected = 100.0 * (1.0 - down.as_secs_f64() / length.as_secs_f64());
    Ok((
        connected,
        refused.load(Ordering::Relaxed) as f64 / length.as_secs_f64(),
    ))
}

/// `n` handshakes with the cookie, a new name each, 8 at a time: completed a second.
async fn handshakes_with_the_cookie(addr: SocketAddr, n: usize) -> Result<f64, String> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n as u64 {
                    return Ok::<(), String>(());
                }
                let stream = tokio::net::TcpStream::connect(addr)
                    .await
                    .map_err(|e| e.to_string())?;
                let cfg = hs_config(&format!("hs{i}@127.0.0.1"), 1, COOKIE);
                handshake::initiate(stream, &cfg)
                    .await
                    .map_err(|e| format!("handshake {i}: {e}"))?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn rss_bytes(pid: u32) -> Result<f64, String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmRSS")?;
    Ok(kb * 1024.0)
}

/// a's resident memory per silent connection, at the listener's bound: 16 from each of 16
/// loopback source addresses.
async fn pending_memory(addr: SocketAddr, a: &Proc) -> Result<f64, String> {
    let pid = a.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes(pid)?;
    let mut held = Vec::new();
    for source in 2..18u8 {
        for _ in 0..16 {
            let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
            socket
                .bind(SocketAddr::from(([127, 0, 0, source], 0)))
                .map_err(|e| e.to_string())?;
            held.push(socket.connect(addr).await.map_err(|e| e.to_string())?);
        }
    }
    // Accepted and waiting for a Hello (they are closed after the 5 s handshake timeout).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = rss_bytes(pid)?;
    drop(held);
    Ok(((during - before) / 256.0).max(0.0))
}

/// Sends `per_second` datagrams a second to `to` until `stop`, cycling through `kinds`; those
/// marked get a fresh sequence number each time. Returns how many were sent.
fn flood(
    to: SocketAddr,
    per_second: f64,
    mut kinds: Vec<(Vec<u8>, bool)>,
    stop: &AtomicBool,
) -> u64 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
    let started = Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if n as f64 >= started.elapsed().as_secs_f64() * per_second {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        let k = n as usize % kinds.len();
        let (datagram, fresh) = &mut kinds[k];
        if *fresh && datagram.len() > 25 {
            datagram[17..25].copy_from_slice(&n.to_be_bytes());
        }
        let _ = socket.send_to(datagram, to);
        n += 1;
    }
    n
}

/// A real member's datagram under the cookie: a member started here with a plain socket as its
/// seed announces itself there.
async fn recorded_datagram() -> Result<Vec<u8>, String> {
    let trap = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    trap.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let node = girder::Node::new("attacker");
    let me = Member {
        name: NodeName::new("recorded@127.0.0.1").expect("valid"),
        addr: "127.0.0.1:0".parse().expect("valid"),
        creation: 1,
        roles: Vec::new(),
    };
    let cfg = MembershipConfig {
        cookie: Some(Cookie::new(COOKIE).expect("valid")),
        ..MembershipConfig::default()
    };
    let seed = trap.local_addr().map_err(|e| e.to_string())?;
    let member = Membership::start(&node, me, &[seed], cfg)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_536];
    let n = tokio::task::block_in_place(|| trap.recv(&mut buf)).map_err(|e| e.to_string())?;
    drop(member);
    buf.truncate(n);
    Ok(buf)
}

/// Floods a's membership port; counts a's and b's reports of the other down.
fn udp_flood(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    a: &Proc,
    b: &Proc,
    length: Duration,
) -> Result<(usize, f64, f64), String> {
    let recorded = rt.block_on(recorded_datagram())?;
    let mut forged = recorded.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let garbage: Vec<u8> = (0..600u32).map(|i| (i * 7919) as u8).collect();
    let kinds = vec![(garbage, false), (forged, true), (recorded, false)];
    a.drain();
    b.drain();
    let cpu_before = cpu_seconds(a.child.id())?;
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let sent = std::thread::scope(|s| {
        let flooder = s.spawn(|| flood(addr, 200_000.0, kinds, &stop));
        std::thread::sleep(length);
        stop.store(true, Ordering::Relaxed);
        flooder.join().expect("the flooder")
    });
    let took = started.elapsed();
    let cpu = (cpu_seconds(a.child.id())? - cpu_before) / took.as_secs_f64();
    // Reports may trail the flood by a detection period.
    std::thread::sleep(Duration::from_secs(2));
    let downs = |p: &Proc, other: &str| {
        let lines: Vec<String> = p
            .drain()
            .into_iter()
            .filter(|l| {
                l.contains(&format!("member down: {other}"))
                    || l.contains(&format!("connection to {other} lost"))
            })
            .collect();
        for l in &lines {
            eprintln!("attack: false down reported: {l}");
        }
        lines.len()
    };
    Ok((
        downs(a, B) + downs(b, A),
        sent as f64 / took.as_secs_f64(),
        100.0 * cpu,
    ))
}

/// CPU time a process has used, user and system, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // The fields after the command (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').ok_or("no command in stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| "short stat".to_string())
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command; 100 ticks
    // a second on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
