//! A supervisor's children: kept in start order and found by id or pid in constant time.
//!
//! One process per client connection means a dynamic supervisor of a hundred thousand
//! children, each started and stopped many times over: every lookup (an exit names a pid, a
//! request names an id) and every removal must cost the same whatever the number of siblings.
//! Children live in a `BTreeMap` keyed by a start sequence number, which keeps start order for
//! the ordered strategies and removes in logarithmic time, with hash indexes by pid and (where
//! ids are unique) by id. Each child is boxed: appended in order, the tree's leaves stay a
//! little over half full, so a child inline would cost nearly twice its size.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;

use rustc_hash::FxHasher;

use super::spec::ChildSpec;
use crate::Pid;

type Index<K> = HashMap<K, Key, BuildHasherDefault<FxHasher>>;

/// A child's place in start order.
pub(super) type Key = u64;

pub(super) struct Child {
    pub(super) spec: ChildSpec,
    /// Its pid while running.
    pid: Option<Pid>,
    /// A restart failed and another attempt is queued.
    pub(super) restarting: bool,
    pub(super) restarts: u32,
}

impl Child {
    pub(super) fn pid(&self) -> Option<Pid> {
        self.pid
    }
}

pub(super) struct Children {
    next: Key,
    order: BTreeMap<Key, Box<Child>>,
    by_pid: Index<Pid>,
    /// By id, when ids are unique (every strategy but `Dynamic`, whose instances of one spec
    /// share an id).
    by_id: Option<Index<String>>,
}

impl Children {
    pub(super) fn new(unique_ids: bool) -> Self {
        Children {
            next: 0,
            order: BTreeMap::new(),
            by_pid: Index::default(),
            by_id: unique_ids.then(Index::default),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.order.len()
    }

    /// Adds a child after every other one.
    pub(super) fn push(&mut self, mut spec: ChildSpec, pid: Option<Pid>) -> Key {
        if pid.is_some() {
            spec.start.spend();
        }
        let key = self.next;
        self.next += 1;
        if let Some(by_id) = &mut self.by_id {
            by_id.insert(spec.id.clone(), key);
        }
        if let Some(pid) = pid {
            self.by_pid.insert(pid, key);
        }
        self.order.insert(
            key,
            Box::new(Child {
                spec,
                pid,
                restarting: false,
                restarts: 0,
            }),
        );
        key
    }

    pub(super) fn get(&self, key: Key) -> Option<&Child> {
        self.order.get(&key).map(|c| &**c)
    }

    pub(super) fn get_mut(&mut self, key: Key) -> Option<&mut Child> {
        self.order.get_mut(&key).map(|c| &mut **c)
    }

    /// The running child with `pid`.
    pub(super) fn by_pid(&self, pid: Pid) -> Option<Key> {
        self.by_pid.get(&pid).copied()
    }

    /// The child with `id`: `Err(n)` when `n` != 1 children have it (only possible in a dynamic
    /// supervisor, which has no id index and is searched).
    pub(super) fn by_id(&self, id: &str) -> Result<Key, usize> {
        if let Some(by_id) = &self.by_id {
            return by_id.get(id).copied().ok_or(0);
        }
        let mut found = self.order.iter().filter(|(_, c)| c.spec.id == id);
        match (found.next(), found.next()) {
            (Some((k, _)), None) => Ok(*k),
            (None, _) => Err(0),
            (Some(_), Some(_)) => Err(2),
        }
    }

    /// Records that child `key` runs as `pid` (or no longer runs, with `None`).
    pub(super) fn set_pid(&mut self, key: Key, pid: Option<Pid>) {
        let Some(child) = self.order.get_mut(&key) else {
            return;
        };
        if let Some(old) = std::mem::replace(&mut child.pid, pid) {
            self.by_pid.remove(&old);
        }
        if let Some(new) = pid {
            self.by_pid.insert(new, key);
        }
    }

    pub(super) fn remove(&mut self, key: Key) -> Option<Child> {
        let child = *self.order.remove(&key)?;
        if let Some(pid) = child.pid {
            self.by_pid.remove(&pid);
        }
        if let Some(by_id) = &mut self.by_id {
            by_id.remove(&child.spec.id);
        }
        Some(child)
    }

    /// Every child in start order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = (Key, &Child)> {
        self.order.iter().map(|(k, c)| (*k, &**c))
    }

    /// The keys from `from` on (all of them with `None`), in start order.
    pub(super) fn keys_from(&self, from: Option<Key>) -> Vec<Key> {
        match from {
            Some(k) => self.order.range(k..).map(|(k, _)| *k).collect(),
            None => self.order.keys().copied().collect(),
        }
    }

    /// The running children's pids (the set a supervisor links to).
    pub(super) fn running(&self) -> usize {
        self.by_pid.len()
    }
}
