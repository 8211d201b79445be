//! What the ops API's HTTP tests share: a node's API served on a free port, and requests to it
//! with or without the bearer token.

// Each test binary compiles its own copy and uses a part of it.
#![allow(dead_code)]

use girder::Node;
use girder_ops::{Ops, OpsConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// `node`'s ops API on a free loopback port (`Ops::start_local`, as an application would start
/// it), with `token` as its admin token and reads protected or not: the handle and the base
/// URL (`http://127.0.0.1:PORT`).
pub async fn serve(node: &Node, token: Option<&str>, protect_reads: bool) -> (Ops, String) {
    let mut cfg = OpsConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.admin_token = token.map(String::from);
    cfg.protect_reads = protect_reads;
    let ops = Ops::start_local(node.clone(), cfg).await.unwrap();
    let base = format!("http://{}", ops.local_addr());
    (ops, base)
}

/// One request, with the bearer token if given: the response.
pub async fn request(
    method: Method,
    url: impl AsRef<str>,
    token: Option<&str>,
) -> reqwest::Response {
    let mut r = reqwest::Client::new().request(method, url.as_ref());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

/// One request, with the bearer token if given: its status and JSON body (`null` if the body
/// is not JSON).
pub async fn send(
    method: Method,
    url: impl AsRef<str>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let r = request(method, url, token).await;
    let status = r.status();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}
