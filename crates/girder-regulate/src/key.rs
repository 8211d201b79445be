//! Idempotency keys: what makes a repeat recognisable.

use std::fmt;

/// The identity of one logical request, the same on every attempt of it, so the receiver can
/// tell a repeat from a new request ([`Dedup`](crate::Dedup)).
///
/// 128 bits: random ([`IdempotencyKey::random`]: collisions are not a concern), or a client's
/// id and its own sequence number ([`IdempotencyKey::from_parts`]: unique as long as the
/// client's id is and its sequence never goes back).
///
/// ```
/// use girder_regulate::IdempotencyKey;
///
/// let k = IdempotencyKey::from_parts(7, 1);
/// assert_eq!(k.parts(), (7, 1));
/// assert_eq!(k, IdempotencyKey::new((7u128 << 64) | 1));
/// assert_ne!(IdempotencyKey::random(), IdempotencyKey::random());
/// assert_eq!(k.to_string(), "00000000000000070000000000000001");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdempotencyKey(u128);

impl IdempotencyKey {
    /// A key from its 128 bits.
    pub fn new(bits: u128) -> IdempotencyKey {
        IdempotencyKey(bits)
    }

    /// A key from a client's id (high 64 bits) and the client's sequence number (low 64).
    pub fn from_parts(client: u64, seq: u64) -> IdempotencyKey {
        IdempotencyKey((u128::from(client) << 64) | u128::from(seq))
    }

    /// A random key (from the thread's cryptographically seeded generator).
    pub fn random() -> IdempotencyKey {
        IdempotencyKey(rand::random())
    }

    /// Its 128 bits.
    pub fn bits(self) -> u128 {
        self.0
    }

    /// Its two halves: (client, seq) for a key made with [`from_parts`](Self::from_parts).
    pub fn parts(self) -> (u64, u64) {
        ((self.0 >> 64) as u64, self.0 as u64)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl From<u128> for IdempotencyKey {
    fn from(bits: u128) -> IdempotencyKey {
        IdempotencyKey(bits)
    }
}
