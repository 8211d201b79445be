//! # girder-mqtt: an MQTT broker on Girder
//!
//! Girder's reference system (issue 15): an MQTT 3.1.1 and 5.0 broker built only on Girder's
//! public API, girder-regulate and girder-ops. One process per client, owning its socket and,
//! once CONNECT names it, its session (outliving its connections), under a dynamic supervisor;
//! a shared routing table; Mosquitto's password and ACL files; TCP, TLS and WebSocket; sessions
//! and retained messages kept across restarts (decision 016).
//!
//! ```no_run
//! # #[tokio::main] async fn main() {
//! use girder_mqtt::{broker::Broker, config::Config};
//! let node = girder::Node::new("mqtt");
//! let broker = Broker::start(&node, Config::default()).await.unwrap();
//! println!("MQTT on {}", broker.local_addr());
//! # }
//! ```
//!
//! | module | what it is | spec |
//! |---|---|---|
//! | [`broker`] | [`broker::Broker`]: the supervision tree, the listeners, what the processes share; start, graceful stop (saving) | — |
//! | [`config`] | [`config::Config`]: every setting and limit, with its default (TOML, flags) | Mosquitto's `mosquitto.conf` where it has one |
//! | [`listener`] | TCP, TLS (rustls) and WebSocket (binary frames, subprotocol `mqtt`) listeners; handshakes bounded; the connection rate | §4.2, §6 |
//! | [`client`] | [`client::Client`]: one process per client; CONNECT and its checks, takeover (the new connection handed to the session's process), keep alive (1.5×), topic aliases, the QoS 1 and 2 flows, SUBSCRIBE with the ACL; writes that never wait, sent once a busy spell is over; a publish that waits for a subscriber pauses its socket and waits beside its mailbox | §3, §4.3, §3.1.4 |
//! | [`session`] | [`session::Session`]: what outlives a connection; subscriptions, in-flight window, bounded queue, QoS 2 ids, will (with delay), expiry | §4.1, §3.1.2.5 |
//! | [`backlog`] | [`backlog::Backlog`]: what a connected client's session holds, as its publishers see it; they wait while it is behind, up to a timeout | — |
//! | [`router`] | [`router::Router`]: the subscription table and the retained store, shared; publish | §4.7, §3.3.1.3 |
//! | [`message`] | [`message::Message`]: a message once the broker owns it, its forwarded 5.0 properties and expiry | 5.0 §3.3.2.3 |
//! | [`store`] | [`store::Store`]: snapshots of sessions and retained messages in redb | — |
//! | [`ops`] | metrics, alarms, client notices | — |
//! | [`sys`] | `$SYS/broker/...` topics, as Mosquitto names them | Mosquitto's `$SYS` |
//! | [`stats`] | the counters behind both | — |
//! | [`acl`] | [`acl::Acl`]: Mosquitto's `acl_file` syntax (`user`, `topic`, `pattern` with `%c`/`%u`, read/write/readwrite/deny); deny wins, what is not granted is denied, a SUBSCRIBE needs a readable rule covering its whole filter | Mosquitto's `acl_file` |
//! | [`auth`] | [`auth::PasswordFile`]: users and hashes in `mosquitto_passwd`'s format ($7$ PBKDF2-SHA512, $6$ salted SHA-512), checked in constant time | Mosquitto's `password_file` |
//! | [`codec`] | the packet codec: variable byte integers, strings, the fixed header and its checks before a packet is read; 5.0 properties; CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE (with the topic filter rules), the acknowledgements and DISCONNECT with 5.0's reason codes, in both versions | MQTT 3.1.1 §1.5, §2, §3; 5.0 §1.5, §2, §3 |
//! | [`retained`] | [`retained::Retained`]: the last retained message per topic, in a trie a new subscription's filter walks (`+`, `#`, the `$` rule) | §3.3.1.3 |
//! | [`topic`] | [`topic::Subscriptions`]: the subscription table, a trie of filter levels with `+`, `#`, the `$` rule and shared groups that take turns | §4.7, 5.0 §4.8.2 |

#![warn(missing_docs)]

pub mod acl;
pub mod auth;
pub mod backlog;
pub mod broker;
pub mod client;
pub mod codec;
pub mod config;
pub mod listener;
pub mod message;
pub mod ops;
pub mod retained;
pub mod router;
pub mod session;
pub mod stats;
pub mod store;
pub mod sys;
pub mod topic;
