//! Artifacts: the named files a job leaves behind.
//!
//! An orchestrator stores one with
//! [`JobCallbacks::put_artifact`](crate::JobCallbacks::put_artifact). Its bytes
//! go to an [`ArtifactStore`] (any [`ObjectStore`]: in memory, a local
//! directory, S3, GCS or Azure) under a key of their own, never under the
//! artifact's name; its metadata ([`Artifact`]: name, size, SHA-256, content
//! type, attempt) goes to the [`Store`](crate::Store), fenced like every write
//! of the attempt, with an `artifact` event. The metadata is what makes an
//! artifact visible, so an upload that the store refuses (its attempt lost the
//! lease, or the job's size limit is reached) leaves nothing visible, and its
//! bytes are deleted.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::{Error, JobEvent, JobId, Result};

/// Longest artifact name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest content type, in bytes.
const MAX_CONTENT_TYPE_BYTES: usize = 255;

/// Parts of a streamed upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 2;

/// A file a job left behind: its metadata, as the [`Store`](crate::Store)
/// keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// The job.
    pub job_id: JobId,
    /// Its name, unique in the job: relative, `/`-separated (see
    /// [`validate_name`]).
    pub name: String,
    /// The attempt that stored it.
    pub attempt: u32,
    /// Its size, in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its media type, e.g. `text/html; charset=utf-8`.
    pub content_type: String,
    /// Where its bytes are in the [`ArtifactStore`]: a key of its own, not
    /// derived from the name.
    pub blob: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// An uploaded artifact for [`Store::put_artifact`](crate::Store::put_artifact)
/// to make visible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewArtifact {
    /// Its name (already validated).
    pub name: String,
    /// Its media type (already validated).
    pub content_type: String,
    /// Its size, in bytes.
    pub size: u64,
    /// The SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Where its bytes are in the [`ArtifactStore`].
    pub blob: String,
    /// The most bytes the job's artifacts may take together, this one
    /// included (an artifact it replaces no longer counts). The store checks
    /// it atomically with the write; `None`: no limit.
    pub max_job_bytes: Option<u64>,
}

/// What [`Store::put_artifact`](crate::Store::put_artifact) did.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedArtifact {
    /// The artifact, now visible.
    pub artifact: Artifact,
    /// The artifact of the same name it replaced, whose bytes the caller may
    /// now delete.
    pub replaced: Option<Artifact>,
    /// The events appended (the `artifact` event).
    pub events: Vec<JobEvent>,
}

/// Checks an artifact's name: non-empty, at most [`MAX_NAME_BYTES`] bytes,
/// relative and `/`-separated, without empty, `.` or `..` segments, without
/// backslashes or control characters. Anything else is [`Error::Invalid`].
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: &'static str| Err(Error::invalid("name", reason));
    if name.is_empty() {
        return bad("must not be empty");
    }
    if name.len() > MAX_NAME_BYTES {
        return bad("must be at most 255 bytes");
    }
    if name.chars().any(char::is_control) {
        return bad("must not contain control characters");
    }
    if name.contains('\\') {
        return bad("must use `/` to separate its parts, not `\\`");
    }
    if name.starts_with('/') {
        return bad("must be relative, not start with `/`");
    }
    for segment in name.split('/') {
        match segment {
            "" => return bad("must not have empty parts (`//` or a trailing `/`)"),
            "." | ".." => return bad("must not have `.` or `..` parts"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a media type: `type/subtype`, optionally with parameters, in
/// printable ASCII, at most 255 bytes.
pub fn validate_content_type(content_type: &str) -> Result<()> {
    let bad = |reason: &'static str| Err(Error::invalid("content_type", reason));
    if content_type.len() > MAX_CONTENT_TYPE_BYTES {
        return bad("must be at most 255 bytes");
    }
    if !content_type.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return bad("must be printable ASCII");
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((t, sub)) if token(t) && token(sub) => Ok(()),
        _ => bad("must be a media type such as `text/plain`"),
    }
}

/// The per-job size rule, shared by every store: `others` (the job's other
/// artifacts) plus `size` (the new one) must not pass `max`.
pub fn check_job_bytes(others: u64, size: u64, max: Option<u64>) -> Result<()> {
    match max {
        Some(max) if others.saturating_add(size) > max => Err(Error::LimitExceeded(
            format!(
                "the job's artifacts would take {} bytes, more than its limit of {max}",
                others.saturating_add(size)
            )
            .into(),
        )),
        _ => Ok(()),
    }
}

/// The bytes of an artifact to store: in memory, or a stream (written as it
/// comes, never held whole).
pub enum ArtifactBody {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A stream of chunks; an error ends the upload and stores nothing.
    Stream(BoxStream<'static, std::io::Result<Bytes>>),
}

impl ArtifactBody {
    /// A body read from `stream` as it comes.
    pub fn stream<S>(stream: S) -> Self
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        Self::Stream(stream.boxed())
    }

    /// A body streamed from a file, read as it is uploaded.
    pub async fn file(path: impl AsRef<std::path::Path>) -> std::io::Result<Self> {
        let file = tokio::fs::File::open(path).await?;
        Ok(Self::stream(tokio_util::io::ReaderStream::new(file)))
    }
}

impl fmt::Debug for ArtifactBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => f.debug_tuple("Bytes").field(&b.len()).finish(),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl From<Bytes> for ArtifactBody {
    fn from(b: Bytes) -> Self {
        Self::Bytes(b)
    }
}

impl From<Vec<u8>> for ArtifactBody {
    fn from(b: Vec<u8>) -> Self {
        Self::Bytes(b.into())
    }
}

impl From<String> for ArtifactBody {
    fn from(s: String) -> Self {
        Self::Bytes(s.into())
    }
}

impl From<&'static str> for ArtifactBody {
    fn from(s: &'static str) -> Self {
        Self::Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl From<&'static [u8]> for ArtifactBody {
    fn from(b: &'static [u8]) -> Self {
        Self::Bytes(Bytes::from_static(b))
    }
}

/// Size limits of artifacts, refused with [`Error::LimitExceeded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArtifactLimits {
    /// Largest artifact, in bytes.
    pub max_bytes: u64,
    /// Most bytes one job's artifacts may take together.
    pub max_job_bytes: u64,
}

impl Default for ArtifactLimits {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
            max_job_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Where artifacts' bytes live: an [`ObjectStore`] (under a key prefix),
/// with the size limits. Cheap to clone.
#[derive(Clone)]
pub struct ArtifactStore {
    objects: Arc<dyn ObjectStore>,
    prefix: Path,
    limits: ArtifactLimits,
}

impl fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("objects", &format_args!("{}", self.objects))
            .field("prefix", &self.prefix.as_ref())
            .field("limits", &self.limits)
            .finish()
    }
}

/// The bytes of a stored upload, before the store makes them visible.
#[derive(Debug)]
pub(crate) struct Uploaded {
    pub(crate) blob: String,
    pub(crate) size: u64,
    pub(crate) sha256: String,
}

fn objects_error(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::not_found("artifact"),
        other => Error::unavailable("the artifact store failed").with_source(other),
    }
}

impl ArtifactStore {
    /// Artifacts in `objects`, at its root, with the default limits.
    pub fn new(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            prefix: Path::default(),
            limits: ArtifactLimits::default(),
        }
    }

    /// Artifacts in this process's memory: the embedded default (gone with the
    /// process, like the in-memory store).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()))
    }

    /// Artifacts in files under `dir` (created if missing).
    pub fn local(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::unavailable(format!("cannot create the artifact directory {dir:?}"))
                .with_source(e)
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(objects_error)?
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(fs)))
    }

    /// Artifacts at an object store URL: `memory://`, `file:///dir`, and with
    /// this crate's features `aws`, `gcp`, `azure`: `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` (and the other forms
    /// `object_store` parses). Credentials and options come from the
    /// environment as `object_store`'s builders name them (e.g.
    /// `AWS_ACCESS_KEY_ID`, `AWS_REGION`, `GOOGLE_SERVICE_ACCOUNT`).
    pub fn from_url(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid("artifacts", format!("not a URL: {e}")))?;
        let (objects, prefix) = object_store::parse_url_opts(&parsed, std::env::vars())
            .map_err(|e| Error::invalid("artifacts", e.to_string()))?;
        Ok(Self {
            objects: Arc::from(objects),
            prefix,
            limits: ArtifactLimits::default(),
        })
    }

    /// Keeps every artifact under `prefix` (`/`-separated).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = Path::from(prefix);
        self
    }

    /// Other size limits.
    pub fn with_limits(mut self, limits: ArtifactLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The size limits.
    pub fn limits(&self) -> &ArtifactLimits {
        &self.limits
    }

    /// The object store.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    fn path(&self, blob: &str) -> Path {
        blob.split('/')
            .fold(self.prefix.clone(), |path, part| path.join(part))
    }

    /// Stores `body` under a fresh key of `job`'s `attempt`, counting its
    /// size and hashing it as it goes; past the size limit, stops and keeps
    /// nothing.
    pub(crate) async fn upload(
        &self,
        job: JobId,
        attempt: u32,
        body: ArtifactBody,
    ) -> Result<Uploaded> {
        let blob = format!("jobs/{job}/{attempt}/{}", uuid::Uuid::now_v7());
        let path = self.path(&blob);
        let max = self.limits.max_bytes;
        let too_big =
            || Error::LimitExceeded(format!("an artifact may take at most {max} bytes").into());
        match body {
            ArtifactBody::Bytes(bytes) => {
                let size = bytes.len() as u64;
                if size > max {
                    return Err(too_big());
                }
                let sha256 = hex::encode(Sha256::digest(&bytes));
                self.objects
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(objects_error)?;
                Ok(Uploaded { blob, size, sha256 })
            }
            ArtifactBody::Stream(mut chunks) => {
                let upload = self
                    .objects
                    .put_multipart(&path)
                    .await
                    .map_err(objects_error)?;
                let mut writer = WriteMultipart::new(upload);
                let mut hasher = Sha256::new();
                let mut size = 0u64;
                let failed = loop {
                    let chunk = match chunks.next().await {
                        None => break None,
                        Some(Ok(chunk)) => chunk,
                        Some(Err(e)) => {
                            break Some(
                                Error::unavailable("reading the artifact's body failed")
                                    .with_source(e),
                            )
                        }
                    };
                    size += chunk.len() as u64;
                    if size > max {
                        break Some(too_big());
                    }
                    hasher.update(&chunk);
                    // A body that is always ready would keep this task busy
                    // for the whole upload: let the attempt's heartbeat (polled
                    // with the orchestrator) have its turn between chunks.
                    tokio::task::yield_now().await;
                    if let Err(e) = writer.wait_for_capacity(UPLOAD_CONCURRENCY).await {
                        break Some(objects_error(e));
                    }
                    writer.put(chunk);
                };
                if let Some(e) = failed {
                    if let Err(abort) = writer.abort().await {
                        tracing::warn!(error = %abort, "aborting an artifact upload failed");
                    }
                    return Err(e);
                }
                writer.finish().await.map_err(objects_error)?;
                let sha256 = hex::encode(hasher.finalize());
                Ok(Uploaded { blob, size, sha256 })
            }
        }
    }

    /// Deletes a blob no artifact names (any more); a failure is logged, and
    /// leaves an orphan blob, never a visible artifact.
    pub(crate) async fn delete(&self, blob: &str) {
        if let Err(e) = self.objects.delete(&self.path(blob)).await {
            tracing::warn!(blob, error = %e, "deleting an unused artifact blob failed");
        }
    }

    /// The bytes `range` of a blob, as a stream.
    pub(crate) async fn read(
        &self,
        blob: &str,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        if range.is_empty() {
            return Ok(stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..Default::default()
        };
        let got = self
            .objects
            .get_opts(&self.path(blob), options)
            .await
            .map_err(objects_error)?;
        Ok(got.into_stream().map_err(objects_error).boxed())
    }
}

/// An artifact opened for reading by
/// [`Engine::open_artifact`](crate::Engine::open_artifact).
pub struct ArtifactReader {
    /// The artifact.
    pub artifact: Artifact,
    /// The bytes `body` holds: the whole artifact, or the range asked for.
    pub range: Range<u64>,
    /// Those bytes, as they are read.
    pub body: BoxStream<'static, Result<Bytes>>,
}

impl fmt::Debug for ArtifactReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactReader")
            .field("artifact", &self.artifact)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "a",
            "dist/index.html",
            "a b/c.tar.gz",
            "é/ü",
            "...",
            ".hidden",
        ] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\..\\b",
            "a\nb",
            "a\0b",
            long.as_str(),
        ] {
            assert!(
                matches!(
                    validate_name(bad),
                    Err(Error::Invalid { field: "name", .. })
                ),
                "{bad:?}"
            );
        }
        assert!(validate_name(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn content_types() {
        for good in [
            "text/plain",
            "text/html; charset=utf-8",
            "application/vnd.a+json",
        ] {
            assert!(validate_content_type(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "text",
            "/plain",
            "text/",
            "te xt/plain",
            "text/plain\r\nx: y",
        ] {
            assert!(validate_content_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn job_bytes() {
        assert!(check_job_bytes(5, 5, Some(10)).is_ok());
        assert!(matches!(
            check_job_bytes(6, 5, Some(10)),
            Err(Error::LimitExceeded(_))
        ));
        assert!(check_job_bytes(u64::MAX, 5, None).is_ok());
    }

    async fn collect(s: BoxStream<'static, Result<Bytes>>) -> Vec<u8> {
        s.try_fold(Vec::new(), |mut v, b| async move {
            v.extend_from_slice(&b);
            Ok(v)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn stream_upload_hashes_counts_and_reads_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::local(dir.path()).unwrap();
        let chunks: Vec<std::io::Result<Bytes>> = (0..10)
            .map(|i| Ok(Bytes::from(vec![i as u8; 1_000_000])))
            .collect();
        let up = store
            .upload(JobId::new(), 1, ArtifactBody::stream(stream::iter(chunks)))
            .await
            .unwrap();
        assert_eq!(up.size, 10_000_000);
        let mut whole = Vec::new();
        for i in 0..10u8 {
            whole.extend(std::iter::repeat_n(i, 1_000_000));
        }
        assert_eq!(up.sha256, hex::encode(Sha256::digest(&whole)));
        let part = collect(store.read(&up.blob, 999_990..1_000_010).await.unwrap()).await;
        assert_eq!(part, whole[999_990..1_000_010]);
        store.delete(&up.blob).await;
        assert!(matches!(
            store.read(&up.blob, 0..1).await,
            Err(Error::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn an_upload_past_the_limit_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::local(dir.path())
            .unwrap()
            .with_limits(ArtifactLimits {
                max_bytes: 1000,
                max_job_bytes: 10_000,
            });
        let chunks: Vec<std::io::Result<Bytes>> =
            (0..5).map(|_| Ok(Bytes::from(vec![1u8; 300]))).collect();
        let err = store
            .upload(JobId::new(), 1, ArtifactBody::stream(stream::iter(chunks)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
        let err = store
            .upload(JobId::new(), 1, vec![0u8; 1001].into())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
        let files: Vec<_> = walk(dir.path());
        assert!(files.is_empty(), "left behind: {files:?}");
    }

    async fn blobs(engine: &crate::Engine) -> usize {
        engine
            .artifact_store()
            .objects()
            .list(None)
            .collect::<Vec<_>>()
            .await
            .len()
    }

    #[tokio::test]
    async fn what_the_store_refuses_or_replaces_leaves_no_bytes() {
        use crate::{Engine, NewJob, Outcome, Owner, Registry};
        let engine = Engine::in_memory(Registry::new()).with_artifacts(
            ArtifactStore::in_memory().with_limits(ArtifactLimits {
                max_bytes: 100,
                max_job_bytes: 150,
            }),
        );
        let store = engine.store().clone();
        let id = JobId::new();
        store
            .create_job(NewJob {
                id,
                owner: Owner::new("o"),
                kind: "k".into(),
                queue: "k".into(),
                prompt: "p".into(),
                params: serde_json::json!({}),
                priority: 0,
                max_attempts: 1,
                timeout_ms: 60_000,
                run_at: Utc::now(),
                max_queued: None,
                webhook: None,
                notify_deployment: false,
                trace_parent: None,
                review: false,
                parent_id: None,
                child_key: None,
                project: None,
                depends_on: Vec::new(),
                concurrency_key: None,
                concurrency_limit: None,
            })
            .await
            .unwrap();
        let fence = store
            .claim(id, "w", std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap()
            .attempt
            .fence();
        let put = |name: &'static str, size: usize| {
            engine.put_artifact("k", fence, name, "text/plain", vec![7u8; size].into())
        };
        put("a", 100).await.unwrap();
        put("a", 90).await.expect("a replacement");
        assert_eq!(blobs(&engine).await, 1, "the replaced bytes are deleted");
        assert!(matches!(put("b", 61).await, Err(Error::LimitExceeded(_))));
        assert!(matches!(put("c", 101).await, Err(Error::LimitExceeded(_))));
        assert!(matches!(put("../d", 1).await, Err(Error::Invalid { .. })));
        assert_eq!(blobs(&engine).await, 1, "refused uploads leave no bytes");
        store.finish(fence, Outcome::Succeeded).await.unwrap();
        assert!(matches!(put("late", 1).await, Err(Error::StaleAttempt)));
        assert_eq!(blobs(&engine).await, 1, "a stale upload leaves no bytes");
        let listed = store.artifacts(id).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, 90);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }
}
