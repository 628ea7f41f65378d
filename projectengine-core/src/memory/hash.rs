//! The hash maps of the in-memory adapters: foldhash instead of SipHash.
//!
//! Their keys are ids this process generated and queue names from the
//! registry, never bytes a client chose freely, so SipHash's resistance to
//! chosen collisions buys nothing here; a profile of the W1 benchmark showed it
//! at ~7 % of all instructions.

pub(crate) type IdMap<K, V> = foldhash::HashMap<K, V>;
pub(crate) type IdSet<K> = foldhash::HashSet<K>;
