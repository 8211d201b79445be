//! The order waiters are served in: priority levels, highest first; within a level, clients
//! round-robin; within a client, first come first served.

use std::collections::{HashMap, VecDeque};

/// Waiting requests by level and client. Holds waiter ids; the waiters themselves live in the
/// queue's state.
#[derive(Debug)]
pub(crate) struct Fair {
    levels: Vec<Level>,
    /// Waiting requests per client, all levels together (for the per-client cap).
    per_client: HashMap<u64, usize>,
    len: usize,
}

#[derive(Debug, Default)]
struct Level {
    /// Clients with a request waiting at this level, in the order they are served next.
    ring: VecDeque<u64>,
    /// Each such client's waiting requests, oldest first.
    clients: HashMap<u64, VecDeque<u64>>,
    len: usize,
}

impl Fair {
    pub(crate) fn new(levels: usize) -> Fair {
        Fair {
            levels: (0..levels.max(1)).map(|_| Level::default()).collect(),
            per_client: HashMap::new(),
            len: 0,
        }
    }

    /// The level a priority is served at: the highest there is, for a priority above it.
    pub(crate) fn level(&self, priority: u8) -> usize {
        usize::from(priority).min(self.levels.len() - 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn client_len(&self, client: u64) -> usize {
        self.per_client.get(&client).copied().unwrap_or(0)
    }

    /// Requests that are surely served before a new one of `client` at `level`: everything
    /// waiting at higher levels and the client's own at this level.
    pub(crate) fn surely_ahead(&self, level: usize, client: u64) -> usize {
        let higher: usize = self.levels[level + 1..].iter().map(|l| l.len).sum();
        higher
            + self.levels[level]
                .clients
                .get(&client)
                .map_or(0, VecDeque::len)
    }

    pub(crate) fn push(&mut self, level: usize, client: u64, id: u64) {
        let l = &mut self.levels[level];
        let queue = l.clients.entry(client).or_default();
        if queue.is_empty() {
            l.ring.push_back(client);
        }
        queue.push_back(id);
        l.len += 1;
        *self.per_client.entry(client).or_default() += 1;
        self.len += 1;
    }

    /// The request served next, left in place.
    pub(crate) fn peek(&self) -> Option<u64> {
        let l = self.levels.iter().rev().find(|l| l.len > 0)?;
        let client = l.ring.front()?;
        l.clients.get(client)?.front().copied()
    }

    /// Takes the request served next; its client goes to the back of its level's ring.
    pub(crate) fn pop(&mut self) -> Option<(u64, u64)> {
        let l = self.levels.iter_mut().rev().find(|l| l.len > 0)?;
        let client = l.ring.pop_front()?;
        let queue = l.clients.get_mut(&client)?;
        let id = queue.pop_front()?;
        if queue.is_empty() {
            l.clients.remove(&client);
        } else {
            l.ring.push_back(client);
        }
        l.len -= 1;
        self.len -= 1;
        self.uncount(client);
        Some((client, id))
    }

    /// Takes a request out from wherever it waits (cancelled or timed out). Linear in the
    /// client's waiting requests at that level, and in the level's clients if it was the
    /// client's last.
    pub(crate) fn remove(&mut self, level: usize, client: u64, id: u64) -> bool {
        let l = &mut self.levels[level];
        let Some(queue) = l.clients.get_mut(&client) else {
            return false;
        };
        let Some(at) = queue.iter().position(|&x| x == id) else {
            return false;
        };
        queue.remove(at);
        if queue.is_empty() {
            l.clients.remove(&client);
            if let Some(at) = l.ring.iter().position(|&c| c == client) {
                l.ring.remove(at);
            }
        }
        l.len -= 1;
        self.len -= 1;
        self.uncount(client);
        true
    }

    fn uncount(&mut self, client: u64) {
        if let Some(n) = self.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_then_round_robin_then_fifo() {
        let mut f = Fair::new(2);
        for id in 0..5 {
            f.push(0, 1, id); // a noisy client
        }
        f.push(0, 2, 10);
        f.push(0, 3, 20);
        f.push(1, 1, 100);
        assert_eq!(f.len(), 8);
        assert_eq!(f.client_len(1), 6);
        assert_eq!(f.surely_ahead(0, 2), 1 + 1);
        assert_eq!(f.peek(), Some(100));
        let order: Vec<u64> = std::iter::from_fn(|| f.pop().map(|(_, id)| id)).collect();
        assert_eq!(order, vec![100, 0, 10, 20, 1, 2, 3, 4]);
        assert_eq!(f.len(), 0);
        assert_eq!(f.client_len(1), 0);
    }

    #[test]
    fn remove_anywhere() {
        let mut f = Fair::new(1);
        f.push(0, 1, 1);
        f.push(0, 2, 2);
        f.push(0, 1, 3);
        assert!(f.remove(0, 2, 2));
        assert!(!f.remove(0, 2, 2));
        assert!(f.remove(0, 1, 1));
        assert_eq!(f.pop(), Some((1, 3)));
        assert_eq!(f.pop(), None);
        assert!(f.per_client.is_empty());
    }
}
