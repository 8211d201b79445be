//! A hierarchical timing wheel (as the BEAM and tokio keep timers): six levels of 64 slots,
//! 1 ms apart at the bottom and 64 times coarser at each level up, so a timer is armed,
//! cancelled and fired in constant time whatever the number armed. Entries live in one slab
//! (indices, not pointers) and each slot is a doubly linked list through them, so cancelling
//! unlinks one entry; a freed entry's generation moves on, so a stale key finds nothing.
//!
//! This is the data structure only: what an entry carries, when time advances and who fires
//! the due entries is `timer`'s business. Times are milliseconds since the wheel's start.

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const BITS: u32 = 6;
/// Nothing farther than the top level's reach: later deadlines fire at its edge and are put
/// back (see `Wheel::insert`).
const MAX_SPAN: u64 = 1 << (BITS * LEVELS as u32);
const NONE: u32 = u32::MAX;

/// Where an entry is: its slab index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    index: u32,
    gen: u32,
}

struct Entry<T> {
    deadline: u64,
    prev: u32,
    next: u32,
    gen: u32,
    /// Where it is linked: `level * SLOTS + slot`; `NONE` when free.
    at: u32,
    value: Option<T>,
}

pub(crate) struct Wheel<T> {
    entries: Vec<Entry<T>>,
    /// Free entries, linked through `next`.
    free: u32,
    heads: [[u32; SLOTS]; LEVELS],
    /// Which slots of each level hold entries.
    occupied: [u64; LEVELS],
    /// The time the wheel has advanced to: every entry due before it has been taken.
    elapsed: u64,
    len: usize,
}

impl<T> Wheel<T> {
    pub(crate) fn new() -> Self {
        Wheel {
            entries: Vec::new(),
            free: NONE,
            heads: [[NONE; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            elapsed: 0,
            len: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Arms `value` to fire at `deadline` (at once, at the next `take_due`, if it is not after
    /// the wheel's time).
    pub(crate) fn insert(&mut self, deadline: u64, value: T) -> Key {
        let index = match self.free {
            NONE => {
                let index = u32::try_from(self.entries.len()).expect("fewer than 4 billion timers");
                self.entries.push(Entry {
                    deadline,
                    prev: NONE,
                    next: NONE,
                    gen: 0,
                    at: NONE,
                    value: Some(value),
                });
                index
            }
            index => {
                let e = &mut self.entries[index as usize];
                self.free = e.next;
                e.deadline = deadline;
                e.value = Some(value);
                index
            }
        };
        self.link(index);
        self.len += 1;
        Key {
            index,
            gen: self.entries[index as usize].gen,
        }
    }

    /// Takes the entry `key` out, if it is still armed.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let e = self.entries.get(key.index as usize)?;
        if e.gen != key.gen || e.at == NONE {
            return None;
        }
        self.unlink(key.index);
        Some(self.release(key.index))
    }

    /// The deadline of the entry `key`, if it is still armed.
    pub(crate) fn deadline(&self, key: Key) -> Option<u64> {
        let e = self.entries.get(key.index as usize)?;
        (e.gen == key.gen && e.at != NONE).then_some(e.deadline)
    }

    /// The earliest time something may be due (a slot's start: an entry in a higher level's
    /// slot may be later than that, and is then moved down, not fired).
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        (0..LEVELS)
            .filter_map(|level| self.next_in_level(level))
            .min()
    }

    /// Advances the wheel to `now` and hands every entry due by then to `fire`, in deadline
    /// order level by level (entries of one millisecond in no particular order).
    pub(crate) fn take_due(&mut self, now: u64, mut fire: impl FnMut(T)) {
        while let Some(at) = self.next_expiration() {
            if at > now {
                break;
            }
            // The soonest slot: at the lowest level whose next slot starts there.
            let level = (0..LEVELS)
                .find(|&l| self.next_in_level(l) == Some(at))
                .expect("a level has the next expiration");
            self.elapsed = self.elapsed.max(at);
            let slot = slot_of(at, level);
            let mut i = std::mem::replace(&mut self.heads[level][slot], NONE);
            self.occupied[level] &= !(1 << slot);
            while i != NONE {
                let next = self.entries[i as usize].next;
                let e = &mut self.entries[i as usize];
                e.at = NONE;
                e.prev = NONE;
                e.next = NONE;
                if e.deadline <= now.max(self.elapsed) && (level == 0 || e.deadline <= self.elapsed)
                {
                    let value = self.release(i);
                    fire(value);
                } else {
                    // Not due yet: down to a finer level, relative to the new time.
                    self.link(i);
                }
                i = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    fn next_in_level(&self, level: usize) -> Option<u64> {
        let occupied = self.occupied[level];
        if occupied == 0 {
            return None;
        }
        let shift = BITS * level as u32;
        let slot_span = 1u64 << shift;
        let level_span = slot_span << BITS;
        let now_slot = ((self.elapsed >> shift) % SLOTS as u64) as u32;
        // The first occupied slot at or after the current one, wrapping.
        let rotated = occupied.rotate_right(now_slot);
        let ahead = u64::from(rotated.trailing_zeros());
        let level_start = self.elapsed & !(level_span - 1);
        let slot = (u64::from(now_slot) + ahead) % SLOTS as u64;
        let mut at = level_start + slot * slot_span;
        if u64::from(now_slot) + ahead >= SLOTS as u64 {
            at += level_span;
        }
        Some(at.max(self.elapsed))
    }

    fn link(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        let when = deadline.max(self.elapsed);
        let level = level_for(self.elapsed, when);
        // Past the top level's reach: parked at its far edge, and moved again from there.
        let when = when.min(self.elapsed + MAX_SPAN - 1);
        let slot = slot_of(when, level);
        let head = self.heads[level][slot];
        {
            let e = &mut self.entries[index as usize];
            e.at = (level * SLOTS + slot) as u32;
            e.prev = NONE;
            e.next = head;
        }
        if head != NONE {
            self.entries[head as usize].prev = index;
        }
        self.heads[level][slot] = index;
        self.occupied[level] |= 1 << slot;
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next, at) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, e.at as usize)
        };
        let (level, slot) = (at / SLOTS, at % SLOTS);
        if prev != NONE {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[level][slot] = next;
            if next == NONE {
                self.occupied[level] &= !(1 << slot);
            }
        }
        if next != NONE {
            self.entries[next as usize].prev = prev;
        }
        let e = &mut self.entries[index as usize];
        e.at = NONE;
        e.prev = NONE;
        e.next = NONE;
    }

    /// Frees an unlinked entry and returns its value.
    fn release(&mut self, index: u32) -> T {
        let e = &mut self.entries[index as usize];
        e.gen = e.gen.wrapping_add(1);
        e.next = self.free;
        self.free = index;
        self.len -= 1;
        e.value.take().expect("an armed entry has a value")
    }
}

/// The level an entry due at `when` goes to while the wheel is at `elapsed`: the highest
/// 6-bit group in which they differ.
fn level_for(elapsed: u64, when: u64) -> usize {
    // Bits 0..5 differing (or none): level 0.
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    ((significant / BITS) as usize).min(LEVELS - 1)
}

fn slot_of(when: u64, level: usize) -> usize {
    ((when >> (BITS * level as u32)) % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timers_fire_at_their_deadline_not_before() {
        let mut w = Wheel::new();
        for d in [
            0u64,
            1,
            5,
            63,
            64,
            65,
            100,
            4_095,
            4_096,
            5_000,
            300_000,
            1 << 30,
        ] {
            w.insert(d, d);
        }
        let mut fired = Vec::new();
        let mut now = 0;
        while w.len() > 0 {
            let next = w.next_expiration().unwrap();
            assert!(next >= now, "time goes forward");
            now = next;
            w.take_due(now, |d| {
                assert!(d <= now, "fired {d} early at {now}");
                fired.push((d, now));
            });
        }
        for (d, at) in fired {
            assert_eq!(d, at, "fired late");
        }
    }

    #[test]
    fn a_removed_timer_never_fires_and_a_stale_key_finds_nothing() {
        let mut w = Wheel::new();
        let a = w.insert(10, "a");
        let b = w.insert(10, "b");
        assert_eq!(w.remove(a), Some("a"));
        assert_eq!(w.remove(a), None);
        let c = w.insert(20, "c"); // reuses a's entry, new generation
        assert_eq!(w.remove(a), None, "a stale key");
        let mut fired = Vec::new();
        w.take_due(100, |v| fired.push(v));
        assert_eq!(fired, ["b", "c"]);
        assert_eq!(w.remove(b), None);
        assert_eq!(w.remove(c), None);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn deadlines_beyond_the_top_level_still_fire() {
        let mut w = Wheel::new();
        let far = MAX_SPAN * 3 + 12_345;
        w.insert(far, ());
        let mut fired = 0;
        let mut now = 0;
        while w.len() > 0 {
            now = w.next_expiration().unwrap();
            w.take_due(now, |()| fired += 1);
        }
        assert_eq!((fired, now), (1, far));
    }

    #[test]
    fn a_million_entries_cost_no_more_than_their_slots() {
        let mut w = Wheel::new();
        let keys: Vec<Key> = (0..1_000_000u64)
            .map(|i| w.insert(3_600_000 + i, i))
            .collect();
        assert_eq!(w.len(), 1_000_000);
        for k in &keys {
            assert!(w.remove(*k).is_some());
        }
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_expiration(), None);
    }

    proptest! {
        /// Against a sorted list: same entries fire, each at a time at or after its deadline and
        /// never after the first `take_due` that passes it.
        #[test]
        fn behaves_like_a_sorted_list(
            ops in prop::collection::vec((0u64..200_000, 0u8..4), 1..300),
        ) {
            let mut w = Wheel::new();
            let mut model: Vec<(u64, u32)> = Vec::new();
            let mut keys: Vec<(Key, u32)> = Vec::new();
            let mut now = 0u64;
            for (i, (x, op)) in ops.into_iter().enumerate() {
                let id = i as u32;
                match op {
                    0 | 1 => {
                        let deadline = now + x;
                        keys.push((w.insert(deadline, (deadline, id)), id));
                        model.push((deadline, id));
                    }
                    2 if !keys.is_empty() => {
                        let (k, id) = keys.remove(x as usize % keys.len());
                        let was = model.iter().position(|(_, m)| *m == id);
                        prop_assert_eq!(w.remove(k).map(|(_, i)| i), was.map(|p| model.remove(p).1));
                    }
                    _ => {
                        now += x % 5_000;
                        let mut fired = Vec::new();
                        w.take_due(now, |(d, id)| fired.push((d, id)));
                        let mut due: Vec<(u64, u32)> = model.iter().copied().filter(|(d, _)| *d <= now).collect();
                        model.retain(|(d, _)| *d > now);
                        // In deadline order (within one millisecond, any order).
                        prop_assert!(fired.windows(2).all(|w| w[0].0 <= w[1].0), "{:?}", fired);
                        fired.sort_unstable();
                        due.sort_unstable();
                        prop_assert_eq!(fired, due);
                    }
                }
                prop_assert_eq!(w.len(), model.len());
            }
        }
    }
}
