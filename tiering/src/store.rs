//! Object stores by URL (`s3://bucket/prefix`, `file:///path`, `memory://`), and the decorators
//! that sit in front of them: [`ObservedStore`] counts requests for metrics, [`FaultyStore`]
//! fails them on demand for tests. S3 settings come from the standard `AWS_*` variables
//! (`AWS_ENDPOINT` and `AWS_ALLOW_HTTP=true` for MinIO and other local servers).

use crate::{Error, Result};
use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Opens the object store named by `url`, creating a local directory if needed.
pub fn from_url(url: &str) -> Result<Arc<dyn ObjectStore>> {
    let parsed = url::Url::parse(url).map_err(|e| Error::InvalidUrl {
        url: url.into(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "file" => {
            let path = parsed.to_file_path().map_err(|()| Error::InvalidUrl {
                url: url.into(),
                reason: "file URLs need an absolute path, e.g. file:///var/lib/silt/objects".into(),
            })?;
            std::fs::create_dir_all(&path).map_err(|e| Error::InvalidUrl {
                url: url.into(),
                reason: format!("cannot create {}: {e}", path.display()),
            })?;
            let store = LocalFileSystem::new_with_prefix(&path).map_err(|source| Error::Open {
                url: url.into(),
                source,
            })?;
            Ok(Arc::new(store))
        }
        "memory" => {
            let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let prefix = parsed.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(store)
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix)))
            }
        }
        "s3" => {
            let bucket =
                parsed
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| Error::InvalidUrl {
                        url: url.into(),
                        reason: "s3 URLs name a bucket: s3://bucket/optional/prefix".into(),
                    })?;
            // Our own upload loop retries with backoff and watches the request timeout; the
            // client's retries only smooth over single failed requests.
            let retry = object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(10),
                ..Default::default()
            };
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry)
                .build()
                .map_err(|source| Error::Open {
                    url: url.into(),
                    source,
                })?;
            let store: Arc<dyn ObjectStore> = Arc::new(store);
            let prefix = parsed.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(store)
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix)))
            }
        }
        other => Err(Error::InvalidUrl {
            url: url.into(),
            reason: format!("unknown scheme {other:?}; expected file://, memory:// or s3://"),
        }),
    }
}

/// Told about every request an [`ObservedStore`] forwards.
pub trait StoreObserver: Send + Sync + std::fmt::Debug + 'static {
    /// `op` is one of put, put_multipart, get, delete, list, copy; `bytes` is what was sent or
    /// received when known.
    fn observe(&self, op: &'static str, ok: bool, bytes: u64, took: Duration);
}

/// Counts requests, bytes and latency of the store it wraps.
#[derive(Debug)]
pub struct ObservedStore {
    inner: Arc<dyn ObjectStore>,
    observer: Arc<dyn StoreObserver>,
}

impl ObservedStore {
    pub fn new(inner: Arc<dyn ObjectStore>, observer: Arc<dyn StoreObserver>) -> Self {
        ObservedStore { inner, observer }
    }

    fn note<T>(&self, op: &'static str, start: Instant, r: &object_store::Result<T>, bytes: u64) {
        self.observer.observe(op, r.is_ok(), bytes, start.elapsed());
    }
}

impl std::fmt::Display for ObservedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observed({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for ObservedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let (start, bytes) = (Instant::now(), payload.content_length() as u64);
        let r = self.inner.put_opts(location, payload, opts).await;
        self.note("put", start, &r, bytes);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let start = Instant::now();
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.note("put_multipart", start, &r, 0);
        r
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let start = Instant::now();
        let r = self.inner.get_opts(location, options).await;
        let bytes = r.as_ref().map_or(0, |g| g.range.end - g.range.start);
        self.note("get", start, &r, bytes);
        r
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let observer = self.observer.clone();
        self.inner
            .delete_stream(locations)
            .inspect(move |r| observer.observe("delete", r.is_ok(), 0, Duration::ZERO))
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.observer.observe("list", true, 0, Duration::ZERO);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let start = Instant::now();
        let r = self.inner.list_with_delimiter(prefix).await;
        self.note("list", start, &r, 0);
        r
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let start = Instant::now();
        let r = self.inner.copy_opts(from, to, options).await;
        self.note("copy", start, &r, 0);
        r
    }
}

/// The fault-injection seam for tests: fails every request while switched on (an outage), or
/// applies a third of the PUTs and loses their answers (the caller sees an error; the object is
/// written), which is how a retried conditional PUT meets its own earlier attempt.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    failing: AtomicBool,
    failing_reads: AtomicBool,
    losing: AtomicBool,
    puts: std::sync::atomic::AtomicU64,
    lost: std::sync::Mutex<Vec<Path>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        FaultyStore {
            inner,
            failing: AtomicBool::new(false),
            failing_reads: AtomicBool::new(false),
            losing: AtomicBool::new(false),
            puts: Default::default(),
            lost: Default::default(),
        }
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// While on, every GET fails (writes, lists and deletes still work).
    pub fn set_failing_reads(&self, failing: bool) {
        self.failing_reads.store(failing, Ordering::SeqCst);
    }

    /// While on, a third of the PUTs (spread by a hash, not periodic) are applied and then
    /// answered with an error.
    pub fn set_losing_answers(&self, losing: bool) {
        self.losing.store(losing, Ordering::SeqCst);
    }

    /// The keys whose PUT was applied with its answer lost.
    pub fn lost_answers(&self) -> Vec<Path> {
        self.lost.lock().expect("lost lock").clone()
    }

    fn check(&self) -> object_store::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            Err(object_store::Error::Generic {
                store: "faulty",
                source: "injected fault: the object store is unreachable".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.check()?;
        let result = self.inner.put_opts(location, payload, opts).await;
        let n = self.puts.fetch_add(1, Ordering::SeqCst);
        // A third of PUTs, picked by a hash of the count (splitmix64): no period a caller's
        // retry pattern can fall in step with.
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        if result.is_ok() && self.losing.load(Ordering::SeqCst) && z.is_multiple_of(3) {
            self.lost.lock().expect("lost lock").push(location.clone());
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: "injected fault: the PUT was applied and its answer lost".into(),
            });
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.check()?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.check()?;
        if self.failing_reads.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "faulty",
                source: "injected fault: the object store refuses reads".into(),
            });
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        if let Err(e) = self.check() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if let Err(e) = self.check() {
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.check()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.check()?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// Writes `payload` under `key`, retrying failures with exponential backoff and jitter until
/// it succeeds or `give_up` resolves. Payloads over `multipart_threshold` go up in parts.
pub async fn upload_with_retry(
    store: &dyn ObjectStore,
    key: &Path,
    payload: bytes::Bytes,
    multipart_threshold: usize,
    give_up: &tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut backoff = Duration::from_millis(50);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let r = if payload.len() > multipart_threshold {
            put_multipart(store, key, payload.clone(), multipart_threshold).await
        } else {
            store
                .put_opts(key, payload.clone().into(), PutOptions::default())
                .await
                .map(|_| ())
        };
        match r {
            Ok(()) => return Ok(()),
            Err(source) => {
                if give_up.is_cancelled() {
                    return Err(Error::Store {
                        op: "put",
                        key: key.to_string(),
                        source,
                    });
                }
                if attempt == 1 || attempt.is_power_of_two() {
                    tracing::warn!(key = %key, attempt, error = %source, "upload failed; retrying");
                }
            }
        }
        let jitter = Duration::from_millis(u64::from(rand_u32() % 100));
        tokio::select! {
            _ = tokio::time::sleep(backoff + jitter) => {}
            _ = give_up.cancelled() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn put_multipart(
    store: &dyn ObjectStore,
    key: &Path,
    payload: bytes::Bytes,
    part: usize,
) -> object_store::Result<()> {
    let upload = store
        .put_multipart_opts(key, PutMultipartOptions::default())
        .await?;
    let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, part);
    writer.put(payload);
    match writer.finish().await {
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}

fn rand_u32() -> u32 {
    // Jitter only needs to differ between brokers and attempts.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id().rotate_left(16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn faulty_store_fails_until_switched_off_and_upload_retries() {
        let faulty = Arc::new(FaultyStore::new(Arc::new(InMemory::new())));
        faulty.set_failing(true);
        let key = Path::from("k");
        assert!(faulty.put(&key, b"x".to_vec().into()).await.is_err());
        let store = faulty.clone();
        let healer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            store.set_failing(false);
        });
        let never = tokio_util::sync::CancellationToken::new();
        upload_with_retry(
            faulty.as_ref(),
            &key,
            bytes::Bytes::from_static(b"hello"),
            1 << 20,
            &never,
        )
        .await
        .unwrap();
        healer.await.unwrap();
        let got = faulty.get(&key).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"hello");
        // Over the threshold the payload goes up in parts (5 MiB is S3's minimum part).
        let big = bytes::Bytes::from(vec![7u8; 11 << 20]);
        upload_with_retry(faulty.as_ref(), &key, big.clone(), 5 << 20, &never)
            .await
            .unwrap();
        assert_eq!(faulty.get(&key).await.unwrap().bytes().await.unwrap(), big);
    }

    #[tokio::test]
    async fn file_and_memory_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/objects", dir.path().display());
        for url in [url.as_str(), "memory://", "memory:///some/prefix"] {
            let store = from_url(url).unwrap();
            let key = Path::from("a/b");
            store.put(&key, b"hello".to_vec().into()).await.unwrap();
            let got = store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(&got[..], b"hello", "{url}");
        }
        assert!(dir.path().join("objects/a/b").exists());
    }

    #[test]
    fn bad_urls_are_explained() {
        for url in ["nonsense", "ftp://x/y", "s3:///no-bucket"] {
            let Err(err) = from_url(url) else {
                panic!("{url} was accepted")
            };
            let err = err.to_string();
            assert!(err.contains(url), "{err}");
        }
    }
}
