//! The dashboard in a real browser (Debian's `chromium`, headless): the page loads from the
//! node, its script fetches the API and renders the node, its supervision tree, its busiest
//! processes and its alarms; a process's detail shows its sys state (escaped) and its live
//! trace; a screenshot of it is not blank.
//!
//! Skips (and says so) only when no Chromium is installed; `.ci/run` installs it.

use std::path::PathBuf;
use std::time::Duration;

use girder::sys::StateView;
use girder::{ChildSpec, Context, ExitReason, Flow, Node, Server, ServerContext, Supervisor};
use girder_ops::{Alarm, Ops, OpsConfig, Severity};
use girder_testkit::eventually_async;

fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|b| std::env::split_paths(&path).map(move |d| d.join(b)))
        .find(|p| p.is_file())
}

async fn run_browser(browser: &PathBuf, extra: &[&str], url: &str) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1280,1000",
        // Lets the page's timers run and its fetches finish before the dump or screenshot.
        "--virtual-time-budget=4000",
    ]);
    cmd.args(extra).arg(url);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the browser finishes within a minute")
        .expect("the browser runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_live_data_in_a_browser() {
    let Some(browser) = browser() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium); the dashboard was not tested in a browser");
        return;
    };
    // On Girder's schedulers, so the summary line shows them.
    let pool = girder::Schedulers::new(2);
    let node = Node::builder("dash-node").schedulers(pool.clone()).build();
    let _sup = Supervisor::builder()
        .child(ChildSpec::process(
            "ingest_worker",
            |mut ctx: Context<()>| async move {
                ctx.recv().await;
                ExitReason::Normal
            },
        ))
        .name("app_sup")
        .start(&node)
        .await
        .unwrap();
    let backlog = node.spawn(|mut ctx: Context<u32>| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let _ = ctx.recv().await;
        ExitReason::Normal
    });
    node.register("backlogged", backlog.pid()).unwrap();
    for i in 0..42 {
        backlog.send(i).unwrap();
    }
    let ops = Ops::start_local(node.clone(), OpsConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    ops.alarms()
        .raise(Alarm::new(
            "disk_nearly_full",
            Severity::Major,
            "dash-node",
            "/var at 97%",
        ))
        .unwrap();
    // Without the live event stream: headless virtual time waits for open requests to end.
    let url = format!("http://{}/#live=0", ops.local_addr());

    let out = run_browser(&browser, &["--dump-dom"], &url).await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "dash-node",
        "disk_nearly_full",
        "ingest_worker",
        "app_sup",
        "backlogged",
        ">42<",
        "2 schedulers, run queue",
    ] {
        assert!(
            dom.contains(expected),
            "the rendered page lacks {expected:?}:\n{dom}"
        );
    }

    let shot = std::env::temp_dir().join(format!("girder-dashboard-{}.png", std::process::id()));
    let arg = format!("--screenshot={}", shot.display());
    let out = run_browser(&browser, &[&arg], &url).await;
    assert!(
        out.status.success(),
        "browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let background = pixels[0];
    let differing = pixels.iter().filter(|p| p[..3] != background[..3]).count();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    assert!(
        (info.width, info.height) == (1280, 1000),
        "{}x{}",
        info.width,
        info.height
    );
    assert!(
        differing * 20 > pixels.len() && colours.len() > 50,
        "the screenshot looks blank: {differing} of {} pixels differ from the corner, {} colours",
        pixels.len(),
        colours.len()
    );
    let _ = std::fs::remove_file(&shot);
}

/// An application's own axum app with the ops API nested under `/ops`: the dashboard at `/ops`
/// and at `/ops/dashboard` asks for everything under the prefix (the node, its tree, its
/// processes, its alarms, a process's sys state), as at the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_nested_under_a_prefix_finds_its_api_there() {
    let Some(browser) = browser() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium); the dashboard was not tested in a browser");
        return;
    };
    let node = Node::new("nested-dash");
    let _sup = Supervisor::builder()
        .child(ChildSpec::process(
            "nested_worker",
            |mut ctx: Context<()>| async move {
                ctx.recv().await;
                ExitReason::Normal
            },
        ))
        .name("nested_sup")
        .start(&node)
        .await
        .unwrap();
    let sessions = girder::server::start(&node, Sessions).await.unwrap();
    node.register("nested_sessions", sessions.pid()).unwrap();
    let (ops_router, ops) = Ops::builder(&node).router().await;
    ops.alarms()
        .raise(Alarm::new(
            "nested_alarm",
            Severity::Minor,
            "nested-dash",
            "raised by the test",
        ))
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { "the application's own page" }),
        )
        .nest("/ops", ops_router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let pid = sessions.pid().to_string();
    let encoded = pid.replace('<', "%3C").replace('>', "%3E");
    for page in ["ops", "ops/dashboard"] {
        let url = format!("http://{addr}/{page}#live=0&pid={encoded}");
        let out = run_browser(&browser, &["--dump-dom"], &url).await;
        let dom = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "browser failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for expected in [
            "nested-dash",
            "nested_sup",
            "nested_worker",
            "nested_sessions",
            "nested_alarm",
            // The process detail's sys state.
            r#""sessions": 3"#,
        ] {
            assert!(
                dom.contains(expected),
                "/{page}: the rendered page lacks {expected:?}:\n{dom}"
            );
        }
    }
}

/// Shows its state as JSON, with text that would be markup if the page did not escape it.
struct Sessions;

impl Server for Sessions {
    type Call = ();
    type Cast = ();
    type Info = ();
    fn state_view(&self) -> StateView {
        StateView::json(&serde_json::json!({
            "sessions": 3,
            "owner": "<img src=x onerror=alert(1)>",
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_detail_shows_its_sys_state_in_a_browser() {
    let Some(browser) = browser() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium); the dashboard was not tested in a browser");
        return;
    };
    let node = Node::new("detail-node");
    let sessions = girder::server::start(&node, Sessions).await.unwrap();
    node.register("session_registry", sessions.pid()).unwrap();
    girder::sys::suspend(&node, sessions.pid()).await.unwrap();
    // Waiting while suspended: the busiest process, so the list links to it too.
    for _ in 0..5 {
        sessions.cast(()).unwrap();
    }
    let ops = Ops::start_local(node.clone(), OpsConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    // The detail opens at load with #pid=<...> (as clicking a pid in the list leaves it).
    let pid = sessions.pid().to_string();
    let encoded = pid.replace('<', "%3C").replace('>', "%3E");
    let url = format!("http://{}/#live=0&pid={encoded}", ops.local_addr());
    let out = run_browser(&browser, &["--dump-dom"], &url).await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail = dom
        .split(r#"<section id="detail""#)
        .nth(1)
        .and_then(|d| d.split("</section>").next())
        .unwrap_or_else(|| panic!("no detail section:\n{dom}"));
    let open_tag = detail.split('>').next().unwrap();
    assert!(
        !open_tag.contains("hidden"),
        "the detail is hidden: {open_tag}"
    );
    for expected in [
        &pid.replace('<', "&lt;").replace('>', "&gt;"),
        "session_registry",
        "mailbox 5",
        "server",
        "suspended",
        r#""sessions": 3"#,
        // The state's text, escaped: shown, not run.
        "&lt;img src=x onerror=alert(1)&gt;",
        r#"data-act="resume""#,
        "start trace",
    ] {
        assert!(
            detail.contains(expected),
            "the detail lacks {expected:?}:\n{detail}"
        );
    }
    assert!(!dom.contains("<img"), "unescaped state text:\n{dom}");
    // The list links each pid to its detail.
    assert!(dom.contains(r##"<a class="pid" href="#""##), "{dom}");
}

/// Always busy: each cast takes 100 ms and hundreds wait. The page's requests for its state
/// wait for the cast in hand (and the browser's virtual time waits for them), so the trace's
/// events reach the page before it is dumped.
struct Slow;

impl Server for Slow {
    type Call = ();
    type Cast = u32;
    type Info = ();
    async fn handle_cast(&mut self, _: u32, _: &mut ServerContext<Self>) -> Flow {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Flow::Continue
    }
    fn trace_view(msg: girder::server::TraceMsg<'_, Self>) -> Option<String> {
        Some(format!("{msg:?} <i>as markup</i>"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_trace_streams_into_the_page() {
    let Some(browser) = browser() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium); the dashboard was not tested in a browser");
        return;
    };
    let node = Node::new("trace-node");
    let slow = girder::server::start(&node, Slow).await.unwrap();
    for i in 0..600 {
        slow.cast(i).unwrap();
    }
    let ops = Ops::start_local(node.clone(), OpsConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let pid = slow.pid().to_string();
    let encoded = pid.replace('<', "%3C").replace('>', "%3E");
    // trace=1: the trace starts as the detail opens (as its button does).
    let url = format!("http://{}/#live=0&pid={encoded}&trace=1", ops.local_addr());
    let out = run_browser(&browser, &["--dump-dom"], &url).await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = dom
        .split(r#"<div id="d-trace">"#)
        .nth(1)
        .and_then(|d| d.split("</section>").next())
        .unwrap_or_else(|| panic!("no trace panel:\n{dom}"));
    assert!(lines.contains("cast"), "no traced cast:\n{lines}");
    assert!(
        lines.contains("Cast(") && lines.contains("&lt;i&gt;as markup&lt;/i&gt;"),
        "the detail is shown, escaped:\n{lines}"
    );
    assert!(dom.contains(">stop trace<"), "the trace runs:\n{dom}");
    assert!(dom.contains("1 trace attached"), "{dom}");
    // The browser has gone: so has its trace.
    eventually_async("the page's trace detached", async || {
        girder::sys::get_state(&node, slow.pid())
            .await
            .unwrap()
            .tracers
            == 0
    })
    .await;
}
