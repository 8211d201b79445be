//! `girder sys state|suspend|resume|trace <pid> --node ADDR`: OTP's `sys` for a behaviour on a
//! node, through its ops API (`/api/processes/<pid>/state`, `suspend`, `resume`, `trace`).

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use crate::status::{self, Target};

#[derive(Subcommand)]
pub enum SysCommand {
    /// Prints a behaviour's state: its behaviour, a state machine's current state, suspended or
    /// running, the traces attached, and its state as the behaviour shows it.
    State(SysArgs),
    /// Suspends a behaviour: it handles nothing but sys requests and stop signals until resumed;
    /// messages and calls wait in its mailbox (the node's admin token).
    Suspend(SysArgs),
    /// Resumes a suspended behaviour (the node's admin token).
    Resume(SysArgs),
    /// Prints a behaviour's events as they happen, one line each, until Ctrl-C or the process
    /// exits.
    Trace(SysArgs),
}

#[derive(Args)]
pub struct SysArgs {
    /// The process, as it prints: <0.42.1> (quote it in a shell) or 0.42.1.
    #[arg(value_parser = parse_pid)]
    pid: String,
    /// The node's ops API: host:port (plain HTTP, e.g. 127.0.0.1:8080) or a URL
    /// (http://... or https://...).
    #[arg(long, value_parser = status::parse_node)]
    node: String,
    /// File holding the bearer token: the node's admin token for suspend and resume (and for
    /// state and trace if the node protects reads).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// Reads a pid as it prints, `<node.id.creation>` or without the brackets; returns the printed
/// form.
pub fn parse_pid(text: &str) -> Result<String, String> {
    let t = text.trim();
    let inner = t.strip_prefix('<').and_then(|t| t.strip_suffix('>'));
    let parts: Vec<&str> = inner.unwrap_or(t).split('.').collect();
    let ok = parts.len() == 3
        && parts[0].parse::<u32>().is_ok()
        && parts[1].parse::<u64>().is_ok()
        && parts[2].parse::<u32>().is_ok();
    if !ok {
        return Err(format!(
            "not a pid: {text:?} (expected <node.id.creation> as pids print, e.g. '<0.42.1>' or 0.42.1)"
        ));
    }
    Ok(format!("<{}>", parts.join(".")))
}

pub fn run(command: SysCommand) -> Result<(), String> {
    let (what, args) = match command {
        SysCommand::State(a) => ("state", a),
        SysCommand::Suspend(a) => ("suspend", a),
        SysCommand::Resume(a) => ("resume", a),
        SysCommand::Trace(a) => ("trace", a),
    };
    let target = crate::target(args.node, args.token_file)?;
    let path = format!("/api/processes/{}/{what}", args.pid);
    status::runtime()?.block_on(async {
        match what {
            "state" => {
                let state = target.send(&client()?, Method::GET, &path).await?;
                print!("{}", render_state(&state));
            }
            "suspend" | "resume" => {
                target.send(&client()?, Method::POST, &path).await?;
                let done = if what == "suspend" {
                    "suspended"
                } else {
                    "resumed"
                };
                println!("{done} {}", args.pid);
            }
            _ => trace(&target, &path).await?,
        }
        Ok(())
    })
}

/// Longer than the node's own wait for a behaviour's answer (5 s), so its 504 arrives.
fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// The state as text: a summary line, then the state as the behaviour shows it.
fn render_state(s: &Value) -> String {
    let mut o = String::new();
    let tracers = s["tracers"].as_u64().unwrap_or(0);
    let _ = writeln!(
        o,
        "process {}: {}{}, {}, {tracers} trace{} attached",
        status::pid(&s["pid"]),
        s["behaviour"].as_str().unwrap_or("?"),
        s["state"]
            .as_str()
            .map(|st| format!(" in state {st}"))
            .unwrap_or_default(),
        if s["suspended"] == true {
            "suspended"
        } else {
            "running"
        },
        if tracers == 1 { "" } else { "s" },
    );
    let _ = writeln!(o, "\nSTATE");
    let view = &s["view"];
    let text = match view["kind"].as_str() {
        Some("text") => view["value"].as_str().unwrap_or("").to_string(),
        Some("json") => serde_json::to_string_pretty(&view["value"]).unwrap_or_default(),
        _ => "hidden (the behaviour shows none; it opts in with state_view)".into(),
    };
    for line in text.lines() {
        let _ = writeln!(o, "  {line}");
    }
    o
}

/// Prints each trace event as a line until the process exits (the stream's `end`) or Ctrl-C.
async fn trace(target: &Target, path: &str) -> Result<(), String> {
    // No overall timeout: a trace runs for as long as it is wanted.
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let stop = girder::application::shutdown_signal();
    tokio::pin!(stop);
    let (url, req) = target.request(&client, Method::GET, path);
    let mut r = tokio::select! {
        biased;
        _ = &mut stop => return Ok(()),
        r = req.send() => r.map_err(|e| format!("cannot reach {url}: {e}"))?,
    };
    let status = r.status();
    if !status.is_success() {
        let body: Value = r.json().await.unwrap_or(Value::Null);
        return Err(format!(
            "{url}: {status}: {}",
            body["error"].as_str().unwrap_or("")
        ));
    }
    let mut buf = String::new();
    loop {
        let chunk = tokio::select! {
            biased;
            _ = &mut stop => return Ok(()),
            c = r.chunk() => c.map_err(|e| format!("the trace from {url} broke off: {e}"))?,
        };
        let Some(chunk) = chunk else {
            return Err(format!("the trace from {url} ended before the process did"));
        };
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(at) = buf.find("\n\n") {
            let block: String = buf.drain(..at + 2).collect();
            let (mut name, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            let Ok(v) = serde_json::from_str::<Value>(&data) else {
                continue; // a keep-alive comment
            };
            match name.as_str() {
                "trace" => println!("{}", render_event(&v)),
                "dropped" => eprintln!(
                    "girder: {} trace events dropped so far (read too slowly)",
                    v["dropped"]
                ),
                "end" => {
                    eprintln!("girder: {} exited; trace ended", status::pid(&v["pid"]));
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}

/// One event: `HH:MM:SS.mmm <pid> what  detail` (time of day in UTC).
fn render_event(e: &Value) -> String {
    let ms = e["at_ms"].as_u64().unwrap_or(0);
    let day = (ms / 1000) % 86_400;
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        day / 3600,
        day / 60 % 60,
        day % 60,
        ms % 1000
    );
    let k = &e["event"];
    let s = |key: &str| k[key].as_str().unwrap_or("?").to_string();
    let what = match k["kind"].as_str().unwrap_or("?") {
        "exit" => format!("exit from {}: {}", status::pid(&k["from"]), s("reason")),
        "down" => format!("down {}: {}", status::pid(&k["pid"]), s("reason")),
        "state_change" => format!("state {} -> {}", s("from"), s("to")),
        "stopping" => format!("stopping: {}", s("reason")),
        kind => kind.to_string(),
    };
    let detail = e["detail"]
        .as_str()
        .map(|d| format!("  {d}"))
        .unwrap_or_default();
    format!("{time} {} {what}{detail}", status::pid(&e["pid"]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pids_are_read_as_they_print() {
        assert_eq!(parse_pid("<0.42.1>").as_deref(), Ok("<0.42.1>"));
        assert_eq!(parse_pid(" 0.42.1 ").as_deref(), Ok("<0.42.1>"));
        for bad in ["", "<0.42>", "0.42.1.2", "<a.b.c>", "<0.42.1", "0.-1.1"] {
            let e = parse_pid(bad).unwrap_err();
            assert!(e.contains("not a pid") && e.contains("<0.42.1>"), "{e}");
        }
    }

    #[test]
    fn states_print_their_view_indented() {
        let s = json!({
            "pid": "<0.7.1>", "behaviour": "statem", "state": "On",
            "view": {"kind": "json", "value": {"flips": 2}},
            "suspended": true, "tracers": 1,
        });
        assert_eq!(
            render_state(&s),
            "process <0.7.1>: statem in state On, suspended, 1 trace attached\n\nSTATE\n  {\n    \"flips\": 2\n  }\n"
        );
        let s = json!({
            "pid": "<0.7.1>", "behaviour": "server", "state": null,
            "view": {"kind": "hidden"}, "suspended": false, "tracers": 0,
        });
        let text = render_state(&s);
        assert!(
            text.starts_with("process <0.7.1>: server, running, 0 traces attached\n"),
            "{text}"
        );
        assert!(text.contains("  hidden"), "{text}");
    }

    #[test]
    fn trace_events_print_on_one_line() {
        let at_ms: u64 = 1_700_000_000_123; // 22:13:20.123 UTC
        let line = |event: Value, detail: Value| {
            render_event(
                &json!({"pid": "<0.7.1>", "at_ms": at_ms, "event": event, "detail": detail}),
            )
        };
        assert_eq!(
            line(json!({"kind": "cast"}), json!("Cast(7)")),
            "22:13:20.123 <0.7.1> cast  Cast(7)"
        );
        assert_eq!(
            line(
                json!({"kind": "exit", "from": "<0.3.1>", "reason": "killed"}),
                Value::Null
            ),
            "22:13:20.123 <0.7.1> exit from <0.3.1>: killed"
        );
        assert_eq!(
            line(
                json!({"kind": "state_change", "from": "Off", "to": "On"}),
                Value::Null
            ),
            "22:13:20.123 <0.7.1> state Off -> On"
        );
        assert_eq!(
            line(json!({"kind": "stopping", "reason": "normal"}), Value::Null),
            "22:13:20.123 <0.7.1> stopping: normal"
        );
    }
}
