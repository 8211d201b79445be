//! The webhook sink: a receiver that is down does not slow the node, and gets the notices, in
//! order, once it is back; a long outage drops the oldest beyond the queue's bound.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use girder::Node;
use girder_ops::webhook::{Webhook, WebhookConfig};
use girder_ops::{Alarm, AlarmManager, Severity};
use girder_testkit::eventually;
use girder_testkit::wait::when_failing;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A receiver on `port` that records every body.
async fn receiver(port: u16) -> Arc<Mutex<Vec<Value>>> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = Router::new().route(
        "/hook",
        post(move |Json(v): Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(v);
                "thanks"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    got
}

fn config(port: u16) -> WebhookConfig {
    let mut cfg = WebhookConfig::new(format!("http://127.0.0.1:{port}/hook"));
    cfg.first_backoff = Duration::from_millis(20);
    cfg.max_backoff = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(1);
    cfg
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_notices_in_order_once_back() {
    let port = free_port();
    let alarms = AlarmManager::new();
    let hook = Webhook::start(&Node::new("webhook"), &alarms, config(port));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let started = Instant::now();
    for i in 0..3 {
        alarms
            .raise(Alarm::new(
                format!("a{i}"),
                Severity::Warning,
                "test",
                "while the receiver is down",
            ))
            .unwrap();
    }
    alarms.clear("a1").unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "raising waited on the webhook"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(hook.stats().failed_attempts.load(Ordering::Relaxed) > 0);
    assert_eq!(hook.stats().delivered.load(Ordering::Relaxed), 0);

    let got = receiver(port).await;
    eventually(
        when_failing(|| format!("four deliveries (got {:?})", got.lock().unwrap())),
        || hook.stats().delivered.load(Ordering::Relaxed) >= 4,
    )
    .await;
    let got = got.lock().unwrap().clone();
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|v| {
            (
                v["kind"].as_str().unwrap().to_string(),
                v["alarm"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("alarm_raised", "a0"),
        ("alarm_raised", "a1"),
        ("alarm_raised", "a2"),
        ("alarm_cleared", "a1"),
    ];
    assert_eq!(
        seen,
        want.map(|(k, i)| (k.to_string(), i.to_string())).to_vec()
    );
    assert_eq!(hook.stats().dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_long_outage_drops_the_oldest_beyond_the_bound() {
    let port = free_port();
    let alarms = AlarmManager::new();
    let mut cfg = config(port);
    cfg.queue = 2;
    let hook = Webhook::start(&Node::new("webhook"), &alarms, cfg);
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 0..5 {
        alarms
            .raise(Alarm::new(
                format!("b{i}"),
                Severity::Info,
                "test",
                "outage",
            ))
            .unwrap();
    }
    eventually("three dropped", || {
        hook.stats().dropped.load(Ordering::Relaxed) >= 3
    })
    .await;
    let got = receiver(port).await;
    eventually("two delivered", || {
        hook.stats().delivered.load(Ordering::Relaxed) >= 2
    })
    .await;
    let ids: Vec<String> = got
        .lock()
        .unwrap()
        .iter()
        .map(|v| v["alarm"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["b3", "b4"], "the newest two are kept");
}
