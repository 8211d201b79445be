//! The protocol `girder loadgen` drives, and the server that `girder node` hosts for it.
//!
//! A request is [`Work`] (`loadgen.work.v1`): an optional cost, which the server spends as
//! simulated work, and an optional budget, after which nobody waits for the answer. Any node
//! can serve it: export a `Server` whose `Call` is `(Work, ReplyTo<WorkReply>)` under a local
//! name, and point `girder loadgen --server NAME` at it. `girder node` serves [`Simulated`] as
//! [`NAME`] out of the box.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use girder::{Flow, ReplyTo, Server, ServerContext};
use girder_dist::Wire;
use serde::{Deserialize, Serialize};

/// The name `girder node` registers its simulated server under.
pub const NAME: &str = "girder.loadgen";

/// One unit of work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Work {
    /// Simulated work in microseconds; `None`: the server's own default.
    pub cost_us: Option<u64>,
    /// The caller gives up after this many milliseconds: a request still waiting then is
    /// skipped, not worked on (nobody would read the answer).
    pub budget_ms: Option<u64>,
}

impl Wire for Work {
    const NAME: &'static str = "loadgen.work.v1";
}

/// The answer to [`Work`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkReply {
    /// Done, after this much simulated work (microseconds).
    Done { cost_us: u64 },
    /// Refused on arrival: the server's backlog was full.
    Busy,
}

/// A server with `concurrency` slots, each request holding one for its cost (a timer, not a
/// busy core: its capacity, `concurrency ÷ cost`, is the same on a loaded machine), the rest
/// waiting in a bounded backlog in arrival order.
pub struct Simulated {
    cost: Duration,
    concurrency: usize,
    max_backlog: usize,
    busy: usize,
    backlog: VecDeque<Waiting>,
    /// Requests in a slot, by token; a slot's timer brings the token back.
    running: std::collections::HashMap<u64, ReplyTo<WorkReply>>,
    next_token: u64,
}

struct Waiting {
    work: Work,
    since: Instant,
    from: ReplyTo<WorkReply>,
}

impl Simulated {
    /// `cost` per request by default, `concurrency` at once, `max_backlog` waiting.
    pub fn new(cost: Duration, concurrency: usize, max_backlog: usize) -> Simulated {
        Simulated {
            cost,
            concurrency: concurrency.max(1),
            max_backlog,
            busy: 0,
            backlog: VecDeque::new(),
            running: Default::default(),
            next_token: 0,
        }
    }

    /// Starts `work` in a free slot.
    fn begin(&mut self, work: &Work, from: ReplyTo<WorkReply>, ctx: &ServerContext<Self>) {
        let cost = work
            .cost_us
            .map_or(self.cost, Duration::from_micros)
            .min(Duration::from_secs(10));
        if cost.is_zero() {
            from.reply(WorkReply::Done { cost_us: 0 });
            return;
        }
        self.busy += 1;
        let token = self.next_token;
        self.next_token += 1;
        self.running.insert(token, from);
        ctx.info_after(Slot(token, cost.as_micros() as u64), cost);
    }
}

/// A slot's work is done: (token, cost in µs).
pub struct Slot(u64, u64);

impl Server for Simulated {
    type Call = (Work, ReplyTo<WorkReply>);
    type Cast = ();
    type Info = Slot;

    async fn handle_call(
        &mut self,
        (work, from): (Work, ReplyTo<WorkReply>),
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        if self.busy < self.concurrency {
            self.begin(&work, from, ctx);
        } else if self.backlog.len() < self.max_backlog {
            self.backlog.push_back(Waiting {
                work,
                since: Instant::now(),
                from,
            });
        } else {
            from.reply(WorkReply::Busy);
        }
        Flow::Continue
    }

    async fn handle_info(
        &mut self,
        Slot(token, cost_us): Slot,
        ctx: &mut ServerContext<Self>,
    ) -> Flow {
        if let Some(from) = self.running.remove(&token) {
            from.reply(WorkReply::Done { cost_us });
            self.busy -= 1;
        }
        while self.busy < self.concurrency {
            let Some(next) = self.backlog.pop_front() else {
                break;
            };
            let expired = next
                .work
                .budget_ms
                .is_some_and(|b| next.since.elapsed() > Duration::from_millis(b));
            if expired {
                // Its caller has given up: dropping the handle tells it, if it still listens.
                continue;
            }
            self.begin(&next.work, next.from, ctx);
        }
        Flow::Continue
    }
}
