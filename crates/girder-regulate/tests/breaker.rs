//! The circuit breaker's states and transitions.

use std::time::Duration;

use girder_regulate::breaker::{Breaker, CallError, State, Window};
use girder_regulate::Rejected;
use tokio::time::sleep;

fn fail(b: &Breaker) {
    b.acquire().expect("let through").failure();
}

fn succeed(b: &Breaker) {
    b.acquire().expect("let through").success();
}

#[tokio::test(start_paused = true)]
async fn opens_on_the_failure_rate_once_it_has_enough_calls() {
    let b = Breaker::builder()
        .failure_rate(0.5)
        .minimum_calls(4)
        .window(Window::Count(10))
        .build();
    fail(&b);
    fail(&b);
    fail(&b);
    assert_eq!(
        b.state(),
        State::Closed,
        "three calls are fewer than the minimum"
    );
    succeed(&b);
    succeed(&b);
    assert_eq!(b.failure_rate(), Some(0.6));
    fail(&b);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.acquire().unwrap_err(), Rejected::CircuitOpen);
    let r = b.call(async { Ok::<_, ()>(()) }).await;
    assert_eq!(r, Err(CallError::Rejected(Rejected::CircuitOpen)));
}

#[tokio::test(start_paused = true)]
async fn a_count_window_forgets_old_failures() {
    let b = Breaker::builder()
        .failure_rate(0.5)
        .minimum_calls(4)
        .window(Window::Count(4))
        .build();
    fail(&b);
    for _ in 0..3 {
        succeed(&b);
    }
    // The window now holds 1 failure in 4; four more successes push it out.
    for _ in 0..4 {
        succeed(&b);
    }
    assert_eq!(b.failure_rate(), Some(0.0));
    fail(&b);
    assert_eq!(b.state(), State::Closed, "1 in 4 is under 50 %");
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_old_failures() {
    let b = Breaker::builder()
        .minimum_calls(2)
        .window(Window::Time {
            span: Duration::from_secs(10),
            buckets: 10,
        })
        .build();
    fail(&b);
    sleep(Duration::from_secs(11)).await;
    succeed(&b);
    fail(&b);
    assert_eq!(b.state(), State::Open, "1 of 2 in the last 10 s is 50 %");
    let b = Breaker::builder()
        .minimum_calls(3)
        .window(Window::Time {
            span: Duration::from_secs(10),
            buckets: 10,
        })
        .build();
    fail(&b);
    fail(&b);
    sleep(Duration::from_secs(11)).await;
    fail(&b);
    assert_eq!(
        b.state(),
        State::Closed,
        "the first two aged out: one call in the window"
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_trials_close_it_or_reopen_it_for_longer() {
    let b = Breaker::builder()
        .minimum_calls(1)
        .open_for(Duration::from_secs(1))
        .backoff(2.0, Duration::from_secs(3))
        .half_open_trials(2)
        .build();
    let mut states = b.subscribe();
    fail(&b);
    assert_eq!(b.state(), State::Open);
    sleep(Duration::from_millis(990)).await;
    assert_eq!(
        b.acquire().unwrap_err(),
        Rejected::CircuitOpen,
        "still cooling down"
    );
    sleep(Duration::from_millis(10)).await;

    // Half-open: two trials, no more.
    let t1 = b.acquire().unwrap();
    assert_eq!(b.state(), State::HalfOpen);
    let t2 = b.acquire().unwrap();
    assert_eq!(b.acquire().unwrap_err(), Rejected::CircuitOpen);
    t1.success();
    t2.failure();
    assert_eq!(b.state(), State::Open, "a failed trial reopens it");

    // Reopened: twice the cool-down.
    sleep(Duration::from_millis(1990)).await;
    assert_eq!(b.state(), State::Open);
    sleep(Duration::from_millis(10)).await;
    assert_eq!(b.state(), State::HalfOpen);
    // A dropped trial frees its slot without deciding anything.
    drop(b.acquire().unwrap());
    succeed(&b);
    succeed(&b);
    assert_eq!(b.state(), State::Closed, "both trials succeeded");
    fail(&b);
    assert_eq!(b.state(), State::Open);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(b.state(), State::HalfOpen, "closing reset the back-off");

    // The watch holds the latest state (every change in order: the next test).
    assert!(states.has_changed().unwrap());
    assert_eq!(*states.borrow_and_update(), State::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn every_change_is_published() {
    let b = Breaker::builder()
        .minimum_calls(1)
        .open_for(Duration::from_secs(1))
        .half_open_trials(1)
        .build();
    let mut states = b.subscribe();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while states.changed().await.is_ok() {
            let s = *states.borrow_and_update();
            seen.push(s);
            if seen.len() == 3 {
                break;
            }
        }
        seen
    });
    tokio::task::yield_now().await;
    fail(&b);
    tokio::task::yield_now().await;
    sleep(Duration::from_secs(1)).await;
    let t = b.acquire().unwrap();
    tokio::task::yield_now().await;
    t.success();
    let seen = watcher.await.unwrap();
    assert_eq!(seen, [State::Open, State::HalfOpen, State::Closed]);
}

#[tokio::test(start_paused = true)]
async fn a_late_outcome_from_before_the_opening_does_not_count() {
    let b = Breaker::builder()
        .minimum_calls(1)
        .open_for(Duration::from_secs(1))
        .half_open_trials(1)
        .build();
    let slow = b.acquire().unwrap(); // started while closed
    fail(&b);
    sleep(Duration::from_secs(1)).await;
    assert_eq!(b.state(), State::HalfOpen);
    slow.success(); // not a trial: ignored
    assert_eq!(b.state(), State::HalfOpen);
    let t = b.acquire().unwrap();
    t.success();
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test]
async fn call_counts_errors_and_passes_values() {
    let b = Breaker::builder()
        .minimum_calls(2)
        .failure_rate(1.0)
        .build();
    assert_eq!(b.call(async { Ok::<_, &str>(5) }).await, Ok(5));
    assert_eq!(
        b.call(async { Err::<u8, _>("no") }).await,
        Err(CallError::Failed("no"))
    );
    assert_eq!(b.failure_rate(), Some(0.5));
    assert_eq!(b.state(), State::Closed);
    b.reset();
    assert_eq!(b.failure_rate(), None, "reset empties the window");
}
