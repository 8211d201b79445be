//! The `girder-mqtt` program itself, as an operator runs it: its processes on Girder's
//! schedulers (one per core unless `--schedulers` says otherwise, tokio's tasks with 0), a
//! QoS 1 message through it, the ops endpoint's metrics, and SIGTERM ending it cleanly.

#[path = "common/harness.rs"]
mod harness;

#[path = "common/clients.rs"]
mod clients;

use std::time::Duration;

use clients::v311::*;
use harness::Peer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The program, running.
struct Program {
    peer: Peer,
    /// Its MQTT port.
    port: u16,
    /// Its ops endpoint's address.
    ops: String,
    /// Its scratch directory (the data directory is in it), removed once it has stopped.
    dir: std::path::PathBuf,
}

/// The program started with `extra` flags, on free ports.
async fn program(extra: &[&str]) -> Program {
    let dir = harness::scratch_dir("program");
    let data = dir.join("data");
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--allow-anonymous",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut peer = Peer::spawn(env!("CARGO_BIN_EXE_girder-mqtt"), &args);
    let ops = peer.expect_text("ops on http://").await;
    let ops = ops
        .split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let listening = peer.expect_text("listening on").await;
    let port = listening
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Program {
        peer,
        port,
        ops,
        dir,
    }
}

/// `GET path` on the ops endpoint: the body.
async fn get(ops: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(ops).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {ops}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    assert!(all.starts_with("HTTP/1.1 200"), "GET {path}: {all}");
    all
}

/// A QoS 1 message from one client to another, through the program.
async fn one_message_through(port: u16, tag: &str) {
    let (sub, mut sub_rx) = client(&format!("{tag}-sub"), port, |_| {}).await;
    subscribe(&sub, &mut sub_rx, "program/#", QoS::AtLeastOnce).await;
    let (publ, _pub_rx) = client(&format!("{tag}-pub"), port, |_| {}).await;
    publ.publish("program/one", QoS::AtLeastOnce, false, tag)
        .await
        .unwrap();
    let (topic, payload, qos) = message(&mut sub_rx).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice(), qos),
        ("program/one", tag.as_bytes(), QoS::AtLeastOnce)
    );
}

/// Sends SIGTERM and expects the program to drain and exit 0.
async fn terminate(mut p: Program) {
    let pid = p.peer.id().expect("running").to_string();
    let killed = harness::run("kill", &["-TERM", &pid], Duration::from_secs(10)).await;
    assert_eq!(killed.code(), Some(0), "{}", killed.all());
    let status = p.peer.wait().await;
    assert!(status.success(), "{status:?}: {}", p.peer.seen().join("\n"));
    let _ = std::fs::remove_dir_all(&p.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_program_runs_on_girders_schedulers_and_stops_on_sigterm() {
    let p = program(&["--schedulers", "3"]).await;
    let metrics = get(&p.ops, "/metrics").await;
    assert!(
        metrics.contains("girder_schedulers{node=\"girder-mqtt\"} 3"),
        "{metrics}"
    );
    one_message_through(p.port, "pooled").await;
    terminate(p).await;

    // Without the flag: one scheduler per core.
    let cores = std::thread::available_parallelism().unwrap().get();
    let p = program(&[]).await;
    let metrics = get(&p.ops, "/metrics").await;
    let line = format!("girder_schedulers{{node=\"girder-mqtt\"}} {cores}");
    assert!(metrics.contains(&line), "no {line:?} in {metrics}");
    one_message_through(p.port, "per-core").await;
    terminate(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_zero_schedulers_the_program_runs_its_processes_as_tokio_tasks() {
    let p = program(&["--schedulers", "0"]).await;
    let metrics = get(&p.ops, "/metrics").await;
    // The metric is there only for a node on a pool.
    assert!(!metrics.contains("girder_schedulers{"), "{metrics}");
    one_message_through(p.port, "tokio").await;
    terminate(p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_schedulers_setting_is_refused_with_a_clear_error() {
    let out = harness::run(
        env!("CARGO_BIN_EXE_girder-mqtt"),
        &["--schedulers", "many"],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(out.code(), Some(2), "{}", out.all());
    assert!(out.stderr.contains("--schedulers"), "{}", out.all());
}
