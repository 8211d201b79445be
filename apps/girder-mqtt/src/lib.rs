//! # girder-mqtt: an MQTT broker on Girder
//!
//! Girder's reference system (issue 15): an MQTT 3.1.1 and 5.0 broker built only on Girder's
//! public API and girder-regulate. Built in pieces; so far:
//!
//! | module | what it is | spec |
//! |---|---|---|
//! | [`acl`] | [`acl::Acl`]: Mosquitto's `acl_file` syntax (`user`, `topic`, `pattern` with `%c`/`%u`, read/write/readwrite/deny); deny wins, what is not granted is denied, a SUBSCRIBE needs a readable rule covering its whole filter | Mosquitto's `acl_file` |
//! | [`auth`] | [`auth::PasswordFile`]: users and hashes in `mosquitto_passwd`'s format ($7$ PBKDF2-SHA512, $6$ salted SHA-512), checked in constant time | Mosquitto's `password_file` |
//! | [`codec`] | the packet codec's foundation: variable byte integers, strings, the fixed header, and the checks the spec makes on them before a packet is read; 5.0 properties; CONNECT, PUBLISH, SUBSCRIBE and UNSUBSCRIBE (with the topic filter rules), the acknowledgements and DISCONNECT with 5.0's reason codes, in both versions; one `Packet` enum for what a client sends | MQTT 3.1.1 §1.5, §2, §3; 5.0 §1.5, §2, §3 |
//! | [`retained`] | [`retained::Retained`]: the last retained message per topic, in a trie a new subscription's filter walks (`+`, `#`, the `$` rule) | §3.3.1.3 |
//! | [`topic`] | [`topic::Subscriptions`]: the subscription table, a trie of filter levels with `+`, `#`, the `$` rule and shared groups that take turns | §4.7, 5.0 §4.8.2 |

#![warn(missing_docs)]

pub mod acl;
pub mod auth;
pub mod broker;
pub mod codec;
pub mod config;
pub mod connection;
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
