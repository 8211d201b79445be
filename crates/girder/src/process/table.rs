//! The node's process table: local processes by pid number.
//!
//! Pids are numbered in order, so the table hashes them for locality rather than scatter, as
//! the BEAM's process table indexes by pid. With a scattering hash (FxHash), each spawn's
//! insert touched a random line of a table of millions of entries, and under spawn's own
//! allocation traffic that was a cache and TLB miss per insert: 430-680 ns per insert in a
//! micro benchmark with 512 bytes allocated per entry, against 175 ns with this hash, and about
//! half of `girder bench -w spawn`'s time per process.
//!
//! The hash of pid number `n` is laid out for the two tables it feeds (dashmap picks the shard
//! from the bits below the top 7; hashbrown takes the bucket from the low bits and a 7-bit tag
//! from the top):
//!
//! * top 7 bits: a multiplicative mix of `n`, so tags differ between neighbours and a probe
//!   compares few keys;
//! * the next [`SHARD_BITS`]: the shard, taken from `n` in runs of [`RUN`] pids, so the
//!   processes spawned together share a shard (a few lines) while spawns still spread over
//!   all shards;
//! * the low bits: `n` with the shard bits squeezed out, so within a shard consecutive pids
//!   land in consecutive buckets.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use dashmap::DashMap;

use super::core::AnyProcess;

/// Shards of the table: fixed (not dashmap's default of four per core), since the hash lays
/// out their bits.
const SHARD_BITS: u32 = 4;
/// Consecutive pids that share a shard.
const RUN_BITS: u32 = 6;
const RUN: u64 = 1 << RUN_BITS;
/// Bits left for the bucket part, below the shard bits and the tag.
const LOW_BITS: u32 = 64 - 7 - SHARD_BITS;

/// Local processes by pid number.
pub(crate) type ProcessTable = DashMap<u64, Arc<dyn AnyProcess>, PidHash>;

pub(crate) fn new_table() -> ProcessTable {
    DashMap::with_hasher_and_shard_amount(PidHash, 1 << SHARD_BITS)
}

/// Hashes pid numbers for locality (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct PidHash;

impl BuildHasher for PidHash {
    type Hasher = PidHasher;

    fn build_hasher(&self) -> PidHasher {
        PidHasher(0)
    }
}

#[derive(Debug)]
pub(crate) struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        spread(self.0)
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Only pid numbers (`u64`) are hashed here; anything else is folded in byte by byte so
    /// the hasher stays correct if that changes, if not fast.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

fn spread(n: u64) -> u64 {
    let tag = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 57;
    let shard = (n >> RUN_BITS) & ((1 << SHARD_BITS) - 1);
    let low = (n & (RUN - 1)) | ((n >> (RUN_BITS + SHARD_BITS)) << RUN_BITS);
    (tag << 57) | (shard << LOW_BITS) | (low & ((1 << LOW_BITS) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_of(n: u64) -> u64 {
        // dashmap's choice: the bits below the top 7.
        (spread(n) << 7) >> (64 - SHARD_BITS)
    }

    fn tag_of(n: u64) -> u64 {
        spread(n) >> 57
    }

    #[test]
    fn consecutive_pids_share_a_shard_in_runs_and_spread_over_all_shards() {
        for n in 0..RUN {
            assert_eq!(shard_of(1000 * RUN + n), shard_of(1000 * RUN));
        }
        let mut per_shard = [0u32; 1 << SHARD_BITS];
        for n in 0..100_000 {
            per_shard[shard_of(n) as usize] += 1;
        }
        let (lo, hi) = (per_shard.iter().min(), per_shard.iter().max());
        assert!(hi.unwrap() - lo.unwrap() <= RUN as u32, "{per_shard:?}");
    }

    #[test]
    fn within_a_shard_consecutive_pids_take_consecutive_buckets() {
        let mask = (1u64 << 20) - 1;
        let mut in_shard: Vec<u64> = (0..200_000)
            .filter(|&n| shard_of(n) == 3)
            .map(|n| spread(n) & mask)
            .collect();
        let before = in_shard.clone();
        in_shard.dedup();
        assert_eq!(in_shard, before, "no two pids share a bucket position");
        assert!(
            in_shard.windows(2).all(|w| w[1] == w[0] + 1),
            "dense and in order"
        );
    }

    #[test]
    fn neighbours_get_different_tags() {
        let tags: std::collections::HashSet<u64> = (0..128).map(tag_of).collect();
        assert!(tags.len() > 64, "only {} distinct tags", tags.len());
    }

    #[test]
    fn the_table_finds_and_removes_what_it_holds() {
        let table: DashMap<u64, u64, PidHash> =
            DashMap::with_hasher_and_shard_amount(PidHash, 1 << SHARD_BITS);
        for n in 1..=50_000u64 {
            assert!(table.insert(n, n * 2).is_none());
        }
        assert_eq!(table.len(), 50_000);
        for n in (1..=50_000u64).step_by(7) {
            assert_eq!(table.get(&n).map(|v| *v), Some(n * 2));
        }
        assert!(table.get(&50_001).is_none());
        for n in (1..=50_000u64).filter(|n| n % 2 == 0) {
            assert_eq!(table.remove(&n), Some((n, n * 2)));
        }
        assert_eq!(table.len(), 25_000);
        assert!(table.get(&2).is_none() && table.get(&3).is_some());
        // Far-apart numbers (a long-lived node's pids) hash apart too.
        assert!(table.insert(u64::MAX - 1, 1).is_none());
        assert!(table.insert(1 << 40, 2).is_none());
        assert_eq!(table.get(&(u64::MAX - 1)).map(|v| *v), Some(1));
    }
}
