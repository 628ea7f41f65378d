//! [`Workspace`]: the guard of a desktop agent's file access.
//!
//! The writable roots are the intersection of what the agent's own
//! configuration allows and what the job asks for, each resolved to its
//! canonical path first (so a root that is a symlink to elsewhere counts as
//! where it points). Every path checked is resolved the same way — symlinks
//! and `..` resolved, a path that does not exist yet resolved through its
//! nearest existing ancestor — and allowed only inside a root. Every check is
//! recorded, allowed or denied, for the job's audit log (`fs_audit` events).

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use projectengine_core::{EventData, FsAudit};

pub use projectengine_core::FsOp;

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkspaceError {
    /// The path resolves outside every writable root.
    #[error("`{path}` is outside the writable roots (it resolves to `{resolved}`)")]
    Outside {
        /// The path asked for.
        path: String,
        /// Where it resolves.
        resolved: String,
    },
    /// The path cannot be resolved.
    #[error("`{path}` cannot be resolved: {reason}")]
    Unresolvable {
        /// The path asked for.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Where a [`Workspace`] sends each check's record as it is made.
pub type AuditSink = Box<dyn Fn(FsAudit) + Send + Sync>;

tokio::task_local! {
    static CURRENT: Arc<Workspace>;
}

/// The writable roots of one attempt, and the record of every check.
pub struct Workspace {
    roots: Vec<PathBuf>,
    audit: Mutex<Vec<FsAudit>>,
    sink: Option<AuditSink>,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("roots", &self.roots)
            .finish_non_exhaustive()
    }
}

impl Workspace {
    /// The intersection of `allowed` (the agent's configuration) and
    /// `asked` (the job's policy): each asked root, canonical, that lies
    /// inside an allowed one (or each allowed root inside an asked one). A
    /// root that does not exist, or resolves outside every allowed root,
    /// gives nothing.
    pub fn new(allowed: &[PathBuf], asked: &[PathBuf]) -> Self {
        let canon = |p: &PathBuf| std::fs::canonicalize(p).ok();
        let allowed: Vec<PathBuf> = allowed.iter().filter_map(canon).collect();
        let mut roots = Vec::new();
        for a in asked.iter().filter_map(canon) {
            for b in &allowed {
                if a.starts_with(b) {
                    roots.push(a.clone());
                } else if b.starts_with(&a) {
                    roots.push(b.clone());
                }
            }
        }
        roots.sort();
        roots.dedup();
        Self {
            roots,
            audit: Mutex::new(Vec::new()),
            sink: None,
        }
    }

    /// Sends each check's record to `sink` as it is made, instead of
    /// keeping it for [`Workspace::take_audit`].
    pub fn with_sink(mut self, sink: AuditSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The workspace of the remote attempt this task runs, if the agent was
    /// given allowed roots ([`Agent::allow_roots`](crate::Agent::allow_roots)):
    /// its checks are reported as the attempt's `fs_audit` events.
    pub fn current() -> Option<Arc<Workspace>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// Runs `f` with `workspace` as [`Workspace::current`].
    pub async fn scope<F: std::future::Future>(workspace: Arc<Workspace>, f: F) -> F::Output {
        CURRENT.scope(workspace, f).await
    }

    /// The writable roots, canonical.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Checks `path` for `op`: its canonical path when inside a root, else
    /// an error. Recorded either way.
    pub fn check(&self, path: impl AsRef<Path>, op: FsOp) -> Result<PathBuf, WorkspaceError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let result = resolve(path).and_then(|resolved| {
            if self.roots.iter().any(|r| resolved.starts_with(r)) {
                Ok(resolved)
            } else {
                Err(WorkspaceError::Outside {
                    path: shown.clone(),
                    resolved: resolved.display().to_string(),
                })
            }
        });
        if let Err(e) = &result {
            tracing::warn!(error = %e, ?op, "file access refused");
        }
        let record = FsAudit {
            path: shown,
            op,
            allowed: result.is_ok(),
        };
        match &self.sink {
            Some(sink) => sink(record),
            None => self
                .audit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(record),
        }
        result
    }

    /// Writes `contents` to `path` once [`Workspace::check`] allowed it.
    pub fn write(&self, path: impl AsRef<Path>, contents: &[u8]) -> Result<(), WorkspaceError> {
        let resolved = self.check(path.as_ref(), FsOp::Write)?;
        std::fs::write(&resolved, contents).map_err(|e| WorkspaceError::Unresolvable {
            path: path.as_ref().display().to_string(),
            reason: e.to_string(),
        })
    }

    /// Deletes the file `path` once [`Workspace::check`] allowed it.
    pub fn delete(&self, path: impl AsRef<Path>) -> Result<(), WorkspaceError> {
        let resolved = self.check(path.as_ref(), FsOp::Delete)?;
        std::fs::remove_file(&resolved).map_err(|e| WorkspaceError::Unresolvable {
            path: path.as_ref().display().to_string(),
            reason: e.to_string(),
        })
    }

    /// The checks recorded since the last call (without a sink), as
    /// `fs_audit` events.
    pub fn take_audit(&self) -> Vec<EventData> {
        std::mem::take(&mut *self.audit.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .map(EventData::FsAudit)
            .collect()
    }
}

/// The canonical form of `path`: symlinks and `..` resolved; a path that
/// does not exist yet resolved through its nearest existing ancestor (the
/// rest may hold no `..`).
fn resolve(path: &Path) -> Result<PathBuf, WorkspaceError> {
    let unresolvable = |reason: String| WorkspaceError::Unresolvable {
        path: path.display().to_string(),
        reason,
    };
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| unresolvable(e.to_string()))?
            .join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        // A dangling symlink exists as a link: resolving it fails, and so
        // does the check, rather than writing wherever it points later.
        if existing.symlink_metadata().is_ok() {
            break;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name);
                existing = parent;
            }
            _ => return Err(unresolvable("no existing ancestor".into())),
        }
    }
    let mut resolved = std::fs::canonicalize(existing).map_err(|e| unresolvable(e.to_string()))?;
    for name in rest.into_iter().rev() {
        match Path::new(name).components().next() {
            Some(Component::Normal(n)) => resolved.push(n),
            _ => return Err(unresolvable("`..` below a path that does not exist".into())),
        }
    }
    Ok(resolved)
}
