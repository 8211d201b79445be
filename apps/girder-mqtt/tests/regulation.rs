//! Regulation at the edge (issue 15 §3): a client publishing faster than its rate is slowed,
//! not dropped; connections past the connection rate wait; a client holding too many QoS 2
//! messages unreleased is disconnected with 0x93 after being told its Receive Maximum.

#[path = "common/harness.rs"]
mod harness;

use harness::found;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_publish_rate_is_slowed_and_loses_nothing() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let b = harness::start_with(|c, _| {
        c.max_publish_rate = Some(20.0);
    })
    .await;
    let port = b.addr().port().to_string();
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-p", &port, "-t", "r", "-C", "60", "-W", "30"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    while b.stats().subscriptions.get() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lines: String = (0..60).map(|i| format!("{i}\n")).collect();
    let started = Instant::now();
    let mut publisher = tokio::process::Command::new("mosquitto_pub")
        .args(["-p", &port, "-t", "r", "-l"])
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = publisher.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).await.unwrap();
    drop(stdin);
    let mut out = String::new();
    sub.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let took = started.elapsed();
    let got: Vec<u32> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got, (0..60).collect::<Vec<_>>(), "every message, in order");
    // 20 at once (the burst), then 20 a second: at least 2 s for the other 40.
    assert!(
        took >= Duration::from_millis(1_500),
        "slowed to the rate: took {took:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_connection_rate_wait() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let b = harness::start_with(|c, _| {
        c.max_connection_rate = Some(5.0);
    })
    .await;
    let port = b.addr().port().to_string();
    let started = Instant::now();
    for i in 0..15 {
        let out = tokio::process::Command::new("mosquitto_pub")
            .args(["-p", &port, "-t", "c", "-m", &i.to_string()])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "every connection gets through in the end"
        );
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_500),
        "5 at once, then 5 a second: took {took:?}"
    );
    assert_eq!(b.stats().connections_total.get(), 15);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_unreleased_qos2_messages_end_the_connection() {
    let b = harness::start_with(|c, _| {
        c.max_inflight_in = 2;
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    // CONNECT, 5.0, clean start, keep alive 60, no properties, client id "c".
    s.write_all(&[
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 2, 0, 60, 0, 0, 1, b'c',
    ])
    .await
    .unwrap();
    let mut connack = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut connack))
        .await
        .unwrap()
        .unwrap();
    // The Receive Maximum property (0x21) says 2.
    assert!(
        connack[..n].windows(3).any(|w| w == [0x21, 0, 2]),
        "CONNACK {:?} carries Receive Maximum 2",
        &connack[..n]
    );
    // Three QoS 2 PUBLISHes, none released.
    for id in 1..=3u8 {
        s.write_all(&[0x34, 7, 0, 1, b't', 0, id, 0, b'x'])
            .await
            .unwrap();
    }
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the broker closes the connection")
        .unwrap();
    assert!(
        rest.ends_with(&[0xE0, 2, 0x93, 0]),
        "DISCONNECT 0x93 (receive maximum exceeded) last: {rest:?}"
    );
    b.stop().await;
}

/// One PUBLISH, QoS 0, on `topic`.
fn publish_qos0(topic: &str, payload: &[u8]) -> Vec<u8> {
    let remaining = 2 + topic.len() + payload.len();
    let mut p = vec![0x30];
    let mut n = remaining;
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        p.push(byte);
        if n == 0 {
            break;
        }
    }
    p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    p.extend_from_slice(topic.as_bytes());
    p.extend_from_slice(payload);
    p
}

/// Connects a publisher (client id `p` + `id`) and writes `mb` megabytes of QoS 0 messages of
/// 1,000 bytes to `topic`; the publisher, still connected.
async fn flood(at: std::net::SocketAddr, id: u8, topic: &str, mb: usize) -> tokio::net::TcpStream {
    let mut publisher = tokio::net::TcpStream::connect(at).await.unwrap();
    publisher
        .write_all(&[
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b'p', id,
        ])
        .await
        .unwrap();
    let one = publish_qos0(topic, &[7u8; 1000]);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
    for _ in 0..mb * 10 {
        publisher.write_all(&batch).await.unwrap();
    }
    publisher
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_harms_nobody_and_holds_bounded_memory() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let b = harness::start_with(|c, _| {
        c.max_queued = 100;
        c.write_timeout_secs = 2;
    })
    .await;
    let port = b.addr().port().to_string();
    // The silent subscriber: subscribes to everything at QoS 1 and never reads again.
    let mut silent = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    silent
        .write_all(&[
            0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 60, 0, 5, b's', b'l', b'o', b'w', b'1',
        ])
        .await
        .unwrap();
    silent
        .write_all(&[0x82, 6, 0, 1, 0, 1, b'#', 1])
        .await
        .unwrap();
    // The healthy one.
    let healthy = tokio::process::Command::new("mosquitto_sub")
        .args(["-p", &port, "-t", "f/end", "-q", "1", "-C", "1", "-W", "60"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    while b.stats().subscriptions.get() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 20 MB of QoS 0 messages, far more than the silent client's socket holds.
    let _publisher = flood(b.addr(), b'1', "f/data", 20).await;
    // The broker holds at most its bounds for the silent one, whatever it was sent.
    let held = b.stats().queued.get();
    assert!(
        held <= 100 + 20,
        "a session holds at most max_queued + max_inflight: {held}"
    );
    // The healthy subscriber gets what comes after the flood, promptly.
    let started = Instant::now();
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(["-p", &port, "-t", "f/end", "-m", "done", "-q", "1"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let got = tokio::time::timeout(Duration::from_secs(30), healthy.wait_with_output())
        .await
        .expect("the healthy subscriber is not held up")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "done");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(
        b.stats().messages_dropped.get() > 0,
        "what the silent one could not take was dropped and counted"
    );
    // Its writes stalled past the write timeout: the broker let it go.
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.stats().connections.get() > 1 {
        assert!(
            Instant::now() < deadline,
            "the silent subscriber is disconnected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(silent);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_wait_for_admission_and_a_silent_socket_cannot_hold_it_for_long() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let b = harness::start_with(|c, _| {
        c.max_connecting = 1;
        c.connect_timeout_secs = 1;
    })
    .await;
    // A socket that never sends CONNECT holds the one admission permit...
    let _silent = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.broker().admission().stats().in_use, 1);
    // ... so the next client waits, until the connect timeout frees it.
    let port = b.addr().port().to_string();
    let started = Instant::now();
    let out = tokio::process::Command::new("mosquitto_pub")
        .args(["-p", &port, "-t", "a", "-m", "b"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(10),
        "waited for the silent socket's timeout: {took:?}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_cannot_keep_up_holds_its_qos1_publishers_back_and_loses_nothing() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let b = harness::start_with(|c, _| {
        c.max_queued = 10_000;
    })
    .await;
    let port = b.addr().port().to_string();
    let n = girder_mqtt::session::MAILBOX + 1_000;
    let count = n.to_string();
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args([
            "-p", &port, "-i", "held-sub", "-q", "1", "-t", "t", "-C", &count, "-W", "60",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    while b.stats().subscriptions.get() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The subscriber's session stops taking messages (suspended, as `girder sys` does).
    let node = b.broker().shared().node.clone();
    let session = node.whereis("mqtt:session:held-sub").expect("the session");
    girder::sys::suspend(&node, session).await.unwrap();

    // A publisher pipelines more QoS 1 messages than the session's mailbox holds.
    let mut publisher = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    publisher
        .write_all(&[
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 2, b'p', b'2',
        ])
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    publisher.read_exact(&mut connack).await.unwrap();
    let mut all = Vec::new();
    for i in 0..n {
        let payload = i.to_string();
        let id = (i % 65_535 + 1) as u16;
        all.push(0x32);
        all.push((2 + 1 + 2 + payload.len()) as u8);
        all.extend_from_slice(&[0, 1, b't']);
        all.extend_from_slice(&id.to_be_bytes());
        all.extend_from_slice(payload.as_bytes());
    }
    let (mut rd, mut wr) = publisher.into_split();
    let writer = tokio::spawn(async move { wr.write_all(&all).await.map(|_| wr) });
    // PUBACKs (4 bytes each) come for what the session's mailbox took, then stop: the
    // publisher's connection waits for room, and no message is acknowledged and dropped.
    let mut acks = 0usize;
    let mut buf = vec![0u8; 65_536];
    loop {
        match tokio::time::timeout(Duration::from_millis(500), rd.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("the broker closed the publisher's connection"),
            Ok(Ok(k)) => acks += k / 4,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => break,
        }
    }
    assert!(
        acks <= girder_mqtt::session::MAILBOX && acks < n,
        "{acks} of {n} acknowledged while the session takes nothing"
    );
    assert_eq!(b.stats().messages_dropped.get(), 0);
    girder::sys::resume(&node, session).await.unwrap();
    // Everything flows again: every message acknowledged, every message delivered, in order.
    while acks < n {
        let k = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut buf))
            .await
            .expect("the rest of the PUBACKs")
            .unwrap();
        assert!(k > 0, "the broker closed the publisher's connection");
        acks += k / 4;
    }
    let _wr = writer.await.unwrap().unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        Duration::from_secs(60),
        sub.stdout.take().unwrap().read_to_string(&mut out),
    )
    .await
    .expect("the subscriber gets everything")
    .unwrap();
    let got: Vec<usize> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert_eq!(b.stats().messages_dropped.get(), 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_coming_back_while_its_old_connection_cannot_be_written_is_answered_at_once() {
    // The old connection's writes have stalled (its client reads nothing), with a write
    // timeout far longer than the test: the session's process is not stuck in that write, so
    // the client's new connection takes the session over at once.
    let b = harness::start_with(|c, _| c.write_timeout_secs = 120).await;
    let connect = [
        0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 4, 0, 0, 60, 0, 6, b'r', b'o', b'a', b'm', b'e',
        b'r',
    ];
    let mut old = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    old.write_all(&connect).await.unwrap();
    old.write_all(&[0x82, 6, 0, 1, 0, 1, b'#', 0])
        .await
        .unwrap();
    let mut ack = [0u8; 9];
    old.read_exact(&mut ack).await.unwrap();
    assert_eq!(&ack[..4], &[0x20, 2, 0, 0], "CONNACK");
    // Far more than the socket holds, so the broker's writes to it stall.
    let mut publisher = flood(b.addr(), b'2', "r/data", 10).await;
    let sent = b.stats().bytes_out.get();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        b.stats().bytes_out.get() - sent < 1_000_000,
        "the old connection takes no more"
    );
    // The client comes back on a new connection.
    let started = Instant::now();
    let mut new = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    new.write_all(&connect).await.unwrap();
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), new.read_exact(&mut connack))
        .await
        .expect("CONNACK while the old connection is still stuck")
        .unwrap();
    assert_eq!(connack, [0x20, 2, 1, 0], "session present, accepted");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The new connection gets what is published now.
    publisher
        .write_all(&publish_qos0("r/after", b"hello"))
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.windows(5).any(|w| w == b"hello") {
        assert!(Instant::now() < deadline, "the message after the takeover");
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), new.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("the new connection ended: {other:?}"),
        }
    }
    assert_eq!(
        b.stats().connections.get(),
        2,
        "the new one and the publisher"
    );
    b.stop().await;
}
