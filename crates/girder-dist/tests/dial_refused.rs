//! A node whose dial is refused for the cookie (the peer holds another one) makes a sound on the
//! dialling side too: each refusal is counted, and logged at most once a second with the number
//! not logged, as the accepting side does with its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use girder_dist::NodeEvent;
use girder_testkit::dist::{start, start_with};
use girder_testkit::{eventually, within};

/// Where the log lines go: every line written, kept for the test to read.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn matching(&self, needles: &[&str]) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(String::from)
            .collect()
    }
}

#[tokio::test]
async fn a_dial_refused_for_the_cookie_is_counted_and_logged_at_most_once_a_second() {
    // The whole test binary's log (the nodes' tasks may run on other threads).
    let lines = Lines::default();
    let sink = lines.clone();
    tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();

    // The stranger's name sorts after this node's, so a failed dial is reported at once (a
    // dial to a smaller name waits a moment for that node's own dial first).
    let a = start("dra@localhost").await;
    let stranger = start_with("drz@localhost", "another-cluster-cookie-entirely").await;
    a.add_address(stranger.name().clone(), stranger.local_addr());
    let mut events = a.subscribe();
    let began = Instant::now();
    const DIALS: u64 = 5;
    for _ in 0..DIALS {
        assert!(a.connect(stranger.name()).await.is_err());
        let reason = within("the dial's failure", async {
            loop {
                if let Ok(NodeEvent::DialFailed { reason, .. }) = events.recv().await {
                    return reason;
                }
            }
        })
        .await;
        assert!(
            reason.contains("closed the connection after our proof"),
            "{reason}"
        );
    }
    let took = began.elapsed();
    assert_eq!(a.listener_status().dials_refused, DIALS);
    // The stranger refused them as the acceptor, and counted them there.
    eventually("the acceptor's count", || {
        stranger.listener_status().refused == DIALS
    })
    .await;
    assert_eq!(stranger.listener_status().dials_refused, 0);

    let logged = lines.matching(&["dial refused", "dra@localhost"]);
    let most = took.as_secs() + 1;
    assert!(
        !logged.is_empty() && logged.len() as u64 <= most,
        "{} lines for {DIALS} refusals in {took:?} (at most {most}): {logged:#?}",
        logged.len()
    );
    assert!(logged[0].contains("WARN"), "{}", logged[0]);
    // Nothing else logs each refusal on its own at a level a node shows by default.
    let per_dial = lines.matching(&["WARN", "handshake"]);
    assert!(per_dial.is_empty(), "{per_dial:#?}");

    // A second later, the next refusal is logged again, with the count of those that were not:
    // every refusal is either a line or counted in one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(a.connect(stranger.name()).await.is_err());
    let logged = lines.matching(&["dial refused", "dra@localhost"]);
    let suppressed: u64 = logged
        .iter()
        .map(|l| {
            let at = l.find("suppressed=").expect("a count in every line") + "suppressed=".len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(logged.len() as u64 + suppressed, DIALS + 1, "{logged:#?}");
    assert_eq!(a.listener_status().dials_refused, DIALS + 1);
}
