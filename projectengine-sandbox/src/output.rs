//! Output: lines read from a pipe, cut when too long, tagged with their
//! stream, delivered until a shared byte budget is spent, and scanned for the
//! messages that tell a limit was hit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// One line of output, without its line ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Where it came from.
    pub stream: Stream,
    /// The text; bytes that are not UTF-8 are replaced by U+FFFD.
    pub text: String,
    /// The line was longer than the sandbox's `max_line_bytes` and was cut
    /// there.
    pub cut: bool,
}

/// Messages that say a limit was hit, found in the output.
pub(crate) mod marker {
    pub const MEMORY: u8 = 1;
    pub const PROCESSES: u8 = 2;
    pub const OPEN_FILES: u8 = 4;
    pub const FILE_SIZE: u8 = 8;
    pub const CPU: u8 = 16;

    /// The markers in one line. These are the messages of the C library,
    /// shells, Python and Rust for ENOMEM, EAGAIN from fork, EMFILE, EFBIG and
    /// a child killed by SIGXFSZ or SIGXCPU.
    pub fn scan(text: &str) -> u8 {
        let t = text.to_ascii_lowercase();
        let mut found = 0;
        if t.contains("cannot allocate memory")
            || t.contains("out of memory")
            || t.contains("memoryerror")
            || t.contains("bad_alloc")
            || t.contains("memory allocation of")
            || t.contains("memory exhausted")
        {
            found |= MEMORY;
        }
        if t.contains("cannot fork")
            || t.contains("can't fork")
            || t.contains("fork failed")
            || (t.contains("fork") && t.contains("resource temporarily unavailable"))
            || t.contains("blockingioerror")
        {
            found |= PROCESSES;
        }
        if t.contains("too many open files") {
            found |= OPEN_FILES;
        }
        if t.contains("file size limit exceeded") || t.contains("file too large") {
            found |= FILE_SIZE;
        }
        if t.contains("cpu time limit exceeded") {
            found |= CPU;
        }
        found
    }
}

/// What the readers of one run share: the byte budget, and what they saw.
#[derive(Debug)]
pub(crate) struct Budget {
    remaining: AtomicU64,
    exhausted: AtomicBool,
    dropped_lines: AtomicU64,
    markers: AtomicU8,
}

impl Budget {
    pub(crate) fn new(bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            remaining: AtomicU64::new(bytes),
            exhausted: AtomicBool::new(false),
            dropped_lines: AtomicU64::new(0),
            markers: AtomicU8::new(0),
        })
    }

    /// Takes `cost` bytes, unless the budget ran out: once a line did not
    /// fit, every later line is dropped too, so the delivered output is a
    /// prefix of what was written.
    fn take(&self, cost: u64) -> bool {
        if self.exhausted.load(Ordering::Relaxed) {
            return false;
        }
        let took = self
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                r.checked_sub(cost)
            })
            .is_ok();
        if !took {
            self.exhausted.store(true, Ordering::Relaxed);
        }
        took
    }

    pub(crate) fn truncated(&self) -> bool {
        self.exhausted.load(Ordering::Relaxed)
    }

    pub(crate) fn dropped_lines(&self) -> u64 {
        self.dropped_lines.load(Ordering::Relaxed)
    }

    pub(crate) fn markers(&self) -> u8 {
        self.markers.load(Ordering::Relaxed)
    }
}

/// Reads `pipe` to its end, line by line. Memory stays bounded by the read
/// buffer and `max_line` whatever the process writes; a closed receiver
/// only stops delivery, not reading (the process must never block on a full
/// pipe).
pub(crate) async fn read_lines<R: AsyncRead + Unpin>(
    pipe: R,
    stream: Stream,
    max_line: usize,
    budget: Arc<Budget>,
    tx: mpsc::Sender<Line>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, pipe);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    let mut tx = Some(tx);
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) => chunk,
            Err(error) => {
                tracing::debug!(%error, stream = stream.as_str(), "reading output failed");
                break;
            }
        };
        if chunk.is_empty() {
            if !line.is_empty() || cut {
                emit(&mut line, &mut cut, stream, &budget, &mut tx).await;
            }
            break;
        }
        let (part, used, ends) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = max_line.saturating_sub(line.len());
        if part.len() > room {
            cut = true;
        }
        line.extend_from_slice(&part[..part.len().min(room)]);
        reader.consume(used);
        if ends {
            emit(&mut line, &mut cut, stream, &budget, &mut tx).await;
        }
    }
}

async fn emit(
    line: &mut Vec<u8>,
    cut: &mut bool,
    stream: Stream,
    budget: &Budget,
    tx: &mut Option<mpsc::Sender<Line>>,
) {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let text = String::from_utf8_lossy(line).into_owned();
    let found = marker::scan(&text);
    if found != 0 {
        budget.markers.fetch_or(found, Ordering::Relaxed);
    }
    let cost = line.len() as u64 + 1;
    let was_cut = std::mem::take(cut);
    line.clear();
    if !budget.take(cost) {
        budget.dropped_lines.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if let Some(sender) = tx {
        let line = Line {
            stream,
            text,
            cut: was_cut,
        };
        if sender.send(line).await.is_err() {
            *tx = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max_line: usize, budget: u64) -> (Vec<Line>, Arc<Budget>) {
        let budget = Budget::new(budget);
        let (tx, mut rx) = mpsc::channel(1024);
        read_lines(input, Stream::Stdout, max_line, budget.clone(), tx).await;
        let mut out = Vec::new();
        while let Some(line) = rx.recv().await {
            out.push(line);
        }
        (out, budget)
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_of_the_line_is_skipped() {
        let mut input = vec![b'a'; 100];
        input.extend_from_slice(b"\nshort\r\nlast");
        let (lines, budget) = lines_of(&input, 10, 1000).await;
        let texts: Vec<_> = lines.iter().map(|l| (l.text.as_str(), l.cut)).collect();
        assert_eq!(
            texts,
            [("aaaaaaaaaa", true), ("short", false), ("last", false)]
        );
        assert!(!budget.truncated());
    }

    #[tokio::test]
    async fn past_the_budget_lines_are_dropped_and_counted() {
        let (lines, budget) = lines_of(b"one\ntwo\nthree\nfour\n", 100, 9).await;
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two"]);
        assert!(budget.truncated());
        assert_eq!(budget.dropped_lines(), 2);
    }

    #[test]
    fn markers_name_the_limit() {
        assert_eq!(marker::scan("sh: 0: Cannot fork"), marker::PROCESSES);
        assert_eq!(marker::scan("MemoryError"), marker::MEMORY);
        assert_eq!(
            marker::scan("bash: fork: retry: Resource temporarily unavailable"),
            marker::PROCESSES
        );
        assert_eq!(marker::scan("all good"), 0);
    }
}
