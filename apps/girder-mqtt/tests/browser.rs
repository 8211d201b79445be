//! MQTT over WebSocket from a real browser (Debian's `chromium`, headless): a page's script
//! opens `new WebSocket(url, "mqtt")`, connects, subscribes and publishes with MQTT packets in
//! binary frames, as a browser MQTT library does; a `mosquitto_sub` on plain TCP receives what
//! the browser published, and the page shows what the broker sent back to it.
//!
//! Skips (and says so) only when no Chromium or no mosquitto_sub is installed; `.ci/run`
//! installs both.

use std::path::PathBuf;
use std::time::Duration;

use girder_mqtt::broker::Broker;
use girder_mqtt::config::Config;

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|b| std::env::split_paths(&path).map(move |d| d.join(b)))
        .find(|p| p.is_file())
}

/// The page: CONNECT (3.1.1, client id "browser"), then SUBSCRIBE to browser/echo, then a
/// PUBLISH to it; whatever PUBLISH comes back is written into the page.
const PAGE: &str = r#"<!doctype html><html><body><pre id="out">waiting</pre><script>
const out = document.getElementById("out");
const enc = new TextEncoder();
function str(s) { const b = enc.encode(s); return [b.length >> 8, b.length & 255, ...b]; }
function packet(type, body) { return new Uint8Array([type, body.length, ...body]); }
// A request the test holds open: the browser's virtual time (and so the dump of the page)
// waits while a fetch is pending, and a WebSocket alone does not hold it.
fetch("http://127.0.0.1:HOLD/hold").catch(() => {});
const ws = new WebSocket("ws://127.0.0.1:PORT/mqtt", "mqtt");
ws.binaryType = "arraybuffer";
ws.onopen = () => {
  ws.send(packet(0x10, [...str("MQTT"), 4, 2, 0, 60, ...str("browser")]));
};
ws.onmessage = (e) => {
  const b = new Uint8Array(e.data);
  if (b[0] === 0x20) {
    out.textContent = "connack " + b[3];
    ws.send(packet(0x82, [0, 1, ...str("browser/echo"), 0]));
  } else if (b[0] === 0x90) {
    ws.send(packet(0x30, [...str("browser/echo"), ...enc.encode("hello from a browser")]));
  } else if ((b[0] & 0xf0) === 0x30) {
    const tlen = (b[2] << 8) | b[3];
    const payload = new TextDecoder().decode(b.slice(4 + tlen));
    out.textContent = "echo: " + payload;
  }
};
ws.onerror = () => { out.textContent = "websocket error"; };
</script></body></html>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_speaks_mqtt_over_websocket() {
    let Some(browser) = find(&["chromium", "chromium-browser", "google-chrome"]) else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium); MQTT over WebSocket was not tested in a browser");
        return;
    };
    if find(&["mosquitto_sub"]).is_none() {
        eprintln!("SKIPPED: mosquitto_sub is not installed (Debian's mosquitto-clients; .ci/run installs it)");
        return;
    }
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ws_listen: Some("127.0.0.1:0".parse().unwrap()),
        http: None,
        data_dir: None,
        ..Config::default()
    };
    let b = Broker::start(&girder::Node::new("browser"), config)
        .await
        .unwrap();
    let tcp = b.local_addr().port().to_string();
    let sub = tokio::spawn(async move {
        let out = tokio::process::Command::new("mosquitto_sub")
            .args(["-p", &tcp, "-t", "browser/#", "-v", "-C", "1", "-W", "60"])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    while b.stats().subscriptions.get() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = std::env::temp_dir().join(format!("girder-mqtt-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("mqtt.html");
    let port = b.ws_addr().unwrap().port().to_string();
    // The hold server: answers once the TCP subscriber has the browser's message (and the
    // echo has had time to reach the page), or after 20 s.
    let hold = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hold_port = hold.local_addr().unwrap().port().to_string();
    let (got_tx, got_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = hold.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = tokio::time::timeout(Duration::from_secs(20), got_rx).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n")
            .await;
    });
    let sub = tokio::spawn(async move {
        let got = sub.await.unwrap();
        let _ = got_tx.send(());
        got
    });
    std::fs::write(
        &page,
        PAGE.replace("PORT", &port).replace("HOLD", &hold_port),
    )
    .unwrap();
    let dom = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                &format!("--user-data-dir={}", dir.join("profile").display()),
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("file://{}", page.display()))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser finishes within a minute")
    .expect("the browser runs");
    let got = tokio::time::timeout(Duration::from_secs(60), sub)
        .await
        .expect("the TCP subscriber gets the browser's message")
        .unwrap();
    assert_eq!(got.trim(), "browser/echo hello from a browser");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("echo: hello from a browser"),
        "the page shows the message the broker sent back: {dom}"
    );
    holder.abort();
    b.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
