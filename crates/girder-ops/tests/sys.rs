//! `sys` through the ops API: a behaviour's state (`GET /api/processes/<pid>/state`), suspend
//! and resume (admin `POST`s), a live trace as server-sent events (`GET .../trace`), and what
//! each answers for a malformed pid, a dead process, a plain process, a remote pid, a busy
//! behaviour, too many traces, a missing token; a trace that detaches when its client goes; a
//! client that reads too slowly holds nothing back and is told what it missed.

use std::time::Duration;

use girder::server::TraceMsg;
use girder::statem::{self, Action, StateEvent, StateMachine, StateMachineContext, Transition};
use girder::sys::{StateView, MAX_TRACES};
use girder::{ChildSpec, ExitReason, Flow, Node, Pid, ReplyTo, Server, ServerContext, Supervisor};
use girder_testkit::procs::idle;
use girder_testkit::{eventually_async, within};
use reqwest::Method;
use serde_json::{json, Value};

mod common;

use common::{send, serve};

const TOKEN: &str = "a-token-for-the-sys-tests";

async fn state(base: &str, pid: Pid) -> Value {
    let (status, v) = send(
        Method::GET,
        format!("{base}/api/processes/{pid}/state"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A counter that shows its state and its messages.
#[derive(Debug, Default)]
struct Counter {
    n: u64,
}

impl Server for Counter {
    type Call = ReplyTo<u64>;
    type Cast = u64;
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<u64>, _: &mut ServerContext<Self>) -> Flow {
        from.reply(self.n);
        Flow::Continue
    }

    async fn handle_cast(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
        self.n += n;
        Flow::Continue
    }

    fn state_view(&self) -> StateView {
        StateView::debug(self)
    }

    fn trace_view(msg: TraceMsg<'_, Self>) -> Option<String> {
        match msg {
            TraceMsg::Cast(n) => Some(format!("Cast({n})")),
            _ => None,
        }
    }
}

/// Shows nothing (the default).
struct Private;

impl Server for Private {
    type Call = ();
    type Cast = ();
    type Info = ();
}

/// Traces each cast with a kilobyte of detail: a trace of it fills up fast.
struct Loud {
    n: u64,
}

impl Server for Loud {
    type Call = ReplyTo<u64>;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<u64>, _: &mut ServerContext<Self>) -> Flow {
        from.reply(self.n);
        Flow::Continue
    }

    async fn handle_cast(&mut self, _: (), _: &mut ServerContext<Self>) -> Flow {
        self.n += 1;
        Flow::Continue
    }

    fn trace_view(_: TraceMsg<'_, Self>) -> Option<String> {
        Some("x".repeat(1024))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Light {
    Off,
    On,
}

struct Switch;

impl StateMachine for Switch {
    type State = Light;
    type Call = ();
    type Cast = ();
    type Info = ();
    type Timeout = ();

    async fn init(
        &mut self,
        _: &mut StateMachineContext<Self>,
    ) -> Result<(Light, Vec<Action<Self>>), girder::InitError> {
        Ok((Light::Off, vec![]))
    }

    async fn handle_event(
        &mut self,
        state: &Light,
        event: StateEvent<Self>,
        _: &mut StateMachineContext<Self>,
    ) -> Transition<Self> {
        match (state, event) {
            (Light::Off, StateEvent::Cast(())) => Transition::next(Light::On),
            (Light::On, StateEvent::Cast(())) => Transition::next(Light::Off),
            _ => Transition::keep(),
        }
    }
}

/// A server-sent event stream, read event by event.
struct Sse {
    response: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(url: String) -> Sse {
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse {
            response,
            buf: String::new(),
        }
    }

    /// The next event's name and JSON data (comments skipped); `None` at the end of the stream.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            while let Some(at) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..at + 2).collect();
                let (mut name, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !data.is_empty() {
                    return Some((name, serde_json::from_str(&data).unwrap()));
                }
            }
            let chunk = within("the next event", self.response.chunk())
                .await
                .unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_shows_each_behaviour_as_it_opts_in() {
    let node = Node::new("sys-state");
    let (_ops, base) = serve(&node, None, false).await;

    let counter = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    counter.cast(5).unwrap();
    assert_eq!(counter.call(|r| r).await.unwrap(), 5);
    let v = state(&base, counter.pid()).await;
    assert_eq!(
        v,
        json!({
            "pid": counter.pid().to_string(),
            "behaviour": "server",
            "state": null,
            "view": {"kind": "text", "value": "Counter {\n    n: 5,\n}"},
            "suspended": false,
            "tracers": 0,
        })
    );

    let private = girder::server::start(&node, Private).await.unwrap();
    let v = state(&base, private.pid()).await;
    assert_eq!(v["view"], json!({"kind": "hidden"}), "{v}");

    let switch = statem::start(&node, Switch).await.unwrap();
    switch.cast(()).unwrap();
    eventually_async("the switch's state On", async || {
        let v = state(&base, switch.pid()).await;
        assert_eq!(v["behaviour"], "statem");
        v["state"] == "On"
    })
    .await;

    let sup = Supervisor::builder()
        .child(ChildSpec::server("counter", Counter::default))
        .start(&node)
        .await
        .unwrap();
    let v = state(&base, sup.pid()).await;
    assert_eq!(v["behaviour"], "supervisor");
    assert_eq!(v["view"]["kind"], "json", "{v}");
    assert_eq!(v["view"]["value"]["children"][0]["id"], "counter", "{v}");

    // The pid may be given without its angle brackets.
    let bare = counter.pid().to_string();
    let bare = bare.trim_matches(['<', '>']);
    let (status, v) = send(
        Method::GET,
        format!("{base}/api/processes/{bare}/state"),
        None,
    )
    .await;
    assert_eq!((status.as_u16(), &v["behaviour"]), (200, &json!("server")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sys_endpoint_says_what_went_wrong() {
    let node = Node::new("sys-errors");
    let (_ops, base) = serve(&node, Some(TOKEN), false).await;
    let p = idle(&node);
    let dead = idle(&node);
    dead.stop(ExitReason::Normal);
    dead.wait_exit().await;
    let remote = Pid::new(3, 1, 7);
    let endpoints = [
        (Method::GET, "state"),
        (Method::POST, "suspend"),
        (Method::POST, "resume"),
        (Method::GET, "trace"),
    ];
    for (method, what) in endpoints {
        let url = |pid: &str| format!("{base}/api/processes/{pid}/{what}");
        let (status, v) = send(method.clone(), url("not-a-pid"), Some(TOKEN)).await;
        assert_eq!(status, 400, "{what}: {v}");
        assert!(v["error"].as_str().unwrap().contains("not a pid"), "{v}");
        let (status, v) = send(method.clone(), url("<0.1.2.3>"), Some(TOKEN)).await;
        assert_eq!(status, 400, "{what}: {v}");

        let (status, v) = send(method.clone(), url(&dead.pid().to_string()), Some(TOKEN)).await;
        assert_eq!(status, 404, "{what}: {v}");
        assert_eq!(
            v["error"],
            format!("process {} is not alive", dead.pid()),
            "{what}"
        );

        let (status, v) = send(method.clone(), url(&p.pid().to_string()), Some(TOKEN)).await;
        assert_eq!(status, 409, "{what}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with(&format!("process {} is not a behaviour", p.pid())),
            "{v}"
        );

        let (status, v) = send(method.clone(), url(&remote.to_string()), Some(TOKEN)).await;
        assert_eq!(status, 404, "{what}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("on another node"),
            "{v}"
        );
    }
    // The plain process goes on as before.
    assert!(p.is_alive());
    assert_eq!(
        send(Method::GET, format!("{base}/healthz"), None).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume_are_admin_actions_and_state_and_trace_are_reads() {
    let node = Node::new("sys-auth");
    let s = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    let pid = s.pid();
    let (_ops, base) = serve(&node, Some(TOKEN), false).await;
    for what in ["suspend", "resume"] {
        let url = format!("{base}/api/processes/{pid}/{what}");
        let (status, v) = send(Method::POST, &url, None).await;
        assert_eq!(status, 401, "{v}");
        assert!(v["error"].as_str().unwrap().contains("bearer token"), "{v}");
        assert_eq!(send(Method::POST, &url, Some("wrong")).await.0, 401);
        assert_eq!(send(Method::GET, &url, Some(TOKEN)).await.0, 405);
    }
    assert_eq!(state(&base, pid).await["suspended"], false);
    // Reads are open: the state and a trace need no token.
    let mut trace = Sse::open(format!("{base}/api/processes/{pid}/trace")).await;
    s.cast(1).unwrap();
    assert_eq!(trace.next().await.unwrap().0, "trace");

    // Without a token configured, admin actions are off altogether.
    let (_ops2, base2) = serve(&node, None, false).await;
    let (status, _) = send(
        Method::POST,
        format!("{base2}/api/processes/{pid}/suspend"),
        Some("anything"),
    )
    .await;
    assert_eq!(status, 403);

    // With protected reads, the state and the trace need the token too.
    let (_ops3, base3) = serve(&node, Some(TOKEN), true).await;
    for what in ["state", "trace"] {
        let url = format!("{base3}/api/processes/{pid}/{what}");
        assert_eq!(send(Method::GET, &url, None).await.0, 401, "{what}");
    }
    let (status, v) = send(
        Method::GET,
        format!("{base3}/api/processes/{pid}/state"),
        Some(TOKEN),
    )
    .await;
    assert_eq!((status.as_u16(), &v["behaviour"]), (200, &json!("server")));
    assert!(!state(&base, pid).await["suspended"].as_bool().unwrap());
}

/// Messages wait while suspended: the state the server shows proves it handled none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_suspended_through_the_api_handles_nothing_until_resumed() {
    let node = Node::new("sys-suspend");
    let (_ops, base) = serve(&node, Some(TOKEN), false).await;
    let s = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    let pid = s.pid();
    let (status, v) = send(
        Method::POST,
        format!("{base}/api/processes/{pid}/suspend"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({ "suspended": pid.to_string() }));
    for i in 1..=100 {
        s.cast(i).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let v = state(&base, pid).await;
    assert_eq!(v["suspended"], true, "{v}");
    assert_eq!(v["view"]["value"], "Counter {\n    n: 0,\n}", "{v}");
    assert_eq!(s.mailbox_len(), 100);
    let (_, procs) = send(Method::GET, format!("{base}/api/processes?limit=1"), None).await;
    assert_eq!(procs["processes"][0]["pid"], pid.to_string(), "{procs}");
    assert_eq!(procs["processes"][0]["mailbox_len"], 100, "{procs}");

    let (status, v) = send(
        Method::POST,
        format!("{base}/api/processes/{pid}/resume"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v, json!({ "resumed": pid.to_string() }));
    assert_eq!(s.call(|r| r).await.unwrap(), 5050);
    let v = state(&base, pid).await;
    assert_eq!(v["suspended"], false, "{v}");
    assert_eq!(v["view"]["value"], "Counter {\n    n: 5050,\n}", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_streams_each_event_until_the_process_stops() {
    let node = Node::new("sys-trace");
    let (_ops, base) = serve(&node, Some(TOKEN), false).await;
    let s = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    let pid = s.pid();
    let mut trace = Sse::open(format!("{base}/api/processes/{pid}/trace")).await;
    assert_eq!(state(&base, pid).await["tracers"], 1);
    s.cast(7).unwrap();
    let (status, _) = send(
        Method::POST,
        format!("{base}/api/processes/{pid}/suspend"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    send(
        Method::POST,
        format!("{base}/api/processes/{pid}/resume"),
        Some(TOKEN),
    )
    .await;
    s.stop(ExitReason::Normal).await;

    let (name, e) = trace.next().await.unwrap();
    assert_eq!(name, "trace");
    assert_eq!(e["pid"], pid.to_string(), "{e}");
    assert_eq!(e["event"], json!({"kind": "cast"}), "{e}");
    assert_eq!(e["detail"], "Cast(7)", "{e}");
    assert!(e["at_ms"].as_u64().unwrap() > 1_600_000_000_000, "{e}");
    for kind in ["suspended", "resumed"] {
        let (name, e) = trace.next().await.unwrap();
        assert_eq!(
            (name.as_str(), &e["event"]),
            ("trace", &json!({"kind": kind}))
        );
    }
    let (name, e) = trace.next().await.unwrap();
    assert_eq!(name, "trace");
    assert_eq!(e["event"], json!({"kind": "stopping", "reason": "normal"}));
    assert_eq!(e["detail"], Value::Null);
    let (name, e) = trace.next().await.unwrap();
    assert_eq!(name, "end");
    assert_eq!(e, json!({ "pid": pid.to_string(), "dropped": 0 }));
    assert!(
        trace.next().await.is_none(),
        "the stream ends with the trace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machines_trace_shows_its_state_changes() {
    let node = Node::new("sys-trace-statem");
    let (_ops, base) = serve(&node, None, false).await;
    let m = statem::start(&node, Switch).await.unwrap();
    let mut trace = Sse::open(format!("{base}/api/processes/{}/trace", m.pid())).await;
    m.cast(()).unwrap();
    assert_eq!(
        trace.next().await.unwrap().1["event"],
        json!({"kind": "cast"})
    );
    assert_eq!(
        trace.next().await.unwrap().1["event"],
        json!({"kind": "state_change", "from": "Off", "to": "On"})
    );
}

/// A client that goes away takes its trace with it: the process's tracer count goes back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_detaches_its_trace() {
    let node = Node::new("sys-detach");
    let (_ops, base) = serve(&node, None, false).await;
    let s = girder::server::start(&node, Counter::default())
        .await
        .unwrap();
    let pid = s.pid();
    let mut trace = Sse::open(format!("{base}/api/processes/{pid}/trace")).await;
    let mut other = Sse::open(format!("{base}/api/processes/{pid}/trace")).await;
    s.cast(1).unwrap();
    assert_eq!(trace.next().await.unwrap().0, "trace");
    assert_eq!(other.next().await.unwrap().0, "trace");
    assert_eq!(state(&base, pid).await["tracers"], 2);
    drop(trace);
    // Nothing happens on the server: the connection's close alone ends the trace.
    eventually_async("the first trace detached", async || {
        state(&base, pid).await["tracers"] == 1
    })
    .await;
    drop(other);
    eventually_async("the second trace detached", async || {
        state(&base, pid).await["tracers"] == 0
    })
    .await;
    // The server is unharmed.
    s.cast(1).unwrap();
    assert_eq!(s.call(|r| r).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_traces_are_refused_until_one_goes() {
    let node = Node::new("sys-too-many");
    let (_ops, base) = serve(&node, None, false).await;
    let s = girder::server::start(&node, Private).await.unwrap();
    let url = format!("{base}/api/processes/{}/trace", s.pid());
    let mut traces = Vec::new();
    for _ in 0..MAX_TRACES {
        traces.push(Sse::open(url.clone()).await);
    }
    let (status, v) = send(Method::GET, &url, None).await;
    assert_eq!(status, 429, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("has {MAX_TRACES} traces attached already")),
        "{v}"
    );
    drop(traces.pop());
    eventually_async("room for a trace once one went", async || {
        let r = reqwest::get(&url).await.unwrap();
        if r.status() != 200 {
            assert_eq!(r.status(), 429);
        }
        r.status() == 200
    })
    .await;
}

/// A client that does not read: the server goes on at full speed, the trace drops what does not
/// fit (the core's bounded queue; the HTTP side adds no queue of its own), and the client is
/// told how many it missed when it reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_trace_client_holds_nothing_back_and_is_told_what_it_missed() {
    let node = Node::new("sys-slow");
    let (_ops, base) = serve(&node, None, false).await;
    let s = girder::server::start(&node, Loud { n: 0 }).await.unwrap();
    let pid = s.pid();
    let mut trace = Sse::open(format!("{base}/api/processes/{pid}/trace")).await;
    // 40 MB of trace: far more than the socket's buffers, the HTTP server's and the trace's own
    // (1,024 events) hold.
    let n = 40_000;
    for _ in 0..n {
        s.cast(()).unwrap();
    }
    let handled = within(
        "the server to handle every cast (it never waits for its trace)",
        s.call(|r| r),
    )
    .await;
    assert_eq!(handled.unwrap(), n);
    let mut events = 0u64;
    let dropped = loop {
        match trace.next().await.unwrap() {
            (name, _) if name == "trace" => events += 1,
            (name, v) if name == "dropped" => break v["dropped"].as_u64().unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert!(
        dropped > 0 && events + dropped <= n + 1,
        "{events} + {dropped}"
    );
    // Whatever it read and what it was told it missed account for every event.
    s.stop(ExitReason::Normal).await;
    let total = loop {
        match trace.next().await.unwrap() {
            (name, _) if name == "trace" => events += 1,
            (name, _) if name == "dropped" => {}
            (name, v) if name == "end" => break events + v["dropped"].as_u64().unwrap(),
            other => panic!("{other:?}"),
        }
    };
    // n casts, the call, the stop.
    assert_eq!(total, n + 2);
}

/// A behaviour busy in a long callback does not answer; the API says so after the core's
/// timeout (5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_behaviour_times_out_with_504() {
    struct Busy;
    impl Server for Busy {
        type Call = ();
        type Cast = Duration;
        type Info = ();
        async fn handle_cast(&mut self, d: Duration, _: &mut ServerContext<Self>) -> Flow {
            tokio::time::sleep(d).await;
            Flow::Continue
        }
    }
    let node = Node::new("sys-busy");
    let (_ops, base) = serve(&node, None, false).await;
    let s = girder::server::start(&node, Busy).await.unwrap();
    s.cast(girder::sys::TIMEOUT + Duration::from_secs(2))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, v) = send(
        Method::GET,
        format!("{base}/api/processes/{}/state", s.pid()),
        None,
    )
    .await;
    assert_eq!(status, 504, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{v}"
    );
}
