//! `shutdown_signal` catches a signal sent after the call and before the first poll: a program
//! that says it is up and then awaits it must not be ended by a SIGTERM sent in between (a
//! test harness or a supervisor sends one as soon as it reads that line). In a binary of its
//! own: had the handler not been installed, the SIGTERM would end the whole test process.

#![cfg(unix)]

use std::time::Duration;

#[tokio::test]
async fn a_sigterm_before_the_first_poll_is_caught() {
    let stop = girder::application::shutdown_signal();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    // Delivered to the process before anything polls `stop`.
    std::thread::sleep(Duration::from_millis(100));
    tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .expect("the SIGTERM sent before the first poll ends the wait");
}
