//! A fast hasher for the in-memory adapters' maps.
//!
//! Their keys are ids this process generated (UUID v7: 74 random bits) and
//! queue names from the registry, never bytes a client chose freely, so the
//! standard library's DoS-resistant SipHash buys nothing here; a profile of the
//! W1 benchmark showed it at ~7 % of all instructions.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hashing (as in rustc's FxHash), 8 bytes at a time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl IdHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(K).rotate_left(26);
    }
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // Spread the high bits into the low ones, which pick the bucket.
        self.0 ^ (self.0 >> 29)
    }
}

pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;
pub(crate) type IdMap<K, V> = HashMap<K, V, IdBuild>;
pub(crate) type IdSet<K> = HashSet<K, IdBuild>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;
    use crate::JobId;

    #[test]
    fn distinct_ids_spread_over_buckets() {
        let b = IdBuild::default();
        let mut low: HashSet<u64> = HashSet::new();
        for _ in 0..4096 {
            low.insert(b.hash_one(JobId::new()) & 0xfff);
        }
        // 4096 random ids into 4096 buckets fill about 63 % of them.
        assert!(low.len() > 2000, "only {} buckets used", low.len());
    }

    #[test]
    fn equal_keys_hash_equal() {
        let b = IdBuild::default();
        let id = JobId::new();
        assert_eq!(b.hash_one(id), b.hash_one(id));
        assert_eq!(b.hash_one("default"), b.hash_one(String::from("default")));
        assert_ne!(b.hash_one("a"), b.hash_one("b"));
    }
}
