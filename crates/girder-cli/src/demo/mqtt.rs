//! The demo's third act: girder-mqtt, the MQTT broker built on Girder, with simulated devices.
//!
//! Devices (rumqttc clients, a real MQTT library) connect with a will, announce themselves
//! with a retained status and send telemetry; a monitor subscribes to all of it. Then the act
//! does to the broker what the field does: devices die without a goodbye (their wills tell
//! the monitor), one device's id connects again from elsewhere (takeover), and a stranger
//! sends garbage (only its own connection ends). The broker's dashboard is up throughout.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use girder_mqtt::broker::Broker;
use girder_mqtt::config::Config;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::io::AsyncWriteExt;

const DEVICES: usize = 200;
const KILLED: usize = 20;
const EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Monitor {
    /// Latencies are recorded once every device is online (a device's first messages wait
    /// for its connection to be set up, which is not what is measured).
    measuring: std::sync::atomic::AtomicBool,
    telemetry: AtomicU64,
    latency_us: Mutex<Vec<u64>>,
    offline: Mutex<HashSet<String>>,
    online: Mutex<HashSet<String>>,
}

fn options(id: &str, port: u16) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(10));
    o
}

/// A device: online (retained), then a temperature every 100 ms, stamped with the time since
/// `t0`; its will says offline. Runs until its task is aborted (a crash: no DISCONNECT).
async fn device(i: usize, port: u16, t0: Instant, kicked: Arc<AtomicU64>) {
    let id = format!("device-{i:03}");
    let status = format!("devices/{id}/status");
    let mut o = options(&id, port);
    o.set_last_will(LastWill::new(&status, "offline", QoS::AtLeastOnce, true));
    let (client, mut events) = AsyncClient::new(o, 64);
    let temp = format!("devices/{id}/temp");
    tokio::spawn(async move {
        let _ = client
            .publish(&status, QoS::AtLeastOnce, true, "online")
            .await;
        loop {
            tokio::time::sleep(EVERY).await;
            let stamp = t0.elapsed().as_micros() as u64;
            if client
                .publish(&temp, QoS::AtMostOnce, false, stamp.to_string())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    // Polled until the broker ends the connection: 3.1.1 has no DISCONNECT from the server,
    // so a takeover shows as the broker closing the socket.
    while events.poll().await.is_ok() {}
    kicked.fetch_add(1, Ordering::Relaxed);
}

async fn monitor(port: u16, t0: Instant, m: Arc<Monitor>) {
    let (client, mut events) = AsyncClient::new(options("monitor", port), 1024);
    let _ = client.subscribe("devices/+/status", QoS::AtLeastOnce).await;
    let _ = client.subscribe("devices/+/temp", QoS::AtMostOnce).await;
    while let Ok(ev) = events.poll().await {
        let Event::Incoming(Packet::Publish(p)) = ev else {
            continue;
        };
        let device = p.topic.split('/').nth(1).unwrap_or("").to_string();
        if p.topic.ends_with("/temp") {
            m.telemetry.fetch_add(1, Ordering::Relaxed);
            if !m.measuring.load(Ordering::Relaxed) {
                continue;
            }
            if let Some(sent) = std::str::from_utf8(&p.payload)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                let now = t0.elapsed().as_micros() as u64;
                m.latency_us.lock().unwrap().push(now.saturating_sub(sent));
            }
        } else if &p.payload[..] == b"offline" {
            m.offline.lock().unwrap().insert(device);
        } else {
            m.online.lock().unwrap().insert(device);
        }
    }
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs the act on a node of its own.
pub async fn run() -> Result<(), String> {
    println!();
    println!("== act 3: girder-mqtt, an MQTT broker on Girder, with {DEVICES} simulated devices");
    let node = girder::Node::new("mqtt-demo");
    let ops = girder_ops::Ops::builder(&node)
        .serve("127.0.0.1:0".parse().expect("an address"))
        .await
        .map_err(|e| e.to_string())?;
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        http: None,
        data_dir: None,
        sys_interval_secs: 1,
        ..Config::default()
    };
    // Without the ops' alarm manager, so the act's output is not a line per client
    // (`girder-mqtt` itself logs each connect and disconnect, as Mosquitto does).
    let broker = Broker::start(&node, config)
        .await
        .map_err(|e| e.to_string())?;
    let port = broker.local_addr().port();
    println!(
        "-- broker on mqtt://{} ; dashboard http://{}/ (the broker's supervisors, alarms and mqtt_* metrics)",
        broker.local_addr(),
        ops.local_addr()
    );
    let t0 = Instant::now();
    let m = Arc::new(Monitor::default());
    let watcher = tokio::spawn(monitor(port, t0, m.clone()));
    until("the monitor subscribes", Duration::from_secs(10), || {
        broker.stats().subscriptions.get() >= 2
    })
    .await?;
    let kicked = Arc::new(AtomicU64::new(0));
    let mut devices: Vec<_> = (0..DEVICES)
        .map(|i| tokio::spawn(device(i, port, t0, kicked.clone())))
        .collect();
    until("every device online", Duration::from_secs(20), || {
        m.online.lock().unwrap().len() == DEVICES
    })
    .await?;
    println!(
        "-- {DEVICES} devices online in {:.1?}: each a connection process and a session process on the broker's node",
        t0.elapsed()
    );
    m.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Crashes: no DISCONNECT, the sockets just close. Their wills go out.
    let killed_at = Instant::now();
    for d in devices.iter().skip(DEVICES - KILLED) {
        d.abort();
    }
    until(
        "the wills of the crashed devices",
        Duration::from_secs(10),
        || m.offline.lock().unwrap().len() == KILLED,
    )
    .await?;
    println!(
        "-- {KILLED} devices crashed; the monitor had their {KILLED} wills (\"offline\") {:.1?} later",
        killed_at.elapsed()
    );

    // Takeover: device-000's id connects from elsewhere; the first connection is told 0x8E.
    let (thief, mut thief_events) = AsyncClient::new(options("device-000", port), 16);
    let thief_task = tokio::spawn(async move { while thief_events.poll().await.is_ok() {} });
    until("the takeover", Duration::from_secs(10), || {
        kicked.load(Ordering::Relaxed) == 1
    })
    .await?;
    println!(
        "-- a second connection as device-000 took its session over; the first was told to go"
    );

    // A stranger sends garbage: its connection alone ends.
    let before = m.telemetry.load(Ordering::Relaxed);
    let mut stranger = tokio::net::TcpStream::connect(broker.local_addr())
        .await
        .map_err(|e| e.to_string())?;
    let _ = stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").await;
    until(
        "the stranger's connection closed",
        Duration::from_secs(10),
        || broker.stats().protocol_errors.get() >= 1,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = m.telemetry.load(Ordering::Relaxed);
    println!(
        "-- a stranger sent HTTP to the MQTT port: its connection closed; the devices went on ({} messages in the next 0.5 s)",
        after - before
    );

    let elapsed = t0.elapsed();
    let stats = broker.stats();
    let mut lat = std::mem::take(&mut *m.latency_us.lock().unwrap());
    lat.sort_unstable();
    let pct = |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)));
    println!("== act 3 summary after {elapsed:.1?}");
    println!(
        "   telemetry delivered to the monitor: {} ({:.0}/s); device-to-monitor latency p50 {} µs, p99 {} µs",
        m.telemetry.load(Ordering::Relaxed),
        m.telemetry.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64(),
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0)
    );
    println!(
        "   broker: {} connected, {} sessions, {} subscriptions, {} retained, {} in / {} out, {} dropped, {} wills, {} protocol errors",
        stats.connections.get(),
        stats.sessions.get(),
        stats.subscriptions.get(),
        stats.retained.get(),
        stats.messages_in.get(),
        stats.messages_out.get(),
        stats.messages_dropped.get(),
        stats.wills_published.get(),
        stats.protocol_errors.get()
    );
    for d in devices.drain(..) {
        d.abort();
    }
    drop(thief);
    thief_task.abort();
    watcher.abort();
    broker.stop().await;
    drop(ops);
    println!("-- broker stopped");
    Ok(())
}
