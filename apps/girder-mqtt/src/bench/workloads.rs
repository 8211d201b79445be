//! The workloads: messages through the broker (fan-in, fan-out, point-to-point pairs) at full
//! rate or paced, and idle connections.
//!
//! Every client is a tokio task of the bench process, so all of them read one clock: a
//! publisher writes the nanoseconds since the run's start into the first eight bytes of each
//! 64-byte payload, and a subscriber takes the difference when it reads the message
//! (end-to-end latency: publisher's socket, broker, subscriber's socket).
//!
//! A run has three phases on that clock: a warm-up (publishing, not counted), the window
//! (deliveries read in it are counted and their latencies recorded), and a drain after the
//! publishers stop, in which subscribers read what is still on its way (counted in
//! `delivered` for `delivered_pct`, not in the rate).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use girder_mqtt::codec::connect::QoS;
use girder_mqtt::codec::PacketType;
use hdrhistogram::Histogram;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use super::brokers::Running;
use super::client::{read_publish, write_puback, write_publish, Client};

/// A workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 100 publishers to 1 subscriber, one topic.
    FanIn,
    /// 1 publisher to 1,000 subscribers of one topic.
    FanOut,
    /// 1,000 publisher–subscriber pairs, a topic each.
    P2p,
    /// 15,000 connections that only connect.
    Idle,
}

impl Workload {
    /// Its name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::FanIn => "fan_in",
            Workload::FanOut => "fan_out",
            Workload::P2p => "p2p",
            Workload::Idle => "idle",
        }
    }
}

/// At full rate or paced below saturation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Publishers send as fast as the broker takes (QoS 1: a window of [`WINDOW`] unacknowledged
    /// messages each).
    Max,
    /// Publishers send at a fixed rate, well below what every broker measured takes.
    Paced,
}

impl Mode {
    /// Its name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Max => "max",
            Mode::Paced => "paced",
        }
    }
}

/// QoS 1 messages a publisher has sent and not yet seen acknowledged, at most.
pub const WINDOW: usize = 20;

/// Messages a publisher writes at once at full rate (QoS 0), all with one stamp.
const BATCH: usize = 16;

/// Clients connecting at once while a run is set up.
const CONNECTING: usize = 64;

/// The clients of a run and their paced rate.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Publishers.
    pub pubs: usize,
    /// Subscribers.
    pub subs: usize,
    /// Messages per second each publisher sends when paced.
    pub paced_rate: f64,
}

impl Shape {
    /// The shape of `w` at `scale`: below 0.1 the client counts shrink with it (a smoke run);
    /// from 0.1 up they are the issue's.
    pub fn of(w: Workload, scale: f64) -> Shape {
        let n = |full: usize| ((full as f64 * (scale * 10.0).min(1.0)).round() as usize).max(1);
        // Paced: 10,000 deliveries per second at full size, in every workload.
        match w {
            Workload::FanIn => Shape {
                pubs: n(100),
                subs: 1,
                paced_rate: 100.0,
            },
            Workload::FanOut => Shape {
                pubs: 1,
                subs: n(1000),
                paced_rate: 10.0,
            },
            Workload::P2p => Shape {
                pubs: n(1000),
                subs: n(1000),
                paced_rate: 10.0,
            },
            Workload::Idle => Shape {
                pubs: 0,
                subs: n(15_000),
                paced_rate: 0.0,
            },
        }
    }

    /// Deliveries each published message makes.
    fn fan(&self, w: Workload) -> u64 {
        match w {
            Workload::FanOut => self.subs as u64,
            _ => 1,
        }
    }

    fn topic(w: Workload, i: usize) -> String {
        match w {
            Workload::P2p => format!("bench/p2p/{i}"),
            _ => format!("bench/{}", w.name()),
        }
    }
}

/// How long the phases of a run last.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Publishing before the window.
    pub warmup: Duration,
    /// Counted.
    pub window: Duration,
    /// Reading after the publishers stop.
    pub drain: Duration,
}

/// What a messaging run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Deliveries read in the window, per second.
    pub msgs_per_s: f64,
    /// End-to-end latency of those, median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Messages published (whole run).
    pub sent: u64,
    /// Deliveries read (whole run, drain included).
    pub delivered: u64,
    /// Deliveries due: published × subscribers each reaches.
    pub expected: u64,
    /// Deliveries per second asked for (paced).
    pub target_msgs_per_s: Option<f64>,
    /// Clients connected.
    pub clients: usize,
}

/// What an idle run measured.
#[derive(Debug, Clone)]
pub struct IdleOutcome {
    /// Connections held.
    pub conns: usize,
    /// CONNECT to CONNACK, all of them, per second.
    pub connects_per_s: f64,
    /// The broker's resident memory grown per connection, kB.
    pub kb_per_conn: f64,
    /// The same clients (new client ids) connecting again once the first ones have gone, per
    /// second: a reconnect storm, as after a network blip, into memory the broker has held
    /// before (the first wave's rate includes first touching it).
    pub reconnects_per_s: f64,
}

fn err(what: &str) -> impl Fn(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The runtimes the clients of a messaging run live on: one worker thread for the subscribers
/// and one for the publishers, so that in fan-in the lone subscriber is not one task among a
/// hundred busy publishers on the same threads (the load generator would then measure its own
/// scheduling, not the broker).
pub struct Sides {
    /// Subscribers' runtime.
    pub subs: Handle,
    /// Publishers' runtime.
    pub pubs: Handle,
}

/// Connects `n` clients (`CONNECTING` at a time) on `rt`, each subscribing to `filter(i)` if
/// given. `CONNECTING` tasks take the next client number in turn, rather than a task per
/// client: the idle run's 15,000 tasks cost the load generator CPU the broker under test
/// would not get on a 2-core machine.
async fn connect_many(
    rt: &Handle,
    addr: SocketAddr,
    n: usize,
    prefix: &str,
    filter: Option<(&dyn Fn(usize) -> String, QoS)>,
) -> Result<Vec<Client>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    // The filters, made up front: the tasks outlive this borrow.
    let filters: Option<(Arc<Vec<String>>, QoS)> =
        filter.map(|(f, q)| (Arc::new((0..n).map(f).collect()), q));
    let mut set = JoinSet::new();
    for _ in 0..CONNECTING.min(n) {
        let (next, prefix, filters) = (next.clone(), prefix.to_string(), filters.clone());
        set.spawn_on(
            async move {
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok::<_, String>(mine);
                    }
                    let id = format!("{prefix}-{i}");
                    let mut c = Client::connect(addr, &id).await.map_err(err(&id))?;
                    if let Some((f, q)) = &filters {
                        c.subscribe(&f[i], *q).await.map_err(err(&id))?;
                    }
                    mine.push((i, c));
                }
            },
            rt,
        );
    }
    let mut clients: Vec<Option<Client>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        for (i, c) in r.map_err(|e| e.to_string())?? {
            clients[i] = Some(c);
        }
    }
    Ok(clients.into_iter().flatten().collect())
}

struct Received {
    hist: Histogram<u64>,
    in_window: u64,
    total: u64,
}

/// Reads until `stop`, counting the deliveries read in `[t0, t1)` (nanoseconds on `clock`)
/// and recording their latency; acknowledges QoS 1 messages.
async fn subscriber(
    mut c: Client,
    clock: Instant,
    (t0, t1): (u64, u64),
    stop: Instant,
) -> io::Result<Received> {
    let mut got = Received {
        hist: Histogram::new_with_bounds(1, 600_000_000, 2).expect("valid bounds"),
        in_window: 0,
        total: 0,
    };
    let mut acks = BytesMut::with_capacity(1024);
    loop {
        match timeout_at(stop.into(), c.reader.fill()).await {
            Err(_) | Ok(Ok(false)) => break,
            Ok(Err(e)) => return Err(e),
            Ok(Ok(true)) => {}
        }
        // Everything in this read arrived by now.
        let now = clock.elapsed().as_nanos() as u64;
        let counted = (t0..t1).contains(&now);
        c.reader.each(|h, body| {
            if h.kind != PacketType::Publish {
                return Ok(());
            }
            let (qos, id, stamp) = read_publish(h, body)?;
            got.total += 1;
            if counted {
                got.in_window += 1;
                got.hist
                    .saturating_record((now.saturating_sub(stamp) / 1000).max(1));
            }
            if let (QoS::AtLeastOnce, Some(id)) = (qos, id) {
                write_puback(&mut acks, id);
            }
            Ok(())
        })?;
        if !acks.is_empty() {
            c.writer.write_all(&acks).await?;
            acks.clear();
        }
    }
    Ok(got)
}

/// How a publisher sends.
#[derive(Clone, Copy)]
struct Pace {
    clock: Instant,
    begin: Duration,
    stop: Duration,
    /// Paced: the time between messages and this publisher's offset in it.
    period: Option<(Duration, Duration)>,
    qos: QoS,
}

/// Publishes to `topic` from `begin` to `stop`; returns how many it sent.
async fn publisher(c: Client, topic: String, p: Pace) -> io::Result<u64> {
    let Client {
        mut reader,
        mut writer,
    } = c;
    // Acknowledgements return window slots; a QoS 0 publisher's reader only drains.
    let window = Arc::new(Semaphore::new(WINDOW));
    let acks = {
        let window = window.clone();
        tokio::spawn(async move {
            while let Ok(true) = reader.fill().await {
                let mut n = 0;
                let _ = reader.each(|h, _| {
                    n += (h.kind == PacketType::PubAck) as usize;
                    Ok(())
                });
                window.add_permits(n);
            }
        })
    };
    let at = |d: Duration| tokio::time::Instant::from_std(p.clock + d);
    let hard_stop = at(p.stop + Duration::from_secs(5));
    let mut out = BytesMut::with_capacity(BATCH * 80);
    let mut id: u16 = 0;
    let mut sent = 0u64;
    let mut next = p.begin + p.period.map_or(Duration::ZERO, |(_, phase)| phase);
    loop {
        if p.period.is_some() {
            tokio::time::sleep_until(at(next)).await;
        } else if sent == 0 {
            tokio::time::sleep_until(at(p.begin)).await;
        }
        if p.clock.elapsed() >= p.stop {
            break;
        }
        let mut k = match p.period {
            Some(_) => 1,
            None if p.qos == QoS::AtMostOnce => BATCH,
            None => BATCH.min(WINDOW),
        };
        if p.qos == QoS::AtLeastOnce {
            // One slot, waiting for it, then what else is free up to the batch.
            match timeout_at(at(p.stop), window.acquire()).await {
                Ok(Ok(permit)) => permit.forget(),
                _ => break,
            }
            let mut more = 0;
            while more + 1 < k {
                match window.try_acquire() {
                    Ok(permit) => permit.forget(),
                    Err(_) => break,
                }
                more += 1;
            }
            k = more + 1;
        }
        let stamp = p.clock.elapsed().as_nanos() as u64;
        for _ in 0..k {
            id = id.wrapping_add(1).max(1);
            write_publish(&mut out, &topic, p.qos, id, stamp);
        }
        match timeout_at(hard_stop, writer.write_all(&out)).await {
            Ok(r) => r?,
            Err(_) => break,
        }
        out.clear();
        sent += k as u64;
        if let Some((period, _)) = p.period {
            next += period;
        }
    }
    acks.abort();
    Ok(sent)
}

/// Runs workload `w` (not idle) against the broker at `addr`.
pub async fn messaging(
    sides: &Sides,
    addr: SocketAddr,
    w: Workload,
    qos: QoS,
    mode: Mode,
    shape: Shape,
    timing: Timing,
) -> Result<Outcome, String> {
    let filter = |i: usize| Shape::topic(w, i);
    let subs = connect_many(
        &sides.subs,
        addr,
        shape.subs,
        "bench-sub",
        Some((&filter, qos)),
    )
    .await?;
    let pubs = connect_many(&sides.pubs, addr, shape.pubs, "bench-pub", None).await?;
    let clock = Instant::now();
    let begin = Duration::from_millis(50);
    let t0 = begin + timing.warmup;
    let t1 = t0 + timing.window;
    let nanos = |d: Duration| d.as_nanos() as u64;
    let mut receivers = JoinSet::new();
    for c in subs {
        receivers.spawn_on(
            subscriber(c, clock, (nanos(t0), nanos(t1)), clock + t1 + timing.drain),
            &sides.subs,
        );
    }
    let period = Duration::from_secs_f64(1.0 / shape.paced_rate);
    let mut senders = JoinSet::new();
    for (i, c) in pubs.into_iter().enumerate() {
        let pace = Pace {
            clock,
            begin,
            stop: t1,
            period: (mode == Mode::Paced).then(|| (period, period * i as u32 / shape.pubs as u32)),
            qos,
        };
        senders.spawn_on(publisher(c, Shape::topic(w, i), pace), &sides.pubs);
    }
    let mut sent = 0;
    while let Some(r) = senders.join_next().await {
        sent += r.map_err(|e| e.to_string())?.map_err(err("publisher"))?;
    }
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 2).expect("valid bounds");
    let (mut in_window, mut delivered) = (0, 0);
    while let Some(r) = receivers.join_next().await {
        let got = r.map_err(|e| e.to_string())?.map_err(err("subscriber"))?;
        hist.add(&got.hist).expect("same bounds");
        in_window += got.in_window;
        delivered += got.total;
    }
    let target =
        (mode == Mode::Paced).then(|| shape.paced_rate * shape.pubs as f64 * shape.fan(w) as f64);
    Ok(Outcome {
        msgs_per_s: in_window as f64 / timing.window.as_secs_f64(),
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
        sent,
        delivered,
        expected: sent * shape.fan(w),
        target_msgs_per_s: target,
        clients: shape.pubs + shape.subs,
    })
}

/// Opens `n` connections to `broker` and holds them: how fast they connected and how much
/// the broker's resident memory grew for them, measured after `settle`.
pub async fn idle(broker: &Running, n: usize, settle: Duration) -> Result<IdleOutcome, String> {
    let before = broker.memory().ok_or("the broker is gone")?;
    let start = Instant::now();
    let held = connect_many(&Handle::current(), broker.addr, n, "bench-idle", None).await?;
    let took = start.elapsed();
    tokio::time::sleep(settle).await;
    let after = broker.memory().ok_or("the broker is gone")?;
    let grown = after.rss_kb.saturating_sub(before.rss_kb);
    let conns = held.len();
    drop(held);
    // The broker ends the first wave's sessions (clean start), then a second wave comes.
    tokio::time::sleep(settle * 2).await;
    let start = Instant::now();
    let again = connect_many(&Handle::current(), broker.addr, n, "bench-again", None).await?;
    let took_again = start.elapsed();
    let out = IdleOutcome {
        conns,
        connects_per_s: conns as f64 / took.as_secs_f64(),
        kb_per_conn: grown as f64 / conns as f64,
        reconnects_per_s: again.len() as f64 / took_again.as_secs_f64(),
    };
    drop(again);
    Ok(out)
}
