//! `girder-mqtt bench` at a tiny scale against this broker: every workload runs, and every
//! line carries the keys docs/benchmarks.md is made from (so the bench cannot rot unseen).

use std::process::Command;

#[test]
fn the_bench_runs_every_workload_against_girder_and_reports_its_keys() {
    let out = Command::new(env!("CARGO_BIN_EXE_girder-mqtt"))
        .args(["bench", "--broker", "girder", "--scale", "0.005", "--json"])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    // Three messaging workloads × two QoS × two modes, and idle.
    assert_eq!(lines.len(), 13, "{lines:#?}\n{stderr}");
    for l in &lines {
        assert_eq!(l["system"], "girder");
        assert!(l["rss_mb"].as_f64().unwrap() > 0.0, "{l}");
        if l["workload"] == "idle" {
            assert_eq!(l["mode"], "idle");
            assert!(l["conns"].as_u64().unwrap() > 0, "{l}");
            for key in ["connects_per_s", "kb_per_conn"] {
                assert!(l[key].is_number(), "{key} in {l}");
            }
            continue;
        }
        assert!(["fan_in", "fan_out", "p2p"].contains(&l["workload"].as_str().unwrap()));
        assert!(["max", "paced"].contains(&l["mode"].as_str().unwrap()));
        assert!([0, 1].contains(&l["qos"].as_u64().unwrap()));
        for key in ["sent", "delivered", "delivered_pct", "clients"] {
            assert!(l[key].is_number(), "{key} in {l}");
        }
        // A debug build on a busy machine may deliver nothing inside a full-rate run's short
        // window (it is all in buffers), but something by the end of the drain.
        assert!(l["delivered"].as_u64().unwrap() > 0, "{l}");
        let (p50, p99) = (l["p50_us"].as_u64().unwrap(), l["p99_us"].as_u64().unwrap());
        if l["msgs_per_s"].as_f64().unwrap() > 0.0 {
            assert!(0 < p50 && p50 <= p99, "{l}");
        }
        if l["mode"] == "paced" {
            assert!(l["msgs_per_s"].as_f64().unwrap() > 0.0, "{l}");
            assert!(l["target_msgs_per_s"].as_f64().unwrap() > 0.0, "{l}");
            // Far below saturation, nothing is lost.
            assert!(l["delivered_pct"].as_f64().unwrap() > 90.0, "{l}");
        }
    }
}
