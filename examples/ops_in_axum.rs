//! The ops API in your own axum app: the application's route beside girder-ops's router nested
//! under `/ops`, on the application's listener. The app asks itself a few things, then stops.
//! With `--serve` it keeps running until Ctrl-C: open the dashboard at the `/ops` it prints.

use std::future::IntoFuture;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use girder::{
    ChildSpec, ExitReason, Flow, Node, ReplyTo, Server, ServerContext, ServerRef, Supervisor,
};
use girder_ops::Ops;

/// Counts visitors; a call is a visit and answers which one it was.
struct Visits(u64);

impl Server for Visits {
    type Call = ReplyTo<u64>;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, from: ReplyTo<u64>, _: &mut ServerContext<Self>) -> Flow {
        self.0 += 1;
        from.reply(self.0);
        Flow::Continue
    }
}

/// The application's own route: it calls the supervised server (looked up by name at each
/// request, so it finds a restarted one).
async fn hello(State(node): State<Node>) -> Result<String, StatusCode> {
    let visits = ServerRef::<Visits>::lookup(&node, "visits")
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let n = visits
        .call(|r| r)
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(format!("hello, visitor {n}"))
}

#[tokio::main]
async fn main() {
    let node = Node::new("shop");
    let sup = Supervisor::builder()
        .name("shop_sup")
        .child(ChildSpec::server("visits", || Visits(0)).named("visits"))
        .start(&node)
        .await
        .unwrap();

    // The ops API as a router, and the handle that owns its background tasks (alarm
    // thresholds, the notice log, ...): keep it while the router serves.
    let (ops_router, ops) = Ops::builder(&node)
        .admin_token("an-admin-token-for-the-example")
        .router()
        .await;
    let app = Router::new()
        .route("/hello", get(hello))
        .with_state(node.clone())
        .nest("/ops", ops_router);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    println!("serving on {base}: the application at /hello, the dashboard at {base}/ops");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stopped.await;
    });

    let client = async {
        let get = |path: &str| reqwest::get(format!("{base}{path}"));
        let hello = get("/hello").await.unwrap().text().await.unwrap();
        println!("GET /hello: {hello}");
        assert_eq!(hello, "hello, visitor 1");
        let health = get("/ops/healthz").await.unwrap().text().await.unwrap();
        println!("GET /ops/healthz: {health}");
        assert_eq!(health, "ok");
        let procs: serde_json::Value = get("/ops/api/processes")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let names: Vec<&str> = procs["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        println!(
            "GET /ops/api/processes: {} processes, named {names:?}",
            procs["total"]
        );
        assert!(names.contains(&"visits") && names.contains(&"shop_sup"));
        let metrics = get("/ops/metrics").await.unwrap().text().await.unwrap();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("girder_processes{"))
            .unwrap();
        println!(
            "GET /ops/metrics: {line} (and {} more lines)",
            metrics.lines().count() - 1
        );
        if std::env::args().any(|a| a == "--serve") {
            println!("open {base}/ops in a browser; Ctrl-C to stop");
            girder::application::shutdown_signal().await;
        }
        let _ = stop.send(());
    };
    let (served, ()) = tokio::join!(server.into_future(), client);
    served.unwrap();

    // The server has stopped; so do the ops API's tasks and the application's tree.
    ops.shutdown();
    sup.stop(ExitReason::Shutdown).await;
    println!("stopped");
}
