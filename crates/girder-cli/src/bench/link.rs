//! `dist_link`: throughput of the distribution connection layer alone — 1,000,000 small messages
//! one way between two connections over loopback TCP, after the cookie handshake. There is no
//! process delivery yet (remote processes are the next layer), so this is the transport's
//! ceiling for `dist_send`, not `dist_send` itself.

use std::time::Instant;

use bytes::Bytes;
use girder_dist::connection::{self, ConnectionConfig};
use girder_dist::handshake::{self, HandshakeConfig, Refusal};
use girder_dist::{Cookie, NodeName};
use tokio::net::{TcpListener, TcpStream};

use super::Outcome;

pub async fn run(messages: u64) -> Result<Outcome, String> {
    // The connection's reader and writer are this node's tasks (tokio tasks: no schedulers).
    let node = girder::Node::new("bench-link");
    let cookie = Cookie::new("girder-bench-link-cookie").map_err(|e| e.to_string())?;
    let cfg = |name: &str| {
        HandshakeConfig::new(NodeName::new(name).expect("valid name"), 1, cookie.clone())
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (sa, sb) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (sa, (sb, _)) = (
        sa.map_err(|e| e.to_string())?,
        sb.map_err(|e| e.to_string())?,
    );
    let _ = sa.set_nodelay(true);
    let _ = sb.set_nodelay(true);
    let (ha, hb) = (cfg("a@127.0.0.1"), cfg("b@127.0.0.1"));
    let (ra, rb) = tokio::join!(
        handshake::initiate(sa, &ha),
        handshake::accept(sb, &hb, |_: &NodeName, _| Ok::<(), Refusal>(()))
    );
    let (_, ca) = ra.map_err(|e| e.to_string())?;
    let (_, cb) = rb.map_err(|e| e.to_string())?;
    let (tx, _rx_a) = connection::start(&node, ca, ConnectionConfig::default());
    let (_tx_b, mut rx) = connection::start(&node, cb, ConnectionConfig::default());
    let payload = Bytes::from_static(&[7u8; 32]);
    let t0 = Instant::now();
    let sender = tokio::spawn(async move {
        for i in 0..messages {
            // Eight streams, as eight sending processes would be.
            if tx.send_wait(i % 8, payload.clone()).await.is_err() {
                return;
            }
        }
        // Keep the connection open until everything is read.
        std::future::pending::<()>().await;
    });
    for _ in 0..messages {
        rx.recv().await.ok_or("connection closed early")?;
    }
    let elapsed = t0.elapsed();
    sender.abort();
    Ok(Outcome {
        workload: "dist_link",
        values: vec![("msgs_per_s", messages as f64 / elapsed.as_secs_f64())],
    })
}
