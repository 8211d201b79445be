//! The chaos monkey, as a [`StateMachine`]: calm phases inject one random fault per tick; once,
//! a storm crashes pool workers faster than the pool's restart intensity allows.
//!
//! It shows the gen_statem tools: a generic timeout (`tick`) that survives state changes, a
//! state-enter call that runs the storm, a state timeout that ends it, and ticks postponed while
//! the storm lasts.

use std::time::{Duration, Instant};

use girder::event::EventManager;
use girder::statem::{Action, StateEvent, StateMachine, StateMachineContext, Transition};
use girder::{ExitReason, Node, Pid, ServerRef};

use super::events::DemoEvent;
use super::services::{Fault, Kv, Worker};

const TICK: Duration = Duration::from_millis(500);
const STORM_CRASHES: u32 = 5;

#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Calm,
    Storm,
}

pub enum Tick {
    Inject,
    StartStorm,
    StormOver,
}

pub struct Chaos {
    rng: fastrand::Rng,
    storm_after: Duration,
    events: Option<EventManager<DemoEvent>>,
}

impl Chaos {
    pub fn new(seed: u64, storm_after: Duration) -> Self {
        Chaos {
            rng: fastrand::Rng::with_seed(seed),
            storm_after,
            events: None,
        }
    }

    fn publish(&self, event: DemoEvent) {
        if let Some(events) = &self.events {
            let _ = events.notify(event);
        }
    }

    async fn inject_one(&mut self, node: &Node) {
        let victims = ["kv", "worker-1", "worker-2", "worker-3"];
        let victim = victims[self.rng.usize(..victims.len())];
        let Some(pid) = node.whereis(victim) else {
            return;
        };
        let t = Instant::now();
        let how = match self.rng.u8(..3) {
            0 => {
                if victim == "kv" {
                    let _ = ServerRef::<Kv>::from_pid(node, pid).map(|s| s.cast(Fault::Panic));
                } else {
                    let _ = ServerRef::<Worker>::from_pid(node, pid).map(|s| s.cast(Fault::Panic));
                }
                "a panic"
            }
            1 => {
                node.exit(pid, ExitReason::error("injected fault"));
                "an error exit"
            }
            _ => {
                node.exit(pid, ExitReason::Kill);
                "a kill"
            }
        };
        self.publish(DemoEvent::Injected { victim, pid, how });
        if let Some(new) = wait_for(node, victim, Some(pid)).await {
            self.publish(DemoEvent::Recovered {
                victim,
                pid: new,
                took: t.elapsed(),
            });
        }
    }

    async fn storm(&mut self, node: &Node) {
        self.publish(DemoEvent::Storm {
            crashes: STORM_CRASHES,
        });
        let pool_before = node.whereis("pool");
        for _ in 0..STORM_CRASHES {
            if let Some(pid) = wait_for(node, "worker-1", None).await {
                node.exit(pid, ExitReason::error("storm"));
                self.publish(DemoEvent::Injected {
                    victim: "worker-1",
                    pid,
                    how: "a storm crash",
                });
                wait_gone(node, pid).await;
            }
        }
        let pool_after = wait_for(node, "pool", pool_before).await;
        self.publish(DemoEvent::Escalated {
            from: pool_before,
            to: pool_after,
        });
    }
}

impl StateMachine for Chaos {
    type State = Phase;
    type Call = ();
    type Cast = ();
    type Info = ();
    type Timeout = Tick;

    async fn init(
        &mut self,
        ctx: &mut StateMachineContext<Self>,
    ) -> Result<(Phase, Vec<Action<Self>>), girder::InitError> {
        self.events = EventManager::lookup(ctx.node(), "events").ok();
        Ok((
            Phase::Calm,
            vec![
                Action::Timeout("tick", TICK, Tick::Inject),
                Action::Timeout("storm", self.storm_after, Tick::StartStorm),
            ],
        ))
    }

    fn state_enter() -> bool {
        true
    }

    async fn handle_event(
        &mut self,
        state: &Phase,
        event: StateEvent<Self>,
        ctx: &mut StateMachineContext<Self>,
    ) -> Transition<Self> {
        let node = ctx.node().clone();
        match (state, event) {
            (
                Phase::Calm,
                StateEvent::Timeout {
                    msg: Tick::Inject, ..
                },
            ) => {
                self.inject_one(&node).await;
                Transition::keep().with(Action::Timeout("tick", TICK, Tick::Inject))
            }
            (
                Phase::Calm,
                StateEvent::Timeout {
                    msg: Tick::StartStorm,
                    ..
                },
            ) => Transition::next(Phase::Storm),
            (Phase::Storm, StateEvent::Enter { .. }) => {
                self.storm(&node).await;
                Transition::keep().with(Action::StateTimeout(
                    Duration::from_millis(300),
                    Tick::StormOver,
                ))
            }
            (Phase::Storm, StateEvent::StateTimeout(Tick::StormOver)) => {
                Transition::next(Phase::Calm)
            }
            // Ticks that come during the storm wait until it is over.
            (Phase::Storm, event @ StateEvent::Timeout { .. }) => {
                Transition::keep().postpone(event)
            }
            _ => Transition::keep(),
        }
    }
}

async fn wait_for(node: &Node, name: &str, not: Option<Pid>) -> Option<Pid> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match node.whereis(name) {
            Some(p) if Some(p) != not => return Some(p),
            _ => tokio::time::sleep(Duration::from_micros(200)).await,
        }
    }
    None
}

async fn wait_gone(node: &Node, pid: Pid) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while node.is_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}
