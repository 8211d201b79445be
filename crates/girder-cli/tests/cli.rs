//! The `girder` binary end to end: bench output format, the demo, `status` and `top` against a
//! node's ops API, and bad input.

use std::process::{Command, Stdio};
use std::time::Duration;

fn girder(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_girder"))
        .args(args)
        .output()
        .expect("girder runs")
}

#[test]
fn bench_json_prints_one_line_per_workload_with_the_documented_keys() {
    let out = girder(&["bench", "--json", "--scale", "0.002"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let expect: [(&str, &[&str]); 13] = [
        ("spawn", &["spawn_ns_per_proc", "mem_bytes_per_proc"]),
        ("ring", &["hops_per_s"]),
        ("pingpong", &["round_trips_per_s"]),
        ("call_c1", &["calls_per_s", "p50_us", "p99_us"]),
        ("call_c100", &["calls_per_s", "p50_us", "p99_us"]),
        ("fanin", &["msgs_per_s"]),
        (
            "supervisor_churn",
            &[
                "pair_us_alone",
                "pair_us_beside",
                "churn_ratio",
                "shutdown_s",
            ],
        ),
        ("timers", &["arm_ns", "cancel_ns", "bytes_per_timer"]),
        ("dist_link", &["msgs_per_s"]),
        ("dist_send", &["msgs_per_s"]),
        ("dist_call_c1", &["calls_per_s", "p50_us", "p99_us"]),
        ("dist_call_c50", &["calls_per_s", "p50_us", "p99_us"]),
        ("detect", &["detect_s", "detect_silent_s"]),
    ];
    assert_eq!(lines.len(), expect.len());
    for (line, (name, keys)) in lines.iter().zip(expect) {
        assert_eq!(line["system"], "girder");
        assert_eq!(line["workload"], name);
        for k in keys {
            let v = line[*k]
                .as_f64()
                .unwrap_or_else(|| panic!("{name} lacks {k}: {line}"));
            assert!(v > 0.0, "{name}.{k} = {v}");
        }
    }
}

#[test]
fn bench_table_is_readable() {
    let out = girder(&["bench", "--scale", "0.002", "-w", "ring", "-w", "call_c1"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("hops/s") && text.contains("calls/s"),
        "{text}"
    );
    assert!(!text.contains("fanin"));
}

#[test]
fn bench_refuses_unknown_workloads_and_bad_scales() {
    let out = girder(&["bench", "-w", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("unknown workload \"nonsense\""), "{err}");
    let out = girder(&["bench", "--scale", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("--scale"));
}

#[test]
fn demo_survives_injected_crashes_and_stops_cleanly() {
    let out = girder(&["demo", "--duration", "3s", "--seed", "7"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("tree started"), "{text}");
    assert!(
        text.contains("child exited; restarting"),
        "no restart seen:\n{text}"
    );
    assert!(text.contains("is back as"), "no recovery seen:\n{text}");
    assert!(
        text.contains("processes left: 0"),
        "tree not fully stopped:\n{text}"
    );
    // Act 2: the globally registered service moves to another OS process after a SIGKILL.
    let owner = text
        .lines()
        .find_map(|l| l.split("it runs on ").nth(1))
        .unwrap_or_else(|| panic!("no owner reported:\n{text}"))
        .trim()
        .to_string();
    let again = text
        .lines()
        .find(|l| l.contains("answered again from"))
        .unwrap_or_else(|| panic!("no failover seen:\n{text}"));
    assert!(!again.contains(&format!("from {owner} ")), "{again}");
    assert!(text.contains("== failover: detection"), "{text}");
    assert!(
        text.contains("remaining nodes stopped gracefully"),
        "{text}"
    );
}

#[test]
fn demo_refuses_a_bad_duration() {
    let out = girder(&["demo", "--duration", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("not a duration"));
}

#[test]
fn sigterm_stops_the_demo_tree_gracefully() {
    let child = Command::new(env!("CARGO_BIN_EXE_girder"))
        .args(["demo", "--duration", "60s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("girder runs");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let started = std::time::Instant::now();
    let out = child.wait_with_output().expect("girder exits");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "did not stop promptly"
    );
    assert!(out.status.success(), "exit status {:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("stopping (signal)"), "{text}");
    assert!(text.contains("processes left: 0"), "{text}");
}

/// A node and its ops API, served from this test process (the runtime must outlive the checks):
/// the API's address as `host:port`.
fn ops_node(
    name: &str,
) -> (
    tokio::runtime::Runtime,
    girder::Node,
    girder_ops::Ops,
    String,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let node = girder::Node::new(name);
    let cfg = girder_ops::OpsConfig::new("127.0.0.1:0".parse().unwrap());
    let ops = rt
        .block_on(girder_ops::Ops::start(node.clone(), None, None, cfg))
        .unwrap();
    let addr = ops.local_addr().to_string();
    (rt, node, ops, addr)
}

#[test]
fn status_and_top_take_an_address_without_a_scheme() {
    let (_rt, _node, _ops, addr) = ops_node("schemeless");
    let out = girder(&["status", "--node", &addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("node schemeless:"), "{text}");
    let top = Command::new(env!("CARGO_BIN_EXE_girder"))
        .args(["top", "--node", &addr, "--every", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    Command::new("kill")
        .args(["-TERM", &top.id().to_string()])
        .status()
        .unwrap();
    let out = top.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("node schemeless:"), "{text}");
}

#[test]
fn a_bad_node_address_is_refused_saying_what_was_expected() {
    for bad in ["localhost", "ftp://127.0.0.1:21", "", "127.0.0.1:8080?x"] {
        for cmd in ["status", "top"] {
            let out = girder(&[cmd, "--node", bad]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} --node {bad:?}: {err}");
            assert!(
                err.contains("--node") && err.contains("expected") && err.contains("host:port"),
                "{cmd} --node {bad:?}: {err}"
            );
        }
    }
}

#[test]
fn status_prints_pids_as_the_runtime_prints_them() {
    let (rt, node, _ops, addr) = ops_node("pids");
    // Holds its messages: the top process by mailbox.
    let holder = rt.block_on(async {
        node.spawn(|_: girder::Context<u32>| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            girder::ExitReason::Normal
        })
    });
    for i in 0..5 {
        holder.send(i).unwrap();
    }
    let out = girder(&["status", "--node", &addr]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .skip_while(|l| !l.starts_with("TOP PROCESSES"))
        .nth(2)
        .unwrap_or_else(|| panic!("no process listed:\n{text}"));
    assert!(
        line.trim_start().starts_with(&holder.pid().to_string()),
        "{line:?} in\n{text}"
    );
}
