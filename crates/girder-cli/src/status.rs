//! `girder status --node ADDR` and `girder top --node ADDR`: a node's ops API, read from the
//! terminal (observer_cli's job).

use std::time::Duration;

use serde_json::Value;

/// Reads `--node`: `host:port` (plain HTTP, as `girder node --http` serves it) or an
/// `http://` / `https://` URL (a path is kept, for an API behind a reverse proxy). Returns the
/// URL to ask, without a trailing `/`.
pub fn parse_node(text: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected the ops API's address as host:port (e.g. 127.0.0.1:8080) or an http:// or https:// URL";
    let t = text.trim();
    let has_scheme = t.contains("://");
    let url = if has_scheme {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("{e}: {EXPECTED}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported scheme {:?}: {EXPECTED}",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("no host: {EXPECTED}"));
    }
    if !has_scheme {
        // Without a scheme there is no default port to fall back on: ask for it.
        let authority = t.split(['/', '?', '#']).next().unwrap_or_default();
        let port = authority.rsplit_once(':').map(|(_, p)| p);
        if port.is_none_or(|p| p.parse::<u16>().is_err()) {
            return Err(format!("no port in {authority:?}: {EXPECTED}"));
        }
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("a query or fragment has no place here: {EXPECTED}"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Where to ask, and with what token.
pub struct Target {
    pub url: String,
    pub token: Option<String>,
}

impl Target {
    /// A request to `path` on the API, with the token if there is one.
    pub(crate) fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> (String, reqwest::RequestBuilder) {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let mut req = client.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        (url, req)
    }

    async fn get(&self, client: &reqwest::Client, path: &str) -> Result<Value, String> {
        self.send(client, reqwest::Method::GET, path).await
    }

    /// Asks the API; its JSON answer, or what went wrong (the API's own `error` if it said).
    pub(crate) async fn send(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> Result<Value, String> {
        let (url, req) = self.request(client, method, path);
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

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// A pid as it prints everywhere (`<0.42.1>`): the API writes it so; a node from before that
/// wrote `[node, creation, id]`.
pub(crate) fn pid(v: &Value) -> String {
    match (v.as_str(), v.as_array().map(|a| a.as_slice())) {
        (Some(text), _) => text.to_string(),
        (_, Some([node, creation, id])) => format!("<{node}.{id}.{creation}>"),
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

#[cfg(test)]
mod tests {
    use super::{parse_node, pid};

    #[test]
    fn pids_print_as_the_runtime_prints_them() {
        let p = girder::Pid::new(0, 3, 42);
        assert_eq!(pid(&serde_json::json!(p.to_string())), p.to_string());
        assert_eq!(pid(&serde_json::json!([0, 3, 42])), p.to_string());
    }

    #[test]
    fn node_addresses_without_a_scheme_are_plain_http() {
        for (given, url) in [
            ("127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("localhost:80", "http://localhost:80"),
            ("[::1]:8080", "http://[::1]:8080"),
            (
                " ops.example:9000/girder/ ",
                "http://ops.example:9000/girder",
            ),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("https://ops.example/girder", "https://ops.example/girder"),
            ("http://ops.example", "http://ops.example"),
        ] {
            assert_eq!(parse_node(given).as_deref(), Ok(url), "{given:?}");
        }
    }

    #[test]
    fn bad_node_addresses_say_what_was_expected() {
        for (given, why) in [
            ("", "empty host"),
            ("localhost", "no port"),
            ("localhost:", "no port"),
            ("10.0.0.5:99999", "invalid port number"),
            ("ftp://10.0.0.5:21", "unsupported scheme \"ftp\""),
            ("http://", "empty host"),
            ("http://10.0.0.5:8080/?x=1", "query"),
        ] {
            let e = parse_node(given).unwrap_err();
            assert!(e.contains(why), "{given:?}: {e}");
            assert!(e.contains("expected"), "{given:?}: {e}");
            assert!(e.contains("host:port"), "{given:?}: {e}");
        }
    }
}
