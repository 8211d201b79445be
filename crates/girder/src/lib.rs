//! # Girder: Erlang/OTP-grade processes and behaviours for Rust
//!
//! Girder gives a Rust system the programming model that makes Erlang systems survive: many
//! small processes that own their state, talk by messages, are linked and monitored, and are
//! restarted by supervisors when they fail.
//!
//! | module | what it is | OTP anchor |
//! |---|---|---|
//! | [`Node`] | a home for processes: spawn, exit signals, process table | the runtime |
//! | [`scheduler`] | [`Schedulers`]: a thread per core, processes homed on one, idle ones steal | the BEAM's schedulers |
//! | [`process`] | [`Context`], [`Addr`], links, monitors, exit signals | `spawn`, `link`, `monitor` |
//! | [`mailbox`] | the bounded/unbounded mailbox with a system lane; [`Overflow`] policies (wait, fail fast, drop oldest, drop newest), counted; capacity that changes at run time | process mailboxes, `max_heap_size` |
//! | registry | [`Node::register`], [`Node::whereis`] | `register/2`, `whereis/1` |
//! | [`timer`] | [`send_after`], [`TimerRef::cancel`]: a timer wheel per scheduler | `erlang:send_after/3`, the BEAM's timer wheels |
//! | [`behaviour`] | what every behaviour shares: [`behaviour::Msg`], [`behaviour::Handle`], start errors | `proc_lib`, `gen` |
//! | [`call`] | the call protocol every behaviour shares: [`ReplyTo`], [`CallError`], timeouts, a caller that never hangs | `gen:call` |
//! | [`server`] | [`Server`]: call / cast / info with deferred replies | `gen_server` |
//! | [`statem`] | [`StateMachine`]: states, enter actions, timeouts, postpone | `gen_statem` |
//! | [`event`] | [`EventManager`]: pluggable handlers, crash isolation | `gen_event` |
//! | [`supervisor`] | [`Supervisor`]: restart strategies, intensity, ordered shutdown | `supervisor` |
//! | [`application`] | [`Application`]: a root tree started and stopped as a unit | `application` |
//! | [`remote`] | the seam distribution plugs into: remote links, monitors, sends | `net_kernel`, `dist_util` |
//! | [`sampler`] | [`Node::load`]: scheduling lag on the node's own schedulers, run queue, per-scheduler busy share, memory, mailbox fill; one snapshot for alarms and regulators | `erlang:statistics/1`, `os_mon`'s `memsup`, the overload signals of `jobs` |
//! | [`stats`] | [`Node::stats`]: processes, spawns, exits by reason, messages, mailboxes; sampled call latency | `erlang:statistics/1`, `observer` |
//! | [`lifecycle`] | [`Node::lifecycle`]: children restarted, supervisors giving up | SASL progress and supervisor reports |
//! | [`sys`] | any behaviour's state, suspend and resume, traces, without stopping it | `sys` |
//! | [`log`] | [`log::LogBudget`]: one line a second at most for what can happen a thousand times a second | `logger`'s burst limit |
//! | introspection | [`Node::processes`], [`ProcessInfo`] | `observer` |
//!
//! ## A supervised server
//!
//! ```
//! use girder::{ChildSpec, ExitReason, Flow, Node, ReplyTo, Server, ServerContext, Supervisor};
//!
//! struct Counter(u64);
//!
//! /// The one request: the count, replied as a `u64`.
//! struct Get(ReplyTo<u64>);
//!
//! impl Server for Counter {
//!     type Call = Get;
//!     type Cast = u64;
//!     type Info = ();
//!
//!     async fn handle_call(&mut self, Get(from): Get, _: &mut ServerContext<Self>) -> Flow {
//!         from.reply(self.0);
//!         Flow::Continue
//!     }
//!
//!     async fn handle_cast(&mut self, n: u64, _: &mut ServerContext<Self>) -> Flow {
//!         self.0 += n;
//!         Flow::Continue
//!     }
//! }
//!
//! # #[tokio::main] async fn main() {
//! let node = Node::new("example");
//! let sup = Supervisor::builder()
//!     .child(ChildSpec::server("counter", || Counter(0)).named("counter"))
//!     .start(&node)
//!     .await
//!     .unwrap();
//! let counter = girder::ServerRef::<Counter>::lookup(&node, "counter").unwrap();
//! counter.cast(5).unwrap();
//! assert_eq!(counter.call(Get).await.unwrap(), 5);
//! sup.stop(ExitReason::Shutdown).await;
//! # }
//! ```

#![warn(missing_docs)]

pub mod application;
pub mod behaviour;
pub mod call;
pub mod event;
mod exit;
mod introspect;
pub mod lifecycle;
pub mod log;
pub mod mailbox;
mod node;
mod pid;
pub mod process;
mod registry;
pub mod remote;
pub mod sampler;
pub mod scheduler;
pub mod server;
pub mod statem;
pub mod stats;
pub mod supervisor;
pub mod sys;
pub mod timer;

pub use application::{Application, RunningApplication};
pub use behaviour::{InitError, StartError};
pub use call::{CallError, ReplyTo};
pub use event::{EventHandler, EventManager};
pub use exit::ExitReason;
pub use introspect::ProcessInfo;
pub use mailbox::{MailboxStats, Overflow, SendError};
pub use node::{LinkError, LookupError, Node, NodeBuilder, OwnedTask};
pub use pid::Pid;
pub use process::{Addr, Context, Down, Event, MonitorRef, SpawnOptions};
pub use registry::RegisterError;
pub use sampler::LoadSample;
pub use scheduler::{SchedulerLoad, SchedulerStats, Schedulers};
pub use server::{Flow, Server, ServerContext, ServerRef};
pub use statem::{StateMachine, StateMachineRef};
pub use supervisor::{ChildSpec, RestartStrategy, Supervisor, SupervisorRef};
pub use timer::{send_after, TimerRef};
