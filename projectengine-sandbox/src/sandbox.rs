//! The sandbox: probes the host once, then spawns commands under `bwrap`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::outcome::{classify, Ending};
use crate::output::{read_lines, Budget, Line, Stream};
use crate::{Command, Error, Isolation, Outcome, Result, SandboxConfig, Status, Workdir};

/// Where the working directory appears inside the sandbox.
pub const INSIDE_WORKDIR: &str = "/workdir";
/// The user and group id commands have inside the sandbox.
pub const INSIDE_ID: u32 = 65534;
/// Files of `/etc` shown inside (read-only), when the host has them: what
/// programs need to resolve names, load libraries and find alternatives.
const ETC_FILES: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "ssl",
    "ca-certificates",
    "mime.types",
];
/// Top-level directories that are, on merged-/usr systems, links into /usr.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// How long to wait for the output pipes to close once the process is gone.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs commands isolated. Cheap to clone; create it once with
/// [`Sandbox::new`], which checks the host can isolate.
///
/// Each run gets, under `bwrap`: new user, PID, network, IPC, UTS and cgroup
/// namespaces; a root that is an empty tmpfs with `/usr` (and its top-level
/// links), a few files of `/etc`, a fresh `/proc`, a minimal `/dev`, a
/// private `/tmp` and the working directory at [`INSIDE_WORKDIR`] — nothing
/// else of the host (no `/root`, `/home`, `/work`, host `/proc`); user and
/// group [`INSIDE_ID`] inside and, when the worker is root, an unprivileged
/// host id from [`SandboxConfig::host_ids`] outside (taken with `setpriv`
/// before `bwrap`, with every capability dropped); the limits set by
/// `prlimit(1)` on the command; a new session; and death with the
/// supervisor: `bwrap --die-with-parent` makes the namespace's init, and with
/// it every process of the namespace, die when the supervised `bwrap` does.
#[derive(Clone, Debug)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SandboxConfig,
    /// Runs go through `bwrap` (else unsandboxed).
    isolated: bool,
    /// The worker is root: runs leave root for a host id of their own.
    root: bool,
}

impl Sandbox {
    /// Checks that the host can isolate, by running `true` in a sandbox. When
    /// it cannot, answers [`Error::Unavailable`] saying why, unless
    /// `config.isolation` is [`Isolation::AllowUnsandboxed`]: then runs
    /// happen unsandboxed (see [`Sandbox::is_isolated`]) and a warning is
    /// logged.
    pub async fn new(config: SandboxConfig) -> Result<Self> {
        let root = nix::unistd::geteuid().is_root();
        if config.host_ids.is_empty() || config.host_ids.start == 0 {
            return Err(Error::invalid(
                "host_ids",
                "must be a non-empty range of non-zero ids",
            ));
        }
        if config.max_line_bytes == 0 {
            return Err(Error::invalid("max_line_bytes", "must be at least 1"));
        }
        let mut sandbox = Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                isolated: true,
                root,
            }),
        };
        match sandbox.probe().await {
            Ok(()) => Ok(sandbox),
            Err(reason) => match config.isolation {
                Isolation::Required => Err(Error::Unavailable { reason }),
                Isolation::AllowUnsandboxed => {
                    tracing::warn!(%reason, "the host cannot isolate commands: running them UNSANDBOXED");
                    sandbox.inner = Arc::new(Inner {
                        config,
                        isolated: false,
                        root,
                    });
                    Ok(sandbox)
                }
            },
        }
    }

    /// Whether runs are isolated (false only when the host cannot isolate
    /// and [`Isolation::AllowUnsandboxed`] was given).
    pub fn is_isolated(&self) -> bool {
        self.inner.isolated
    }

    /// Where `workdir` appears to commands: [`INSIDE_WORKDIR`] under
    /// isolation, its host path unsandboxed.
    pub fn inside_path(&self, workdir: &Workdir) -> PathBuf {
        if self.inner.isolated {
            PathBuf::from(INSIDE_WORKDIR)
        } else {
            workdir.path().to_path_buf()
        }
    }

    /// The settings.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// A fresh working directory for one or more runs.
    pub fn workdir(&self) -> Result<Workdir> {
        let owner = (self.inner.isolated && self.inner.root).then(|| {
            let id = fastrand::u32(self.inner.config.host_ids.clone());
            (id, id)
        });
        Workdir::create(&self.inner.config.workdir_root, owner)
    }

    async fn probe(&self) -> Result<(), String> {
        let workdir = self.workdir().map_err(|e| e.to_string())?;
        let command = Command::new(["true"]);
        let argv = self.argv(&workdir, &command);
        let output = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = match tokio::time::timeout(Duration::from_secs(30), output).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(format!("cannot start {}: {e}", argv[0])),
            Err(_) => return Err("the probe run did not finish within 30 s".into()),
        };
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "a probe run under {} failed ({}): {}",
                self.inner.config.bwrap.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// The full argv of a run: `[setpriv …] bwrap … prlimit … -- argv`, or
    /// `prlimit … -- argv` unsandboxed.
    fn argv(&self, workdir: &Workdir, command: &Command) -> Vec<String> {
        let config = &self.inner.config;
        let mut argv: Vec<String> = Vec::new();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        if self.inner.isolated {
            if let Some((uid, gid)) = workdir.owner() {
                argv.extend([
                    path(&config.setpriv),
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                    "--inh-caps=-all".into(),
                    "--bounding-set=-all".into(),
                ]);
            }
            argv.push(path(&config.bwrap));
            argv.extend(
                [
                    "--unshare-all",
                    "--unshare-user",
                    "--die-with-parent",
                    "--new-session",
                    "--disable-userns",
                    "--hostname",
                    "sandbox",
                ]
                .map(String::from),
            );
            if command.allow_network {
                argv.push("--share-net".into());
            }
            argv.extend([
                "--uid".into(),
                INSIDE_ID.to_string(),
                "--gid".into(),
                INSIDE_ID.to_string(),
            ]);
            argv.extend(["--ro-bind", "/usr", "/usr"].map(String::from));
            for dir in USR_LINKS {
                let host = Path::new("/").join(dir);
                match std::fs::symlink_metadata(&host) {
                    Ok(meta) if meta.file_type().is_symlink() => {
                        if let Ok(target) = std::fs::read_link(&host) {
                            argv.extend(["--symlink".into(), path(&target), path(&host)]);
                        }
                    }
                    Ok(meta) if meta.is_dir() => {
                        argv.extend(["--ro-bind".into(), path(&host), path(&host)]);
                    }
                    _ => {}
                }
            }
            for file in ETC_FILES {
                let host = Path::new("/etc").join(file);
                argv.extend(["--ro-bind-try".into(), path(&host), path(&host)]);
            }
            for extra in &config.extra_ro_binds {
                argv.extend(["--ro-bind-try".into(), path(extra), path(extra)]);
            }
            argv.extend(["--proc", "/proc", "--dev", "/dev"].map(String::from));
            argv.extend([
                "--size".into(),
                command.limits.tmp_bytes.to_string(),
                "--tmpfs".into(),
                "/tmp".into(),
            ]);
            argv.extend([
                "--bind".into(),
                path(workdir.path()),
                INSIDE_WORKDIR.into(),
                "--remount-ro".into(),
                "/".into(),
                "--chdir".into(),
                INSIDE_WORKDIR.into(),
                "--clearenv".into(),
            ]);
            for (key, value) in base_env(INSIDE_WORKDIR)
                .into_iter()
                .chain(command.env.clone())
            {
                argv.extend(["--setenv".into(), key, value]);
            }
            argv.push("--".into());
        }
        argv.push(path(&config.prlimit));
        argv.extend(command.limits.prlimit_args());
        argv.push("--".into());
        argv.extend(command.argv.iter().cloned());
        argv
    }

    /// Starts `command` in `workdir`. The returned [`Running`] yields its
    /// output lines and then its [`Outcome`]. The whole process tree is
    /// killed at the wall-clock limit, when `cancel` fires, and when the
    /// [`Running`] is dropped.
    ///
    /// `bwrap --die-with-parent` ties the run to the thread that spawns it
    /// (Linux's parent-death signal follows the thread): call this from a
    /// runtime's task, not from a `spawn_blocking` thread that may retire
    /// while the run goes on.
    pub async fn spawn(
        &self,
        workdir: &Workdir,
        command: &Command,
        cancel: CancellationToken,
    ) -> Result<Running> {
        command.validate()?;
        let argv = self.argv(workdir, command);
        let mut process = tokio::process::Command::new(&argv[0]);
        process
            .args(&argv[1..])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if !self.inner.isolated {
            process
                .current_dir(workdir.path())
                .envs(base_env(&workdir.path().to_string_lossy()))
                .envs(command.env.iter().cloned());
        }
        let started = Instant::now();
        let mut child = process
            .spawn()
            .map_err(|e| Error::io(format!("spawning {}", argv[0]), e))?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        tracing::debug!(argv = ?command.argv, pid = ?pgid, isolated = self.inner.isolated, "sandbox run started");

        let budget = Budget::new(command.limits.output_bytes);
        let (tx, rx) = mpsc::channel(256);
        let max_line = self.inner.config.max_line_bytes;
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            readers.push(tokio::spawn(read_lines(
                stdout,
                Stream::Stdout,
                max_line,
                budget.clone(),
                tx.clone(),
            )));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.push(tokio::spawn(read_lines(
                stderr,
                Stream::Stderr,
                max_line,
                budget.clone(),
                tx,
            )));
        }

        let dropped = CancellationToken::new();
        let (done_tx, done_rx) = oneshot::channel();
        let supervision = Supervision {
            child,
            pgid,
            isolated: self.inner.isolated,
            started,
            wall_time: command.limits.wall_time,
            cancel,
            dropped: dropped.clone(),
            readers,
            budget,
            limits: command.limits.clone(),
        };
        tokio::spawn(async move {
            let outcome = supervision.run().await;
            let _ = done_tx.send(outcome);
        });
        Ok(Running {
            lines: rx,
            done: done_rx,
            _kill_on_drop: dropped.drop_guard(),
        })
    }

    /// Runs `command` in a fresh working directory to its end, collecting
    /// its output (up to its output limit). The directory is removed after.
    pub async fn run(
        &self,
        command: &Command,
        cancel: CancellationToken,
    ) -> Result<(Outcome, Vec<Line>)> {
        let workdir = self.workdir()?;
        let mut running = self.spawn(&workdir, command, cancel).await?;
        let mut lines = Vec::new();
        while let Some(line) = running.next_line().await {
            lines.push(line);
        }
        Ok((running.wait().await?, lines))
    }
}

/// The environment every run starts from.
fn base_env(home: &str) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"),
        ("HOME", home),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

/// A command running in the sandbox. Read its lines with
/// [`Running::next_line`] until `None` (both streams closed), then take its
/// [`Outcome`] with [`Running::wait`]. Dropping it kills the whole tree.
#[derive(Debug)]
pub struct Running {
    lines: mpsc::Receiver<Line>,
    done: oneshot::Receiver<Outcome>,
    _kill_on_drop: DropGuard,
}

impl Running {
    /// The next line of output, stdout and stderr interleaved as read;
    /// `None` once both streams are closed (the command and every process
    /// that held them ended).
    pub async fn next_line(&mut self) -> Option<Line> {
        self.lines.recv().await
    }

    /// Waits for the end. Lines not read by then are discarded (still
    /// counted against the output limit and scanned for limit messages).
    ///
    /// The outcome comes once the process is reaped and its output pipes are
    /// closed (or two seconds after it is reaped, for a process that closed
    /// them early): by then every process that held them is gone.
    pub async fn wait(self) -> Result<Outcome> {
        let Self {
            lines,
            done,
            _kill_on_drop,
        } = self;
        drop(lines);
        done.await.map_err(|_| Error::Io {
            context: "supervising the run".into(),
            source: std::io::Error::other("the supervisor stopped before the run ended"),
        })
    }

    /// Kills the whole tree and waits until it is gone, as [`Running::wait`]
    /// does; the outcome's failure is `Cancelled`. Dropping the handle
    /// kills too, but without waiting: prefer this before removing the
    /// working directory.
    pub async fn kill(self) -> Result<Outcome> {
        let Self {
            lines,
            done,
            _kill_on_drop,
        } = self;
        drop(lines);
        _kill_on_drop.disarm().cancel();
        done.await.map_err(|_| Error::Io {
            context: "supervising the run".into(),
            source: std::io::Error::other("the supervisor stopped before the run ended"),
        })
    }
}

/// The task that owns the child: enforces the wall clock, cancel and drop,
/// and builds the outcome.
struct Supervision {
    child: tokio::process::Child,
    pgid: Option<Pid>,
    isolated: bool,
    started: Instant,
    wall_time: Duration,
    cancel: CancellationToken,
    dropped: CancellationToken,
    readers: Vec<tokio::task::JoinHandle<()>>,
    budget: Arc<Budget>,
    limits: crate::Limits,
}

impl Supervision {
    async fn run(mut self) -> Outcome {
        let deadline = tokio::time::sleep(self.wall_time);
        let (ending, status) = tokio::select! {
            status = self.child.wait() => (Ending::Exited, status),
            () = deadline => (Ending::Timeout, self.kill().await),
            () = self.cancel.cancelled() => (Ending::Cancelled, self.kill().await),
            () = self.dropped.cancelled() => (Ending::Cancelled, self.kill().await),
        };
        if !self.isolated {
            // Unsandboxed, the process group is all there is to find the
            // tree's leftovers by.
            self.kill_group();
        }
        let status = match status {
            Ok(status) => to_status(status, self.isolated),
            Err(error) => {
                tracing::warn!(%error, "waiting for the sandboxed process failed");
                Status::Signaled(nix::libc::SIGKILL)
            }
        };
        let duration = self.started.elapsed();
        let readers = std::mem::take(&mut self.readers);
        if tokio::time::timeout(DRAIN_GRACE, futures_join(readers))
            .await
            .is_err()
        {
            tracing::warn!("output pipes still open after the run ended; stopped reading them");
        }
        let (failure, limits_hit) = classify(ending, status, self.budget.markers(), &self.limits);
        tracing::debug!(?status, ?failure, ?duration, "sandbox run ended");
        Outcome {
            status,
            failure,
            limits_hit,
            duration,
            output_truncated: self.budget.truncated(),
            lines_dropped: self.budget.dropped_lines(),
        }
    }

    /// Kills the tree: SIGKILL to the process group (the supervised `bwrap`
    /// and, unsandboxed, the command's group), then to the child itself; the
    /// PID namespace's init dies with `bwrap`, and the namespace with it.
    async fn kill(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.kill_group();
        let _ = self.child.start_kill();
        self.child.wait().await
    }

    fn kill_group(&self) {
        if let Some(pgid) = self.pgid {
            match killpg(pgid, Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(error) => tracing::warn!(%error, "killing the run's process group failed"),
            }
        }
    }
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for handle in handles {
        let _ = handle.await;
    }
}

/// The command's status. `bwrap` reports a command killed by signal `n` as
/// exit code `128 + n`, like shells; so under isolation a command that
/// itself exits with 129–192 reads as killed by a signal.
fn to_status(status: std::process::ExitStatus, isolated: bool) -> Status {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) if isolated && (129..=192).contains(&code) => Status::Signaled(code - 128),
        (Some(code), _) => Status::Exited(code),
        (None, Some(signal)) => Status::Signaled(signal),
        (None, None) => Status::Signaled(nix::libc::SIGKILL),
    }
}
