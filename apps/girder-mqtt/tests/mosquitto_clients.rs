//! The broker driven end to end by Mosquitto's own command line clients (`mosquitto_pub`,
//! `mosquitto_sub`, Debian's mosquitto-clients), in MQTT 3.1.1 and 5.0: QoS 0/1/2, wildcards
//! and the `$` rule, retained messages, wills, takeover, password and ACL files, persistent
//! sessions.
//!
//! The subscriber runs with `-d`, so the test sees its SUBACK (and waits for it before
//! publishing) and the reason codes it is sent; messages print as `MSG topic|qos|retain|payload`.
//! A test skips, saying so, only where the clients are not installed.

#[path = "common/harness.rs"]
mod harness;

use harness::{found, run, Output, Peer, TestBroker, WAIT};

const VERSIONS: [&str; 2] = ["mqttv311", "mqttv5"];

fn peers() -> bool {
    found("mosquitto_sub", "apt install mosquitto-clients")
        && found("mosquitto_pub", "apt install mosquitto-clients")
}

/// A message as `mosquitto_sub -F` printed it.
#[derive(Debug, PartialEq, Eq)]
struct Msg {
    topic: String,
    qos: u8,
    retain: bool,
    payload: String,
}

fn m(topic: &str, qos: u8, retain: bool, payload: &str) -> Msg {
    Msg {
        topic: topic.into(),
        qos,
        retain,
        payload: payload.into(),
    }
}

/// Starts `mosquitto_sub` with `args` (its topics, options) without waiting for anything.
fn spawn_sub(b: &TestBroker, v: &str, args: &[&str]) -> Peer {
    let port = b.port.to_string();
    let mut all = vec![
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        v,
        "-d",
        "-F",
        "MSG %t|%q|%r|%p",
    ];
    all.extend_from_slice(args);
    Peer::spawn("mosquitto_sub", &all)
}

/// A `mosquitto_sub` connected and subscribed: its SUBACK has come.
async fn sub(b: &TestBroker, v: &str, args: &[&str]) -> Peer {
    let mut p = spawn_sub(b, v, args);
    p.expect_text("Subscribed (mid").await;
    p
}

/// The subscriber's next message.
async fn next(p: &mut Peer) -> Msg {
    let line = p.expect("with a message", |l| l.starts_with("MSG ")).await;
    let mut parts = line["MSG ".len()..].splitn(4, '|');
    let mut part = || parts.next().expect("four fields").to_string();
    Msg {
        topic: part(),
        qos: part().parse().expect("a QoS"),
        retain: part() == "1",
        payload: part(),
    }
}

/// The subscriber's next `n` messages.
async fn take(p: &mut Peer, n: usize) -> Vec<Msg> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(next(p).await);
    }
    got
}

/// Runs `mosquitto_pub` with `args`, to its end.
async fn try_publish(b: &TestBroker, v: &str, args: &[&str]) -> Output {
    let port = b.port.to_string();
    let mut all = vec!["-h", "127.0.0.1", "-p", &port, "-V", v, "-d"];
    all.extend_from_slice(args);
    run("mosquitto_pub", &all, WAIT).await
}

/// Runs `mosquitto_pub` with `args`; it must succeed.
async fn publish(b: &TestBroker, v: &str, args: &[&str]) -> Output {
    let out = try_publish(b, v, args).await;
    assert_eq!(
        out.code(),
        Some(0),
        "mosquitto_pub {args:?} failed:\n{}",
        out.all()
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos_0_1_and_2_are_delivered_at_the_lower_of_published_and_granted() {
    if !peers() {
        return;
    }
    for v in VERSIONS {
        let b = harness::start().await;
        let mut q2 = sub(&b, v, &["-q", "2", "-t", "q/t"]).await;
        let mut q1 = sub(&b, v, &["-q", "1", "-t", "q/t"]).await;
        for (qos, payload) in [("0", "zero"), ("1", "one"), ("2", "two")] {
            publish(&b, v, &["-q", qos, "-t", "q/t", "-m", payload]).await;
        }
        let want2 = vec![
            m("q/t", 0, false, "zero"),
            m("q/t", 1, false, "one"),
            m("q/t", 2, false, "two"),
        ];
        assert_eq!(take(&mut q2, 3).await, want2, "{v}");
        let want1 = vec![
            m("q/t", 0, false, "zero"),
            m("q/t", 1, false, "one"),
            m("q/t", 1, false, "two"),
        ];
        assert_eq!(take(&mut q1, 3).await, want1, "{v}");
        // The QoS 2 flow completed both ways (PUBREC/PUBREL/PUBCOMP seen by the subscriber).
        assert!(
            q2.seen().iter().any(|l| l.contains("sending PUBCOMP")),
            "{v}: {:?}",
            q2.seen()
        );
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards_match_level_by_level_and_hash_does_not_match_dollar_topics() {
    if !peers() {
        return;
    }
    for v in VERSIONS {
        let b = harness::start().await;
        let mut plus = sub(&b, v, &["-q", "1", "-t", "w/+/temp"]).await;
        let mut under = sub(&b, v, &["-q", "1", "-t", "w/#"]).await;
        let mut all = sub(&b, v, &["-q", "1", "-t", "#"]).await;
        let mut sys = sub(&b, v, &["-q", "1", "-t", "$SYS/broker/test"]).await;
        for topic in ["w/a/temp", "w/b/hum", "w/a/b/temp", "x/y", "$foo/bar"] {
            publish(&b, v, &["-q", "1", "-t", topic, "-m", topic]).await;
        }
        // A $SYS message as the broker publishes its own (its retained $SYS/broker/... ones
        // are there too), then one everybody else matches: the last each sees, so whatever
        // came before it was all they were sent.
        let sys_msg = girder_mqtt::message::Message::broker("$SYS/broker/test", "sys", false);
        b.broker().shared().publish(&sys_msg);
        publish(&b, v, &["-q", "1", "-t", "w/end/temp", "-m", "end"]).await;
        let topics = |got: Vec<Msg>| got.into_iter().map(|m| m.topic).collect::<Vec<_>>();
        assert_eq!(
            topics(take(&mut plus, 2).await),
            ["w/a/temp", "w/end/temp"],
            "{v}"
        );
        assert_eq!(
            topics(take(&mut under, 4).await),
            ["w/a/temp", "w/b/hum", "w/a/b/temp", "w/end/temp"],
            "{v}"
        );
        assert_eq!(
            topics(take(&mut all, 5).await),
            ["w/a/temp", "w/b/hum", "w/a/b/temp", "x/y", "w/end/temp"],
            "{v}: # must not match $foo/bar nor $SYS/..."
        );
        assert_eq!(next(&mut sys).await, m("$SYS/broker/test", 0, false, "sys"));
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_message_goes_to_later_subscribers_until_an_empty_one_clears_it() {
    if !peers() {
        return;
    }
    for v in VERSIONS {
        let b = harness::start().await;
        publish(&b, v, &["-q", "1", "-r", "-t", "r/1", "-m", "kept"]).await;
        publish(&b, v, &["-q", "1", "-r", "-t", "r/2", "-m", "also"]).await;
        // A later subscriber gets both, flagged retained.
        let mut s = sub(&b, v, &["-q", "1", "-t", "r/1"]).await;
        assert_eq!(next(&mut s).await, m("r/1", 1, true, "kept"), "{v}");
        drop(s);
        // An empty retained message clears r/1 (and is itself not kept).
        publish(&b, v, &["-q", "1", "-r", "-t", "r/1", "-n"]).await;
        assert_eq!(b.broker().shared().router.retained("r/#").len(), 1, "{v}");
        let mut s = sub(&b, v, &["-q", "1", "-t", "r/#"]).await;
        // r/2 alone, then a live message: r/1 was not sent.
        assert_eq!(next(&mut s).await, m("r/2", 1, true, "also"), "{v}");
        publish(&b, v, &["-q", "1", "-t", "r/1", "-m", "live"]).await;
        assert_eq!(next(&mut s).await, m("r/1", 1, false, "live"), "{v}");
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_will_goes_out_when_a_client_is_killed_and_not_when_it_disconnects() {
    if !peers() {
        return;
    }
    for v in VERSIONS {
        let b = harness::start().await;
        let mut watcher = sub(&b, v, &["-q", "1", "-t", "will/#"]).await;
        let will = |topic: &'static str| {
            [
                "--will-topic",
                topic,
                "--will-payload",
                "gone",
                "--will-qos",
                "1",
            ]
        };
        // Killed with SIGKILL: no DISCONNECT, so the will goes.
        let mut args = will("will/killed").to_vec();
        args.extend(["-t", "elsewhere"]);
        let mut victim = sub(&b, v, &args).await;
        victim.kill().await;
        assert_eq!(next(&mut watcher).await, m("will/killed", 1, false, "gone"));
        // Ends cleanly (DISCONNECT after one message): no will.
        let mut args = will("will/clean").to_vec();
        args.extend(["-t", "bye", "-C", "1"]);
        let mut polite = sub(&b, v, &args).await;
        publish(&b, v, &["-q", "1", "-t", "bye", "-m", "bye"]).await;
        assert!(polite.wait().await.success(), "{v}: {:?}", polite.seen());
        b.until_connections(1).await;
        // The watcher's session only.
        harness::until("the polite client's session to end", || {
            b.stats().sessions.get() == 1
        })
        .await;
        publish(&b, v, &["-q", "1", "-t", "will/sentinel", "-m", "end"]).await;
        assert_eq!(
            next(&mut watcher).await,
            m("will/sentinel", 1, false, "end"),
            "{v}: a clean disconnect published the will"
        );
        assert_eq!(b.stats().wills_published.get(), 1, "{v}");
        b.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_with_the_same_id_takes_the_session_over() {
    if !peers() {
        return;
    }
    // 5.0: the first client is told why (DISCONNECT 0x8E, session taken over) and, told, it
    // does not come back.
    // Its network connection closes without a DISCONNECT of its own: its will goes.
    let b = harness::start().await;
    let mut watcher = sub(&b, "mqttv5", &["-q", "1", "-t", "tk/will"]).await;
    let will = [
        "--will-topic",
        "tk/will",
        "--will-payload",
        "first gone",
        "--will-qos",
        "1",
    ];
    let mut first = sub(
        &b,
        "mqttv5",
        &[&["-i", "same", "-q", "1", "-t", "tk/x"][..], &will[..]].concat(),
    )
    .await;
    // Not a clean start: the session goes on, and the will goes because it has no delay.
    let mut second = sub(&b, "mqttv5", &["-c", "-i", "same", "-q", "1", "-t", "tk/x"]).await;
    first.expect_text("Received DISCONNECT (142)").await;
    first.wait().await;
    assert_eq!(
        next(&mut watcher).await,
        m("tk/will", 1, false, "first gone")
    );
    b.until_connections(2).await;
    publish(&b, "mqttv5", &["-q", "1", "-t", "tk/x", "-m", "after"]).await;
    assert_eq!(next(&mut second).await, m("tk/x", 1, false, "after"));
    assert!(!first.seen().iter().any(|l| l.starts_with("MSG ")));
    b.stop().await;

    // 3.1.1 has no way to say why: the first client's connection is closed, which it sees
    // (and, being mosquitto_sub, connects again).
    let b = harness::start().await;
    let mut first = sub(&b, "mqttv311", &["-i", "same", "-q", "1", "-t", "tk/x"]).await;
    let mut second = sub(&b, "mqttv311", &["-i", "same", "-q", "1", "-t", "tk/x"]).await;
    first.expect_text("sending CONNECT").await;
    first.kill().await;
    // The second stays, or, if the first's return took it over in turn, comes back and
    // subscribes again: a retained message reaches it either way.
    publish(
        &b,
        "mqttv311",
        &["-q", "1", "-r", "-t", "tk/x", "-m", "after"],
    )
    .await;
    let got = next(&mut second).await;
    assert_eq!((&*got.topic, &*got.payload), ("tk/x", "after"));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_file_lets_good_credentials_in_and_keeps_others_out() {
    if !peers() || !found("mosquitto_passwd", "apt install mosquitto") {
        return;
    }
    let dir = harness::scratch_dir("pw");
    let file = dir.join("passwords");
    let file_s = file.to_str().unwrap();
    let out = run(
        "mosquitto_passwd",
        &["-c", "-b", file_s, "user", "pass"],
        WAIT,
    )
    .await;
    assert_eq!(out.code(), Some(0), "{}", out.all());
    let b = harness::start_with(|c, _| {
        c.password_file = Some(file.clone());
        c.allow_anonymous = None;
    })
    .await;
    for (v, bad, anonymous) in [("mqttv311", 4, 5), ("mqttv5", 0x86, 0x87)] {
        let good = ["-u", "user", "-P", "pass"];
        let mut args = good.to_vec();
        args.extend(["-q", "1", "-t", "pw/t"]);
        let mut s = sub(&b, v, &args).await;
        let mut args = good.to_vec();
        args.extend(["-q", "1", "-t", "pw/t", "-m", "in"]);
        publish(&b, v, &args).await;
        assert_eq!(next(&mut s).await, m("pw/t", 1, false, "in"), "{v}");

        // mosquitto_pub exits with the CONNACK's return code (3.1.1) or reason code (5.0).
        let out = try_publish(
            &b,
            v,
            &["-u", "user", "-P", "wrong", "-t", "pw/t", "-m", "x"],
        )
        .await;
        assert_eq!(out.code(), Some(bad), "{v}: bad password\n{}", out.all());
        let out = try_publish(
            &b,
            v,
            &["-u", "nobody", "-P", "pass", "-t", "pw/t", "-m", "x"],
        )
        .await;
        assert_eq!(out.code(), Some(bad), "{v}: unknown user\n{}", out.all());
        let out = try_publish(&b, v, &["-t", "pw/t", "-m", "x"]).await;
        assert_eq!(out.code(), Some(anonymous), "{v}: anonymous\n{}", out.all());
        // Only the one that got in published.
        let mut args = good.to_vec();
        args.extend(["-q", "1", "-t", "pw/t", "-m", "end"]);
        publish(&b, v, &args).await;
        assert_eq!(next(&mut s).await, m("pw/t", 1, false, "end"), "{v}");
    }
    assert!(b.stats().connections_refused.get() >= 6);
    b.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

const ACL: &str = "\
# anonymous clients
topic readwrite open/#
topic read ro/#
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_file_refuses_subscriptions_and_publishes_it_does_not_grant() {
    if !peers() {
        return;
    }
    let b = harness::start_with(|c, dir| {
        let file = dir.join("acl");
        std::fs::write(&file, ACL).unwrap();
        c.acl_file = Some(file);
    })
    .await;
    for (v, refused) in [("mqttv311", "128"), ("mqttv5", "135")] {
        // A SUBSCRIBE of a filter no rule lets it read: refused in the SUBACK.
        let mut denied = spawn_sub(&b, v, &["-q", "1", "-t", "secret/#"]);
        let line = denied.expect_text("Subscribed (mid").await;
        assert!(line.ends_with(&format!(": {refused}")), "{v}: {line}");
        denied.wait().await;
        let said = denied.seen().join("\n");
        assert!(
            said.contains("All subscription requests were denied"),
            "{v}: {said}"
        );
        // One of two refused, the other granted.
        let mut s = spawn_sub(
            &b,
            v,
            &["-q", "1", "-t", "secret/x", "-t", "ro/#", "-t", "open/#"],
        );
        let line = s.expect_text("Subscribed (mid").await;
        assert!(line.ends_with(&format!(": {refused}, 1, 1")), "{v}: {line}");
        // A publish to a topic it may only read: refused (5.0 says so in the PUBACK and the
        // PUBREC), and not delivered.
        for qos in ["0", "1", "2"] {
            let out = publish(&b, v, &["-q", qos, "-t", "ro/x", "-m", "forbidden"]).await;
            if v == "mqttv5" && qos != "0" {
                assert!(
                    out.all().contains("Not authorized"),
                    "{v} {qos}: {}",
                    out.all()
                );
            }
        }
        publish(&b, v, &["-q", "1", "-t", "open/x", "-m", "allowed"]).await;
        assert_eq!(next(&mut s).await, m("open/x", 1, false, "allowed"), "{v}");
    }
    b.stop().await;
}

/// A rule that denies a client part of what a wider rule lets it read.
const ACL_WITH_DENY: &str = "\
topic readwrite open/#
pattern deny open/private/%c/#
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_denied_inside_a_granted_filter_is_never_delivered() {
    if !peers() {
        return;
    }
    let b = harness::start_with(|c, dir| {
        let file = dir.join("acl");
        std::fs::write(&file, ACL_WITH_DENY).unwrap();
        c.acl_file = Some(file);
    })
    .await;
    for v in VERSIONS {
        let id = format!("reader-{v}");
        let private = format!("open/private/{id}");
        // Retained before it subscribes: the denied one is not sent on SUBSCRIBE.
        publish(
            &b,
            v,
            &[
                "-r",
                "-q",
                "1",
                "-t",
                &format!("{private}/r"),
                "-m",
                "hidden",
            ],
        )
        .await;
        publish(&b, v, &["-r", "-q", "1", "-t", "open/r", "-m", "shown"]).await;
        // `open/#` is granted (the deny rule does not cover all of it)...
        let mut s = sub(&b, v, &["-i", &id, "-q", "1", "-t", "open/#"]).await;
        assert_eq!(next(&mut s).await, m("open/r", 1, true, "shown"), "{v}");
        // ... and each message is checked: another client may write what this one may not read.
        for qos in ["0", "1", "2"] {
            publish(
                &b,
                v,
                &["-q", qos, "-t", &format!("{private}/x"), "-m", "hidden"],
            )
            .await;
        }
        publish(&b, v, &["-q", "1", "-t", "open/x", "-m", "after"]).await;
        assert_eq!(next(&mut s).await, m("open/x", 1, false, "after"), "{v}");
        s.kill().await;
        // Clear the retained messages for the next round.
        publish(&b, v, &["-r", "-t", &format!("{private}/r"), "-n"]).await;
        publish(&b, v, &["-r", "-t", "open/r", "-n"]).await;
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_gets_what_was_published_while_it_was_offline() {
    if !peers() {
        return;
    }
    for v in VERSIONS {
        let b = harness::start().await;
        let id = format!("keeper-{v}");
        let args = ["-c", "-i", &id, "-q", "1", "-t", "p/t"];
        // Connects, subscribes, takes one message and disconnects cleanly.
        let mut s = sub(&b, v, &[&args[..], &["-C", "1"][..]].concat()).await;
        publish(&b, v, &["-q", "1", "-t", "p/t", "-m", "first"]).await;
        assert_eq!(next(&mut s).await, m("p/t", 1, false, "first"), "{v}");
        assert!(s.wait().await.success(), "{v}");
        b.until_connections(0).await;
        // Offline: its session keeps its subscription and queues these.
        assert_eq!(b.stats().sessions.get(), 1, "{v}");
        for payload in ["m1", "m2", "m3"] {
            publish(&b, v, &["-q", "1", "-t", "p/t", "-m", payload]).await;
        }
        let mut s = spawn_sub(&b, v, &[&args[..], &["-C", "3"][..]].concat());
        let got = take(&mut s, 3).await;
        assert_eq!(
            got,
            [
                m("p/t", 1, false, "m1"),
                m("p/t", 1, false, "m2"),
                m("p/t", 1, false, "m3")
            ],
            "{v}"
        );
        assert!(s.wait().await.success(), "{v}");
        b.stop().await;
    }
}
