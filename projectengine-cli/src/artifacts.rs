//! A job's artifacts: `GET /api/jobs/{id}/artifacts/` lists them as
//! `{"items": [{name, size, sha256, content_type, attempt, created_at}]}`;
//! `GET /api/jobs/{id}/artifacts/{name}` streams one (each segment of the name
//! percent-encoded).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::Api;
use crate::error::{CliError, Result};

/// What was written by [`download`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// The artifact's name.
    pub name: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lowercase hex, as checked against the listing.
    pub sha256: String,
}

/// The listing of job `id`'s artifacts, as the server answers it.
pub async fn list(api: &Api, id: &str) -> Result<Value> {
    api.get(api.url(&["api", "jobs", id, "artifacts"], true))
        .await
}

/// The segments of an artifact name, refusing names a URL cannot carry
/// faithfully (empty, `.` or `..` segments, control characters).
pub fn segments(name: &str) -> Result<Vec<&str>> {
    let bad = |reason: &str| CliError::invalid("NAME", format!("`{name}` {reason}"));
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("has a control character"));
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(bad("has an empty, `.` or `..` segment"));
    }
    Ok(segments)
}

/// Where `name` goes without `-o`: its last segment, in the current directory.
pub fn default_output(name: &str) -> Result<PathBuf> {
    let last = segments(name)?.last().copied().unwrap_or(name);
    Ok(PathBuf::from(last))
}

/// Downloads artifact `name` of job `id` to `output`.
///
/// The file is streamed to a temporary file beside `output` while its sha256
/// is computed, never held in memory whole; it replaces `output` only when its
/// size and sha256 match the listing's. Otherwise the temporary file is
/// removed, `output` is left as it was, and the answer is
/// [`CliError::Integrity`].
pub async fn download(api: &Api, id: &str, name: &str, output: &Path) -> Result<Downloaded> {
    let segs = segments(name)?;
    let listing = list(api, id).await?;
    let entry = listing
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|a| a.get("name").and_then(Value::as_str) == Some(name))
        .ok_or_else(|| CliError::Api {
            status: 404,
            code: "not_found".into(),
            message: format!("job {id} has no artifact named `{name}`"),
            field: Some("name".into()),
        })?;
    let expected_sha = entry
        .get("sha256")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| {
            CliError::Protocol(format!("artifact `{name}` is listed without a sha256"))
        })?;
    let expected_size = entry.get("size").and_then(Value::as_u64);

    let mut path = vec!["api", "jobs", id, "artifacts"];
    path.extend(segs);
    let url = api.url(&path, false);
    let mut res = api.send(api.request(Method::GET, url.clone())).await?;

    let part = part_path(output);
    let file = File::create(&part).map_err(|source| CliError::Io {
        path: part.display().to_string(),
        source,
    })?;
    let mut guard = PartFile(Some(part.clone()));
    let mut writer = BufWriter::new(file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let io = |source| CliError::Io {
        path: part.display().to_string(),
        source,
    };
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| crate::client::unreachable(url.as_str(), &e))?
    {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        writer.write_all(&chunk).map_err(io)?;
    }
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);

    let actual_sha = hex(&hasher.finalize());
    if actual_sha != expected_sha || expected_size.is_some_and(|s| s != size) {
        return Err(CliError::Integrity {
            name: name.to_owned(),
            expected: format!(
                "{} bytes, sha256 {expected_sha}",
                expected_size.map_or_else(|| "?".to_owned(), |s| s.to_string())
            ),
            actual: format!("{size} bytes, sha256 {actual_sha}"),
        });
    }
    std::fs::rename(&part, output).map_err(|source| CliError::Io {
        path: output.display().to_string(),
        source,
    })?;
    guard.0 = None;
    Ok(Downloaded {
        name: name.to_owned(),
        path: output.to_owned(),
        size,
        sha256: actual_sha,
    })
}

/// The temporary file a download goes to before it is checked.
fn part_path(output: &Path) -> PathBuf {
    let file = output
        .file_name()
        .map_or_else(|| "download".into(), |f| f.to_string_lossy().into_owned());
    output.with_file_name(format!(".{file}.{}.part", std::process::id()))
}

/// Removes the temporary file unless the download kept it.
struct PartFile(Option<PathBuf>);

impl Drop for PartFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_checked_segments() {
        assert_eq!(segments("dist/app.tar.gz").unwrap(), ["dist", "app.tar.gz"]);
        assert_eq!(segments("a b%c").unwrap(), ["a b%c"]);
        for bad in ["", "/a", "a/", "a//b", "../etc/passwd", "a/./b", "a\nb"] {
            assert!(segments(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            default_output("dist/app.tar.gz").unwrap(),
            PathBuf::from("app.tar.gz")
        );
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_part_file_sits_beside_the_output() {
        let p = part_path(Path::new("/tmp/x/app.tar.gz"));
        assert_eq!(p.parent(), Some(Path::new("/tmp/x")));
        assert!(p.file_name().unwrap().to_string_lossy().ends_with(".part"));
    }
}
