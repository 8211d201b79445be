//! The demo's event manager handlers: what happens is published once and each handler does its
//! own thing with it, as a `gen_event` would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use girder::event::{EventHandler, HandlerFlow};
use girder::Pid;

/// Something the chaos machine did or saw.
#[derive(Clone, Debug)]
pub enum DemoEvent {
    Injected {
        victim: &'static str,
        pid: Pid,
        how: &'static str,
    },
    Recovered {
        victim: &'static str,
        pid: Pid,
        took: Duration,
    },
    Storm {
        crashes: u32,
    },
    Escalated {
        from: Option<Pid>,
        to: Option<Pid>,
    },
}

/// Prints every event as it happens.
pub struct Console;

impl EventHandler<DemoEvent> for Console {
    async fn handle_event(&mut self, event: &DemoEvent) -> HandlerFlow {
        match event {
            DemoEvent::Injected { victim, pid, how } => {
                println!("-- chaos: {victim} {pid} gets {how}")
            }
            DemoEvent::Recovered { victim, pid, took } => {
                println!("-- chaos: {victim} is back as {pid} after {took:.1?}")
            }
            DemoEvent::Storm { crashes } => {
                println!("-- chaos: crashing pool workers {crashes} times in a row (pool allows 4 restarts in 1.5 s)")
            }
            DemoEvent::Escalated { from, to } => println!(
                "-- chaos: pool escalated; root restarted it: {} -> {}",
                from.map(|p| p.to_string()).unwrap_or_default(),
                to.map(|p| p.to_string()).unwrap_or_default()
            ),
        }
        HandlerFlow::Continue
    }
}

/// Counts injections and recovery times for the summary.
#[derive(Default)]
pub struct Tally {
    pub injected: u32,
    pub recoveries: Vec<Duration>,
}

pub struct TallyHandler(pub Arc<Mutex<Tally>>);

impl EventHandler<DemoEvent> for TallyHandler {
    async fn handle_event(&mut self, event: &DemoEvent) -> HandlerFlow {
        let mut t = self.0.lock().expect("tally lock");
        match event {
            DemoEvent::Injected { .. } => t.injected += 1,
            DemoEvent::Recovered { took, .. } => t.recoveries.push(*took),
            _ => {}
        }
        HandlerFlow::Continue
    }
}

/// A buggy handler that crashes on its third event: the manager removes it and carries on.
pub struct Fragile(pub u32);

impl EventHandler<DemoEvent> for Fragile {
    async fn handle_event(&mut self, _: &DemoEvent) -> HandlerFlow {
        self.0 += 1;
        if self.0 == 3 {
            panic!("fragile handler bug on its third event");
        }
        HandlerFlow::Continue
    }
}
