//! Key names. Every key of a deployment starts with its prefix.

/// The keys of one named queue (see `scripts/common.lua` for what each holds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueueKeys {
    pub ready: String,
    pub delayed: String,
    pub waiting: String,
    pub inflight: String,
    pub signal: String,
}

impl QueueKeys {
    pub(crate) fn new(prefix: &str, queue: &str) -> Self {
        let key = |part: &str| format!("{prefix}:queue:{queue}:{part}");
        Self {
            ready: key("ready"),
            delayed: key("delayed"),
            waiting: key("waiting"),
            inflight: key("inflight"),
            signal: key("signal"),
        }
    }
}

/// The sequence behind FIFO order and receipts, shared by all queues of a prefix.
pub(crate) fn seq(prefix: &str) -> String {
    format!("{prefix}:queue-seq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_the_queue() {
        let k = QueueKeys::new("pe", "default");
        assert_eq!(k.ready, "pe:queue:default:ready");
        assert_eq!(k.signal, "pe:queue:default:signal");
        assert_ne!(QueueKeys::new("a", "q"), QueueKeys::new("b", "q"));
        assert_eq!(seq("pe"), "pe:queue-seq");
    }
}
