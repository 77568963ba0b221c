//! The broker's side of object storage: the commit protocol of `DESIGN.md` (write path steps
//! 4-8) on top of `silt_tiering`'s formats and `silt_metadata`'s catalog. One file per job:
//!
//! - `queue.rs`: [`UploadQueue`], where appends wait to become one multi-partition WAL object.
//! - `uploader.rs`: [`Tier::run_uploader`] cuts, uploads and commits WAL objects, and advances
//!   each partition's recorded prefix (and so its high watermark).
//! - `recorder.rs`: commit records and fencing (the assignment version, extents still ours,
//!   [`Tier::record_now`] for a takeover's kept data).
//! - `archiver.rs`: [`Tier::archive`] moves sealed segments into segment objects and the
//!   manifest.
//! - `retention.rs`: retention on the manifest, garbage collection of unreferenced objects.
//! - `takeover.rs`: [`Tier::recover`] rebuilds a partition from its manifest and recorded tail
//!   (a restart or a takeover); `prefetch.rs` reads many partitions' tails at once.

mod archiver;
mod prefetch;
mod queue;
mod recorder;
mod retention;
mod takeover;
mod uploader;

pub use prefetch::Prefetched;
pub use queue::UploadQueue;
pub use takeover::{LocalLog, Recovered};

use queue::Buffered;
use retention::Unreferenced;

use crate::config::TieringSettings;
use crate::log::partition::{now_ms, Partition, PartitionError};
use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use silt_metadata::catalog::{Catalog, CommitRecord, PartitionRecord, WalExtent};
use silt_metadata::{keys, LeaderEpoch, NodeId, Offset, TopicId};
use silt_tiering::manifest::{Manifest, SegmentRef};
use silt_tiering::read::{ReadConfig, TieredReader};
use silt_tiering::segment::SegmentWriter;
use silt_tiering::store::{ObservedStore, StoreObserver};
use silt_tiering::wal_object::WalObjectBuilder;
use silt_tiering::{layout, store};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

/// Feeds object-store requests into the Prometheus metrics.
#[derive(Debug)]
struct StoreMetrics;

impl StoreObserver for StoreMetrics {
    fn observe(&self, op: &'static str, ok: bool, bytes: u64, took: Duration) {
        let m = crate::metrics::metrics();
        let outcome = if ok { "ok" } else { "error" };
        m.object_store_requests
            .with_label_values(&[op, outcome])
            .inc();
        if bytes > 0 {
            m.object_store_bytes.with_label_values(&[op]).inc_by(bytes);
        }
        if took > Duration::ZERO {
            m.object_store_duration
                .with_label_values(&[op])
                .observe(took.as_secs_f64());
        }
    }
}

pub struct Tier {
    pub store: Arc<dyn ObjectStore>,
    pub reader: Arc<TieredReader>,
    pub uploads: Arc<UploadQueue>,
    catalog: Catalog,
    node: NodeId,
    generation: u64,
    /// The sequence of this generation's last WAL object (the uploader's and takeovers').
    wal_seq: AtomicU64,
    assignment: AtomicU64,
    settings: TieringSettings,
    /// Bumped whenever some partition's recorded prefix moved (wakes acks=all and fetches).
    recorded: watch::Sender<u64>,
    /// Objects no manifest references any more, deleted once the grace period passed.
    graveyard: Mutex<Vec<(Instant, Path)>>,
    /// WAL objects no commit record referenced, by when this broker first saw them so.
    unreferenced: Mutex<Unreferenced>,
    cache_seen: Mutex<(u64, u64)>,
    pub cancel: CancellationToken,
    /// Every partition this broker has open (set by the broker), for stepping down those that
    /// moved when this broker adopts a new assignment version.
    #[allow(clippy::type_complexity)]
    partitions: std::sync::OnceLock<Box<dyn Fn() -> Vec<Arc<Partition>> + Send + Sync>>,
    clustered: std::sync::atomic::AtomicBool,
}

impl Tier {
    /// Opens the object store (wrapped for metrics) and the read cache under `cache_dir`.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        catalog: Catalog,
        node: NodeId,
        settings: TieringSettings,
        cache_dir: std::path::PathBuf,
    ) -> anyhow::Result<Arc<Tier>> {
        let store: Arc<dyn ObjectStore> =
            Arc::new(ObservedStore::new(store, Arc::new(StoreMetrics)));
        let generation = catalog
            .next_generation(node)
            .await
            .context("claim a broker generation")?;
        let assignment = catalog
            .assignment_version(node)
            .await
            .context("read the broker's assignment version")?;
        // The disk cache is a cache: start it empty rather than trust a killed process's files.
        let _ = std::fs::remove_dir_all(&cache_dir);
        let reader = TieredReader::new(
            store.clone(),
            &ReadConfig {
                cache_dir: Some(cache_dir),
                memory_bytes: settings.cache_memory_bytes,
                disk_bytes: settings.cache_disk_bytes,
                concurrency: settings.read_concurrency,
                readahead_blocks: settings.readahead_blocks,
            },
        )
        .await
        .context("open the read cache")?;
        Ok(Arc::new(Tier {
            store,
            reader,
            uploads: UploadQueue::new(settings.max_pending_bytes),
            catalog,
            node,
            generation,
            wal_seq: AtomicU64::new(0),
            assignment: AtomicU64::new(assignment),
            settings,
            recorded: watch::channel(0).0,
            graveyard: Mutex::default(),
            unreferenced: Mutex::default(),
            cache_seen: Mutex::default(),
            cancel: CancellationToken::new(),
            partitions: std::sync::OnceLock::new(),
            clustered: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Changes whenever a recorded prefix moved.
    pub fn subscribe_recorded(&self) -> watch::Receiver<u64> {
        self.recorded.subscribe()
    }

    /// Sets how to list every partition open on this broker.
    pub fn set_partitions(&self, f: Box<dyn Fn() -> Vec<Arc<Partition>> + Send + Sync>) {
        let _ = self.partitions.set(f);
    }

    /// Other brokers can take partitions over: a commit that cannot be resolved steps its
    /// partitions down (instead of retrying until shutdown, the only way on one node).
    pub fn set_clustered(&self) {
        self.clustered.store(true, Ordering::Release);
    }

    /// Wakes everything waiting on recorded prefixes (to re-check, e.g. after leadership moved).
    pub fn notify_recorded(&self) {
        self.recorded.send_modify(|v| *v += 1);
    }

    /// Publishes cache counters and upload lag as metrics.
    pub fn update_metrics(&self) {
        let m = crate::metrics::metrics();
        m.upload_lag_seconds.set(self.uploads.lag().as_secs_f64());
        let hits = self.reader.stats.hits.load(Ordering::Relaxed);
        let misses = self.reader.stats.misses.load(Ordering::Relaxed);
        let mut seen = self.cache_seen.lock().expect("metrics lock");
        m.cache_hits.inc_by(hits.saturating_sub(seen.0));
        m.cache_misses.inc_by(misses.saturating_sub(seen.1));
        *seen = (hits, misses);
    }
}

/// Retries an object-store read a few times (startup recovery; a store that stays down fails
/// the start with the error).
pub(super) async fn with_retries<T, E: std::fmt::Display, F, Fut>(
    what: &str,
    mut f: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut backoff = Duration::from_millis(100);
    for attempt in 1.. {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 6 => {
                tracing::warn!(attempt, error = %e, "{what} failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// A partition on a temporary disk with `batches` batches of 10 records written in epoch 4.
    pub(crate) async fn written(dir: &std::path::Path, batches: usize) -> Arc<Partition> {
        use crate::log::batch::{tests::encode, validate_record_set};
        use crate::log::wal::{MemoryWalStorage, Wal};
        let record = PartitionRecord {
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(4),
            epoch_history: vec![silt_metadata::catalog::EpochEntry {
                epoch: LeaderEpoch(4),
                start_offset: Offset(0),
            }],
            manifest: None,
            manifest_end: Offset(0),
            log_start: Offset(0),
        };
        let defaults = crate::config::LogDefaults::default();
        let config = Arc::new(crate::topic_config::TopicConfig::resolve(
            &defaults,
            &[("silt.durability".to_string(), "local".to_string())]
                .into_iter()
                .collect(),
        ));
        let p = Arc::new(
            Partition::open(dir, "t", TopicId::random(), 0, record, config, None).unwrap(),
        );
        let wal = Wal::start(Box::new(MemoryWalStorage::default()), None);
        for _ in 0..batches {
            let mut bytes = encode(10, kafka_protocol::records::Compression::None);
            let parsed = validate_record_set(&bytes, &crate::log::batch::tests::LIMITS).unwrap();
            let appended = p.append(&mut bytes, &parsed, &wal).unwrap();
            wal.wait_synced(appended.wal_seq).await.unwrap();
        }
        p
    }

    pub(crate) fn history(entries: &[(i32, i64)]) -> PartitionRecord {
        PartitionRecord {
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(entries.last().unwrap().0),
            epoch_history: entries
                .iter()
                .map(|&(epoch, start)| silt_metadata::catalog::EpochEntry {
                    epoch: LeaderEpoch(epoch),
                    start_offset: Offset(start),
                })
                .collect(),
            manifest: None,
            manifest_end: Offset(0),
            log_start: Offset(0),
        }
    }

    pub(crate) fn extent(
        topic: TopicId,
        partition: i32,
        first: i64,
        start: u64,
        len: u64,
    ) -> WalExtent {
        WalExtent {
            topic_id: topic,
            partition,
            epoch: LeaderEpoch(1),
            first: Offset(first),
            last: Offset(first + 9),
            start,
            len,
        }
    }
}
