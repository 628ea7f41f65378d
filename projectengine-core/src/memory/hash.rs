//! The hash maps of the in-memory adapters: foldhash rather than std's SipHash.
//!
//! Their keys are ids this process generated and queue names from the
//! registry, never bytes a client chose freely, so SipHash's resistance to
//! chosen collisions buys nothing here, while its cost is paid on every
//! lookup of every store and queue operation.

pub(crate) type IdMap<K, V> = foldhash::HashMap<K, V>;
pub(crate) type IdSet<K> = foldhash::HashSet<K>;
