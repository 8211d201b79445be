//! The alarm manager (SASL's `alarm_handler`, elarm): raise and clear alarms by id, no
//! duplicates, a bounded history, and alarms derived from thresholds with hysteresis.
//!
//! An alarm is a condition that is true now (a long mailbox, a node down), not an event: it is
//! raised once when the condition starts and cleared once when it ends. A threshold raises its
//! alarm when a value stays above `raise_above` for `for_at_least`, and clears it only when the
//! value falls below `clear_below` (lower), so a value hovering at the line does not flap.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use girder::{Node, OwnedTask};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::notice::Notice;

/// How bad it is, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// May need attention.
    Warning,
    /// Degraded, not urgent.
    Minor,
    /// Degraded, urgent.
    Major,
    /// Down or about to be: the node reports itself not ready.
    Critical,
}

/// An active alarm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alarm {
    /// Unique among active alarms, e.g. `mailbox_long` or `node_down:b@host`.
    pub id: String,
    /// How bad.
    pub severity: Severity,
    /// What raised it (a node, a subsystem).
    pub source: String,
    /// For humans.
    pub text: String,
    /// When it was raised, milliseconds since the Unix epoch.
    pub raised_at_ms: u64,
}

impl Alarm {
    /// An alarm raised now.
    pub fn new(
        id: impl Into<String>,
        severity: Severity,
        source: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Alarm {
            id: id.into(),
            severity,
            source: source.into(),
            text: text.into(),
            raised_at_ms: now_ms(),
        }
    }
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEvent {
    /// `raised` or `cleared`.
    pub what: &'static str,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The alarm.
    pub alarm: Alarm,
}

/// Why an alarm operation did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlarmError {
    /// An alarm with this id is already active.
    #[error("alarm {0:?} is already active")]
    AlreadyActive(String),
    /// No active alarm has this id.
    #[error("no active alarm {0:?}")]
    NotActive(String),
}

/// How many history entries are kept; older ones are dropped.
pub const HISTORY: usize = 1000;

struct State {
    active: BTreeMap<String, Alarm>,
    history: VecDeque<AlarmEvent>,
}

/// A node's alarm manager. Cheap to clone.
///
/// ```
/// use girder_ops::alarm::{Alarm, AlarmManager, Severity};
/// let alarms = AlarmManager::new();
/// alarms.raise(Alarm::new("disk_full", Severity::Major, "node a", "/var is 98% full")).unwrap();
/// assert!(alarms.raise(Alarm::new("disk_full", Severity::Major, "node a", "again")).is_err());
/// assert_eq!(alarms.active().len(), 1);
/// alarms.clear("disk_full").unwrap();
/// assert!(alarms.active().is_empty());
/// assert_eq!(alarms.history().len(), 2);
/// ```
#[derive(Clone)]
pub struct AlarmManager {
    state: Arc<Mutex<State>>,
    notices: broadcast::Sender<Notice>,
}

impl Default for AlarmManager {
    fn default() -> Self {
        Self::new()
    }
}

impl AlarmManager {
    /// An empty manager.
    pub fn new() -> Self {
        AlarmManager {
            state: Arc::new(Mutex::new(State {
                active: BTreeMap::new(),
                history: VecDeque::new(),
            })),
            notices: broadcast::channel(1024).0,
        }
    }

    /// Raises `alarm`; refused if one with its id is active.
    pub fn raise(&self, alarm: Alarm) -> Result<(), AlarmError> {
        {
            let mut s = self.state.lock();
            if s.active.contains_key(&alarm.id) {
                return Err(AlarmError::AlreadyActive(alarm.id));
            }
            s.active.insert(alarm.id.clone(), alarm.clone());
            push(&mut s.history, "raised", &alarm);
        }
        let _ = self.notices.send(Notice::AlarmRaised { alarm });
        Ok(())
    }

    /// Clears the active alarm `id` and returns it.
    pub fn clear(&self, id: &str) -> Result<Alarm, AlarmError> {
        let alarm = {
            let mut s = self.state.lock();
            let alarm = s
                .active
                .remove(id)
                .ok_or_else(|| AlarmError::NotActive(id.to_string()))?;
            push(&mut s.history, "cleared", &alarm);
            alarm
        };
        let _ = self.notices.send(Notice::AlarmCleared {
            alarm: alarm.clone(),
        });
        Ok(alarm)
    }

    /// True if `id` is active.
    pub fn is_active(&self, id: &str) -> bool {
        self.state.lock().active.contains_key(id)
    }

    /// Active alarms, most severe first.
    pub fn active(&self) -> Vec<Alarm> {
        let mut v: Vec<Alarm> = self.state.lock().active.values().cloned().collect();
        v.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.id.cmp(&b.id)));
        v
    }

    /// Raised and cleared alarms, oldest first (the last [`HISTORY`]).
    pub fn history(&self) -> Vec<AlarmEvent> {
        self.state.lock().history.iter().cloned().collect()
    }

    /// Notifications from now on (alarms raised and cleared, and whatever else is published
    /// here). A subscriber more than 1024 behind misses the oldest and is told it lagged.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Publishes a notice to subscribers.
    pub fn publish(&self, notice: Notice) {
        let _ = self.notices.send(notice);
    }

    /// Watches `threshold` every `period`, as a task of `node`, until the returned task is
    /// dropped or the manager is (the task holds a weak reference to it). Keep the task as
    /// long as the threshold should be watched, or [`detach`](OwnedTask::detach) it to watch
    /// for as long as the manager lives.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use girder::Node;
    /// use girder_ops::alarm::{AlarmManager, Severity, Threshold};
    /// use girder_ops::Notice;
    ///
    /// let node = Node::new("docs");
    /// let alarms = AlarmManager::new();
    /// let level = Arc::new(AtomicU64::new(0));
    /// let l = level.clone();
    /// let t = Threshold::new("level_high", Severity::Warning, "level over 10", move || {
    ///     l.load(Ordering::Relaxed) as f64
    /// })
    /// .raise_above(10.0);
    /// let mut notices = alarms.subscribe();
    /// let watching = alarms.watch(&node, t, Duration::from_millis(10));
    /// level.store(50, Ordering::Relaxed);
    /// // A check within 10 ms raises it.
    /// let raised = notices.recv().await.unwrap();
    /// assert!(matches!(raised, Notice::AlarmRaised { alarm } if alarm.id == "level_high"));
    /// drop(watching); // no more checks: the alarm stays as it is, whatever the level
    /// # }
    /// ```
    pub fn watch(&self, node: &Node, threshold: Threshold, period: Duration) -> OwnedTask {
        let state = Arc::downgrade(&self.state);
        let notices = self.notices.clone();
        node.spawn_owned(async move {
            let mut t = threshold;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(state) = state.upgrade() else { return };
                let manager = AlarmManager {
                    state,
                    notices: notices.clone(),
                };
                t.check(&manager);
            }
        })
    }
}

fn push(history: &mut VecDeque<AlarmEvent>, what: &'static str, alarm: &Alarm) {
    if history.len() == HISTORY {
        history.pop_front();
    }
    history.push_back(AlarmEvent {
        what,
        at_ms: now_ms(),
        alarm: alarm.clone(),
    });
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An alarm derived from a value: raised when the value stays above `raise_above` for
/// `for_at_least`, cleared when it falls to `clear_below` or under. [`AlarmManager::watch`]
/// checks it periodically; [`check`](Threshold::check) looks once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use girder_ops::alarm::{AlarmManager, Severity, Threshold};
///
/// let queue = Arc::new(AtomicU64::new(0));
/// let q = queue.clone();
/// let alarms = AlarmManager::new();
/// let mut t = Threshold::new("queue_long", Severity::Warning, "queue over 100", move || q.load(Ordering::Relaxed) as f64)
///     .raise_above(100.0)
///     .clear_below(50.0)
///     .for_at_least(Duration::from_secs(2));
/// queue.store(500, Ordering::Relaxed);
/// t.check(&alarms); // above the line from now on
/// assert!(!alarms.is_active("queue_long"));
/// tokio::time::sleep(Duration::from_secs(3)).await;
/// t.check(&alarms); // above it for 3 s
/// assert!(alarms.is_active("queue_long"));
/// queue.store(80, Ordering::Relaxed); // below the raise line, above the clear line: still on
/// t.check(&alarms);
/// assert!(alarms.is_active("queue_long"));
/// queue.store(10, Ordering::Relaxed);
/// t.check(&alarms);
/// assert!(!alarms.is_active("queue_long"));
/// # }
/// ```
pub struct Threshold {
    id: String,
    severity: Severity,
    source: String,
    text: String,
    probe: Box<dyn FnMut() -> f64 + Send>,
    raise_above: f64,
    clear_below: f64,
    for_at_least: Duration,
    above_since: Option<tokio::time::Instant>,
}

impl Threshold {
    /// A threshold on `probe`'s value; set the lines with the builder methods (defaults: raise
    /// above 0, clear below 0, at once).
    pub fn new(
        id: impl Into<String>,
        severity: Severity,
        text: impl Into<String>,
        probe: impl FnMut() -> f64 + Send + 'static,
    ) -> Self {
        Threshold {
            id: id.into(),
            severity,
            source: "threshold".into(),
            text: text.into(),
            probe: Box::new(probe),
            raise_above: 0.0,
            clear_below: 0.0,
            for_at_least: Duration::ZERO,
            above_since: None,
        }
    }

    /// Raise when the value is above `v`.
    pub fn raise_above(mut self, v: f64) -> Self {
        self.raise_above = v;
        self
    }

    /// Clear when the value is below `v` (at most the raise line; lower gives hysteresis).
    pub fn clear_below(mut self, v: f64) -> Self {
        self.clear_below = v;
        self
    }

    /// Raise only once the value has been above the line this long.
    pub fn for_at_least(mut self, d: Duration) -> Self {
        self.for_at_least = d;
        self
    }

    /// Who the alarm names as its source.
    pub fn source(mut self, s: impl Into<String>) -> Self {
        self.source = s.into();
        self
    }

    /// Looks at the value once and raises or clears.
    pub fn check(&mut self, alarms: &AlarmManager) {
        let v = (self.probe)();
        let now = tokio::time::Instant::now();
        let active = alarms.is_active(&self.id);
        if v > self.raise_above {
            let since = *self.above_since.get_or_insert(now);
            if !active && now.duration_since(since) >= self.for_at_least {
                let text = format!("{} (now {v})", self.text);
                let _ = alarms.raise(Alarm::new(
                    self.id.clone(),
                    self.severity,
                    self.source.clone(),
                    text,
                ));
            }
        } else {
            self.above_since = None;
            if active && v <= self.clear_below.min(self.raise_above) {
                let _ = alarms.clear(&self.id);
            }
        }
    }
}
