//! MQTT over TLS (checked with `mosquitto_sub`/`mosquitto_pub --cafile`) and over WebSocket
//! (a WebSocket client speaking raw MQTT bytes, as a browser library does), each bridged to
//! clients on plain TCP: one broker, whatever the transport.

#[path = "common/harness.rs"]
mod harness;

use harness::{found, run, WAIT};

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Ws;

/// A CA, and a certificate for `localhost` it signed with its key: (ca, cert, key) paths.
fn certificates() -> [PathBuf; 3] {
    let dir = harness::scratch_dir("tls");
    // Names of their own: OpenSSL takes a certificate whose issuer is its subject for a
    // self-signed one.
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "girder-mqtt test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let paths = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    std::fs::write(&paths[0], ca_cert.pem()).unwrap();
    std::fs::write(&paths[1], cert.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_and_tcp_clients_share_one_broker() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let [ca, cert, key] = certificates();
    let b = harness::start_with(|c, _| {
        c.tls_listen = Some("127.0.0.1:0".parse().unwrap());
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
    })
    .await;
    let tcp = b.port.to_string();
    let tls = b.broker().tls_addr().unwrap().port().to_string();
    let ca = ca.to_str().unwrap().to_string();
    let sub = {
        let (tls, ca) = (tls.clone(), ca.clone());
        tokio::spawn(async move {
            run(
                "mosquitto_sub",
                &[
                    "-h",
                    "localhost",
                    "-p",
                    &tls,
                    "--cafile",
                    &ca,
                    "-t",
                    "s/#",
                    "-C",
                    "2",
                    "-W",
                    "15",
                    "-v",
                    "-q",
                    "1",
                ],
                WAIT,
            )
            .await
            .stdout
        })
    };
    // Until the subscriber is in (it may still be in its handshake), publish on TCP.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while b.stats().subscriptions.get() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the TLS subscriber subscribes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run(
        "mosquitto_pub",
        &["-p", &tcp, "-t", "s/tcp", "-m", "plain", "-q", "1"],
        WAIT,
    )
    .await;
    run(
        "mosquitto_pub",
        &[
            "-h",
            "localhost",
            "-p",
            &tls,
            "--cafile",
            &ca,
            "-t",
            "s/tls",
            "-m",
            "secret",
            "-q",
            "1",
        ],
        WAIT,
    )
    .await;
    let got = sub.await.unwrap();
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        vec!["s/tcp plain", "s/tls secret"]
    );
    // A client that does not trust the certificate gets nowhere.
    let untrusted = Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            &tls,
            "--cafile",
            "/dev/null",
            "-t",
            "x",
            "-m",
            "y",
        ])
        .output()
        .unwrap();
    assert!(!untrusted.status.success());
    b.stop().await;
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next binary message.
async fn next(ws: &mut WsStream) -> Vec<u8> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("the connection is open")
            .unwrap();
        if let Ws::Binary(b) = m {
            return b.to_vec();
        }
    }
}

/// A WebSocket client offering the `mqtt` subprotocol, and the broker's answer.
async fn ws_connect(
    port: u16,
    protocol: Option<&str>,
) -> Result<WsStream, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://127.0.0.1:{port}/mqtt")
        .into_client_request()
        .unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, resp)| {
            assert_eq!(
                resp.headers()
                    .get("Sec-WebSocket-Protocol")
                    .map(|v| v.to_str().unwrap()),
                protocol
            );
            ws
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_speak_mqtt_in_binary_frames() {
    if !found("mosquitto_sub", "apt install mosquitto-clients") {
        return;
    }
    let b = harness::start_with(|c, _| c.ws_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let ws_port = b.broker().ws_addr().unwrap().port();
    // Without the subprotocol the upgrade is refused (§6).
    assert!(ws_connect(ws_port, None).await.is_err());

    let mut ws = ws_connect(ws_port, Some("mqtt")).await.unwrap();
    // CONNECT (3.1.1, clean session, keep alive 60, client id "ws"), split over two frames to
    // check that a packet may span WebSocket messages.
    let connect = [
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'w', b's',
    ];
    ws.send(Ws::Binary(connect[..5].to_vec().into()))
        .await
        .unwrap();
    ws.send(Ws::Binary(connect[5..].to_vec().into()))
        .await
        .unwrap();
    assert_eq!(next(&mut ws).await, [0x20, 2, 0, 0], "CONNACK, accepted");
    // SUBSCRIBE to "t" at QoS 0, packet id 1.
    ws.send(Ws::Binary(vec![0x82, 6, 0, 1, 0, 1, b't', 0].into()))
        .await
        .unwrap();
    assert_eq!(
        next(&mut ws).await,
        [0x90, 3, 0, 1, 0],
        "SUBACK, QoS 0 granted"
    );
    let tcp = b.port.to_string();
    run("mosquitto_pub", &["-p", &tcp, "-t", "t", "-m", "hi"], WAIT).await;
    assert_eq!(
        next(&mut ws).await,
        [0x30, 5, 0, 1, b't', b'h', b'i'],
        "the PUBLISH from TCP"
    );
    // A text frame is not MQTT: the connection ends.
    ws.send(Ws::Text("hello".into())).await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Ws::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        end.is_ok(),
        "the broker closes a connection that sends text"
    );
    b.stop().await;
}
