//! The `girder bench` workloads on other actor systems, so Girder can be measured side by side.
//!
//! `girder-peers --system tokio|actix|ractor|kameo [--workload NAME|all] [--scale F]` prints one
//! JSON line per workload with the same names and keys as `girder bench --json`.

mod actix_peer;
mod common;
mod kameo_peer;
mod ractor_peer;
mod tokio_peer;

#[global_allocator]
static GLOBAL: common::Counting = common::Counting;

pub const WORKLOADS: [&str; 7] = ["spawn", "ring", "pingpong", "call_c1", "call_c100", "fanin", "timers"];

fn main() {
    common::one_arena_unless_set();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut system = None;
    let mut workload = "all".to_string();
    let mut scale = 1.0f64;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--system" => system = args.get(i + 1).cloned(),
            "--workload" => workload = args.get(i + 1).cloned().unwrap_or_default(),
            "--scale" => scale = args.get(i + 1).and_then(|s| s.parse().ok()).expect("--scale takes a number"),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    let system = system.expect("--system tokio|actix|ractor|kameo");
    let selected: Vec<&str> = if workload == "all" {
        WORKLOADS.to_vec()
    } else {
        assert!(WORKLOADS.contains(&workload.as_str()), "unknown workload {workload}");
        vec![workload.as_str()]
    };
    for w in selected {
        let out = match system.as_str() {
            "tokio" => tokio_peer::run(w, scale),
            "actix" => actix_peer::run(w, scale),
            "ractor" => ractor_peer::run(w, scale),
            "kameo" => kameo_peer::run(w, scale),
            other => panic!("unknown system {other}"),
        };
        common::print(&system, w, &out);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
