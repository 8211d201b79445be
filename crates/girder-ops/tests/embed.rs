//! The ops API in an application's own axum app (`OpsBuilder::router`): nested under a prefix
//! beside the application's routes, or merged at its root beside its fallback; the dashboard
//! and the URLs it asks for answer under the prefix. The `Ops` handle's lifetime: dropping it
//! ends the background tasks (the webhook's connection closes mid-request) and a served API's
//! listener, while a router the application still serves keeps answering.

use axum::routing::get;
use axum::Router;
use girder::{ChildSpec, Context, ExitReason, Node, Supervisor};
use girder_ops::webhook::WebhookConfig;
use girder_ops::{Alarm, Ops, Severity};
use girder_testkit::{eventually_async, within};
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncReadExt;

mod common;

use common::{request, send};

const TOKEN: &str = "a-token-for-the-embedding-tests";

/// Serves `app` on a free loopback port, as an application would: its base URL.
async fn serve_app(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

async fn text(url: String) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_api_nested_under_a_prefix_answers_there_beside_the_applications_routes() {
    let node = Node::new("nested");
    let sup = Supervisor::builder()
        .name("app_sup")
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
    let (ops_router, ops) = Ops::builder(&node).admin_token(TOKEN).router().await;
    assert_eq!(ops.listening_on(), None, "the application's server listens");
    let app = Router::new()
        .route("/", get(|| async { "the application's own page" }))
        .route("/hello", get(|| async { "hello" }))
        .nest("/ops", ops_router);
    let base = serve_app(app).await;

    // The application's routes are its own.
    assert_eq!(
        text(format!("{base}/")).await,
        (200, "the application's own page".into())
    );
    assert_eq!(text(format!("{base}/hello")).await, (200, "hello".into()));
    // A path neither has: the application's 404 (axum's, empty), not the API's JSON one.
    assert_eq!(text(format!("{base}/nothing")).await, (404, String::new()));

    // The API, under the prefix.
    assert_eq!(
        text(format!("{base}/ops/healthz")).await,
        (200, "ok".into())
    );
    let (status, ready) = send(Method::GET, format!("{base}/ops/readyz"), None).await;
    assert_eq!(
        (status.as_u16(), &ready["ready"]),
        (200, &Value::Bool(true))
    );
    let (status, procs) = send(Method::GET, format!("{base}/ops/api/processes"), None).await;
    assert_eq!(status, 200);
    assert_eq!(procs["total"], 2, "{procs}");
    let (_, tree) = send(Method::GET, format!("{base}/ops/api/supervision"), None).await;
    assert_eq!(tree["roots"][0]["pid"], sup.pid().to_string(), "{tree}");
    assert_eq!(tree["roots"][0]["children"][0]["id"], "worker", "{tree}");
    let (status, metrics) = text(format!("{base}/ops/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"girder_processes{node="nested"} 2"#),
        "{metrics}"
    );
    let (status, state) = send(
        Method::GET,
        format!("{base}/ops/api/processes/{}/state", sup.pid()),
        None,
    )
    .await;
    assert_eq!(
        (status.as_u16(), &state["behaviour"]),
        (200, &"supervisor".into())
    );
    // An unknown API path: the API's own JSON 404, under the prefix too.
    let (status, v) = send(Method::GET, format!("{base}/ops/api/nothing-here"), None).await;
    assert_eq!(status, 404);
    assert_eq!(v["error"], "no such endpoint", "{v}");
    // Admin actions still need the token.
    ops.alarms()
        .raise(Alarm::new("manual", Severity::Minor, "test", "by hand"))
        .unwrap();
    let clear = format!("{base}/ops/api/alarms/manual/clear");
    assert_eq!(request(Method::POST, &clear, None).await.status(), 401);
    assert_eq!(
        request(Method::POST, &clear, Some(TOKEN)).await.status(),
        200
    );
    assert!(!ops.alarms().is_active("manual"));

    // The dashboard at the prefix and at dashboard under it; everything it asks for is
    // relative to its address, so it finds the API under the prefix.
    let (status, page) = text(format!("{base}/ops")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    for absolute in [
        "fetch(\"/",
        "get(\"/",
        "EventSource(\"/",
        "`/api",
        "\"/api",
        "\"/metrics",
    ] {
        assert!(
            !page.contains(absolute),
            "the page asks for a path from the server's root ({absolute}), which misses the prefix"
        );
    }
    let (status, beside) = text(format!("{base}/ops/dashboard")).await;
    assert_eq!(status, 200);
    assert!(
        beside.contains(r#"<html lang="en" data-page="dashboard">"#),
        "the page at dashboard is marked, so it looks for the API beside it"
    );
    assert!(
        !page.contains(r#"data-page="dashboard""#),
        "the page at the prefix is not"
    );
    // The URLs the page builds from either address: the API's root is /ops/.
    for url in [
        "api/nodes",
        "api/processes?sort=mailbox&limit=10",
        "api/alarms?scope=cluster",
        "readyz",
        "metrics",
    ] {
        let r = reqwest::get(format!("{base}/ops/{url}")).await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    ops.shutdown();
}

#[tokio::test]
async fn the_api_merges_at_the_root_of_an_app_that_has_a_fallback() {
    let node = Node::new("merged");
    let (ops_router, _ops) = Ops::builder(&node).router().await;
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "the application's 404") })
        .merge(ops_router);
    let base = serve_app(app).await;
    assert_eq!(text(format!("{base}/hello")).await, (200, "hello".into()));
    assert_eq!(text(format!("{base}/healthz")).await, (200, "ok".into()));
    let (status, page) = text(format!("{base}/")).await;
    assert!(status == 200 && page.contains("<html"), "{status} {page}");
    let (status, procs) = send(Method::GET, format!("{base}/api/processes"), None).await;
    assert_eq!((status.as_u16(), &procs["total"]), (200, &Value::from(0)));
    assert_eq!(
        text(format!("{base}/nothing")).await,
        (404, "the application's 404".into())
    );
    let (status, v) = send(Method::GET, format!("{base}/api/nothing-here"), None).await;
    assert_eq!(
        (status.as_u16(), &v["error"]),
        (404, &"no such endpoint".into())
    );
}

/// A webhook receiver that takes the first POST and never answers: the POST's text once it has
/// arrived, and word when the sender closes the connection.
async fn silent_receiver() -> (
    String,
    tokio::sync::oneshot::Receiver<String>,
    tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (posted_tx, posted) = tokio::sync::oneshot::channel();
    let (closed_tx, closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("alarm_raised") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "the sender closed before its POST arrived");
            got.extend_from_slice(&buf[..n]);
        }
        let _ = posted_tx.send(String::from_utf8_lossy(&got).into_owned());
        while let Ok(1..) = conn.read(&mut buf).await {}
        let _ = closed_tx.send(());
    });
    (url, posted, closed)
}

#[tokio::test]
async fn dropping_the_handle_ends_its_tasks_and_the_router_answers_on() {
    let node = Node::new("handle");
    let (url, posted, mut closed) = silent_receiver().await;
    let mut hook = WebhookConfig::new(url);
    // Far longer than the test: the sink waits for its answer until it is ended.
    hook.timeout = std::time::Duration::from_secs(600);
    let (ops_router, ops) = Ops::builder(&node).webhook(hook).router().await;
    let base = serve_app(Router::new().nest("/ops", ops_router)).await;
    let alarms = ops.alarms().clone();
    alarms
        .raise(Alarm::new("first", Severity::Warning, "test", "before"))
        .unwrap();
    let post = within("the webhook's POST", posted).await.unwrap();
    assert!(post.starts_with("POST /hook"), "{post}");
    assert!(
        closed.try_recv().is_err(),
        "the sink waits for its answer while the handle lives"
    );

    ops.shutdown();
    // The sink's task is cancelled: its request goes, and its connection with it.
    within("the webhook's connection to close", closed)
        .await
        .unwrap();

    // The router is the application's to serve: it answers on, from what is left.
    assert_eq!(
        text(format!("{base}/ops/healthz")).await,
        (200, "ok".into())
    );
    alarms
        .raise(Alarm::new("second", Severity::Warning, "test", "after"))
        .unwrap();
    let (status, v) = send(Method::GET, format!("{base}/ops/api/alarms"), None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = v["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["first", "second"], "{v}");
}

#[tokio::test]
async fn a_served_api_stops_listening_when_its_handle_goes() {
    let node = Node::new("served");
    let ops = Ops::builder(&node)
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = ops.local_addr();
    assert_eq!(ops.listening_on(), Some(addr));
    assert_eq!(
        text(format!("http://{addr}/healthz")).await,
        (200, "ok".into())
    );
    // Served alone, any other path gets the API's JSON 404.
    let (status, v) = send(Method::GET, format!("http://{addr}/nothing"), None).await;
    assert_eq!(
        (status.as_u16(), &v["error"]),
        (404, &"no such endpoint".into())
    );
    drop(ops);
    eventually_async("the listener to close", async || {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
}

#[tokio::test]
async fn a_handle_from_router_has_no_address_to_give() {
    let node = Node::new("no-addr");
    let (_router, ops) = Ops::builder(&node).router().await;
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ops.local_addr()))
        .expect_err("local_addr panics without a listener");
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(
        message.contains("serves no listener of its own"),
        "{message}"
    );
}
