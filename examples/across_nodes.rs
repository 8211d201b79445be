use std::time::Duration;

use girder::{Flow, Node, ReplyTo, Server, ServerContext};
use girder_dist::{global::Global, Cookie, DistConfig, DistNode, NodeName, Wire};
use serde::{Deserialize, Serialize};

struct Counter(u64);

/// Requests that cross nodes are serde types with a stable wire name.
#[derive(Serialize, Deserialize)]
enum Req {
    Add(u64, ReplyTo<u64>), // replies with the new count
}

impl Wire for Req {
    const NAME: &'static str = "example.counter.v1";
}

impl Server for Counter {
    type Call = Req;
    type Cast = ();
    type Info = ();

    async fn handle_call(&mut self, Req::Add(n, from): Req, _: &mut ServerContext<Self>) -> Flow {
        self.0 += n;
        from.reply(self.0);
        Flow::Continue
    }
}

/// A node listening on a free loopback port (a real one: its host's address and port 4370).
async fn start(name: &str) -> Result<DistNode, Box<dyn std::error::Error>> {
    // In production: Cookie::from_file("/etc/girder/cookie".as_ref())?
    let cookie = Cookie::new("a-cookie-of-decent-length")?;
    let cfg = DistConfig::new(NodeName::new(name)?, cookie, "127.0.0.1:0".parse()?);
    Ok(DistNode::start(Node::new(name), cfg).await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = (start("a@127.0.0.1").await?, start("b@127.0.0.1").await?);
    // Where b listens (or let membership tell: a.follow(&membership)).
    a.add_address(b.name().clone(), b.local_addr());
    let (global_a, global_b) = (Global::start(&a).await?, Global::start(&b).await?);

    // b runs the counter and registers it across the cluster.
    let counter = girder::server::start(b.node(), Counter(0)).await?;
    global_b.register_server("counter", &counter)?;

    // a finds it by name and calls it: the same ServerRef API, over the network.
    global_a
        .wait_for("counter", Duration::from_secs(5))
        .await
        .ok_or("not registered")?;
    let remote = global_a
        .server::<Counter>("counter")
        .ok_or("not registered")?;
    assert_eq!(remote.call(|r| Req::Add(5, r)).await?, 5);
    assert_eq!(remote.call(|r| Req::Add(2, r)).await?, 7);
    println!("a called b's counter: 7");
    Ok(())
}
