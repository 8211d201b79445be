//! The task's state protocol, driven by hand: each test is its own scheduler (a queue in the
//! task's metadata). Miri runs these too (`.ci/run`), which checks that every task is freed
//! exactly once and no future is touched after it is dropped.

// Wakes by value are what these tests exercise, so they clone a waker to wake it.
#![allow(clippy::waker_clone_wake)]

use super::*;
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

/// A scheduler that is a queue the test drains by hand; `stopped` drops jobs instead, as a
/// stopped pool does.
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job<Manual>>>,
    stopped: AtomicBool,
}

struct Manual;

impl Schedule for Manual {
    type Meta = Arc<Queue>;

    fn schedule(job: Job<Self>) {
        let queue = job.metadata().clone();
        if queue.stopped.load(Ordering::Relaxed) {
            drop(job);
        } else {
            queue.jobs.lock().unwrap().push_back(job);
        }
    }
}

impl Queue {
    fn len(&self) -> usize {
        self.jobs.lock().unwrap().len()
    }

    /// Runs queued jobs until none is left; how many ran.
    fn run_all(&self) -> usize {
        let mut ran = 0;
        loop {
            let job = self.jobs.lock().unwrap().pop_front();
            let Some(job) = job else { return ran };
            job.run();
            ran += 1;
        }
    }
}

/// What a test future did: polls, whether it finished, whether it was dropped.
#[derive(Default)]
struct Probe {
    polls: AtomicUsize,
    finished: AtomicBool,
    dropped: AtomicBool,
    /// Set while a poll runs: two at once would be a double run.
    in_poll: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// Pending until it has been polled `polls` times; keeps its latest waker in the probe.
struct Counted {
    probe: Arc<Probe>,
    ready_after: usize,
    panic_at: Option<usize>,
}

impl Future for Counted {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let probe = &self.probe;
        assert!(
            !probe.in_poll.swap(true, Ordering::SeqCst),
            "polled twice at once"
        );
        let n = probe.polls.fetch_add(1, Ordering::SeqCst) + 1;
        *probe.waker.lock().unwrap() = Some(cx.waker().clone());
        probe.in_poll.store(false, Ordering::SeqCst);
        if self.panic_at == Some(n) {
            panic!("the future panics on poll {n}");
        }
        if n >= self.ready_after {
            probe.finished.store(true, Ordering::SeqCst);
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        assert!(
            !self.probe.dropped.swap(true, Ordering::SeqCst),
            "dropped twice"
        );
    }
}

fn start(ready_after: usize) -> (Arc<Queue>, Arc<Probe>, TaskHandle<Manual>) {
    start_with(ready_after, None)
}

fn start_with(
    ready_after: usize,
    panic_at: Option<usize>,
) -> (Arc<Queue>, Arc<Probe>, TaskHandle<Manual>) {
    let queue = Arc::new(Queue::default());
    let probe = Arc::new(Probe::default());
    let fut = Counted {
        probe: probe.clone(),
        ready_after,
        panic_at,
    };
    let (job, handle) = spawn::<_, Manual>(queue.clone(), fut);
    job.schedule_for_test();
    (queue, probe, handle)
}

impl Job<Manual> {
    fn schedule_for_test(self) {
        Manual::schedule(self)
    }
}

fn last_waker(probe: &Probe) -> Waker {
    probe
        .waker
        .lock()
        .unwrap()
        .clone()
        .expect("polled at least once")
}

/// Drops the waker the probe kept from the future's last poll (its reference to the task).
fn drop_kept_waker(probe: &Probe) {
    probe.waker.lock().unwrap().take();
}

#[test]
fn a_task_runs_to_its_end_and_is_freed() {
    let (queue, probe, handle) = start(1);
    handle.detach();
    assert_eq!(queue.run_all(), 1);
    assert!(probe.finished.load(Ordering::SeqCst));
    assert!(probe.dropped.load(Ordering::SeqCst));
    // A waker outliving the task does nothing, and its drop frees the task (Miri checks).
    last_waker(&probe).wake_by_ref();
    assert_eq!(queue.len(), 0);
    drop_kept_waker(&probe);
}

#[test]
fn a_woken_task_is_queued_once_however_often_it_is_woken() {
    let (queue, probe, handle) = start(2);
    handle.detach();
    assert_eq!(queue.run_all(), 1);
    assert_eq!(queue.len(), 0, "pending and not woken: not queued");
    let waker = last_waker(&probe);
    waker.wake_by_ref();
    waker.wake_by_ref();
    waker.clone().wake();
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.run_all(), 1);
    assert!(probe.finished.load(Ordering::SeqCst));
    drop(waker);
    drop_kept_waker(&probe);
}

/// Wakes itself while it runs, then is pending: the run queues it again.
struct WakesItself {
    polls: usize,
    by_value: bool,
}

impl Future for WakesItself {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls += 1;
        if self.polls == 3 {
            return Poll::Ready(());
        }
        if self.by_value {
            cx.waker().clone().wake();
        } else {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

#[test]
fn a_task_woken_while_it_runs_is_queued_again_after_the_run() {
    for by_value in [false, true] {
        let queue = Arc::new(Queue::default());
        let (job, handle) = spawn::<_, Manual>(queue.clone(), WakesItself { polls: 0, by_value });
        handle.detach();
        job.run();
        assert_eq!(queue.len(), 1, "woken during its run");
        assert_eq!(queue.run_all(), 2, "ran twice more, then finished");
    }
}

#[test]
fn dropping_the_handle_of_an_idle_task_drops_its_future_unpolled() {
    let (queue, probe, handle) = start(10);
    queue.run_all();
    assert_eq!(probe.polls.load(Ordering::SeqCst), 1);
    drop(handle);
    assert!(
        !probe.dropped.load(Ordering::SeqCst),
        "dropped by the scheduler, not here"
    );
    assert_eq!(queue.run_all(), 1);
    assert_eq!(probe.polls.load(Ordering::SeqCst), 1, "not polled again");
    assert!(probe.dropped.load(Ordering::SeqCst));
    // Its waker can still be used, and freed.
    last_waker(&probe).wake();
    assert_eq!(queue.len(), 0);
    drop_kept_waker(&probe);
}

#[test]
fn dropping_the_handle_of_a_queued_task_drops_its_future_unpolled() {
    let (queue, probe, handle) = start(10);
    drop(handle);
    assert_eq!(queue.run_all(), 1);
    assert_eq!(probe.polls.load(Ordering::SeqCst), 0);
    assert!(probe.dropped.load(Ordering::SeqCst));
}

/// Drops its own task's handle (taken from a shared place) during its poll, and maybe wakes
/// itself too.
struct CancelsItself {
    handle: Arc<Mutex<Option<TaskHandle<Manual>>>>,
    polls: Arc<AtomicUsize>,
    dropped: Arc<AtomicBool>,
    wakes: bool,
}

impl Future for CancelsItself {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        drop(self.handle.lock().unwrap().take());
        if self.wakes {
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl Drop for CancelsItself {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[test]
fn a_task_cancelled_while_it_runs_is_dropped_after_the_run_unpolled() {
    for wakes in [false, true] {
        let queue = Arc::new(Queue::default());
        let shared = Arc::new(Mutex::new(None));
        let polls = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let fut = CancelsItself {
            handle: shared.clone(),
            polls: polls.clone(),
            dropped: dropped.clone(),
            wakes,
        };
        let (job, handle) = spawn::<_, Manual>(queue.clone(), fut);
        *shared.lock().unwrap() = Some(handle);
        job.run();
        assert!(
            !dropped.load(Ordering::SeqCst),
            "not dropped inside its own poll"
        );
        // The cancel counts as a wake-up, so the run queued the job once more.
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.run_all(), 1);
        assert!(dropped.load(Ordering::SeqCst));
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "not polled after the cancel"
        );
    }
}

#[test]
fn a_job_dropped_unrun_drops_the_future() {
    let (queue, probe, handle) = start(10);
    handle.detach();
    queue.stopped.store(true, Ordering::Relaxed);
    let job = queue
        .jobs
        .lock()
        .unwrap()
        .pop_front()
        .expect("queued at spawn");
    drop(job);
    assert!(probe.dropped.load(Ordering::SeqCst));
    assert_eq!(probe.polls.load(Ordering::SeqCst), 0);
}

#[test]
fn waking_a_task_on_a_stopped_scheduler_drops_its_future() {
    let (queue, probe, handle) = start(10);
    handle.detach();
    queue.run_all();
    queue.stopped.store(true, Ordering::Relaxed);
    last_waker(&probe).wake_by_ref();
    assert!(probe.dropped.load(Ordering::SeqCst));
    drop_kept_waker(&probe);
}

#[test]
fn a_task_nothing_can_wake_is_dropped_on_its_scheduler() {
    let (queue, probe, handle) = start(10);
    handle.detach();
    queue.run_all();
    // The last waker goes: the task can never run again, so it is queued to be dropped.
    drop_kept_waker(&probe);
    assert!(!probe.dropped.load(Ordering::SeqCst));
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.run_all(), 1);
    assert!(probe.dropped.load(Ordering::SeqCst));
    assert_eq!(probe.polls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_task_that_keeps_no_waker_is_dropped_after_its_run() {
    struct Forgets;
    impl Future for Forgets {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }
    let queue = Arc::new(Queue::default());
    let (job, handle) = spawn::<_, Manual>(queue.clone(), Forgets);
    handle.detach();
    job.run();
    // Dropped through one last job (Miri checks it is freed).
    assert_eq!(queue.run_all(), 1);
}

#[test]
fn a_panicking_poll_ends_the_task_and_not_the_scheduler() {
    let (queue, probe, handle) = start_with(10, Some(2));
    queue.run_all();
    last_waker(&probe).wake_by_ref();
    assert_eq!(queue.run_all(), 1, "the panic stays inside the run");
    assert!(probe.dropped.load(Ordering::SeqCst));
    last_waker(&probe).wake_by_ref();
    assert_eq!(queue.len(), 0, "a task that panicked is done");
    drop(handle);
    drop_kept_waker(&probe);
}

#[test]
fn wakers_from_many_threads_never_run_a_task_twice_at_once() {
    const WAKERS: usize = 3;
    const WAKES: usize = if cfg!(miri) { 20 } else { 2_000 };
    let (queue, probe, handle) = start(usize::MAX);
    handle.detach();
    queue.run_all();
    let waker = last_waker(&probe);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..WAKERS {
            let (waker, finished) = (waker.clone(), &finished);
            s.spawn(move || {
                for i in 0..WAKES {
                    if i % 2 == 0 {
                        waker.wake_by_ref();
                    } else {
                        waker.clone().wake();
                    }
                }
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        let (queue, finished) = (&queue, &finished);
        s.spawn(move || {
            while finished.load(Ordering::SeqCst) < WAKERS {
                queue.run_all();
                std::thread::yield_now();
            }
        });
    });
    queue.run_all();
    let polls = probe.polls.load(Ordering::SeqCst);
    assert!(polls >= 2, "woken and run again: {polls}");
    // Still alive and wakeable: one more wake runs it once more.
    last_waker(&probe).wake_by_ref();
    assert_eq!(queue.run_all(), 1);
    assert!(!probe.dropped.load(Ordering::SeqCst));
    // Let it go: the last waker queues it to be dropped.
    drop(waker);
    drop_kept_waker(&probe);
    queue.run_all();
    assert!(probe.dropped.load(Ordering::SeqCst));
}

#[test]
fn a_task_cancelled_while_other_threads_wake_it_is_dropped_once() {
    const WAKES: usize = if cfg!(miri) { 10 } else { 1_000 };
    for _ in 0..if cfg!(miri) { 2 } else { 50 } {
        let (queue, probe, handle) = start(usize::MAX);
        queue.run_all();
        let waker = last_waker(&probe);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let w = waker.clone();
            let waking = s.spawn(move || {
                for _ in 0..WAKES {
                    w.wake_by_ref();
                }
            });
            s.spawn(move || drop(handle));
            let (queue, done) = (&queue, &done);
            s.spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    queue.run_all();
                    std::thread::yield_now();
                }
            });
            waking.join().unwrap();
            done.store(true, Ordering::SeqCst);
        });
        queue.run_all();
        assert!(probe.dropped.load(Ordering::SeqCst), "cancelled");
        waker.wake_by_ref();
        assert_eq!(queue.len(), 0, "a cancelled task is done");
        drop(waker);
        drop_kept_waker(&probe);
    }
}

/// A panic payload that panics again when dropped.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the payload's drop panics too");
    }
}

#[test]
fn a_panic_whose_payload_panics_when_dropped_stays_inside_the_run() {
    struct PanicsWithBomb(Arc<AtomicBool>);
    impl Future for PanicsWithBomb {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            std::panic::panic_any(Bomb)
        }
    }
    impl Drop for PanicsWithBomb {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let queue = Arc::new(Queue::default());
    let dropped = Arc::new(AtomicBool::new(false));
    let (job, handle) = spawn::<_, Manual>(queue.clone(), PanicsWithBomb(dropped.clone()));
    handle.detach();
    job.run();
    assert!(dropped.load(Ordering::SeqCst), "the future was dropped");
    assert_eq!(queue.len(), 0);
    // Miri checks the task was freed.
}
