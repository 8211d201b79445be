//! Property test: a supervisor driven by random child exits behaves like a small model of OTP's
//! restart rules (strategies, restart types, intensity).

mod common;

use std::time::Duration;

use common::{child, wait_gone, Cmd, Life};
use girder::supervisor::{Restart, RestartStrategy, Supervisor};
use girder::{CallError, ExitReason, Node};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct ModelChild {
    id: &'static str,
    restart: Restart,
    running: bool,
}

#[derive(Clone, Debug)]
struct Model {
    strategy: RestartStrategy,
    intensity: u32,
    restarts: u32,
    alive: bool,
    children: Vec<ModelChild>,
}

impl Model {
    /// Child `i` exits with `reason`; applies OTP's rules.
    fn exit(&mut self, i: usize, reason: &ExitReason) {
        self.children[i].running = false;
        let restart = match self.children[i].restart {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_clean(),
            Restart::Temporary => false,
        };
        if !restart {
            if self.children[i].restart == Restart::Temporary {
                self.children.remove(i);
            }
            return;
        }
        self.restarts += 1;
        if self.restarts > self.intensity {
            self.alive = false;
            self.children.clear();
            return;
        }
        let from = match self.strategy {
            RestartStrategy::OneForOne | RestartStrategy::Dynamic => {
                self.children[i].running = true;
                return;
            }
            RestartStrategy::OneForAll => 0,
            RestartStrategy::RestForOne => i,
        };
        // Stopped by the supervisor: temporaries are forgotten, the rest start again.
        let failed = self.children[i].id;
        let mut k = from;
        while k < self.children.len() {
            if self.children[k].id != failed && self.children[k].restart == Restart::Temporary {
                self.children.remove(k);
                continue;
            }
            self.children[k].running = true;
            k += 1;
        }
    }

    fn running(&self) -> Vec<&'static str> {
        self.children
            .iter()
            .filter(|c| c.running)
            .map(|c| c.id)
            .collect()
    }
}

const IDS: [&str; 4] = ["c0", "c1", "c2", "c3"];

fn restart_type() -> impl Strategy<Value = Restart> {
    prop_oneof![
        Just(Restart::Permanent),
        Just(Restart::Transient),
        Just(Restart::Temporary)
    ]
}

fn strategy() -> impl Strategy<Value = RestartStrategy> {
    prop_oneof![
        Just(RestartStrategy::OneForOne),
        Just(RestartStrategy::OneForAll),
        Just(RestartStrategy::RestForOne)
    ]
}

fn reason() -> impl Strategy<Value = ExitReason> {
    prop_oneof![
        Just(ExitReason::Normal),
        Just(ExitReason::Shutdown),
        Just(ExitReason::error("crash")),
        Just(ExitReason::Killed),
    ]
}

async fn check(
    strategy: RestartStrategy,
    restarts: Vec<Restart>,
    intensity: u32,
    steps: Vec<(usize, ExitReason)>,
) {
    let node = Node::new("model");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel::<Life>();
    let mut builder = Supervisor::builder()
        .strategy(strategy)
        .intensity(intensity, Duration::from_secs(3600));
    let mut model = Model {
        strategy,
        intensity,
        restarts: 0,
        alive: true,
        children: Vec::new(),
    };
    for (k, r) in restarts.iter().enumerate() {
        builder = builder.child(child(IDS[k], tx.clone(), false).restart(*r));
        model.children.push(ModelChild {
            id: IDS[k],
            restart: *r,
            running: true,
        });
    }
    let sup = builder.start(&node).await.unwrap();
    for (pick, reason) in steps {
        let running = model.running();
        if !model.alive || running.is_empty() {
            break;
        }
        let id = running[pick % running.len()];
        let i = model.children.iter().position(|c| c.id == id).unwrap();
        let pid = node.whereis(id).expect("a running child is registered");
        match &reason {
            ExitReason::Killed => node.exit(pid, ExitReason::Kill),
            r => common::send_cmd(&node, pid, Cmd::Exit(r.clone())),
        }
        wait_gone(&node, pid).await;
        model.exit(i, &reason);
        // The supervisor handles the exit (system lane) before this call.
        match sup.which_children().await {
            Ok(children) => {
                assert!(
                    model.alive,
                    "supervisor should have given up; model {model:?}"
                );
                let got: Vec<_> = children
                    .iter()
                    .filter(|c| c.pid.is_some())
                    .map(|c| c.id.clone())
                    .collect();
                assert_eq!(got, model.running(), "after {id} exited with {reason}");
                let all: Vec<_> = children.iter().map(|c| c.id.clone()).collect();
                let expected: Vec<_> = model.children.iter().map(|c| c.id).collect();
                assert_eq!(all, expected, "specs held after {id} exited with {reason}");
                for c in children.iter().filter(|c| c.pid.is_some()) {
                    assert_eq!(
                        node.whereis(&c.id),
                        c.pid,
                        "registered name follows the live child"
                    );
                }
            }
            Err(girder::supervisor::SupervisorError::Call(CallError::Exited(r))) => {
                assert!(
                    !model.alive,
                    "supervisor died unexpectedly ({r}); model {model:?}"
                );
                assert_eq!(r, ExitReason::Shutdown);
                sup.wait_exit().await;
                assert_eq!(
                    node.process_count(),
                    0,
                    "its children are gone with it: {:?}",
                    node.processes()
                );
                return;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    sup.stop(ExitReason::Shutdown).await;
    assert_eq!(node.process_count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn supervisor_follows_otp_rules(
        strategy in strategy(),
        restarts in prop::collection::vec(restart_type(), 1..=4),
        intensity in 0u32..6,
        steps in prop::collection::vec((0usize..8, reason()), 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(check(strategy, restarts, intensity, steps));
    }
}
