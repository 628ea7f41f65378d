//! Resource limits of one run, and how they become `prlimit(1)` options.

use std::time::Duration;

use crate::{Error, Result};

/// What one run may use. `None` leaves a limit unset (inherited from the
/// worker). Every limit but the wall clock and the output cap is a POSIX
/// rlimit set by `prlimit(1)` on the command itself, so it applies to each
/// process of its tree separately (a child inherits the limit, not the
/// parent's usage) — except the process count, which the kernel counts per
/// user, and each run has a user of its own when the worker is root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from spawn; past it the whole tree is killed and the
    /// run fails with `timeout`.
    pub wall_time: Duration,
    /// CPU time per process (`RLIMIT_CPU`, whole seconds, rounded up).
    /// SIGXCPU at the limit, SIGKILL one second later.
    pub cpu_time: Option<Duration>,
    /// Address space per process in bytes (`RLIMIT_AS`): allocations past it
    /// fail with ENOMEM.
    pub memory_bytes: Option<u64>,
    /// Processes (and threads) of the run's user (`RLIMIT_NPROC`): a fork past
    /// it fails with EAGAIN. When the worker is root each working directory
    /// has a host user of its own, so this counts the run's processes; when
    /// it is not, the runs share the worker's user, and this counts every
    /// process of that user.
    pub processes: Option<u64>,
    /// Size of any file a process writes (`RLIMIT_FSIZE`): SIGXFSZ past it.
    pub file_size_bytes: Option<u64>,
    /// Open file descriptors per process (`RLIMIT_NOFILE`): EMFILE past it.
    pub open_files: Option<u64>,
    /// Size of the private `/tmp` (a tmpfs) in bytes.
    pub tmp_bytes: u64,
    /// Total bytes of output delivered (stdout and stderr together, one byte
    /// per line for its newline); lines past it are dropped and the outcome
    /// says the output was truncated.
    pub output_bytes: u64,
}

impl Default for Limits {
    /// Ten minutes of wall clock and of CPU, 2 GiB of address space, 256
    /// processes, 1 GiB per file, 1024 open files, a 256 MiB `/tmp` and 16 MiB
    /// of output.
    fn default() -> Self {
        Self {
            wall_time: Duration::from_secs(600),
            cpu_time: Some(Duration::from_secs(600)),
            memory_bytes: Some(2 << 30),
            processes: Some(256),
            file_size_bytes: Some(1 << 30),
            open_files: Some(1024),
            tmp_bytes: 256 << 20,
            output_bytes: 16 << 20,
        }
    }
}

impl Limits {
    /// Checks every limit is usable: nothing zero, at least 1 MiB of memory,
    /// at least 8 open files.
    pub fn validate(&self) -> Result<()> {
        if self.wall_time.is_zero() {
            return Err(Error::invalid("limits.wall_time", "must be more than zero"));
        }
        if self.cpu_time.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid("limits.cpu_time", "must be more than zero"));
        }
        if self.memory_bytes.is_some_and(|m| m < 1 << 20) {
            return Err(Error::invalid(
                "limits.memory_bytes",
                "must be at least 1 MiB",
            ));
        }
        if self.processes == Some(0) {
            return Err(Error::invalid("limits.processes", "must be at least 1"));
        }
        if self.file_size_bytes == Some(0) {
            return Err(Error::invalid(
                "limits.file_size_bytes",
                "must be at least 1",
            ));
        }
        if self.open_files.is_some_and(|n| n < 8) {
            return Err(Error::invalid("limits.open_files", "must be at least 8"));
        }
        if self.tmp_bytes == 0 {
            return Err(Error::invalid("limits.tmp_bytes", "must be at least 1"));
        }
        Ok(())
    }

    /// The `prlimit(1)` options that set these limits (core dumps always off).
    pub(crate) fn prlimit_args(&self) -> Vec<String> {
        let mut args = vec!["--core=0".to_owned()];
        if let Some(cpu) = self.cpu_time {
            let soft = cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0);
            // The soft limit sends SIGXCPU, which names the breach; the hard
            // one, a second later, kills a process that ignores it.
            args.push(format!("--cpu={soft}:{}", soft + 1));
        }
        if let Some(bytes) = self.memory_bytes {
            args.push(format!("--as={bytes}"));
        }
        if let Some(n) = self.processes {
            args.push(format!("--nproc={n}"));
        }
        if let Some(bytes) = self.file_size_bytes {
            args.push(format!("--fsize={bytes}"));
        }
        if let Some(n) = self.open_files {
            args.push(format!("--nofile={n}"));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_rounds_up_and_the_hard_limit_is_a_second_later() {
        let limits = Limits {
            cpu_time: Some(Duration::from_millis(1500)),
            memory_bytes: None,
            processes: None,
            file_size_bytes: None,
            open_files: None,
            ..Limits::default()
        };
        assert_eq!(limits.prlimit_args(), ["--core=0", "--cpu=2:3"]);
    }

    #[test]
    fn zero_limits_are_refused_naming_the_field() {
        let limits = Limits {
            processes: Some(0),
            ..Limits::default()
        };
        match limits.validate() {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "limits.processes"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert!(Limits::default().validate().is_ok());
    }
}
