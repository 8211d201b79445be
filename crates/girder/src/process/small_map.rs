//! A map that is a short vector while small and a hash map once large: a process's links and
//! monitors.
//!
//! Almost every process has a handful of links and monitors, for which a vector is the smallest
//! and fastest thing there is. A supervisor of a hundred thousand children has a hundred
//! thousand links, and every child's start and exit adds or removes one: a vector makes each
//! of those a scan of the whole set, so the supervisor's cost per child would grow with its
//! children. Past [`SPILL`] entries the map moves to a hash map and every operation stays
//! constant. It never moves back (a process that once had many links is likely to again).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash};

use rustc_hash::FxHasher;

/// Entries kept in the vector before it spills into a hash map.
const SPILL: usize = 16;

type Large<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// See the module docs. As small as a `Vec` (three words), and allocates nothing while empty.
pub(crate) enum SmallMap<K, V> {
    Few(Vec<(K, V)>),
    Many(Box<Large<K, V>>),
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::Few(Vec::new())
    }
}

impl<K: Copy + Eq + Hash, V> SmallMap<K, V> {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            SmallMap::Few(v) => v.len(),
            SmallMap::Many(m) => m.len(),
        }
    }

    pub(crate) fn contains_key(&self, k: &K) -> bool {
        match self {
            SmallMap::Few(v) => v.iter().any(|(x, _)| x == k),
            SmallMap::Many(m) => m.contains_key(k),
        }
    }

    /// Inserts `k` unless it is there; true if it was not.
    pub(crate) fn insert(&mut self, k: K, v: V) -> bool {
        match self {
            SmallMap::Few(vec) => {
                if vec.iter().any(|(x, _)| *x == k) {
                    return false;
                }
                if vec.len() < SPILL {
                    // Room for one at first: most processes have a single link (to their
                    // supervisor), and a vector's first growth would make room for four.
                    if vec.capacity() == 0 {
                        vec.reserve_exact(1);
                    }
                    vec.push((k, v));
                    return true;
                }
                let mut m: Large<K, V> = Large::default();
                m.reserve(SPILL * 2);
                m.extend(vec.drain(..));
                m.insert(k, v);
                *self = SmallMap::Many(Box::new(m));
                true
            }
            SmallMap::Many(m) => match m.entry(k) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(v);
                    true
                }
            },
        }
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        match self {
            SmallMap::Few(vec) => {
                let i = vec.iter().position(|(x, _)| x == k)?;
                Some(vec.swap_remove(i).1)
            }
            SmallMap::Many(m) => m.remove(k),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        let (few, many) = match self {
            SmallMap::Few(v) => (Some(v.iter().map(|(k, v)| (k, v))), None),
            SmallMap::Many(m) => (None, Some(m.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// Keeps the entries for which `f` is true.
    pub(crate) fn retain(&mut self, mut f: impl FnMut(&K, &V) -> bool) {
        match self {
            SmallMap::Few(v) => v.retain(|(k, v)| f(k, v)),
            SmallMap::Many(m) => m.retain(|k, v| f(k, v)),
        }
    }

    /// Empties the map, handing back what it held.
    pub(crate) fn take(&mut self) -> Vec<(K, V)> {
        match std::mem::take(self) {
            SmallMap::Few(v) => v,
            SmallMap::Many(m) => m.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_no_bigger_than_a_vec() {
        assert_eq!(
            std::mem::size_of::<SmallMap<u64, ()>>(),
            std::mem::size_of::<Vec<(u64, ())>>()
        );
    }

    #[test]
    fn small_and_large_behave_the_same() {
        let mut m = SmallMap::new();
        for n in 0..1000u64 {
            assert!(m.insert(n, n * 2));
            assert!(!m.insert(n, 0), "a second insert of {n} is refused");
            assert_eq!(m.len() as u64, n + 1);
        }
        assert!(matches!(m, SmallMap::Many(_)));
        for n in (0..1000u64).step_by(2) {
            assert_eq!(m.remove(&n), Some(n * 2));
            assert_eq!(m.remove(&n), None);
        }
        assert_eq!(m.len(), 500);
        assert!(m.contains_key(&1) && !m.contains_key(&2));
        let mut left: Vec<u64> = m.keys().copied().collect();
        left.sort_unstable();
        assert_eq!(left, (1..1000).step_by(2).collect::<Vec<_>>());
        assert_eq!(m.take().len(), 500);
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn a_small_map_keeps_its_entries_in_a_vec() {
        let mut m = SmallMap::new();
        for n in 0..SPILL as u64 {
            m.insert(n, ());
        }
        assert!(matches!(m, SmallMap::Few(_)));
        m.insert(99, ());
        assert!(matches!(m, SmallMap::Many(_)));
    }
}
