use girder::{
    ChildSpec, ExitReason, Flow, Node, ReplyTo, Server, ServerContext, ServerRef, Supervisor,
};

struct Counter(u64);

/// A request carries the handle its reply goes to, so its type names the reply's type.
enum Req {
    Get(ReplyTo<u64>),
    Reset(ReplyTo<u64>), // replies with the count before the reset
}

impl Server for Counter {
    type Call = Req;
    type Cast = u64;
    type Info = ();

    async fn handle_call(&mut self, req: Req, _: &mut ServerContext<Self>) -> Flow {
        match req {
            Req::Get(from) => from.reply(self.0),
            Req::Reset(from) => from.reply(std::mem::take(&mut self.0)),
        }
        Flow::Continue
    }

    async fn handle_cast(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
        assert!(n < 1_000, "too big a step"); // a bug: a panic stops the server
        self.0 += n;
        Flow::Continue
    }
}

#[tokio::main]
async fn main() {
    let node = Node::new("example");
    let sup = Supervisor::builder()
        .child(ChildSpec::server("counter", || Counter(0)).named("counter"))
        .start(&node)
        .await
        .unwrap();
    let counter = ServerRef::<Counter>::lookup(&node, "counter").unwrap();
    counter.cast(5).unwrap();
    assert_eq!(counter.call(Req::Get).await.unwrap(), 5); // 5 s default timeout
    assert_eq!(counter.call(Req::Reset).await.unwrap(), 5);

    // The bug: the server panics, its supervisor starts a fresh one under the same name.
    counter.cast(1_000).unwrap();
    let reason = counter.wait_exit().await;
    println!("counter exited: {reason}");
    let restarted = loop {
        match ServerRef::<Counter>::lookup(&node, "counter") {
            Ok(c) if c.pid() != counter.pid() => break c,
            _ => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
        }
    };
    assert_eq!(restarted.call(Req::Get).await.unwrap(), 0);
    println!("restarted as {}", restarted.pid());
    sup.stop(ExitReason::Shutdown).await; // children stop in reverse order
}
