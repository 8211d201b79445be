//! The ops API end to end over real HTTP: metrics after known actions, a threshold alarm that
//! clears with hysteresis, admin endpoints and their token, malformed requests, the live event
//! stream, readiness, the supervision tree and pids written as they print.

use std::time::Duration;

use girder::{ChildSpec, Context, Event, ExitReason, Node, Supervisor};
use girder_ops::{Alarm, Ops, Severity};
use girder_testkit::{eventually_async, within};
use reqwest::Method;
use serde_json::Value;

mod common;
mod prometheus;

use common::{request, serve};

fn sleeper(node: &Node) -> girder::Addr<u32> {
    node.spawn(|mut ctx: Context<u32>| async move {
        loop {
            match ctx.recv().await {
                Event::Message(0) => panic!("told to crash"),
                Event::Stop(r) => return r,
                _ => {}
            }
        }
    })
}

/// The value of `metric` with exactly `labels` in a Prometheus text body.
fn metric(body: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test]
async fn metrics_show_what_the_runtime_did() {
    let node = Node::new("metrics-test");
    let (_ops, base) = serve(&node, None, false).await;
    let procs: Vec<_> = (0..3).map(|_| sleeper(&node)).collect();
    for p in &procs {
        for i in 1..=5 {
            p.send(i).unwrap();
        }
    }
    procs[0].send(0).unwrap(); // a crash: one panic exit
    procs[0].wait_exit().await;
    procs[1].stop(ExitReason::Shutdown);
    procs[1].wait_exit().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let l = r#"node="metrics-test""#;
    assert_eq!(metric(&body, "girder_processes", l), Some(1.0), "{body}");
    assert_eq!(metric(&body, "girder_spawns_total", l), Some(3.0));
    assert_eq!(metric(&body, "girder_messages_in_total", l), Some(16.0));
    assert_eq!(metric(&body, "girder_messages_out_total", l), Some(16.0));
    assert_eq!(
        metric(
            &body,
            "girder_exits_total",
            &format!(r#"{l},reason="panic""#)
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &body,
            "girder_exits_total",
            &format!(r#"{l},reason="shutdown""#)
        ),
        Some(1.0)
    );
    assert_eq!(metric(&body, "girder_mailbox_length_max", l), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_what_the_schedulers_did() {
    let pool = girder::Schedulers::new(2);
    let node = Node::builder("sched-metrics")
        .schedulers(pool.clone())
        .build();
    let (_ops, base) = serve(&node, None, false).await;
    let procs: Vec<_> = (0..4).map(|_| sleeper(&node)).collect();
    for p in &procs {
        for i in 1..=50 {
            p.send(i).unwrap();
        }
        p.stop(ExitReason::Shutdown);
        p.wait_exit().await;
    }
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let l = r#"node="sched-metrics""#;
    assert_eq!(metric(&body, "girder_schedulers", l), Some(2.0), "{body}");
    // Each process ran at least once (its messages may all be waiting at its first run).
    let runs = metric(&body, "girder_scheduler_runs_total", l).unwrap();
    assert!(runs >= 4.0, "runs {runs}");
    assert!(metric(&body, "girder_run_queue", l).is_some());
    assert!(metric(&body, "girder_scheduler_remote_wakes_total", l).is_some());
    // A node on tokio tasks has no scheduler metrics.
    let plain = Node::new("plain-metrics");
    let (_ops2, base2) = serve(&plain, None, false).await;
    let body2 = reqwest::get(format!("{base2}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let on_pool = plain.runs_on_schedulers();
    assert_eq!(
        metric(&body2, "girder_schedulers", r#"node="plain-metrics""#).is_some(),
        on_pool
    );
    drop(pool);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_has_help_and_type_lines() {
    let pool = girder::Schedulers::new(1);
    let node = Node::builder("help-metrics")
        .schedulers(pool.clone())
        .build();
    let (_ops, base) = serve(&node, None, false).await;
    let sup = Supervisor::builder()
        .child(ChildSpec::process(
            "worker",
            |mut ctx: Context<()>| async move {
                ctx.recv().await;
                ExitReason::Normal
            },
        ))
        .start(&node)
        .await
        .unwrap();
    // Calls, so the call-latency histogram has samples (one call in 16 is timed).
    for _ in 0..32 {
        sup.which_children().await.unwrap();
    }
    let p = sleeper(&node);
    p.send(0).unwrap();
    p.wait_exit().await;
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "girder_processes",
        "girder_exits_total",
        "girder_supervisor_restarts_total",
        "girder_run_queue",
        "girder_call_duration_seconds_bucket",
    ] {
        assert!(body.contains(name), "{name} not published:\n{body}");
    }
    let (missing, families) = prometheus::undocumented(&body);
    assert!(families >= 15, "{families} families:\n{body}");
    assert!(
        missing.is_empty(),
        "without HELP or TYPE: {missing:?}\n{body}"
    );
    drop(pool);
}

#[tokio::test]
async fn a_long_mailbox_raises_an_alarm_that_clears_when_it_drains() {
    let node = Node::new("alarm-test");
    let ops = Ops::builder(&node)
        .mailbox_alarm(20)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", ops.local_addr());
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let slow = node.spawn(move |mut ctx: Context<u32>| async move {
        let _ = go_rx.await;
        while let Event::Message(_) = ctx.recv().await {}
        ExitReason::Normal
    });
    for i in 1..=30 {
        slow.send(i).unwrap();
    }
    let alarms = async || -> Value {
        reqwest::get(format!("{base}/api/alarms"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let mailbox_long = |v: &Value| {
        v["active"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == "mailbox_long")
    };
    // Above the line (20) for 5 s: raised.
    eventually_async("mailbox_long raised", async || {
        mailbox_long(&alarms().await)
    })
    .await;
    go_tx.send(()).unwrap();
    let v = eventually_async("mailbox_long cleared", async || {
        Some(alarms().await).filter(|v| !mailbox_long(v))
    })
    .await;
    let history = v["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{v}");
    assert_eq!(history[0]["what"], "raised");
    assert_eq!(history[1]["what"], "cleared");
    let _ = slow;
}

#[tokio::test]
async fn admin_actions_need_the_token() {
    let node = Node::new("admin-test");
    let (ops, base) = serve(&node, Some("s3cret-token"), false).await;
    let victim = sleeper(&node);
    let kill = format!("{base}/api/processes/{}/kill", victim.pid());
    let r = request(Method::POST, &kill, None).await;
    assert_eq!(r.status(), 401);
    let msg: Value = r.json().await.unwrap();
    assert!(
        msg["error"].as_str().unwrap().contains("bearer token"),
        "{msg}"
    );
    let r = request(Method::POST, &kill, Some("wrong")).await;
    assert_eq!(r.status(), 401);
    assert!(victim.is_alive());
    let r = request(Method::POST, &kill, Some("s3cret-token")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(victim.wait_exit().await, ExitReason::Killed);
    // Killing it again: not found.
    let r = request(Method::POST, &kill, Some("s3cret-token")).await;
    assert_eq!(r.status(), 404);

    ops.alarms()
        .raise(Alarm::new(
            "manual",
            Severity::Minor,
            "test",
            "raised by hand",
        ))
        .unwrap();
    let metrics = async || {
        let r = request(Method::GET, format!("{base}/metrics"), None).await;
        r.text().await.unwrap()
    };
    let m = metrics().await;
    for line in [
        "girder_alarms_active{node=\"admin-test\",severity=\"minor\"} 1",
        "girder_alarms_active{node=\"admin-test\",severity=\"major\"} 0",
        "girder_ops_admin_actions_total{node=\"admin-test\",action=\"kill\"} 1",
        "girder_ops_requests_unauthorized_total{node=\"admin-test\"} 2",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line} in\n{m}");
    }
    let clear = format!("{base}/api/alarms/manual/clear");
    assert_eq!(request(Method::POST, &clear, None).await.status(), 401);
    assert!(ops.alarms().is_active("manual"));
    assert_eq!(
        request(Method::POST, &clear, Some("s3cret-token"))
            .await
            .status(),
        200
    );
    assert!(!ops.alarms().is_active("manual"));
    assert_eq!(
        request(Method::POST, &clear, Some("s3cret-token"))
            .await
            .status(),
        404
    );
    let m = metrics().await;
    for line in [
        "girder_alarms_active{node=\"admin-test\",severity=\"minor\"} 0",
        "girder_ops_admin_actions_total{node=\"admin-test\",action=\"clear_alarm\"} 1",
        "girder_ops_requests_unauthorized_total{node=\"admin-test\"} 3",
    ] {
        assert!(m.lines().any(|l| l == line), "no {line} in\n{m}");
    }

    // Without a configured token, admin actions are off altogether.
    let (_ops2, base2) = serve(&node, None, false).await;
    let r = request(
        Method::POST,
        format!("{base2}/api/alarms/x/clear"),
        Some("anything"),
    )
    .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn reads_can_be_protected_too() {
    let node = Node::new("protected-test");
    let (_ops, base) = serve(&node, Some("tok-tok-tok"), true).await;
    assert_eq!(
        request(Method::GET, format!("{base}/api/processes"), None)
            .await
            .status(),
        401
    );
    assert_eq!(
        request(Method::GET, format!("{base}/metrics"), None)
            .await
            .status(),
        401
    );
    let r = request(
        Method::GET,
        format!("{base}/api/processes"),
        Some("tok-tok-tok"),
    )
    .await;
    assert_eq!(r.status(), 200);
    // Probes stay open: orchestrators call them without credentials.
    assert_eq!(
        request(Method::GET, format!("{base}/healthz"), None)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_that_says_why() {
    let node = Node::new("bad-input-test");
    let (_ops, base) = serve(&node, Some("t0ken"), false).await;
    let r = request(
        Method::GET,
        format!("{base}/api/processes?sort=colour"),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown sort \"colour\""),
        "{v}"
    );
    let r = request(
        Method::GET,
        format!("{base}/api/processes?limit=lots"),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = request(
        Method::POST,
        format!("{base}/api/processes/not-a-pid/kill"),
        Some("t0ken"),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("not a pid"), "{v}");
    let r = request(Method::GET, format!("{base}/api/nothing-here"), None).await;
    assert_eq!(r.status(), 404);
    let r = request(Method::GET, format!("{base}/api/processes/1/kill"), None).await;
    assert_eq!(r.status(), 405);
    // The server is unharmed.
    assert_eq!(
        request(Method::GET, format!("{base}/healthz"), None)
            .await
            .text()
            .await
            .unwrap(),
        "ok"
    );
}

#[tokio::test]
async fn processes_sort_by_mailbox_and_the_tree_shows_supervisors() {
    let node = Node::new("tree-test");
    let (_ops, base) = serve(&node, None, false).await;
    let sup = Supervisor::builder()
        .child(ChildSpec::process(
            "worker",
            |mut ctx: Context<()>| async move {
                ctx.recv().await;
                ExitReason::Normal
            },
        ))
        .start(&node)
        .await
        .unwrap();
    let busy = sleeper(&node);
    for i in 1..=7 {
        busy.send(i).unwrap();
    }
    let v: Value = reqwest::get(format!("{base}/api/processes?sort=mailbox&limit=1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["processes"].as_array().unwrap().len(), 1);
    assert_eq!(v["total"], 3);
    let v: Value = reqwest::get(format!("{base}/api/supervision"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roots = v["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{v}");
    assert_eq!(roots[0]["pid"], sup.pid().to_string());
    assert_eq!(roots[0]["children"][0]["id"], "worker");
}

/// Every value under a key `pid` or ending in `_pid`, anywhere in `v`.
fn pids_in(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "pid" || k.ends_with("_pid") {
                    out.push(x.clone());
                }
                pids_in(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| pids_in(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn pids_are_written_as_they_print_in_every_response() {
    let node = Node::new("pid-test");
    let token = "a-token-for-the-pid-test";
    let (_ops, base) = serve(&node, Some(token), false).await;
    let sup = Supervisor::builder()
        .child(ChildSpec::process(
            "worker",
            |mut ctx: Context<()>| async move {
                ctx.recv().await;
                ExitReason::Normal
            },
        ))
        .start(&node)
        .await
        .unwrap();
    let worker = sup.which_children().await.unwrap()[0].pid.unwrap();
    // Holds its messages: the longest mailbox.
    let busy = node.spawn(|_: Context<u32>| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        ExitReason::Normal
    });
    for i in 1..=3 {
        busy.send(i).unwrap();
    }
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let procs = get("/api/processes?sort=mailbox").await;
    assert_eq!(
        procs["processes"][0]["pid"],
        busy.pid().to_string(),
        "{procs}"
    );
    let nodes = get("/api/nodes").await;
    assert_eq!(
        nodes["stats"]["mailbox_max_pid"],
        busy.pid().to_string(),
        "{nodes}"
    );
    let tree = get("/api/supervision").await;
    assert_eq!(tree["roots"][0]["pid"], sup.pid().to_string(), "{tree}");
    assert_eq!(
        tree["roots"][0]["children"][0]["pid"],
        worker.to_string(),
        "{tree}"
    );
    let mut pids = Vec::new();
    for v in [&procs, &nodes, &tree] {
        pids_in(v, &mut pids);
    }
    assert!(pids.len() >= 6, "{pids:?}");
    for p in &pids {
        let text = p.as_str().unwrap_or_else(|| panic!("a pid written as {p}"));
        assert!(text.starts_with('<') && text.ends_with('>'), "{text}");
    }
    // A pid copied from the JSON is what the kill endpoint takes, and what it answers.
    let copied = procs["processes"][0]["pid"].as_str().unwrap();
    let r = request(
        Method::POST,
        format!("{base}/api/processes/{copied}/kill"),
        Some(token),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["killed"], copied);
    busy.wait_exit().await;
}

#[tokio::test]
async fn readiness_follows_critical_alarms_and_events_stream_live() {
    let node = Node::new("ready-test");
    let (ops, base) = serve(&node, None, false).await;
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
    let mut stream = reqwest::get(format!("{base}/api/events")).await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    tokio::time::sleep(Duration::from_millis(100)).await;
    ops.alarms()
        .raise(Alarm::new(
            "db_down",
            Severity::Critical,
            "test",
            "the database is gone",
        ))
        .unwrap();
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(v["why"][0].as_str().unwrap().contains("db_down"), "{v}");
    let mut seen = String::new();
    while !seen.contains("db_down") {
        let chunk = within("the alarm's notice on the stream", stream.chunk())
            .await
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.contains("event: notice") && seen.contains("alarm_raised"),
        "{seen}"
    );
    ops.alarms().clear("db_down").unwrap();
    assert_eq!(
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn metrics_show_regulation_a_regulated_queue_and_full_mailboxes() {
    let node = Node::new("regulated-metrics");
    let (ops, base) = serve(&node, None, false).await;
    let queue = girder_regulate::Queue::builder().count(2).build();
    let _published = ops.watch_queue(&node, "db", &queue);
    let held = (queue.try_ask().unwrap(), queue.try_ask().unwrap());
    assert!(queue.try_ask().is_err(), "a third finds no capacity");
    // A full mailbox that drops its oldest, and one that refuses.
    let opts = girder::SpawnOptions::new().capacity(1);
    let dropping = node.spawn_opts(
        opts.clone().overflow(girder::Overflow::DropOldest),
        |_: Context<u8>| std::future::pending(),
    );
    let refusing = node.spawn_opts(opts, |_: Context<u8>| std::future::pending());
    for i in 0..3 {
        dropping.send(i).unwrap();
        let _ = refusing.send(i);
    }
    let l = r#"node="regulated-metrics",queue="db""#;
    let body = eventually_async("the queue's numbers published", || async {
        let body = reqwest::get(format!("{base}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (metric(&body, "girder_queue_in_use", l) == Some(2.0)).then_some(body)
    })
    .await;
    assert_eq!(metric(&body, "girder_queue_granted_total", l), Some(2.0));
    assert_eq!(metric(&body, "girder_queue_limit", l), Some(2.0));
    let overloaded = r#"node="regulated-metrics",queue="db",reason="overloaded""#;
    assert_eq!(
        metric(&body, "girder_queue_rejected_total", overloaded),
        Some(1.0),
        "{body}"
    );
    let n = r#"node="regulated-metrics""#;
    assert_eq!(metric(&body, "girder_mailbox_dropped_total", n), Some(2.0));
    assert_eq!(metric(&body, "girder_mailbox_refused_total", n), Some(2.0));
    assert_eq!(metric(&body, "girder_calls_expired_total", n), Some(0.0));
    drop(held);
}
