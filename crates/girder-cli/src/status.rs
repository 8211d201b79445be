//! `girder status --node URL` and `girder top --node URL`: a node's ops API, read from the
//! terminal (observer_cli's job).

use std::time::Duration;

use serde_json::Value;

/// Where to ask, and with what token.
pub struct Target {
    pub url: String,
    pub token: Option<String>,
}

impl Target {
    async fn get(&self, client: &reqwest::Client, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let mut req = client.get(&url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {e}"))?;
        let status = r.status();
        let body: Value = r
            .json()
            .await
            .map_err(|e| format!("{url} did not answer JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "{url}: {status}: {}",
                body["error"].as_str().unwrap_or("")
            ));
        }
        Ok(body)
    }
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn pid(v: &Value) -> String {
    match v.as_array().map(|a| a.as_slice()) {
        Some([node, creation, id]) => format!("<{node}.{id}.{creation}>"),
        _ => v.to_string(),
    }
}

/// Prints the cluster, the alarms and the busiest processes once.
pub fn status(target: Target) -> Result<(), String> {
    runtime()?
        .block_on(snapshot(&target))
        .map(|text| print!("{text}"))
}

/// The status view as text.
pub async fn snapshot(target: &Target) -> Result<String, String> {
    let c = client()?;
    let nodes = target.get(&c, "/api/nodes").await?;
    let alarms = target.get(&c, "/api/alarms").await?;
    let procs = target
        .get(&c, "/api/processes?sort=mailbox&limit=10")
        .await?;
    Ok(render(&nodes, &alarms, &procs, None))
}

/// Redraws the view every `every` until Ctrl-C, with message rates.
pub fn top(target: Target, every: Duration) -> Result<(), String> {
    runtime()?.block_on(async {
        let c = client()?;
        let mut last: Option<(std::time::Instant, f64)> = None;
        let stop = girder::application::shutdown_signal();
        tokio::pin!(stop);
        loop {
            let nodes = target.get(&c, "/api/nodes").await?;
            let alarms = target.get(&c, "/api/alarms").await?;
            let procs = target
                .get(&c, "/api/processes?sort=mailbox&limit=20")
                .await?;
            let now = std::time::Instant::now();
            let total = nodes["stats"]["messages_in"].as_f64().unwrap_or(0.0);
            let rate = last.map(|(t, v)| (total - v) / now.duration_since(t).as_secs_f64());
            last = Some((now, total));
            // Clear the screen and draw from the top.
            print!("\x1b[2J\x1b[H{}", render(&nodes, &alarms, &procs, rate));
            println!("\n(refreshing every {every:?}; Ctrl-C to quit)");
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = &mut stop => return Ok(()),
            }
        }
    })
}

fn render(nodes: &Value, alarms: &Value, procs: &Value, rate: Option<f64>) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let s = &nodes["stats"];
    let this = nodes["nodes"]
        .as_array()
        .and_then(|v| v.iter().find(|n| n["this"] == true))
        .map(|n| n["name"].as_str().unwrap_or("?").to_string())
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "node {this}: {} processes, {} spawned, {} messages{}, mailbox max {}",
        s["processes"],
        s["spawned"],
        s["messages_in"],
        rate.map(|r| format!(" ({r:.0}/s)")).unwrap_or_default(),
        s["mailbox_max"]
    );
    let sched = &nodes["schedulers"];
    if sched.is_object() {
        let _ = writeln!(
            o,
            "  on {} schedulers: run queue {}, {} steals, {} cross-thread wake-ups",
            sched["threads"], sched["queued"], sched["steals"], sched["remote_wakes"]
        );
    }
    let _ = writeln!(o, "\nNODES");
    let _ = writeln!(
        o,
        "  {:<32} {:<10} {:>12} {:>12}",
        "name", "state", "bytes in", "bytes out"
    );
    for n in nodes["nodes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {:<32} {:<10} {:>12} {:>12}",
            n["name"].as_str().unwrap_or("?"),
            if n["this"] == true {
                "this"
            } else if n["connected"] == true {
                "connected"
            } else {
                "down"
            },
            n["bytes_in"].to_string(),
            n["bytes_out"].to_string()
        );
    }
    let _ = writeln!(o, "\nALARMS");
    let active = alarms["active"].as_array().cloned().unwrap_or_default();
    if active.is_empty() {
        let _ = writeln!(o, "  none active");
    }
    for a in active {
        let _ = writeln!(
            o,
            "  {:<9} {:<28} {}",
            a["severity"].as_str().unwrap_or("?"),
            a["id"].as_str().unwrap_or("?"),
            a["text"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(o, "\nTOP PROCESSES (by mailbox)");
    let _ = writeln!(
        o,
        "  {:<22} {:<24} {:<14} {:>8} {:>8} {:>12}",
        "pid", "name", "behaviour", "mailbox", "restarts", "messages"
    );
    for p in procs["processes"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "  {:<22} {:<24} {:<14} {:>8} {:>8} {:>12}",
            pid(&p["pid"]),
            p["name"].as_str().unwrap_or("-"),
            p["behaviour"].as_str().unwrap_or("?"),
            p["mailbox_len"].to_string(),
            p["restarts"].to_string(),
            p["messages_in"].to_string()
        );
    }
    o
}
