//! `girder loadgen --mqtt HOST:PORT`: the same stepped, open-loop load against an MQTT broker
//! (girder-mqtt, Mosquitto, any 3.1.1 broker). Each arrival is one PUBLISH (64 bytes, a
//! sequence number first) from one of `--publishers` connections, taking turns; it succeeds
//! when a subscriber on another connection has received it, within `--timeout` of its
//! scheduled arrival, so the latency is end to end: publisher, broker, subscriber. A message
//! lost (QoS 0 dropped by a broker that is behind) times out and counts as an error.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::sync::oneshot;

use super::drive::paced;
use super::{LoadgenArgs, Step};

/// `HOST:PORT`, resolved.
pub fn parse(s: &str) -> Result<SocketAddr, String> {
    let bad =
        |why: String| format!("--mqtt {s:?}: {why} (expected HOST:PORT, e.g. 127.0.0.1:1883)");
    s.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

/// The broker as loadgen sees it: publishers taking turns, one subscriber, and the messages
/// on their way.
struct Probe {
    publishers: Vec<AsyncClient>,
    turn: AtomicUsize,
    seq: AtomicU64,
    pending: Pending,
    topic: String,
    qos: QoS,
    /// Kept: dropping the handle would end the subscriber's connection.
    _subscriber: AsyncClient,
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Connects a client and waits for its CONNACK; its event loop then runs in a task that hands
/// each incoming PUBLISH's payload to `on_publish`.
async fn connect(
    id: String,
    addr: SocketAddr,
    on_publish: impl Fn(&[u8]) + Send + 'static,
) -> Result<AsyncClient, String> {
    let mut o = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o.set_inflight(100);
    let (client, mut el): (AsyncClient, EventLoop) = AsyncClient::new(o, 10_000);
    let connack = async {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(a))) => {
                    return match a.code {
                        rumqttc::ConnectReturnCode::Success => Ok(()),
                        code => Err(format!("the broker refused the connection: {code:?}")),
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), connack)
        .await
        .map_err(|_| "no CONNACK within 10 s".to_string())??;
    tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => on_publish(&p.payload),
                Ok(_) => {}
                Err(e) => {
                    eprintln!("loadgen: an MQTT connection ended: {e}");
                    break;
                }
            }
        }
    });
    Ok(client)
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>;

impl Probe {
    async fn start(args: &LoadgenArgs, addr: SocketAddr) -> Result<Arc<Probe>, String> {
        let me = std::process::id();
        let topic = format!("girder-loadgen/{me}");
        let qos = qos(args.qos);
        let pending: Pending = Arc::default();
        // The subscriber completes each message's call as it arrives.
        let arrived = pending.clone();
        let sub = connect(format!("loadgen-{me}-sub"), addr, move |payload| {
            let Some(seq) = payload.get(..8) else { return };
            let seq = u64::from_be_bytes(seq.try_into().expect("8 bytes"));
            if let Some(tx) = arrived.lock().expect("not poisoned").remove(&seq) {
                let _ = tx.send(());
            }
        })
        .await?;
        sub.subscribe(&topic, qos)
            .await
            .map_err(|e| e.to_string())?;
        let mut publishers = Vec::with_capacity(args.publishers);
        for i in 0..args.publishers.max(1) {
            publishers.push(connect(format!("loadgen-{me}-pub{i}"), addr, |_| {}).await?);
        }
        // The SUBACK is not awaited: a first message makes sure the subscription is in place.
        let probe = Arc::new(Probe {
            publishers,
            turn: AtomicUsize::new(0),
            seq: AtomicU64::new(0),
            pending,
            topic,
            qos,
            _subscriber: sub,
        });
        let first = Instant::now();
        loop {
            let (tx, rx) = oneshot::channel();
            probe
                .pending
                .lock()
                .expect("not poisoned")
                .insert(u64::MAX, tx);
            let mut payload = vec![0u8; 64];
            payload[..8].copy_from_slice(&u64::MAX.to_be_bytes());
            probe.publishers[0]
                .publish(&probe.topic, QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| e.to_string())?;
            if tokio::time::timeout(Duration::from_millis(500), rx)
                .await
                .is_ok()
            {
                return Ok(probe);
            }
            if first.elapsed() > Duration::from_secs(10) {
                return Err("a message published did not reach the subscriber in 10 s".into());
            }
        }
    }
}

/// Runs every step in `offered` against the broker at `addr`, calling `each` with each result.
pub fn run(
    args: &LoadgenArgs,
    addr: SocketAddr,
    offered: &[f64],
    mut each: impl FnMut(&Step),
) -> Result<Vec<Step>, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let unreachable = |why: String| format!("cannot use the MQTT broker at {addr}: {why}");
        let probe = Probe::start(args, addr).await.map_err(unreachable)?;
        let mut steps = Vec::with_capacity(offered.len());
        for &rate in offered {
            let s = step(&probe, args, rate).await;
            each(&s);
            steps.push(s);
        }
        Ok(steps)
    })
}

async fn step(probe: &Arc<Probe>, args: &LoadgenArgs, rate: f64) -> Step {
    paced(args, rate, |arrival, rec| {
        let probe = probe.clone();
        let timeout = args.timeout;
        tokio::spawn(async move {
            let seq = probe.seq.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            probe.pending.lock().expect("not poisoned").insert(seq, tx);
            let n = probe.publishers.len();
            let client = &probe.publishers[probe.turn.fetch_add(1, Ordering::Relaxed) % n];
            let mut payload = vec![0u8; 64];
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            let deadline = tokio::time::Instant::from_std(arrival + timeout);
            let ok = matches!(
                tokio::time::timeout_at(deadline, async {
                    client
                        .publish(&probe.topic, probe.qos, false, payload)
                        .await
                        .map_err(|_| ())?;
                    rx.await.map_err(|_| ())
                })
                .await,
                Ok(Ok(()))
            );
            if !ok {
                probe.pending.lock().expect("not poisoned").remove(&seq);
            }
            rec.resolve(arrival, ok);
        });
    })
    .await
}
