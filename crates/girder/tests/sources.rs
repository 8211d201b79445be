//! Event sources: a behaviour owns a socket or a stream and takes its items in its own loop, with
//! no helper process, fairly beside its mailbox, and never takes an item it then loses.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskCx, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use girder::statem::{self, Action, StateEvent, StateMachine, StateMachineContext, Transition};
use girder::{ExitReason, Flow, InitError, Node, ReplyTo, Server, ServerContext};
use girder_testkit::{eventually_async, within};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, LinesCodec};

/// One process per connection: reads lines from its socket (a source) and answers each.
struct Conn {
    sock: Option<TcpStream>,
    out: Option<tokio::net::tcp::OwnedWriteHalf>,
    lines: u64,
}

enum ConnInfo {
    Line(String),
    Bad(String),
    Closed,
}

impl Server for Conn {
    type Call = ReplyTo<u64>;
    type Cast = ();
    type Info = ConnInfo;

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), InitError> {
        let (read, write) = self.sock.take().expect("a socket").into_split();
        self.out = Some(write);
        ctx.add_source(
            FramedRead::new(read, LinesCodec::new()),
            |line| match line {
                Some(Ok(l)) => ConnInfo::Line(l),
                Some(Err(e)) => ConnInfo::Bad(e.to_string()),
                None => ConnInfo::Closed,
            },
        );
        Ok(())
    }

    async fn handle_call(&mut self, from: ReplyTo<u64>, _: &mut ServerContext<Self>) -> Flow {
        from.reply(self.lines);
        Flow::Continue
    }

    async fn handle_info(&mut self, info: ConnInfo, _: &mut ServerContext<Self>) -> Flow {
        match info {
            ConnInfo::Line(l) => {
                self.lines += 1;
                let out = self.out.as_mut().expect("a write half");
                if out
                    .write_all(format!("echo {l}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return Flow::Stop(ExitReason::error("write failed"));
                }
                Flow::Continue
            }
            ConnInfo::Bad(e) => Flow::Stop(ExitReason::error(e)),
            ConnInfo::Closed => Flow::Stop(ExitReason::Normal),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_owns_its_socket_and_handles_its_lines_in_its_own_loop() {
    let node = Node::new("t");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let client = TcpStream::connect(at).await.unwrap();
    let (sock, _) = listener.accept().await.unwrap();
    let procs_before = node.process_count();
    let conn = girder::server::start(
        &node,
        Conn {
            sock: Some(sock),
            out: None,
            lines: 0,
        },
    )
    .await
    .unwrap();
    assert_eq!(node.process_count(), procs_before + 1, "no helper process");
    let (r, w) = client.into_split();
    let mut lines = FramedRead::new(r, LinesCodec::new());
    let mut out = w;
    for i in 0..100 {
        out.write_all(format!("hello {i}\n").as_bytes())
            .await
            .unwrap();
    }
    for i in 0..100 {
        assert_eq!(
            lines.next().await.unwrap().unwrap(),
            format!("echo hello {i}")
        );
    }
    // Calls are served between the socket's lines.
    assert_eq!(conn.call(|r| r).await, Ok(100));
    // The peer closes: the source's end arrives and the server stops.
    drop(out);
    assert_eq!(
        within("the connection server to exit", conn.wait_exit()).await,
        ExitReason::Normal
    );
}

/// A stream of numbers that counts how many were taken from it.
struct Counted {
    next: u64,
    taken: Arc<AtomicU64>,
}

impl Stream for Counted {
    type Item = u64;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut TaskCx<'_>) -> Poll<Option<u64>> {
        self.next += 1;
        self.taken.fetch_add(1, Ordering::SeqCst);
        Poll::Ready(Some(self.next))
    }
}

/// Handles numbers from an endless source; stops at `stop_at`; answers calls meanwhile.
struct Busy {
    handled: Arc<AtomicU64>,
    taken: Arc<AtomicU64>,
    stop_at: u64,
}

impl Server for Busy {
    type Call = ReplyTo<u64>;
    type Cast = ();
    type Info = u64;

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), InitError> {
        let numbers = Counted {
            next: 0,
            taken: self.taken.clone(),
        };
        ctx.add_source(numbers, |n| n.expect("endless"));
        Ok(())
    }

    async fn handle_call(&mut self, from: ReplyTo<u64>, _: &mut ServerContext<Self>) -> Flow {
        from.reply(self.handled.load(Ordering::SeqCst));
        Flow::Continue
    }

    async fn handle_info(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
        self.handled.fetch_add(1, Ordering::SeqCst);
        if n == self.stop_at {
            return Flow::Stop(ExitReason::Normal);
        }
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_source_starves_neither_calls_nor_stop_and_loses_nothing() {
    let node = Node::new("t");
    let (handled, taken) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let busy = girder::server::start(
        &node,
        Busy {
            handled: handled.clone(),
            taken: taken.clone(),
            stop_at: u64::MAX,
        },
    )
    .await
    .unwrap();
    // An always-ready source, and still calls get answers, while the source keeps being
    // handled between them. (The first call may well come before any item: only the
    // progress across calls is certain.)
    let mut answers = Vec::new();
    for _ in 0..20 {
        let n = within("a call beside a busy source", busy.call(|r| r))
            .await
            .unwrap();
        answers.push(n);
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(answers.windows(2).all(|w| w[0] <= w[1]), "{answers:?}");
    assert!(answers[19] > answers[0], "the source went on: {answers:?}");
    // And a stop request goes first.
    assert_eq!(
        within(
            "a stop beside a busy source",
            busy.stop(ExitReason::Shutdown)
        )
        .await,
        ExitReason::Shutdown
    );
    // Every item taken from the source was handled: none taken and dropped.
    assert_eq!(taken.load(Ordering::SeqCst), handled.load(Ordering::SeqCst));

    // Stopping from a handler: the same.
    let (handled, taken) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let b = girder::server::start(
        &node,
        Busy {
            handled: handled.clone(),
            taken: taken.clone(),
            stop_at: 1000,
        },
    )
    .await
    .unwrap();
    assert_eq!(b.wait_exit().await, ExitReason::Normal);
    assert_eq!(taken.load(Ordering::SeqCst), 1000);
    assert_eq!(handled.load(Ordering::SeqCst), 1000);
}

/// A state machine whose source is a channel: counts in state `Counting` until told `done`.
struct Tally {
    rx: Option<tokio::sync::mpsc::UnboundedReceiver<&'static str>>,
    seen: u64,
}

impl StateMachine for Tally {
    type State = bool; // done?
    type Call = ReplyTo<(bool, u64)>;
    type Cast = ();
    type Info = Option<&'static str>;
    type Timeout = ();

    async fn init(
        &mut self,
        ctx: &mut StateMachineContext<Self>,
    ) -> Result<(bool, Vec<Action<Self>>), InitError> {
        let rx = self.rx.take().expect("a receiver");
        let id = ctx.add_source(tokio_stream_from(rx), |m: Option<&'static str>| m);
        assert_eq!(ctx.sources(), 1);
        let _ = id;
        Ok((false, vec![]))
    }

    async fn handle_event(
        &mut self,
        done: &bool,
        event: StateEvent<Self>,
        _: &mut StateMachineContext<Self>,
    ) -> Transition<Self> {
        match event {
            StateEvent::Info(Some("done")) => Transition::next(true),
            StateEvent::Info(Some(_)) if !done => {
                self.seen += 1;
                Transition::keep()
            }
            StateEvent::Call(from) => {
                Transition::keep().with(Action::reply(from, (*done, self.seen)))
            }
            _ => Transition::keep(),
        }
    }
}

/// An unbounded receiver as a stream.
fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_takes_a_source_too() {
    let node = Node::new("t");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let m = statem::start(
        &node,
        Tally {
            rx: Some(rx),
            seen: 0,
        },
    )
    .await
    .unwrap();
    for _ in 0..10 {
        tx.send("tick").unwrap();
    }
    tx.send("done").unwrap();
    tx.send("late").unwrap();
    let seen = eventually_async("the machine to take \"done\"", async || {
        let (done, seen) = m.call(|r| r).await.unwrap();
        done.then_some(seen)
    })
    .await;
    assert_eq!(seen, 10);
}

/// Adds a source on request and removes it on request.
struct Switch {
    tx: tokio::sync::mpsc::UnboundedSender<u64>,
    source: Option<girder::behaviour::SourceId>,
}

enum SwitchCall {
    On(ReplyTo<usize>),
    Off(ReplyTo<bool>),
}

impl Server for Switch {
    type Call = SwitchCall;
    type Cast = ();
    type Info = u64;

    async fn handle_call(&mut self, req: SwitchCall, ctx: &mut ServerContext<Self>) -> Flow {
        match req {
            SwitchCall::On(from) => {
                let ticks = futures_util::stream::iter(0..).then(|n| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    n
                });
                self.source = Some(ctx.add_source(ticks, |n| n.unwrap_or(u64::MAX)));
                from.reply(ctx.sources());
            }
            SwitchCall::Off(from) => {
                let removed = self.source.take().is_some_and(|id| ctx.remove_source(id));
                from.reply(removed);
            }
        }
        Flow::Continue
    }

    async fn handle_info(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
        let _ = self.tx.send(n);
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_added_and_removed_at_run_time() {
    let node = Node::new("t");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let s = girder::server::start(&node, Switch { tx, source: None })
        .await
        .unwrap();
    assert_eq!(s.call(SwitchCall::On).await, Ok(1));
    for want in 0..5 {
        assert_eq!(rx.recv().await, Some(want));
    }
    assert_eq!(s.call(SwitchCall::Off).await, Ok(true));
    assert_eq!(s.call(SwitchCall::Off).await, Ok(false));
    // Drain what came before the removal; then nothing more.
    tokio::time::sleep(Duration::from_millis(30)).await;
    while rx.try_recv().is_ok() {}
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(rx.try_recv().is_err(), "a removed source still delivers");
}

#[tokio::test(flavor = "current_thread")]
async fn an_always_ready_source_yields_its_thread_to_others() {
    // One thread for everything: the busy server must let the test's own task run.
    let node = Node::new("t");
    let (handled, taken) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let busy = girder::server::start(
        &node,
        Busy {
            handled: handled.clone(),
            taken,
            stop_at: u64::MAX,
        },
    )
    .await
    .unwrap();
    within("the thread to be free", tokio::task::yield_now()).await;
    let seen = handled.load(Ordering::SeqCst);
    tokio::task::yield_now().await;
    assert!(handled.load(Ordering::SeqCst) >= seen);
    busy.stop(ExitReason::Shutdown).await;
}

type Lines = FramedRead<tokio::net::tcp::OwnedReadHalf, LinesCodec>;

/// Reads one line of its socket (a panic here fails the test: the lines never arrive), then hands the socket's read half (and what it has buffered)
/// to `next`; or, as `next`, reads what it is handed.
struct Relay {
    sock: Option<TcpStream>,
    source: Option<girder::behaviour::SourceId>,
    next: Option<girder::ServerRef<Relay>>,
    lines: Vec<String>,
}

enum RelayInfo {
    Line(String),
    End,
}

impl Server for Relay {
    type Call = ReplyTo<Vec<String>>;
    type Cast = Lines;
    type Info = RelayInfo;

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), InitError> {
        if let Some(sock) = self.sock.take() {
            let (read, _write) = sock.into_split();
            let lines = FramedRead::new(read, LinesCodec::new());
            self.source = Some(ctx.add_source(lines, relay_info));
        }
        Ok(())
    }

    async fn handle_call(&mut self, from: Self::Call, _: &mut ServerContext<Self>) -> Flow {
        from.reply(self.lines.clone());
        Flow::Continue
    }

    async fn handle_cast(&mut self, lines: Lines, ctx: &mut ServerContext<Self>) -> Flow {
        self.source = Some(ctx.add_source(lines, relay_info));
        Flow::Continue
    }

    async fn handle_info(&mut self, info: RelayInfo, ctx: &mut ServerContext<Self>) -> Flow {
        let RelayInfo::Line(l) = info else {
            return Flow::Continue;
        };
        self.lines.push(l);
        if let (Some(next), Some(id)) = (self.next.take(), self.source) {
            // Asked for the wrong type, the source stays where it is.
            let wrong: Option<futures_util::stream::Empty<u8>> = ctx.take_source(id);
            assert!(wrong.is_none() && ctx.sources() == 1);
            let lines: Lines = ctx.take_source(id).expect("the socket's source");
            assert_eq!(ctx.sources(), 0);
            assert!(ctx.take_source::<Lines>(id).is_none(), "taken once");
            next.cast(lines).expect("room");
        }
        Flow::Continue
    }
}

fn relay_info(line: Option<Result<String, tokio_util::codec::LinesCodecError>>) -> RelayInfo {
    match line {
        Some(Ok(l)) => RelayInfo::Line(l),
        _ => RelayInfo::End,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_taken_back_goes_to_another_process_with_what_it_had_buffered() {
    let node = Node::new("t");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let mut client = TcpStream::connect(at).await.unwrap();
    let (sock, _) = listener.accept().await.unwrap();
    let relay = |sock, next| Relay {
        sock,
        source: None,
        next,
        lines: Vec::new(),
    };
    let second = girder::server::start(&node, relay(None, None))
        .await
        .unwrap();
    let first = girder::server::start(&node, relay(Some(sock), Some(second.clone())))
        .await
        .unwrap();
    // One write: the first process's framer reads all three lines into its buffer at once.
    client.write_all(b"one\ntwo\nthree\n").await.unwrap();
    eventually_async(
        "the second to read what the first had buffered",
        async || second.call(|r| r).await.unwrap() == ["two", "three"],
    )
    .await;
    assert_eq!(first.call(|r| r).await.unwrap(), ["one"]);
    // And the socket itself moved: what comes next goes to the second.
    client.write_all(b"four\n").await.unwrap();
    eventually_async("the second to read on from the socket", async || {
        second.call(|r| r).await.unwrap().len() == 3
    })
    .await;
    assert_eq!(first.call(|r| r).await.unwrap(), ["one"]);
}
