//! # girder-testkit: what Girder's own tests share
//!
//! Dev-only (never published). The integration tests of `girder`, `girder-dist`, `girder-ops`,
//! `girder-regulate` and `girder-cli` take it as a dev-dependency instead of copying the same helpers into every
//! file. Each module has one job:
//!
//! | module | what it is for |
//! |---|---|
//! | [`wait`] | waiting with a deadline: [`WAIT`], [`eventually`], [`eventually_async`], [`within`] |
//! | [`procs`] | the common test processes: [`procs::forwarder`], [`procs::idle`], [`procs::down_reason`], the [`procs::Echo`] and [`procs::Counter`] servers |
//! | `dist` (feature `dist`) | nodes on loopback: `COOKIE`, `start`, `start_with`, `pair`, `introduce` |
//! | [`node_proc`] | an OS process (the `girder` binary) driven by its output lines: [`NodeProc`] |
//!
//! The bounds are generous on purpose: they say that something happens at all, not how fast.
//! A test that measures speed keeps its own, tighter bound beside them.
//!
//! Only integration tests (`tests/*.rs`) can use it: they link the same `girder` library as
//! this crate does. A crate's unit tests (inside `src/`) are built against another copy of the
//! crate, whose types would not match.

#![warn(missing_docs)]

#[cfg(feature = "dist")]
pub mod dist;
pub mod node_proc;
pub mod procs;
pub mod wait;

pub use node_proc::NodeProc;
pub use wait::{eventually, eventually_async, within, WAIT};
