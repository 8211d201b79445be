//! MQTT over WebSocket from a real browser (Debian's `chromium`, headless): a page's script
//! opens `new WebSocket(url, "mqtt")`, connects, subscribes and publishes with MQTT packets in
//! binary frames, as a browser MQTT library does; a `mosquitto_sub` on plain TCP receives what
//! the browser published, and then the browser's report that the broker sent it back.
//!
//! The browser runs until the test has both (no `--dump-dom`: headless Chromium's virtual
//! time, which that needs, holds back a WebSocket's events).
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
/// PUBLISH to it; when that comes back, a PUBLISH to browser/report says so.
const PAGE: &str = r#"<!doctype html><html><body><pre id="out">waiting</pre><script>
const out = document.getElementById("out");
const enc = new TextEncoder();
function str(s) { const b = enc.encode(s); return [b.length >> 8, b.length & 255, ...b]; }
function packet(type, body) { return new Uint8Array([type, body.length, ...body]); }
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
    if (payload === "hello from a browser") {
      ws.send(packet(0x30, [...str("browser/report"), ...enc.encode("the broker sent it back")]));
    }
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
    let mut sub = tokio::process::Command::new("mosquitto_sub")
        .args(["-p", &tcp, "-t", "browser/#", "-v", "-C", "2", "-W", "60"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    while b.stats().subscriptions.get() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dir = std::env::temp_dir().join(format!("girder-mqtt-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("mqtt.html");
    let port = b.ws_addr().unwrap().port().to_string();
    std::fs::write(&page, PAGE.replace("PORT", &port)).unwrap();
    let _browser = tokio::process::Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            &format!("--user-data-dir={}", dir.join("profile").display()),
        ])
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the browser runs");
    let mut out = String::new();
    use tokio::io::AsyncReadExt;
    tokio::time::timeout(
        Duration::from_secs(60),
        sub.stdout.take().unwrap().read_to_string(&mut out),
    )
    .await
    .expect("the TCP subscriber hears from the browser within a minute")
    .unwrap();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        vec![
            "browser/echo hello from a browser",
            "browser/report the broker sent it back"
        ]
    );
    b.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
