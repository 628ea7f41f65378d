//! The fresh working directory of a run: the only place a command may write
//! (with its private `/tmp`), removed when dropped.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// A fresh directory, owned by the user the sandbox runs commands as.
/// Several commands may run in it one after the other (the phases of a
/// build). It is removed, with everything in it, when dropped.
#[derive(Debug)]
pub struct Workdir {
    dir: tempfile::TempDir,
    owner: Option<(u32, u32)>,
}

impl Workdir {
    pub(crate) fn create(root: &Path, owner: Option<(u32, u32)>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("projectengine-sandbox-")
            .tempdir_in(root)
            .map_err(|e| {
                Error::io(
                    format!("creating a working directory in {}", root.display()),
                    e,
                )
            })?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| Error::io("giving the working directory to the sandbox user", e))?;
        }
        Ok(Self { dir, owner })
    }

    /// The directory on the host.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The host user and group that own it and that commands run as, when
    /// the worker is root (otherwise the worker's own).
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Writes `content` to `relative` inside the directory, creating parent
    /// directories, all owned by the sandbox user. `relative` must be a
    /// relative path of plain components (no `..`, no leading `/`); an
    /// existing symbolic link on the way is refused, so nothing is written
    /// outside. Call it while no command runs in the directory.
    pub fn write_file(&self, relative: &str, content: &[u8]) -> Result<PathBuf> {
        let rel = checked_relative(relative)?;
        let mut path = self.path().to_path_buf();
        let components: Vec<_> = rel.components().collect();
        for (i, component) in components.iter().enumerate() {
            path.push(component);
            let last = i + 1 == components.len();
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Error::invalid(
                        "path",
                        format!("{relative}: a symbolic link is on the way"),
                    ));
                }
                Ok(meta) if !last && !meta.is_dir() => {
                    return Err(Error::invalid(
                        "path",
                        format!("{relative}: {} is not a directory", path.display()),
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !last {
                        fs::create_dir(&path)
                            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
                        self.chown(&path)?;
                    }
                }
                Err(e) => return Err(Error::io(format!("inspecting {}", path.display()), e)),
            }
        }
        fs::write(&path, content)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        self.chown(&path)?;
        Ok(path)
    }

    fn chown(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
                Error::io(format!("giving {} to the sandbox user", path.display()), e)
            })?;
        }
        Ok(())
    }
}

/// `relative` as a path of plain components, or `Invalid`.
pub fn checked_relative(relative: &str) -> Result<&Path> {
    if relative.is_empty() || relative.contains('\0') {
        return Err(Error::invalid(
            "path",
            "must be a non-empty path without NUL bytes",
        ));
    }
    let path = Path::new(relative);
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::invalid(
            "path",
            format!("{relative}: must be relative, without `..` or `.`"),
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused_and_nothing_is_written() {
        let root = tempfile::tempdir().unwrap();
        let workdir = Workdir::create(root.path(), None).unwrap();
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert!(
                matches!(
                    workdir.write_file(bad, b"x"),
                    Err(Error::Invalid { field: "path", .. })
                ),
                "{bad:?} accepted"
            );
        }
        assert!(!root.path().join("x").exists());
        std::os::unix::fs::symlink("/tmp", workdir.path().join("link")).unwrap();
        assert!(workdir.write_file("link/escaped", b"x").is_err());
        assert!(!Path::new("/tmp/escaped").exists());
        let written = workdir.write_file("src/main.c", b"int main(){}").unwrap();
        assert_eq!(fs::read(written).unwrap(), b"int main(){}");
    }

    #[test]
    fn the_directory_is_removed_when_dropped() {
        let root = tempfile::tempdir().unwrap();
        let workdir = Workdir::create(root.path(), None).unwrap();
        workdir.write_file("a/b/c", b"x").unwrap();
        let path = workdir.path().to_path_buf();
        drop(workdir);
        assert!(!path.exists());
    }
}
