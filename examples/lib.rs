//! Runnable programs that show Girder's model end to end; each ends by itself.
//!
//! | example | what it shows |
//! |---|---|
//! | `supervised_server` | a server under a supervisor: calls, casts, a crash and its restart, its state through `sys` (the README's first example) |
//! | `state_machine` | a state machine with state, event and generic timeouts, traced as it runs |
//! | `dynamic_pool` | a dynamic supervisor starting a worker per job, restarting crashed ones, counting and stopping them |
//! | `global_service` | a service registered globally on one node and called from another, as two OS processes (both sides) |
//! | `across_nodes` | the README's "Across nodes" program: two nodes in one process |
//! | `protect_a_service` | a scarce resource behind a fail-fast mailbox, a regulated queue and call deadlines, offered five times its capacity (the README's "Protecting a service") |
//! | `ops_in_axum` | the ops API in an application's own axum app: its route beside the ops router nested under `/ops`, on its listener, asked a few things; `--serve` keeps it up for the dashboard |
//!
//! Run one with `cargo run -p girder-examples --example NAME`. CI runs every one.
