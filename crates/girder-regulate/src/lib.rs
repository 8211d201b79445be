//! # girder-regulate: saying no early, at the edges
//!
//! Regulators that sit in front of a scarce resource (a database pool, a downstream service,
//! the acceptor of a listener) and decide, per request, *now*, *wait* or *no*, so that
//! overload turns into fast, explicit rejections instead of growing queues and timeouts.
//! They run on any tokio runtime, Girder's schedulers included, and need nothing of a node.
//!
//! | module | what it is | anchor |
//! |---|---|---|
//! | [`queue`] | [`Queue`]: rate, count and adaptive regulators, bounded waiting, priorities, per-client fairness, run-time limits | Erlang `jobs`, tower's `limit`, Netflix concurrency-limits |
//! | [`breaker`] | [`Breaker`]: closed / open / half-open on a failure rate over a sliding window | Hystrix, resilience4j |
//! | [`retry`] | [`Retry`]: exponential back-off with full jitter, attempts and deadline; at most once unless asked | AWS "exponential back-off and jitter" |
//! | [`dedup`] | [`Dedup`]: the receiver's memory of idempotency keys, making at-least-once effectively once | idempotent receivers |
//! | [`flow`] | [`flow::Credit`] and [`flow::Demand`]: credit-based flow control for a stream between two processes, local or remote (the producer sends only against demand) | Reactive Streams' `request(n)`, GenStage |
//! | [`governor`] | [`Governor`]: tightens a queue while a load signal (the node's scheduling lag, say) is above its line, loosens it when it recovers, and says when overload starts and ends | `jobs`' samplers and regulators |
//! | [`IdempotencyKey`] | what a retried request carries so its repeats can be recognised | — |
//! | [`Rejected`] | why a regulator said no | `{error, rejected}` |
//!
//! ```
//! use std::time::Duration;
//! use girder_regulate::{Queue, Rejected};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // At most 4 at once in front of the resource, 100 waiting, none longer than 200 ms.
//! let queue = Queue::builder()
//!     .count(4)
//!     .max_queue_len(100)
//!     .max_queue_time(Duration::from_millis(200))
//!     .build();
//! match queue.ask().await {
//!     Ok(permit) => {
//!         // ... call the resource; dropping the permit releases it ...
//!         drop(permit);
//!     }
//!     Err(Rejected::QueueFull { .. }) => { /* tell the client to come back later */ }
//!     Err(other) => panic!("{other}"),
//! }
//! # }
//! ```

#![warn(missing_docs)]

pub mod breaker;
pub mod dedup;
mod error;
pub mod flow;
pub mod governor;
mod key;
pub mod queue;
pub mod retry;

pub use breaker::Breaker;
pub use dedup::Dedup;
pub use error::Rejected;
pub use governor::Governor;
pub use key::IdempotencyKey;
pub use queue::{Ask, Permit, Queue};
pub use retry::Retry;
