//! What a slow, silent or greedy HTTP client can do to the ops API: nothing lasting. A client
//! that sends nothing, half a request, or keeps an idle connection is closed after the header
//! timeout; connections over the cap are closed on arrival; and a bad query string gets the
//! API's JSON error like any other bad request.

use std::time::{Duration, Instant};

use girder::Node;
use girder_ops::{HttpLimits, Ops, OpsConfig};
use girder_testkit::within;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_millis(400);

async fn serve(node: &Node, max_connections: usize) -> (Ops, std::net::SocketAddr) {
    let mut cfg = OpsConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.http = HttpLimits {
        header_timeout: TIMEOUT,
        max_connections,
    };
    let ops = Ops::start_local(node.clone(), cfg).await.unwrap();
    let addr = ops.local_addr();
    (ops, addr)
}

/// Reads until the server closes the connection; what it sent.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&all).into_owned(),
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn silent_half_sent_and_idle_clients_are_closed_after_the_header_timeout() {
    let node = Node::new("limits-timeouts");
    let (_ops, addr) = serve(&node, 64).await;

    // Sends nothing.
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    within("the silent client closed", until_closed(&mut silent)).await;
    assert!(started.elapsed() >= TIMEOUT / 2, "not before the timeout");

    // Sends half a request and stops.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    within("the half-sent request closed", until_closed(&mut half)).await;

    // A whole request, answered; then idle on the kept-alive connection.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let answered = within("the idle client closed", until_closed(&mut idle)).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(answered.ends_with("ok"), "{answered}");
    assert!(
        started.elapsed() >= TIMEOUT / 2,
        "kept alive until the timeout"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_on_arrival_and_the_rest_serve() {
    let node = Node::new("limits-cap");
    let (_ops, addr) = serve(&node, 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    // Whether or not it gets to send, the server closes it without an answer.
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = within("the fourth closed", until_closed(&mut fourth)).await;
    assert!(answer.is_empty(), "{answer}");
    assert!(
        started.elapsed() < TIMEOUT,
        "closed on arrival, not by the timeout"
    );
    // The held ones time out, their places come back, and the API answers again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_bad_query_string_is_a_json_error() {
    let node = Node::new("limits-query");
    let (_ops, addr) = serve(&node, 64).await;
    for path in ["/api/processes?limit=many", "/api/processes?limit=-1"] {
        let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains("limit"), "{path}: {body}");
    }
}

#[tokio::test]
async fn open_event_streams_end_with_the_ops_handle() {
    let node = Node::new("limits-shutdown");
    let (ops, addr) = serve(&node, 64).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 64];
    let n = within("the stream's head", stream.read(&mut head))
        .await
        .unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    // Long past the header timeout the stream is still open: a response under way is not cut.
    tokio::time::sleep(TIMEOUT * 2).await;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
        Err(_) => {}             // nothing to read: open and waiting
        Ok(Ok(n)) if n > 0 => {} // a keep-alive comment or an event: open
        Ok(other) => panic!("the stream ended early: {other:?}"),
    }
    drop(ops);
    within(
        "the stream closed with the handle",
        until_closed(&mut stream),
    )
    .await;
}
