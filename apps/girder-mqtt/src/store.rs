//! What survives a restart: persistent sessions and retained messages, in one redb file
//! (`{data_dir}/girder-mqtt.redb`).
//!
//! The broker saves a snapshot — every retained message and every session that outlives its
//! connection — when it stops (SIGTERM) and every `autosave_secs` while it runs, each in one
//! write transaction, so a file on disk is always one whole snapshot. This is Mosquitto's
//! model (`persistence true` with `autosave_interval`): a broker killed outright loses what
//! changed since the last save, and nothing older. Clean sessions (3.1.1's clean session,
//! 5.0's expiry 0) end with their connection and are never saved. Times are kept as wall-clock
//! deadlines, so a session's expiry and a message's expiry keep counting while the broker is
//! down.
//!
//! ```
//! use girder_mqtt::store::{Snapshot, Store};
//! use girder_mqtt::message::Message;
//! let dir = std::env::temp_dir().join(format!("girder-mqtt-doc-{}", std::process::id()));
//! let store = Store::open(&dir).unwrap();
//! let snap = Snapshot { retained: vec![Message::broker("a/b", "kept", true)], sessions: vec![] };
//! store.save(&snap).unwrap();
//! drop(store); // one process opens the file at a time
//! let back = Store::open(&dir).unwrap().load().unwrap();
//! assert_eq!(&*back.retained[0].topic, "a/b");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::codec::connect::QoS;
use crate::codec::subscribe::RetainHandling;
use crate::message::{Forwarded, Message};
use crate::session::{Delivery, SubRequest};

const RETAINED: TableDefinition<u64, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be made.
    #[error("data directory {0}: {1}")]
    Dir(String, std::io::Error),
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
    /// A record could not be read back.
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Everything saved at once.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every retained message.
    pub retained: Vec<Arc<Message>>,
    /// Every session that outlives its connection.
    pub sessions: Vec<SavedSession>,
}

/// A session as saved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedSession {
    /// Its client id.
    pub client_id: String,
    /// Its expiry interval, seconds (`u32::MAX`: never).
    pub expiry: u32,
    /// When it expires (ms since the Unix epoch), if its client is not connected: a session
    /// whose client was connected at the save expires `expiry` after the restart.
    pub expires_at_ms: Option<u64>,
    /// Its subscriptions.
    pub subs: Vec<SavedSub>,
    /// Messages on their way: (packet id, message, released) — released is a QoS 2 message
    /// whose PUBREC came (a PUBREL goes next).
    pub inflight: Vec<(u16, SavedDelivery, bool)>,
    /// Messages waiting.
    pub queue: Vec<SavedDelivery>,
    /// QoS 2 ids received and not yet released.
    pub awaiting_rel: Vec<u16>,
    /// The user name its client authenticated with (the ACL's rules depend on it).
    pub username: Option<String>,
}

/// A session as the first release saved it (before `username`): still read.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct SavedSessionV1 {
    client_id: String,
    expiry: u32,
    expires_at_ms: Option<u64>,
    subs: Vec<SavedSub>,
    inflight: Vec<(u16, SavedDelivery, bool)>,
    queue: Vec<SavedDelivery>,
    awaiting_rel: Vec<u16>,
}

impl SavedSession {
    /// Reads a saved session, in today's format or the first release's.
    fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes).or_else(|e| {
            let v1: SavedSessionV1 = postcard::from_bytes(bytes).map_err(|_| e)?;
            Ok(SavedSession {
                client_id: v1.client_id,
                expiry: v1.expiry,
                expires_at_ms: v1.expires_at_ms,
                subs: v1.subs,
                inflight: v1.inflight,
                queue: v1.queue,
                awaiting_rel: v1.awaiting_rel,
                username: None,
            })
        })
    }
}

/// A subscription as saved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedSub {
    filter: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
    id: Option<u32>,
}

/// A delivery as saved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedDelivery {
    msg: SavedMessage,
    qos: u8,
    retain: bool,
    sub_id: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SavedMessage {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    from: String,
    expires_at_ms: Option<u64>,
    properties: Vec<SavedProperty>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
enum SavedProperty {
    PayloadFormat(u8),
    ContentType(String),
    ResponseTopic(String),
    CorrelationData(Vec<u8>),
    User(String, String),
}

fn qos(n: u8) -> QoS {
    QoS::from_bits(n).unwrap_or(QoS::AtMostOnce)
}

/// An instant as wall-clock ms since the epoch.
pub fn wall_ms(at: Instant) -> u64 {
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let now = Instant::now();
    let wall = if at >= now {
        now_wall + (at - now)
    } else {
        now_wall.saturating_sub(now - at)
    };
    wall.as_millis() as u64
}

/// Wall-clock ms since the epoch as an instant (in the past if it has passed).
pub fn instant_of(ms: u64) -> Instant {
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let now = Instant::now();
    if ms >= now_wall {
        now + Duration::from_millis(ms - now_wall)
    } else {
        now.checked_sub(Duration::from_millis(now_wall - ms))
            .unwrap_or(now)
    }
}

impl SavedMessage {
    fn of(m: &Message) -> Self {
        SavedMessage {
            topic: m.topic.to_string(),
            payload: m.payload.to_vec(),
            qos: m.qos as u8,
            retain: m.retain,
            from: m.from.to_string(),
            expires_at_ms: m.expires.map(wall_ms),
            properties: m
                .properties
                .iter()
                .map(|p| match p {
                    Forwarded::PayloadFormat(b) => SavedProperty::PayloadFormat(*b),
                    Forwarded::ContentType(s) => SavedProperty::ContentType(s.to_string()),
                    Forwarded::ResponseTopic(s) => SavedProperty::ResponseTopic(s.to_string()),
                    Forwarded::CorrelationData(b) => SavedProperty::CorrelationData(b.to_vec()),
                    Forwarded::User(k, v) => SavedProperty::User(k.to_string(), v.to_string()),
                })
                .collect(),
        }
    }

    fn into_message(self) -> Arc<Message> {
        Arc::new(Message {
            topic: self.topic.into(),
            payload: Bytes::from(self.payload),
            qos: qos(self.qos),
            retain: self.retain,
            from: self.from.into(),
            expires: self.expires_at_ms.map(instant_of),
            properties: self
                .properties
                .into_iter()
                .map(|p| match p {
                    SavedProperty::PayloadFormat(b) => Forwarded::PayloadFormat(b),
                    SavedProperty::ContentType(s) => Forwarded::ContentType(s.into()),
                    SavedProperty::ResponseTopic(s) => Forwarded::ResponseTopic(s.into()),
                    SavedProperty::CorrelationData(b) => Forwarded::CorrelationData(b.into()),
                    SavedProperty::User(k, v) => Forwarded::User(k.into(), v.into()),
                })
                .collect(),
            received: Instant::now(),
        })
    }
}

impl SavedDelivery {
    /// A delivery as saved.
    pub fn of(d: &Delivery) -> Self {
        SavedDelivery {
            msg: SavedMessage::of(&d.msg),
            qos: d.qos as u8,
            retain: d.retain,
            sub_id: d.sub_id,
        }
    }

    /// The delivery again.
    pub fn into_delivery(self) -> Delivery {
        Delivery {
            msg: self.msg.into_message(),
            qos: qos(self.qos),
            retain: self.retain,
            sub_id: self.sub_id,
        }
    }
}

impl SavedSub {
    /// A subscription as saved.
    pub fn of(s: &SubRequest) -> Self {
        SavedSub {
            filter: s.filter.clone(),
            qos: s.qos as u8,
            no_local: s.no_local,
            retain_as_published: s.retain_as_published,
            retain_handling: match s.retain_handling {
                RetainHandling::OnSubscribe => 0,
                RetainHandling::OnNewSubscription => 1,
                RetainHandling::Never => 2,
            },
            id: s.id,
        }
    }

    /// The subscription again.
    pub fn into_request(self) -> SubRequest {
        SubRequest {
            filter: self.filter,
            qos: qos(self.qos),
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: match self.retain_handling {
                0 => RetainHandling::OnSubscribe,
                1 => RetainHandling::OnNewSubscription,
                _ => RetainHandling::Never,
            },
            id: self.id,
        }
    }
}

/// The redb file.
pub struct Store {
    db: redb::Database,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Dir(dir.display().to_string(), e))?;
        let db = redb::Database::create(dir.join("girder-mqtt.redb")).map_err(db)?;
        Ok(Store { db })
    }

    /// Replaces what is stored with `snap`, in one transaction.
    pub fn save(&self, snap: &Snapshot) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            txn.delete_table(RETAINED).map_err(db)?;
            txn.delete_table(SESSIONS).map_err(db)?;
            let mut retained = txn.open_table(RETAINED).map_err(db)?;
            for (i, m) in snap.retained.iter().enumerate() {
                let bytes = postcard::to_stdvec(&SavedMessage::of(m)).map_err(db)?;
                retained.insert(i as u64, bytes.as_slice()).map_err(db)?;
            }
            let mut sessions = txn.open_table(SESSIONS).map_err(db)?;
            for s in &snap.sessions {
                let bytes = postcard::to_stdvec(s).map_err(db)?;
                sessions
                    .insert(s.client_id.as_str(), bytes.as_slice())
                    .map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// What was saved last (nothing, for a new store). Expired messages are left out.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let mut snap = Snapshot::default();
        let now = Instant::now();
        match txn.open_table(RETAINED) {
            Ok(t) => {
                for row in t.iter().map_err(db)? {
                    let (_, v) = row.map_err(db)?;
                    let m: SavedMessage = postcard::from_bytes(v.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let m = m.into_message();
                    if !m.expired_at(now) {
                        snap.retained.push(m);
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(db(e)),
        }
        match txn.open_table(SESSIONS) {
            Ok(t) => {
                for row in t.iter().map_err(db)? {
                    let (_, v) = row.map_err(db)?;
                    let s = SavedSession::decode(v.value())
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    snap.sessions.push(s);
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(db(e)),
        }
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_saved_by_the_first_release_is_still_read() {
        let old = SavedSessionV1 {
            client_id: "c1".into(),
            expiry: 60,
            expires_at_ms: Some(1),
            subs: Vec::new(),
            inflight: Vec::new(),
            queue: Vec::new(),
            awaiting_rel: vec![7],
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        let s = SavedSession::decode(&bytes).unwrap();
        assert_eq!(
            (s.client_id.as_str(), s.expiry, s.awaiting_rel),
            ("c1", 60, vec![7])
        );
        assert_eq!(s.username, None);
        // Today's format keeps the user name.
        let now = SavedSession {
            username: Some("bob".into()),
            ..SavedSession::decode(&bytes).unwrap()
        };
        let again = SavedSession::decode(&postcard::to_stdvec(&now).unwrap()).unwrap();
        assert_eq!(again, now);
        assert!(SavedSession::decode(&[0xff; 3]).is_err());
    }
}
