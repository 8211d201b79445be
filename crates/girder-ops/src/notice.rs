//! Notifications: what subscribers (the log, webhooks, the dashboard's live stream) hear about.

use serde::Serialize;

use crate::alarm::Alarm;

/// Something an operator or automation may want to act on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// An alarm was raised.
    AlarmRaised {
        /// The alarm.
        alarm: Alarm,
    },
    /// An alarm was cleared.
    AlarmCleared {
        /// The alarm as it was.
        alarm: Alarm,
    },
    /// A connection to a node came up.
    NodeUp {
        /// The node.
        node: String,
    },
    /// A connection to a node went down without a goodbye: a failure (with a `node_down`
    /// alarm until the node is back or forgotten).
    NodeDown {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// A connection to a node ended because a node left on purpose (it shut down and said
    /// goodbye, or this node did): news, not a failure, so no alarm.
    NodeLeft {
        /// The node.
        node: String,
        /// Which side left.
        reason: String,
    },
    /// This node forgot a node (down for too long, or forgotten by an operator): its
    /// `node_down` alarm, if any, is cleared.
    NodeForgotten {
        /// The node.
        node: String,
    },
    /// A supervisor is restarting a child that exited.
    ProcessRestarted {
        /// The supervisor (its name, or its pid).
        supervisor: String,
        /// The child's id.
        child: String,
        /// Why the child exited.
        reason: String,
    },
    /// A supervisor passed its restart intensity and gave up (escalating to its parent).
    SupervisorGaveUp {
        /// The supervisor (its name, or its pid).
        supervisor: String,
    },
    /// An application's own news, published with
    /// [`AlarmManager::publish`](crate::AlarmManager::publish): an MQTT client connected to a
    /// broker, say. It goes wherever notices go (the log, webhooks, the live stream).
    ///
    /// ```
    /// use girder_ops::{AlarmManager, Notice};
    /// let alarms = AlarmManager::new();
    /// let mut rx = alarms.subscribe();
    /// alarms.publish(Notice::App {
    ///     source: "mqtt".into(),
    ///     event: "client_connected".into(),
    ///     text: "sensor-1 from 10.0.0.7".into(),
    /// });
    /// assert_eq!(rx.try_recv().unwrap().line(), "mqtt client_connected: sensor-1 from 10.0.0.7");
    /// ```
    App {
        /// Who says it (an application or component name).
        source: String,
        /// What happened, as a short snake_case name.
        event: String,
        /// The details, in words.
        text: String,
    },
}

impl Notice {
    /// One line for a log.
    pub fn line(&self) -> String {
        match self {
            Notice::AlarmRaised { alarm } => format!(
                "alarm raised: {} [{:?}] {}: {}",
                alarm.id, alarm.severity, alarm.source, alarm.text
            ),
            Notice::AlarmCleared { alarm } => format!("alarm cleared: {}", alarm.id),
            Notice::NodeUp { node } => format!("node up: {node}"),
            Notice::NodeDown { node, reason } => format!("node down: {node} ({reason})"),
            Notice::NodeLeft { node, reason } => format!("node left: {node} ({reason})"),
            Notice::NodeForgotten { node } => format!("node forgotten: {node}"),
            Notice::ProcessRestarted {
                supervisor,
                child,
                reason,
            } => format!("{supervisor} restarts {child} ({reason})"),
            Notice::SupervisorGaveUp { supervisor } => {
                format!("{supervisor} passed its restart intensity and gave up")
            }
            Notice::App {
                source,
                event,
                text,
            } => format!("{source} {event}: {text}"),
        }
    }
}
