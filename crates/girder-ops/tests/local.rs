//! The single-node ops API, started without a distribution (`Ops::start_local`): every endpoint
//! answers. CI also runs this built without the `dist` feature, where the crate depends on the
//! core alone (`cargo test -p girder-ops --no-default-features`).

use girder::{ChildSpec, Context, ExitReason, Node, Supervisor};
use girder_ops::{Ops, OpsConfig};
use serde_json::Value;

#[tokio::test]
async fn a_node_without_distribution_serves_the_whole_single_node_api() {
    let node = Node::new("single");
    let mut cfg = OpsConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.admin_token = Some("a-token-for-the-local-test".into());
    let ops = Ops::start_local(node.clone(), cfg).await.unwrap();
    let base = format!("http://{}", ops.local_addr());
    let sup = Supervisor::builder()
        .name("top_sup")
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
    let get = |path: &str| reqwest::get(format!("{base}{path}"));
    let json = |path: &'static str| {
        let r = get(path);
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.json::<Value>().await.unwrap()
        }
    };

    assert_eq!(get("/healthz").await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(json("/readyz").await["ready"], true);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"girder_processes{node="single"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"girder_supervisor_restarts_total{node="single",supervisor="top_sup"}"#),
        "{metrics}"
    );
    assert!(!metrics.contains("girder_dist_"), "{metrics}");

    let nodes = json("/api/nodes").await;
    assert_eq!(nodes["nodes"].as_array().unwrap().len(), 1, "{nodes}");
    assert_eq!(nodes["nodes"][0]["name"], "single");
    assert_eq!(nodes["nodes"][0]["this"], true);
    assert_eq!(nodes["members"], serde_json::json!([]));
    assert_eq!(nodes["stats"]["processes"], 2);

    let procs = json("/api/processes").await;
    assert_eq!(procs["total"], 2, "{procs}");
    let tree = json("/api/supervision").await;
    assert_eq!(tree["roots"][0]["pid"], sup.pid().to_string(), "{tree}");
    assert_eq!(tree["roots"][0]["children"][0]["id"], "worker");

    ops.alarms()
        .raise(girder_ops::Alarm::new(
            "disk_full",
            girder_ops::Severity::Major,
            "single",
            "/var is full",
        ))
        .unwrap();
    let alarms = json("/api/alarms?scope=cluster").await;
    assert_eq!(alarms["active"][0]["id"], "disk_full", "{alarms}");
    // A cluster of one: no other node's alarms.
    assert_eq!(alarms["cluster"], serde_json::json!([]), "{alarms}");

    // sys: the supervisor's state, suspended and resumed, traced.
    let state_path = format!("/api/processes/{}/state", sup.pid());
    let state = get(&state_path)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(state["behaviour"], "supervisor", "{state}");
    assert_eq!(state["view"]["value"]["children"][0]["id"], "worker");
    let client = reqwest::Client::new();
    for what in ["suspend", "resume"] {
        let r = client
            .post(format!("{base}/api/processes/{}/{what}", sup.pid()))
            .bearer_auth("a-token-for-the-local-test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
    }
    let trace = get(&format!("/api/processes/{}/trace", sup.pid()))
        .await
        .unwrap();
    assert_eq!(trace.headers()["content-type"], "text/event-stream");

    let events = get("/api/events").await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let page = get("/").await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"));
}
