//! Finding the files a pipeline's artifact globs match in its working
//! directory.

use std::path::Path;

use globset::GlobSet;

/// At most this many directory entries are looked at, so a phase that made
/// millions of files cannot make the search unbounded.
const MAX_ENTRIES: usize = 100_000;

/// The regular files under `root` whose path relative to it (with `/`
/// separators) matches `globs`, sorted. Symbolic links are never followed
/// nor matched, whether they point inside the directory or out of it: a
/// phase could otherwise make the worker read any file of the host.
pub(crate) fn matching_files(root: &Path, globs: &GlobSet) -> Vec<String> {
    let mut found = Vec::new();
    if globs.is_empty() {
        return found;
    }
    let mut pending = vec![(root.to_path_buf(), String::new())];
    let mut seen = 0usize;
    while let Some((dir, prefix)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                tracing::warn!(max = MAX_ENTRIES, "artifact search stopped: too many files");
                found.sort();
                return found;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() {
                pending.push((entry.path(), relative));
            } else if kind.is_file() && globs.is_match(&relative) {
                found.push(relative);
            }
        }
    }
    found.sort();
    found
}

/// Opens the matched file `relative` under `root` for upload: never through
/// a symbolic link (`O_NOFOLLOW`), and only a regular file. With its media
/// type, guessed from its extension.
pub(crate) async fn open(
    root: &Path,
    relative: &str,
) -> std::io::Result<(projectengine_core::ArtifactBody, String)> {
    use nix::fcntl::OFlag;
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(root.join(relative))
        .await?;
    if !file.metadata().await?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let content_type = mime_guess::from_path(relative)
        .first_or_octet_stream()
        .essence_str()
        .to_owned();
    Ok((
        projectengine_core::ArtifactBody::stream(tokio_util::io::ReaderStream::new(file)),
        content_type,
    ))
}

#[cfg(test)]
mod tests {
    use globset::{GlobBuilder, GlobSetBuilder};

    use super::*;

    #[test]
    fn matches_files_and_never_follows_links() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "s").unwrap();
        std::fs::create_dir_all(root.path().join("out/deep")).unwrap();
        std::fs::write(root.path().join("out/a.txt"), "a").unwrap();
        std::fs::write(root.path().join("out/deep/b.txt"), "b").unwrap();
        std::fs::write(root.path().join("c.txt"), "c").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out/escape")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.txt"),
            root.path().join("out/link.txt"),
        )
        .unwrap();
        let mut set = GlobSetBuilder::new();
        set.add(
            GlobBuilder::new("out/**/*.txt")
                .literal_separator(true)
                .build()
                .unwrap(),
        );
        let found = matching_files(root.path(), &set.build().unwrap());
        assert_eq!(found, ["out/a.txt", "out/deep/b.txt"]);
    }
}
