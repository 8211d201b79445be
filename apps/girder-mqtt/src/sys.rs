//! `$SYS/broker/...`: the broker's statistics as retained messages, republished every
//! `sys_interval_secs` (Mosquitto's `sys_interval`, 10 s by default), with Mosquitto's topic
//! names so that dashboards made for Mosquitto read them. A subscription to `#` does not get
//! them (§4.7.2); subscribe to `$SYS/#`.
//!
//! | topic | payload |
//! |---|---|
//! | `$SYS/broker/version` | `girder-mqtt VERSION` |
//! | `$SYS/broker/uptime` | `N seconds` |
//! | `$SYS/broker/clients/connected` (and `active`) | clients connected |
//! | `$SYS/broker/clients/disconnected` (and `inactive`) | persistent sessions without a connection |
//! | `$SYS/broker/clients/total` | sessions, connected or not |
//! | `$SYS/broker/clients/maximum` | the most clients connected at once |
//! | `$SYS/broker/messages/received`, `.../sent` | PUBLISH packets, since the start |
//! | `$SYS/broker/publish/messages/received`, `.../sent`, `.../dropped` | the same, and drops |
//! | `$SYS/broker/bytes/received`, `.../sent` | bytes, since the start |
//! | `$SYS/broker/subscriptions/count` | subscriptions |
//! | `$SYS/broker/retained messages/count` | retained messages |
//! | `$SYS/broker/store/messages/count` | messages held in sessions' queues and in flight |
//! | `$SYS/broker/load/messages/received/1min` (also `5min`, `15min`; `sent`; `bytes/...`) | moving averages per minute, as Mosquitto computes them |

use std::sync::Arc;
use std::time::Duration;

use girder::{Flow, Server, ServerContext};

use crate::broker::Shared;
use crate::message::Message;

/// The `$SYS` publisher's state.
pub struct SysPublisher {
    shared: Arc<Shared>,
    every: Duration,
    max_connected: u64,
    /// Per-minute moving averages of (messages in, messages out, bytes in, bytes out), over
    /// 1, 5 and 15 minutes, and the counts they were last updated from.
    load: [[f64; 3]; 4],
    last: [u64; 4],
}

/// Time to publish.
pub struct Tick;

impl SysPublisher {
    /// Publishes every `every`.
    pub fn new(shared: Arc<Shared>, every: Duration) -> Self {
        SysPublisher {
            shared,
            every,
            max_connected: 0,
            load: [[0.0; 3]; 4],
            last: [0; 4],
        }
    }

    fn publish(&mut self) {
        let s = &self.shared.stats;
        let connected = s.connections.get();
        self.max_connected = self.max_connected.max(connected);
        let sessions = s.sessions.get();
        let now = [
            s.messages_in.get(),
            s.messages_out.get(),
            s.bytes_in.get(),
            s.bytes_out.get(),
        ];
        // Exponential moving averages of the rate per minute, Mosquitto's formula.
        let secs = self.every.as_secs_f64();
        for (i, count) in now.iter().enumerate() {
            let per_minute = (count - self.last[i]) as f64 * 60.0 / secs;
            for (j, minutes) in [1.0, 5.0, 15.0].iter().enumerate() {
                let k = (-secs / (60.0 * minutes)).exp();
                self.load[i][j] = per_minute + k * (self.load[i][j] - per_minute);
            }
        }
        self.last = now;
        let mut topics: Vec<(String, String)> = vec![
            (
                "version".into(),
                format!("girder-mqtt {}", env!("CARGO_PKG_VERSION")),
            ),
            (
                "uptime".into(),
                format!("{} seconds", s.started.elapsed().as_secs()),
            ),
            ("clients/connected".into(), connected.to_string()),
            ("clients/active".into(), connected.to_string()),
            (
                "clients/disconnected".into(),
                sessions.saturating_sub(connected).to_string(),
            ),
            (
                "clients/inactive".into(),
                sessions.saturating_sub(connected).to_string(),
            ),
            ("clients/total".into(), sessions.to_string()),
            ("clients/maximum".into(), self.max_connected.to_string()),
            ("messages/received".into(), now[0].to_string()),
            ("messages/sent".into(), now[1].to_string()),
            ("publish/messages/received".into(), now[0].to_string()),
            ("publish/messages/sent".into(), now[1].to_string()),
            (
                "publish/messages/dropped".into(),
                s.messages_dropped.get().to_string(),
            ),
            ("bytes/received".into(), now[2].to_string()),
            ("bytes/sent".into(), now[3].to_string()),
            (
                "subscriptions/count".into(),
                s.subscriptions.get().to_string(),
            ),
            (
                "retained messages/count".into(),
                s.retained.get().to_string(),
            ),
            ("store/messages/count".into(), s.queued.get().to_string()),
        ];
        let names = [
            "messages/received",
            "messages/sent",
            "bytes/received",
            "bytes/sent",
        ];
        for (i, name) in names.iter().enumerate() {
            for (j, window) in ["1min", "5min", "15min"].iter().enumerate() {
                topics.push((
                    format!("load/{name}/{window}"),
                    format!("{:.2}", self.load[i][j]),
                ));
            }
        }
        for (topic, payload) in topics {
            let msg = Message::broker(&format!("$SYS/broker/{topic}"), payload, true);
            self.shared.publish(&msg);
        }
    }
}

impl Server for SysPublisher {
    type Call = ();
    type Cast = ();
    type Info = Tick;

    async fn init(&mut self, ctx: &mut ServerContext<Self>) -> Result<(), girder::InitError> {
        self.publish();
        ctx.info_after(Tick, self.every);
        Ok(())
    }

    async fn handle_info(&mut self, _: Tick, ctx: &mut ServerContext<Self>) -> Flow {
        self.publish();
        ctx.info_after(Tick, self.every);
        Flow::Continue
    }
}
