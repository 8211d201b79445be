//! `girder node` as separate OS processes: two nodes find each other through a seed and
//! authenticate; a node with the wrong cookie is kept out; one is killed with SIGKILL and the
//! other reports it down (with a `node_down` alarm), one stopped with SIGTERM is reported as
//! having left (without one); bad arguments get clear errors.

use std::time::{Duration, Instant};

use girder_testkit::node_proc::run;
use girder_testkit::{NodeProc, WAIT};

const GIRDER: &str = env!("CARGO_BIN_EXE_girder");

/// `girder node ARGS`.
fn node(args: &[&str]) -> NodeProc {
    NodeProc::start(GIRDER, &[&["node"], args].concat())
}

/// The address in a node's `node NAME up (creation C) on ADDR; seeds [...]` line.
fn up_address(line: &str) -> String {
    let after = line
        .split(" on ")
        .nth(1)
        .expect("an up line names its address");
    after.split(';').next().unwrap().to_string()
}

fn cookie_file(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "girder-cookie-{}-{}",
        std::process::id(),
        text.len()
    ));
    girder_dist::write_secret_file(&path, &format!("{text}\n")).unwrap();
    path
}

#[test]
fn nodes_join_authenticate_and_detect_a_killed_peer() {
    let cookie = cookie_file("node-test-cluster-cookie");
    let c = cookie.to_str().unwrap();
    let a = node(&[
        "--name",
        "a@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        c,
    ]);
    let up = a.expect("node a@127.0.0.1 up", WAIT);
    let addr = up_address(&up);
    let b = node(&[
        "--name",
        "b@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        &addr,
        "--cookie-file",
        c,
        "--roles",
        "edge,core",
    ]);
    a.expect("member up: b@127.0.0.1", WAIT);
    b.expect("member up: a@127.0.0.1", WAIT);
    a.expect("connected to b@127.0.0.1 (authenticated", WAIT);

    // A node with another cookie is not let into the membership at all, so nobody connects to
    // it and it learns nothing.
    let wrong = cookie_file("a-completely-different-cookie");
    let w = wrong.to_str().unwrap();
    let m = node(&[
        "--name",
        "m@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        &addr,
        "--cookie-file",
        w,
    ]);
    m.expect("node m@127.0.0.1 up", WAIT);
    assert!(
        !m.saw("member up", Duration::from_millis(1500)),
        "the intruder joined"
    );
    assert!(
        !a.saw("member up: m@127.0.0.1", Duration::from_millis(100)),
        "the intruder was admitted"
    );
    drop(m);

    let killed_at = Instant::now();
    b.signal("-KILL");
    a.expect("member down: b@127.0.0.1", WAIT);
    eprintln!("SIGKILL detected after {:?}", killed_at.elapsed());

    a.signal("-TERM");
    a.expect("node a@127.0.0.1 stopped", WAIT);
}

/// A peer stopped with SIGTERM leaves gracefully: the others report it as having left, with
/// no `node_down` alarm; one killed with SIGKILL is a failure, with the alarm.
#[test]
fn a_node_stopped_with_sigterm_leaves_without_an_alarm_and_a_killed_one_raises_one() {
    let cookie = cookie_file("graceful-leave-cluster-cookie");
    let c = cookie.to_str().unwrap();
    let a = node(&[
        "--name",
        "la@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        c,
        "--http",
        "127.0.0.1:0",
    ]);
    let api = a.expect("ops API on http://", WAIT);
    let api = api
        .trim_start_matches("ops API on http://")
        .trim()
        .to_string();
    let addr = up_address(&a.expect("node la@127.0.0.1 up", WAIT));
    let peer = |name: &str| {
        node(&[
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--seed",
            &addr,
            "--cookie-file",
            c,
        ])
    };
    let active_alarms = || {
        let (code, body) = http(&api, "GET", "/api/alarms", None);
        assert_eq!(code, 200, "{body}");
        body
    };

    let b = peer("lb@127.0.0.1");
    a.expect("connected to lb@127.0.0.1", WAIT);
    b.signal("-TERM");
    // The connection's end and membership's news arrive on their own paths, in either order.
    let (mut left, mut member_down) = (false, false);
    while !(left && member_down) {
        let line = a.expect("lb@127.0.0.1", WAIT);
        assert!(
            !line.contains("alarm raised") && !line.contains("connection to lb@127.0.0.1 lost"),
            "a graceful leave taken for a failure: {line}"
        );
        left |= line.contains("lb@127.0.0.1 left: it shut down");
        member_down |= line.contains("member down: lb@127.0.0.1");
    }
    b.expect("node lb@127.0.0.1 stopped", WAIT);
    if let Some(line) = a.seen("alarm raised", Duration::from_millis(500)) {
        panic!("a graceful leave raised an alarm: {line}");
    }
    let alarms = active_alarms();
    assert!(alarms.contains("\"active\":[]"), "{alarms}");

    let k = peer("lk@127.0.0.1");
    a.expect("connected to lk@127.0.0.1", WAIT);
    k.signal("-KILL");
    let raised = a.expect("alarm raised: node_down:lk@127.0.0.1", WAIT);
    assert!(raised.contains("Major"), "{raised}");
    assert!(active_alarms().contains("node_down:lk@127.0.0.1"));

    a.signal("-TERM");
    a.expect("node la@127.0.0.1 stopped", WAIT);
}

#[test]
fn a_node_raises_its_open_files_limit_to_the_hard_limit_and_says_so() {
    // Started as an operator's shell would with a small soft limit (the usual default is 1,024:
    // a modest cluster plus a few hundred API clients, or a small attack, reach it).
    let hard = std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_string();
    let cookie = cookie_file("open-files-limit-cluster-cookie");
    let script = format!(
        "ulimit -Sn 256 && exec {GIRDER} node --name limits@127.0.0.1 --listen 127.0.0.1:0 \
         --cookie-file {}",
        cookie.display()
    );
    let n = NodeProc::start("sh", &["-c", &script]);
    let line = n.expect("open files limit:", WAIT);
    n.expect("node limits@127.0.0.1 up", WAIT);
    let raised: u64 = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    match hard.parse::<u64>() {
        Ok(hard) if hard <= 256 => eprintln!("hard limit {hard}: nothing to raise, not checked"),
        Ok(hard) => assert_eq!(raised, hard, "{line}"),
        // "unlimited": raised as far as the kernel allows, well past the soft limit.
        Err(_) => assert!(raised > 256, "{line}"),
    }
}

#[test]
fn bad_arguments_get_clear_errors() {
    let short = cookie_file("short");
    let short = short.to_str().unwrap();
    // A cookie others can read is refused, as ssh refuses such keys, saying how to fix it.
    let exposed = cookie_file("a-cookie-everyone-can-read");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let exposed = exposed.to_str().unwrap();
    for (name, cookie, more, says) in [
        ("no-host", "/nonexistent", &[][..], "invalid node name"),
        ("a@h", "/nonexistent/cookie", &[], "cannot read cookie file"),
        ("a@h", "/x", &["--suspect-after", "soon"], "not a duration"),
        ("a@h", short, &[], "invalid cookie"),
        ("a@h", exposed, &[], "chmod 600"),
        // Read with a cap: not a hang or a gigabyte of memory.
        ("a@h", "/dev/zero", &[], "longer than"),
    ] {
        let node = ["node", "--name", name, "--listen", "127.0.0.1:0"];
        let args = [&node[..], &["--cookie-file", cookie], more].concat();
        let out = run(GIRDER, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_node_on_every_interface_advertises_an_address_peers_can_dial() {
    let cookie = cookie_file("advertise-test-cluster-cookie");
    let c = cookie.to_str().unwrap();
    // Nothing dialable to advertise: refused, saying what to give.
    let out = run(
        GIRDER,
        &[
            "node",
            "--name",
            "wild@somehost",
            "--listen",
            "0.0.0.0:0",
            "--cookie-file",
            c,
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--advertise"), "{err}");

    // The name's host is an IP address: advertised (and said), and a peer joins through it.
    let a = node(&[
        "--name",
        "wild@127.0.0.1",
        "--listen",
        "0.0.0.0:0",
        "--cookie-file",
        c,
    ]);
    a.expect("advertising 127.0.0.1:", WAIT);
    let up = a.expect("node wild@127.0.0.1 up", WAIT);
    let addr = up_address(&up);
    assert!(addr.starts_with("127.0.0.1:"), "{up}");
    let b = node(&[
        "--name",
        "tame@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--seed",
        &addr,
        "--cookie-file",
        c,
    ]);
    a.expect("member up: tame@127.0.0.1", WAIT);
    b.expect("member up: wild@127.0.0.1", WAIT);

    // An ops API on every interface without a token is served, with a loud warning.
    let open = node(&[
        "--name",
        "open@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        c,
        "--http",
        "0.0.0.0:0",
    ]);
    let warning = open.expect("can be reached from the network", WAIT);
    assert!(warning.contains("--admin-token-file"), "{warning}");
}

#[test]
fn a_weak_cookie_is_accepted_with_a_warning() {
    let weak = cookie_file("aaaaaaaaaaaaaaaa");
    let n = node(&[
        "--name",
        "weak@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        weak.to_str().unwrap(),
    ]);
    let warning = n.expect("the cookie is weak", WAIT);
    assert!(warning.contains("under 64"), "{warning}");
    n.expect("node weak@127.0.0.1 up", WAIT);
}

/// Writes a CA and a node certificate for `localhost` signed by it; returns (ca, cert, key) paths.
fn pem_set(
    tag: &str,
    signer: &(rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>),
) -> [std::path::PathBuf; 3] {
    let dir = std::env::temp_dir().join(format!("girder-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &signer.1).unwrap();
    let paths = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    std::fs::write(&paths[0], signer.0.pem()).unwrap();
    std::fs::write(&paths[1], cert.pem()).unwrap();
    std::fs::write(&paths[2], key.serialize_pem()).unwrap();
    paths
}

fn new_ca() -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, rcgen::Issuer::new(params, key))
}

/// `girder node` arguments for `name`, joining through `seed` if given, over TLS with `pems`.
fn tls_node(
    name: &str,
    seed: Option<&str>,
    cookie: &str,
    pems: &[std::path::PathBuf; 3],
) -> NodeProc {
    let mut args = vec![
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        cookie,
    ];
    if let Some(seed) = seed {
        args.extend(["--seed", seed]);
    }
    let [ca, cert, key] = pems.each_ref().map(|p| p.to_str().unwrap());
    args.extend(["--tls-ca", ca, "--tls-cert", cert, "--tls-key", key]);
    node(&args)
}

#[test]
fn nodes_connect_over_mutual_tls_and_a_foreign_certificate_is_refused() {
    let cookie = cookie_file("tls-node-test-cluster-cookie");
    let c = cookie.to_str().unwrap();
    let cluster = new_ca();
    let a = tls_node("a@localhost", None, c, &pem_set("a", &cluster));
    let up = a.expect("node a@localhost up", WAIT);
    let addr = up_address(&up);
    let _b = tls_node("b@localhost", Some(&addr), c, &pem_set("b", &cluster));
    a.expect(
        "connected to b@localhost (authenticated by TLS + cookie",
        WAIT,
    );

    // Same cookie and the cluster CA as trust root, but its own certificate is from another CA:
    // the TLS layer refuses it.
    let rogue = new_ca();
    let mut pems = pem_set("m", &rogue);
    pems[0] = pem_set("m-trust", &cluster)[0].clone();
    let _m = tls_node("m@localhost", Some(&addr), c, &pems);
    let refused = a.expect("handshake with m@localhost failed", WAIT);
    assert!(
        refused.contains("TLS") && refused.contains("certificate"),
        "{refused}"
    );
}

/// A minimal HTTP/1.1 request: the status code and the body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// The pid of the process registered as `name` on the node whose ops API is at `addr`, as the
/// API prints it (`<0.12.0>`).
fn pid_of(addr: &str, name: &str) -> String {
    let (_, body) = http(addr, "GET", "/api/processes?limit=1000", None);
    let procs: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    procs["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .and_then(|p| p["pid"].as_str())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_string()
}

/// Kills `pid` through the API with the tests' admin token; the status code.
fn kill(addr: &str, pid: &str) -> u16 {
    // Without the brackets, which a URL path would need escaped.
    let path = format!("/api/processes/{}/kill", pid.trim_matches(['<', '>']));
    http(addr, "POST", &path, Some("an-admin-token-for-tests")).0
}

/// A node called `name` (cookie `cookie_text`) serving its ops API on a free port with the
/// tests' admin token: the node, the API's address, and the cookie and token files.
fn node_with_admin_api(
    name: &str,
    cookie_text: &str,
) -> (NodeProc, String, std::path::PathBuf, std::path::PathBuf) {
    let cookie = cookie_file(cookie_text);
    let token = std::env::temp_dir().join(format!(
        "girder-token-{}-{}",
        name.split('@').next().unwrap_or(name),
        std::process::id()
    ));
    girder_dist::write_secret_file(&token, "an-admin-token-for-tests\n").unwrap();
    let a = node(&[
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        cookie.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--admin-token-file",
        token.to_str().unwrap(),
    ]);
    let line = a.expect("ops API on http://", WAIT);
    let addr = line
        .trim_start_matches("ops API on http://")
        .trim()
        .to_string();
    (a, addr, cookie, token)
}

#[test]
fn a_node_serves_the_ops_api_with_an_admin_token() {
    let (a, addr, cookie, token) =
        node_with_admin_api("ops@127.0.0.1", "ops-api-test-cluster-cookie");
    assert_eq!(http(&addr, "GET", "/healthz", None), (200, "ok".into()));
    let (code, metrics) = http(&addr, "GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        metrics.contains("girder_processes{node=\"ops@127.0.0.1\"}"),
        "{metrics}"
    );
    // `girder node` runs its processes on Girder's schedulers by default.
    assert!(
        metrics.contains("girder_run_queue{node=\"ops@127.0.0.1\"}"),
        "{metrics}"
    );
    let (code, body) = http(&addr, "POST", "/api/alarms/none/clear", None);
    assert_eq!(code, 401, "{body}");
    let (code, _) = http(
        &addr,
        "POST",
        "/api/alarms/none/clear",
        Some("an-admin-token-for-tests"),
    );
    assert_eq!(code, 404);

    // `girder status` reads the same API.
    let out = run(GIRDER, &["status", "--node", &format!("http://{addr}")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for part in [
        "node ops@127.0.0.1:",
        "schedulers: run queue",
        "NODES",
        "ALARMS",
        "none active",
        "TOP PROCESSES",
        "girder.global",
    ] {
        assert!(text.contains(part), "status lacks {part:?}:\n{text}");
    }
    // `girder top` redraws until it is stopped.
    let url = format!("http://{addr}");
    let top = NodeProc::start(GIRDER, &["top", "--node", &url, "--every", "200ms"]);
    std::thread::sleep(Duration::from_millis(1200));
    top.signal("-TERM");
    let out = top.finish(WAIT);
    let text = out.stdout;
    assert!(out.status.success());
    assert!(text.matches("TOP PROCESSES").count() >= 2, "{text}");
    assert!(text.contains("/s)"), "no message rate: {text}");
    // A node that is not there: a clear error.
    let out = run(GIRDER, &["status", "--node", "http://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));

    // An admin action through the API makes a sound on the node's own output: the ops layer's
    // log line reaches stderr (it used to be dropped, no subscriber being installed).
    let pid = pid_of(&addr, "girder.alarms");
    assert_eq!(kill(&addr, &pid), 200);
    let logged = a.expect("process killed through the ops API", WAIT);
    assert!(logged.contains(&pid), "{logged}");

    a.signal("-TERM");
    a.expect("node ops@127.0.0.1 stopped", WAIT);

    // A token too short to be a secret is refused at start.
    girder_dist::write_secret_file(&token, "short\n").unwrap();
    let out = run(
        GIRDER,
        &[
            "node",
            "--name",
            "ops@127.0.0.1",
            "--listen",
            "127.0.0.1:0",
            "--cookie-file",
            cookie.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--admin-token-file",
            token.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16 characters"));
}

#[test]
fn protected_reads_need_the_token_from_curl_and_from_girder_status() {
    let cookie = cookie_file("protected-reads-cluster-cookie");
    let token = std::env::temp_dir().join(format!("girder-token-pr-{}", std::process::id()));
    girder_dist::write_secret_file(&token, "a-token-for-protected-reads\n").unwrap();
    let a = node(&[
        "--name",
        "pr@127.0.0.1",
        "--listen",
        "127.0.0.1:0",
        "--cookie-file",
        cookie.to_str().unwrap(),
        "--http",
        "127.0.0.1:0",
        "--admin-token-file",
        token.to_str().unwrap(),
        "--protect-reads",
    ]);
    let line = a.expect("ops API on http://", WAIT);
    let addr = line
        .trim_start_matches("ops API on http://")
        .trim()
        .to_string();
    assert_eq!(http(&addr, "GET", "/api/processes", None).0, 401);
    assert_eq!(http(&addr, "GET", "/healthz", None).0, 200);
    let (code, _) = http(
        &addr,
        "GET",
        "/api/processes",
        Some("a-token-for-protected-reads"),
    );
    assert_eq!(code, 200);
    let url = format!("http://{addr}");
    let out = run(GIRDER, &["status", "--node", &url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = run(
        GIRDER,
        &[
            "status",
            "--node",
            &url,
            "--token-file",
            token.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("node pr@127.0.0.1:"));
}

/// Girder's own services' supervisor dying stops the node (as an OTP node halts when its kernel
/// application's supervisor dies), with a line that says so and a failing exit status, so that
/// whatever runs the node starts it afresh.
#[test]
fn a_node_whose_services_supervisor_dies_stops_and_says_why() {
    let (a, addr, _cookie, token) =
        node_with_admin_api("ks@127.0.0.1", "kernel-sup-test-cluster-cookie");
    a.expect("node ks@127.0.0.1 up", WAIT);
    assert_eq!(kill(&addr, &pid_of(&addr, "girder.kernel_sup")), 200);
    let said = a.expect("girder.kernel_sup exited", WAIT);
    assert!(said.contains("stopping"), "{said}");
    let out = a.finish(WAIT);
    assert_eq!(out.status.code(), Some(2), "{}", out.stdout);
    assert!(
        out.stdout.contains("node ks@127.0.0.1 stopped"),
        "{}",
        out.stdout
    );
    let _ = std::fs::remove_file(token);
}
