//! Regulation under the ops layer: a queue that follows the node's load and raises an alarm
//! while it is tightened ([`Ops::govern`]), a queue's numbers as metrics ([`Ops::watch_queue`]),
//! what an operator of Erlang's `jobs` reads from `jobs:queue_info`, and a circuit breaker's
//! state as an alarm and a gauge ([`Ops::watch_breaker`]).

use std::time::Duration;

use girder::{Node, OwnedTask};
use girder_regulate::breaker::{Breaker, State};
use girder_regulate::Queue;
use metrics::{counter, gauge};

use crate::{Alarm, Ops, Severity};

impl Ops {
    /// Puts `queue` under the node's load: while the scheduling lag measured on `node`'s
    /// schedulers ([`Node::load`]) is above `lag`, the queue is tightened every second and the
    /// alarm `overload:<name>` is raised; once the lag is below a quarter of `lag`, the alarm
    /// clears and the queue loosens back a step a second. Runs until the returned task is
    /// dropped. The queue's numbers are published as [`watch_queue`](Self::watch_queue) does.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use std::time::Duration;
    /// let node = girder::Node::new("docs");
    /// let (_router, ops) = girder_ops::Ops::builder(&node).router().await;
    /// let queue = girder_regulate::Queue::builder().count(8).build();
    /// let _governor = ops.govern(&node, "db", &queue, Duration::from_millis(100));
    /// assert!(!ops.alarms().is_active("overload:db"));
    /// # }
    /// ```
    pub fn govern(
        &self,
        node: &Node,
        name: &str,
        queue: &girder_regulate::Queue,
        lag: Duration,
    ) -> OwnedTask {
        let alarms = self.alarms.clone();
        let id = format!("overload:{name}");
        let source = node.name().to_string();
        let n = node.clone();
        let line = lag.as_secs_f64();
        let governor = girder_regulate::Governor::new(queue, move || n.load().lag.as_secs_f64())
            .tighten_above(line)
            .loosen_below(line / 4.0)
            .on_change(move |change, v| match change {
                girder_regulate::governor::Overload::Started => {
                    let text = format!(
                        "scheduling lag {:.0} ms past {:.0} ms: regulated queue tightened",
                        v * 1e3,
                        line * 1e3
                    );
                    let _ = alarms.raise(Alarm::new(&id, Severity::Major, &source, text));
                }
                girder_regulate::governor::Overload::Ended => {
                    let _ = alarms.clear(&id);
                }
            });
        let stats = watch_queue(node, name, queue);
        node.spawn_owned(async move {
            let _stats = stats;
            governor.run().await
        })
    }

    /// Publishes `queue`'s numbers every second as metrics labelled `queue="<name>"`:
    /// `girder_queue_granted_total`, `girder_queue_rejected_total{reason}`,
    /// `girder_queue_waiting`, `girder_queue_in_use`, `girder_queue_limit` and
    /// `girder_queue_wait_p99_seconds`. Runs until the returned task is dropped.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let node = girder::Node::new("docs");
    /// let (_router, ops) = girder_ops::Ops::builder(&node).router().await;
    /// let queue = girder_regulate::Queue::builder().count(8).build();
    /// let _published = ops.watch_queue(&node, "db", &queue);
    /// # }
    /// ```
    pub fn watch_queue(&self, node: &Node, name: &str, queue: &Queue) -> OwnedTask {
        watch_queue(node, name, queue)
    }

    /// Follows `breaker`: while it is open, the alarm `circuit_open:<name>` is raised (major)
    /// and `girder_breaker_open{breaker="<name>"}` reads 1; it clears when the breaker closes
    /// again (a breaker goes half-open when it is next used after its cool-down, and closes
    /// when its trials succeed). Runs until the returned task is dropped.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let node = girder::Node::new("docs");
    /// let (_router, ops) = girder_ops::Ops::builder(&node).router().await;
    /// let breaker = girder_regulate::Breaker::builder().build();
    /// let _followed = ops.watch_breaker(&node, "payments", &breaker);
    /// # }
    /// ```
    pub fn watch_breaker(&self, node: &Node, name: &str, breaker: &Breaker) -> OwnedTask {
        let alarms = self.alarms.clone();
        let (id, name, source) = (
            format!("circuit_open:{name}"),
            name.to_string(),
            node.name().to_string(),
        );
        let mut states = breaker.subscribe();
        node.spawn_owned(async move {
            loop {
                let state = *states.borrow_and_update();
                let open = state == State::Open;
                gauge!("girder_breaker_open", "node" => source.clone(), "breaker" => name.clone())
                    .set(if open { 1.0 } else { 0.0 });
                if open {
                    let text = format!("circuit breaker {name} is open: calls are refused");
                    let _ = alarms.raise(Alarm::new(&id, Severity::Major, &source, text));
                } else if state == State::Closed && alarms.is_active(&id) {
                    let _ = alarms.clear(&id);
                }
                if states.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

fn watch_queue(node: &Node, name: &str, queue: &Queue) -> OwnedTask {
    let (queue, name, source) = (queue.clone(), name.to_string(), node.name().to_string());
    node.spawn_owned(async move {
        loop {
            publish(&source, &name, &queue);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

fn publish(node: &str, name: &str, queue: &Queue) {
    let s = queue.stats();
    let labels = [("node", node.to_string()), ("queue", name.to_string())];
    counter!("girder_queue_granted_total", &labels).absolute(s.granted);
    let r = &s.rejected;
    for (reason, n) in [
        ("queue_full", r.queue_full),
        ("client_queue_full", r.client_queue_full),
        ("queue_timeout", r.queue_timeout),
        ("deadline_passed", r.deadline_passed),
        ("overloaded", r.overloaded),
    ] {
        counter!("girder_queue_rejected_total", "node" => node.to_string(), "queue" => name.to_string(), "reason" => reason)
            .absolute(n);
    }
    gauge!("girder_queue_waiting", &labels).set(s.queued as f64);
    gauge!("girder_queue_in_use", &labels).set(s.in_use as f64);
    if let Some(limit) = s.limit {
        gauge!("girder_queue_limit", &labels).set(limit as f64);
    }
    gauge!("girder_queue_wait_p99_seconds", &labels).set(s.wait_p99.as_secs_f64());
}
