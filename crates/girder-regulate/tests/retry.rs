//! Retries: attempts, back-off and jitter, deadline, what is retried.

use std::time::Duration;

use girder_regulate::retry::RetryError;
use girder_regulate::{IdempotencyKey, Retry};
use parking_lot::Mutex;
use tokio::time::{sleep, Instant};

#[tokio::test(start_paused = true)]
async fn makes_the_attempts_it_is_allowed() {
    let calls = Mutex::new(0);
    let r = Retry::at_least_once()
        .attempts(4)
        .run(|_| {
            *calls.lock() += 1;
            async { Err::<(), _>("down") }
        })
        .await;
    assert_eq!(
        r,
        Err(RetryError::Exhausted {
            attempts: 4,
            last: "down"
        })
    );
    assert_eq!(*calls.lock(), 4);

    let r = Retry::at_least_once()
        .run(|a| async move {
            if a.number() < 3 {
                Err("busy")
            } else {
                Ok(a.number())
            }
        })
        .await;
    assert_eq!(r, Ok(3), "stops at the first success");

    let calls = Mutex::new(0);
    let r = Retry::default()
        .run(|_| {
            *calls.lock() += 1;
            async { Err::<(), _>("lost") }
        })
        .await;
    assert_eq!(r.unwrap_err().attempts(), 1);
    assert_eq!(*calls.lock(), 1, "at most once unless asked");
}

#[tokio::test(start_paused = true)]
async fn back_off_grows_and_is_jittered_within_its_caps() {
    let policy = Retry::at_least_once()
        .attempts(5)
        .backoff(Duration::from_millis(100), Duration::from_millis(500));
    let caps: Vec<Duration> = (1..=4).map(|n| policy.cap(n)).collect();
    assert_eq!(caps, [100, 200, 400, 500].map(Duration::from_millis));

    const RUNS: usize = 300;
    let mut delays = vec![Vec::new(); 4];
    for _ in 0..RUNS {
        let starts = Mutex::new(Vec::new());
        let _ = policy
            .run(|_| {
                starts.lock().push(Instant::now());
                async { Err::<(), _>(()) }
            })
            .await;
        let starts = starts.into_inner();
        assert_eq!(starts.len(), 5);
        for (n, w) in starts.windows(2).enumerate() {
            let d = w[1] - w[0];
            assert!(
                d <= caps[n] + Duration::from_millis(1),
                "retry {}: {d:?} > {:?}",
                n + 1,
                caps[n]
            );
            delays[n].push(d);
        }
    }
    let means: Vec<f64> = delays
        .iter()
        .map(|ds| ds.iter().map(Duration::as_secs_f64).sum::<f64>() / RUNS as f64)
        .collect();
    // Full jitter: uniform over 0..=cap, so the mean is about half the cap.
    for (n, mean) in means.iter().enumerate() {
        let half = caps[n].as_secs_f64() / 2.0;
        assert!(
            (mean - half).abs() < half * 0.25,
            "retry {}: mean {mean} vs {half}",
            n + 1
        );
    }
    assert!(
        means[0] < means[1] && means[1] < means[2],
        "grows: {means:?}"
    );
    for ds in &delays {
        let (min, max) = (ds.iter().min().unwrap(), ds.iter().max().unwrap());
        assert!(
            *max - *min > Duration::from_millis(20),
            "jittered: {min:?}..{max:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn stops_at_the_deadline() {
    // Failing fast: no retry is started that would end past the deadline.
    let policy = Retry::at_least_once()
        .attempts(1000)
        .backoff(Duration::from_millis(100), Duration::from_secs(10))
        .deadline(Duration::from_secs(2));
    // Many rounds: the delays are random, and one that ends within a timer tick of the deadline
    // once made this fail (the sleep ended on the deadline's tick).
    for _ in 0..500 {
        let t0 = Instant::now();
        let r = policy.run(|_| async { Err::<(), _>("down") }).await;
        match r {
            Err(RetryError::DeadlinePassed { attempts, last }) => {
                assert!((2..40).contains(&attempts), "{attempts}");
                assert_eq!(last, Some("down"));
            }
            other => panic!("expected the deadline, got {other:?}"),
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    // Hanging: the attempt in progress is cancelled at the deadline.
    let t0 = Instant::now();
    let r = policy
        .run(|a| async move {
            if a.number() == 1 {
                Err("down")
            } else {
                sleep(Duration::from_secs(60)).await;
                Ok(())
            }
        })
        .await;
    assert_eq!(
        r,
        Err(RetryError::DeadlinePassed {
            attempts: 2,
            last: Some("down")
        })
    );
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn non_retryable_errors_are_not_retried() {
    #[derive(Debug, PartialEq)]
    enum E {
        Busy,
        Invalid,
    }
    let calls = Mutex::new(0);
    let r = Retry::at_least_once()
        .run_if(
            |e| *e == E::Busy,
            |a| {
                *calls.lock() += 1;
                async move { Err::<(), _>(if a.number() < 2 { E::Busy } else { E::Invalid }) }
            },
        )
        .await;
    assert_eq!(
        r,
        Err(RetryError::NotRetryable {
            attempts: 2,
            error: E::Invalid
        })
    );
    assert_eq!(*calls.lock(), 2);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_carries_the_same_key() {
    let key = IdempotencyKey::random();
    let seen = Mutex::new(Vec::new());
    let r = Retry::at_least_once()
        .run_keyed(key, |a| {
            seen.lock().push(a.key());
            async move {
                if a.number() < 4 {
                    Err("again")
                } else {
                    Ok(())
                }
            }
        })
        .await;
    assert_eq!(r, Ok(()));
    assert_eq!(*seen.lock(), vec![Some(key); 4]);
}
