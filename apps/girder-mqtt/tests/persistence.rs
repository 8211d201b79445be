//! Persistent sessions and retained messages survive a broker restart (issue 15 §2), checked
//! with Mosquitto's own clients: a session subscribed with QoS 1 and gone offline, a message
//! published for it while it is away and a retained message; the broker stops (saving) and a
//! new broker starts on the same data directory; the client comes back and gets its message,
//! and a new subscriber gets the retained one.

#[path = "common/harness.rs"]
mod harness;

use harness::{found, run, WAIT};

use std::path::{Path, PathBuf};
use std::time::Duration;

use girder_mqtt::broker::Broker;
use girder_mqtt::config::Config;
use girder_mqtt::store::{SavedSession, Snapshot, Store};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("girder-mqtt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn broker(dir: &Path) -> Broker {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        http: None,
        data_dir: Some(dir.to_path_buf()),
        ..Config::default()
    };
    Broker::start(&girder::Node::new("mqtt-test"), config)
        .await
        .expect("the broker starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_retained_messages_survive_a_restart() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let dir = temp_dir("restart");
    let first = broker(&dir).await;
    let port = first.local_addr().port().to_string();
    for v in ["mqttv311", "mqttv5"] {
        let id = format!("keeper-{v}");
        // Subscribe with a session that outlives the connection, then go away (-E: exit once
        // subscribed). 5.0 asks for an expiry interval; 3.1.1's -c keeps it for ever.
        let mut args = vec![
            "-p", &port, "-V", v, "-i", &id, "-c", "-q", "1", "-t", "p/#", "-E",
        ];
        if v == "mqttv5" {
            args.extend(["-x", "3600"]);
        }
        run("mosquitto_sub", &args, WAIT).await;
    }
    run(
        "mosquitto_pub",
        &[
            "-p",
            &port,
            "-q",
            "1",
            "-t",
            "p/x",
            "-m",
            "while you were away",
        ],
        WAIT,
    )
    .await;
    run(
        "mosquitto_pub",
        &["-p", &port, "-q", "1", "-r", "-t", "r/x", "-m", "kept"],
        WAIT,
    )
    .await;
    first.stop().await;

    let second = broker(&dir).await;
    let port = second.local_addr().port().to_string();
    for v in ["mqttv311", "mqttv5"] {
        let id = format!("keeper-{v}");
        let mut args = vec![
            "-p", &port, "-V", v, "-i", &id, "-c", "-q", "1", "-t", "p/#", "-C", "1", "-W", "10",
        ];
        if v == "mqttv5" {
            args.extend(["-x", "3600"]);
        }
        let got = run("mosquitto_sub", &args, WAIT).await.stdout;
        assert_eq!(
            got.trim(),
            "while you were away",
            "{v}: the queued message after the restart"
        );
    }
    let got = run(
        "mosquitto_sub",
        &["-p", &port, "-t", "r/#", "-C", "1", "-W", "10", "-v"],
        WAIT,
    )
    .await
    .stdout;
    assert_eq!(got.trim(), "r/x kept");
    second.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_clean_session_is_not_saved_and_an_expired_one_is_not_restored() {
    let dir = temp_dir("expiry");
    let saved = |id: &str, expires_at_ms| SavedSession {
        client_id: id.into(),
        expiry: 60,
        expires_at_ms,
        subs: vec![],
        inflight: vec![],
        queue: vec![],
        awaiting_rel: vec![],
        username: None,
    };
    let past = girder_mqtt::store::wall_ms(std::time::Instant::now()) - 1_000;
    let store = Store::open(&dir).unwrap();
    store
        .save(&Snapshot {
            retained: vec![],
            sessions: vec![saved("gone", Some(past)), saved("kept", None)],
        })
        .unwrap();
    drop(store);
    let b = broker(&dir).await;
    // The expired one ends at once; the other stays.
    let node = b.shared().node.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while node.whereis("mqtt:session:gone").is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the expired session ends");
    assert!(node.whereis("mqtt:session:kept").is_some());
    b.stop().await;
    let snap = Store::open(&dir).unwrap().load().unwrap();
    let ids: Vec<_> = snap.sessions.iter().map(|s| s.client_id.as_str()).collect();
    assert_eq!(ids, vec!["kept"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
