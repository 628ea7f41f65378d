//! How the sandbox is set up on this host.

use std::ops::Range;
use std::path::PathBuf;

/// Whether a run may go ahead without isolation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// Refuse to run when the host cannot isolate (the default).
    #[default]
    Required,
    /// When the host cannot isolate, run anyway with the limits, the tree
    /// kill by process group and the output cap only: no namespaces, the
    /// worker's user, the host's network and filesystem. A process that
    /// leaves the group (`setsid`) escapes the tree kill, and a worker running
    /// as root is exempt from the process limit. For development machines
    /// without `bwrap`; never for untrusted commands.
    AllowUnsandboxed,
}

/// The sandbox's settings. [`SandboxConfig::default`] suits a Debian host
/// with the `bubblewrap` package.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// Whether to run when isolation is unavailable.
    pub isolation: Isolation,
    /// The `bwrap` program (looked up in `PATH` when relative).
    pub bwrap: PathBuf,
    /// The `setpriv` program, used to leave root before `bwrap` when the
    /// worker runs as root.
    pub setpriv: PathBuf,
    /// The `prlimit` program, as seen inside the sandbox (it is under `/usr`,
    /// which the sandbox shows read-only).
    pub prlimit: PathBuf,
    /// Where working directories are created.
    pub workdir_root: PathBuf,
    /// Host user ids for runs when the worker is root: each working
    /// directory gets one at random from this range (as its user and group
    /// id), so the process limit of a run counts that run only.
    pub host_ids: Range<u32>,
    /// Longer lines are cut to this many bytes.
    pub max_line_bytes: usize,
    /// More host paths shown read-only at the same place inside (a
    /// toolchain under `/opt`, say). Paths that do not exist are skipped.
    pub extra_ro_binds: Vec<PathBuf>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            isolation: Isolation::Required,
            bwrap: "bwrap".into(),
            setpriv: "setpriv".into(),
            prlimit: "/usr/bin/prlimit".into(),
            workdir_root: std::env::temp_dir(),
            host_ids: 200_000..265_536,
            max_line_bytes: 8 * 1024,
            extra_ro_binds: Vec::new(),
        }
    }
}
