//! What the broker shows of itself: `$SYS/broker/...` topics as Mosquitto names them, client
//! notices on the node's alarm manager (where the log, webhooks and the dashboard listen), and
//! the connection alarm.

#[path = "common/harness.rs"]
mod harness;

use harness::{found, run, WAIT};

use std::process::Command;
use std::time::Duration;

use girder_mqtt::config::Config;
use girder_ops::{AlarmManager, Notice};

/// `$SYS` every second, at most `max_connections` clients.
fn config(max_connections: usize) -> impl FnOnce(&mut Config, &std::path::Path) {
    move |c, _| {
        c.sys_interval_secs = 1;
        c.max_connections = max_connections;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_count_what_happened() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let b = harness::start_with(config(100)).await;
    let port = b.port.to_string();
    for i in 0..3 {
        let m = format!("m{i}");
        run(
            "mosquitto_pub",
            &["-p", &port, "-t", "a/b", "-m", &m, "-q", "1"],
            WAIT,
        )
        .await;
    }
    // Retained, so a subscriber gets the last value at once; updated every second: the
    // value read may be from before the messages, but not for long.
    let mut n = 0;
    for _ in 0..20 {
        let got = run(
            "mosquitto_sub",
            &[
                "-p",
                &port,
                "-t",
                "$SYS/broker/messages/received",
                "-C",
                "1",
                "-W",
                "10",
            ],
            WAIT,
        )
        .await
        .stdout;
        n = got.trim().parse().expect("a count");
        if n >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(n, 3, "three messages received");
    let version = run(
        "mosquitto_sub",
        &[
            "-p",
            &port,
            "-t",
            "$SYS/broker/version",
            "-C",
            "1",
            "-W",
            "10",
        ],
        WAIT,
    )
    .await
    .stdout;
    assert!(version.starts_with("girder-mqtt "), "{version}");
    let uptime = run(
        "mosquitto_sub",
        &[
            "-p",
            &port,
            "-t",
            "$SYS/broker/uptime",
            "-C",
            "1",
            "-W",
            "10",
        ],
        WAIT,
    )
    .await
    .stdout;
    assert!(uptime.trim().ends_with(" seconds"), "{uptime}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_announced_and_a_full_broker_raises_its_alarm() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let alarms = AlarmManager::new();
    let mut rx = alarms.subscribe();
    // Two connections allowed: two held open pass the alarm's line (90%).
    let b = harness::start_with_alarms(config(2), alarms.clone()).await;
    let port = b.port.to_string();
    let hold = |id: &'static str| {
        let port = port.clone();
        tokio::spawn(async move {
            run(
                "mosquitto_sub",
                &["-p", &port, "-i", id, "-t", "x", "-W", "4"],
                WAIT,
            )
            .await
            .stdout
        })
    };
    let (h1, h2) = (hold("holder-1"), hold("holder-2"));
    let mut connected = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !alarms.is_active("mqtt_connections_high") || connected.len() < 2 {
        let n = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the notices and the alarm in time")
            .unwrap();
        if let Notice::App { event, text, .. } = n {
            if event == "client_connected" {
                connected.push(text);
            }
        }
    }
    assert!(
        connected.iter().any(|t| t.starts_with("holder-1 ")),
        "{connected:?}"
    );
    // A third is refused while two are connected.
    let refused = Command::new("mosquitto_pub")
        .args(["-p", &port, "-t", "x", "-m", "y"])
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a third connection is refused");
    h1.await.unwrap();
    h2.await.unwrap();
    tokio::time::timeout(Duration::from_secs(15), async {
        while alarms.is_active("mqtt_connections_high") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the alarm clears once the clients are gone");
    b.stop().await;
}
