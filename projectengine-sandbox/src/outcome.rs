//! How a run ended, and which limit it ran into.

use std::fmt;
use std::time::Duration;

use crate::output::marker;
use crate::Limits;

/// How the sandboxed process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by this signal.
    Signaled(i32),
}

/// Why a run failed, by name. A breach is reported as far as it can be told
/// honestly; see each variant for how.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// The wall-clock limit passed: the sandbox killed the tree.
    Timeout,
    /// The caller's cancellation token fired, or the run's handle was
    /// dropped: the sandbox killed the tree.
    Cancelled,
    /// Killed by SIGXCPU, the signal of the CPU-time soft limit (or a shell
    /// in the tree said a child was).
    CpuLimit,
    /// A memory limit was set, the run failed, and its output carries an
    /// out-of-memory message (ENOMEM's "Cannot allocate memory", Python's
    /// `MemoryError`, C++'s `bad_alloc`, Rust's "memory allocation of … failed",
    /// "out of memory"): under `RLIMIT_AS` an allocation fails, it is not
    /// signalled, so the program's own words are all there is to tell.
    MemoryLimit,
    /// A process limit was set, the run failed, and its output says a fork
    /// failed ("Cannot fork", "fork: … Resource temporarily unavailable").
    ProcessLimit,
    /// Killed by SIGXFSZ, the signal of the file-size limit (or a shell in the
    /// tree said a child was, or a write failed with EFBIG "File too large").
    FileSizeLimit,
    /// An open-files limit was set, the run failed, and its output says "Too
    /// many open files" (EMFILE).
    OpenFilesLimit,
    /// It exited with a non-zero code, no limit in sight.
    Exit(i32),
    /// It was killed by a signal, no limit in sight.
    Signal(i32),
}

impl Failure {
    /// A stable name: `timeout`, `cancelled`, `cpu_limit`, `memory_limit`,
    /// `process_limit`, `file_size_limit`, `open_files_limit`, `exit`,
    /// `signal`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Cancelled => "cancelled",
            Self::CpuLimit => "cpu_limit",
            Self::MemoryLimit => "memory_limit",
            Self::ProcessLimit => "process_limit",
            Self::FileSizeLimit => "file_size_limit",
            Self::OpenFilesLimit => "open_files_limit",
            Self::Exit(_) => "exit",
            Self::Signal(_) => "signal",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exit(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => write!(f, "killed by signal {signal}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// How the process ended (after a kill: the signal that killed it).
    pub status: Status,
    /// Why the run failed; `None` when it exited with code 0.
    pub failure: Option<Failure>,
    /// Every limit the run was seen to run into, even one it survived (a fork
    /// bomb that the process limit held until the timeout: `failure` is
    /// `Timeout`, this holds `ProcessLimit`).
    pub limits_hit: Vec<Failure>,
    /// Wall-clock time from spawn to the end.
    pub duration: Duration,
    /// Output past the byte budget was dropped.
    pub output_truncated: bool,
    /// How many lines were dropped.
    pub lines_dropped: u64,
}

impl Outcome {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.failure.is_none()
    }

    /// The exit code, when it exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self.status {
            Status::Exited(code) => Some(code),
            Status::Signaled(_) => None,
        }
    }
}

/// Why the supervisor stopped waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ending {
    Exited,
    Timeout,
    Cancelled,
}

/// Names the failure from how the run ended, its status and the markers its
/// output carried.
pub(crate) fn classify(
    ending: Ending,
    status: Status,
    markers: u8,
    limits: &Limits,
) -> (Option<Failure>, Vec<Failure>) {
    let mut hit = Vec::new();
    let signal = match status {
        Status::Signaled(s) => Some(s),
        Status::Exited(_) => None,
    };
    if limits.cpu_time.is_some()
        && (signal == Some(nix::libc::SIGXCPU) || markers & marker::CPU != 0)
    {
        hit.push(Failure::CpuLimit);
    }
    if limits.file_size_bytes.is_some()
        && (signal == Some(nix::libc::SIGXFSZ) || markers & marker::FILE_SIZE != 0)
    {
        hit.push(Failure::FileSizeLimit);
    }
    if limits.memory_bytes.is_some() && markers & marker::MEMORY != 0 {
        hit.push(Failure::MemoryLimit);
    }
    if limits.processes.is_some() && markers & marker::PROCESSES != 0 {
        hit.push(Failure::ProcessLimit);
    }
    if limits.open_files.is_some() && markers & marker::OPEN_FILES != 0 {
        hit.push(Failure::OpenFilesLimit);
    }
    let failure = match (ending, status) {
        (Ending::Timeout, _) => Some(Failure::Timeout),
        (Ending::Cancelled, _) => Some(Failure::Cancelled),
        (Ending::Exited, Status::Exited(0)) => None,
        (Ending::Exited, Status::Signaled(s)) if s == nix::libc::SIGXCPU => Some(Failure::CpuLimit),
        (Ending::Exited, Status::Signaled(s)) if s == nix::libc::SIGXFSZ => {
            Some(Failure::FileSizeLimit)
        }
        (Ending::Exited, other) => Some(hit.first().copied().unwrap_or(match other {
            Status::Exited(code) => Failure::Exit(code),
            Status::Signaled(s) => Failure::Signal(s),
        })),
    };
    (failure, hit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_named_only_when_it_was_set() {
        let mut limits = Limits::default();
        let (failure, _) = classify(Ending::Exited, Status::Exited(1), marker::MEMORY, &limits);
        assert_eq!(failure, Some(Failure::MemoryLimit));
        limits.memory_bytes = None;
        let (failure, hit) = classify(Ending::Exited, Status::Exited(1), marker::MEMORY, &limits);
        assert_eq!(failure, Some(Failure::Exit(1)));
        assert!(hit.is_empty());
    }

    #[test]
    fn a_timeout_keeps_the_limits_it_ran_into() {
        let (failure, hit) = classify(
            Ending::Timeout,
            Status::Signaled(9),
            marker::PROCESSES,
            &Limits::default(),
        );
        assert_eq!(failure, Some(Failure::Timeout));
        assert_eq!(hit, [Failure::ProcessLimit]);
    }

    #[test]
    fn success_stays_success_even_after_a_handled_enomem() {
        let (failure, hit) = classify(
            Ending::Exited,
            Status::Exited(0),
            marker::MEMORY,
            &Limits::default(),
        );
        assert_eq!(failure, None);
        assert_eq!(hit, [Failure::MemoryLimit]);
    }
}
