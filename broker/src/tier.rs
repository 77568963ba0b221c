//! The broker's side of object storage: the commit protocol of `DESIGN.md` (write path steps
//! 4-8) on top of `silt_tiering`'s formats and `silt_metadata`'s catalog.
//!
//! - [`UploadQueue`]: appends land here (under the partition's lock, so in offset order) and
//!   wait to become one multi-partition WAL object.
//! - [`Tier::run_uploader`]: cuts WAL objects by size or age, uploads them (retrying with
//!   backoff), writes one commit record per object conditional on this broker's assignment
//!   version, then advances each partition's recorded prefix and so its high watermark.
//! - [`Tier::archive`]: per partition, uploads sealed, fully recorded segments as segment
//!   objects, commits a new manifest and moves the manifest pointer (epoch-checked), applies
//!   retention to the manifest and evicts local copies.
//! - [`Tier::recover`]: at startup, rebuilds a partition from its manifest and recorded tail
//!   when the local disk lacks data, and re-queues local data that was never recorded.

use crate::config::TieringSettings;
use crate::log::partition::{now_ms, Partition, PartitionError};
use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use silt_metadata::catalog::{Catalog, CommitRecord, PartitionRecord, WalExtent};
use silt_metadata::{LeaderEpoch, NodeId, Offset, TopicId};
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

/// Data waiting to become a WAL object.
#[derive(Default)]
struct Buffered {
    builder: WalObjectBuilder,
    partitions: HashMap<(TopicId, i32), Arc<Partition>>,
    first_at: Option<Instant>,
    /// The WAL append the newest batch was: nothing is committed before the WAL made it durable.
    wal_seq: u64,
}

/// Appends waiting for upload, and the bound on data not yet recorded.
pub struct UploadQueue {
    buffered: Mutex<Buffered>,
    notify: Notify,
    /// Bytes pushed and not yet recorded (buffered and in flight).
    pending_bytes: AtomicUsize,
    acks_all_waiting: AtomicUsize,
    /// When the oldest in-flight object's data was first buffered, by object sequence.
    in_flight: Mutex<HashMap<u64, Instant>>,
    limit: usize,
}

impl UploadQueue {
    pub fn new(limit: usize) -> Arc<UploadQueue> {
        Arc::new(UploadQueue {
            buffered: Mutex::default(),
            notify: Notify::new(),
            pending_bytes: AtomicUsize::new(0),
            acks_all_waiting: AtomicUsize::new(0),
            in_flight: Mutex::default(),
            limit,
        })
    }

    /// Buffers one stamped batch of `p` covering `first..=last`, WAL append `wal_seq` (0: from a
    /// durable copy already). Called under `p`'s lock.
    pub fn push(
        &self,
        p: &Arc<Partition>,
        epoch: i32,
        first: i64,
        last: i64,
        batch: &[u8],
        wal_seq: u64,
    ) {
        let mut b = self.buffered.lock().expect("upload queue lock");
        b.wal_seq = b.wal_seq.max(wal_seq);
        b.builder
            .push(p.topic_id, p.index, epoch, first, last, batch);
        b.partitions
            .entry((p.topic_id, p.index))
            .or_insert_with(|| p.clone());
        b.first_at.get_or_insert_with(Instant::now);
        drop(b);
        self.pending_bytes.fetch_add(batch.len(), Ordering::AcqRel);
        crate::metrics::metrics()
            .upload_lag_bytes
            .add(batch.len() as i64);
        self.notify.notify_one();
    }

    /// Whether local-only data reached its bound (produce answers with a retriable error).
    pub fn over_limit(&self) -> bool {
        self.pending_bytes.load(Ordering::Acquire) >= self.limit
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.load(Ordering::Acquire)
    }

    /// `bytes` were recorded (or will never be): they no longer count against the bound.
    fn release(&self, bytes: usize) {
        self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
        crate::metrics::metrics().upload_lag_bytes.sub(bytes as i64);
    }

    /// An acks=all request starts waiting: upload sooner.
    pub fn acks_all_begin(&self) {
        self.acks_all_waiting.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_one();
    }

    pub fn acks_all_end(&self) {
        self.acks_all_waiting.fetch_sub(1, Ordering::AcqRel);
    }

    fn peek(&self) -> (usize, Option<Instant>) {
        let b = self.buffered.lock().expect("upload queue lock");
        (b.builder.len(), b.first_at)
    }

    fn take(&self) -> Option<Buffered> {
        let mut b = self.buffered.lock().expect("upload queue lock");
        if b.builder.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut *b))
    }

    /// Age of the oldest data not yet recorded.
    fn lag(&self) -> Duration {
        let buffered = self.buffered.lock().expect("upload queue lock").first_at;
        let in_flight = self
            .in_flight
            .lock()
            .expect("upload queue lock")
            .values()
            .min()
            .copied();
        [buffered, in_flight]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::ZERO, |t| t.elapsed())
    }
}

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

/// Parts of WAL objects read once for many partitions' recorded tails (a takeover of many
/// partitions at once: one ranged GET per object instead of one per partition and object).
#[derive(Default)]
pub struct Prefetched {
    ranges: HashMap<String, (u64, Bytes)>,
}

/// Extents of one partition's recorded tail read at the same time during recovery.
const TAIL_READS: usize = 16;

/// Upper bound on what one round of takeovers reads ahead.
const PREFETCH_MAX_BYTES: u64 = 512 << 20;

impl Prefetched {
    /// Reads, for every WAL object holding the tail of two or more of `wanted` (partition and
    /// where its manifest ends), the range covering those tails (16 objects at a time, at most
    /// [`PREFETCH_MAX_BYTES`] in all; the rest is read per extent later).
    pub async fn read(
        store: &Arc<dyn ObjectStore>,
        commits: &[(String, CommitRecord)],
        wanted: &HashMap<(TopicId, i32), i64>,
    ) -> Prefetched {
        let mut per_object: HashMap<&str, (usize, u64, u64)> = HashMap::new();
        for (_, c) in commits {
            for e in &c.extents {
                let Some(&archived_end) = wanted.get(&(e.topic_id, e.partition)) else {
                    continue;
                };
                if e.end().0 <= archived_end {
                    continue;
                }
                let entry = per_object
                    .entry(c.object.as_str())
                    .or_insert((0, u64::MAX, 0));
                entry.0 += 1;
                entry.1 = entry.1.min(e.start);
                entry.2 = entry.2.max(e.start + e.len);
            }
        }
        let mut budget = PREFETCH_MAX_BYTES;
        let mut reads = Vec::new();
        for (object, (count, start, end)) in per_object {
            if count < 2 || end - start > budget {
                continue;
            }
            budget -= end - start;
            reads.push((object.to_string(), start..end));
        }
        use futures::StreamExt;
        let ranges = futures::stream::iter(reads)
            .map(|(object, range)| {
                let store = store.clone();
                async move {
                    let key = Path::from(object.as_str());
                    let got = with_retries("read WAL object", || {
                        let (store, key, range) = (store.clone(), key.clone(), range.clone());
                        async move { store.get_range(&key, range).await }
                    })
                    .await;
                    got.ok().map(|bytes| (object, (range.start, bytes)))
                }
            })
            .buffer_unordered(16)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        Prefetched { ranges }
    }

    fn slice(&self, object: &str, range: &std::ops::Range<u64>) -> Option<Bytes> {
        let (start, bytes) = self.ranges.get(object)?;
        let from = usize::try_from(range.start.checked_sub(*start)?).ok()?;
        let to = from + usize::try_from(range.end - range.start).ok()?;
        (to <= bytes.len()).then(|| bytes.slice(from..to))
    }
}

/// What [`Tier::recover`] does with the local log.
#[derive(Clone, Copy, Debug)]
pub enum LocalLog {
    /// One node: nobody else writes, so the local log is kept where it joins the bucket.
    Keep,
    /// A takeover: rebuilt from the bucket; this broker's own unrecorded data of the last epoch
    /// is recorded in the bucket first, so the rebuild reads it back like the rest.
    Rebuild,
}

/// What [`Tier::recover`] found.
#[derive(Debug)]
pub enum Recovered {
    /// The log is rebuilt: it holds the recorded prefix (`..recorded_end`) and, on one node,
    /// local data never recorded after it (`..log_end`), which the caller re-queues.
    Ready { recorded_end: i64, log_end: i64 },
    /// The commit of kept unrecorded data was fenced: the partition moved meanwhile. Nothing
    /// was changed; the takeover is tried again.
    Moved,
}

/// The local batches of `p` past `recorded_end` a takeover may keep: all of them, if every one
/// was written in the partition's last begun epoch and they follow the recorded end without a
/// gap; otherwise none (dropped with a warning and a metric). Only an epoch's leader writes
/// batches of that epoch, and batches past the recorded end did not come from the bucket: they
/// are this broker's own, and no term began after them, so nobody else wrote those offsets.
fn own_unrecorded(
    p: &Partition,
    record: &PartitionRecord,
    recorded_end: i64,
) -> Result<Vec<(crate::log::batch::BatchHeader, Vec<u8>)>, PartitionError> {
    let local_end = p.log_end();
    if local_end <= recorded_end {
        return Ok(Vec::new());
    }
    let batches = p.read_local_range(recorded_end, local_end)?;
    let last = record.epoch_history.last();
    let kept = last.is_some_and(|last| {
        last.start_offset.0 <= recorded_end
            && batches
                .first()
                .is_some_and(|(h, _)| h.base_offset == recorded_end)
            && batches
                .iter()
                .all(|(h, _)| h.partition_leader_epoch == last.epoch.0)
    });
    if kept {
        return Ok(batches);
    }
    let epochs: std::collections::BTreeSet<i32> = batches
        .iter()
        .map(|(h, _)| h.partition_leader_epoch)
        .collect();
    tracing::warn!(
        topic = %p.topic,
        partition = p.index,
        from = recorded_end,
        to = local_end,
        ?epochs,
        last_epoch = last.map(|e| e.epoch.0),
        "dropping local data the bucket never recorded: it is not all of the last epoch begun, or it does not follow the recorded end (another term may have written those offsets)"
    );
    crate::metrics::metrics()
        .unrecorded_offsets_dropped
        .inc_by((local_end - recorded_end) as u64);
    Ok(Vec::new())
}

/// Cuts extent `e` of a WAL object (`object`) to its batches that end at or before `synced`
/// (a partition's durable end); returns the bytes cut. A batch never straddles the cut: the
/// WAL makes whole batches durable.
fn durable_prefix(e: &mut WalExtent, object: &[u8], synced: i64) -> u64 {
    if e.end().0 <= synced {
        return 0;
    }
    let (start, len) = (e.start as usize, e.len as usize);
    let data = object.get(start..start + len).unwrap_or_default();
    let mut kept = 0;
    let mut last = None;
    for (pos, h) in silt_tiering::batch::batches(data) {
        if h.last_offset() >= synced {
            break;
        }
        kept = pos + h.total_size();
        last = Some(h.last_offset());
    }
    let cut = e.len - kept as u64;
    e.len = kept as u64;
    if let Some(last) = last {
        e.last = Offset(last);
    }
    cut
}

/// Attempts at one WAL object's commit before a broker in a cluster gives its partitions up
/// (with the 2 s backoff cap, about two minutes).
const COMMIT_ATTEMPTS: u32 = 64;
/// Attempts at the commit of data a takeover keeps (the takeover itself is retried after).
const RECORD_NOW_ATTEMPTS: u32 = 8;
/// The longest [`Tier::record_now`] tries to upload its object before the takeover gives up
/// (and is tried again at the next leadership round, the local log untouched).
const RECORD_NOW_UPLOAD_DEADLINE: Duration = Duration::from_secs(30);

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

    /// Fences this broker's own commits in flight (before it takes over partitions it may have
    /// led earlier in this run): they fail and are re-committed only for partitions still led.
    pub async fn fence_own_commits(&self) -> silt_metadata::Result<()> {
        let version = self.catalog.bump_assignment_version(self.node).await?;
        self.adopt_assignment(version).await.map(|_| ())
    }

    /// Whether extent `e` of `p` may still be committed by this broker. In a cluster: only while
    /// it leads `p` in the epoch the data was written in (any other term may have reused the
    /// offsets). On one node nobody else writes: data re-queued after a restart carries the
    /// epoch before it and is still this broker's.
    fn still_ours(&self, p: &Partition, e: &WalExtent) -> bool {
        if self.clustered.load(Ordering::Acquire) {
            p.leading_in(e.epoch.0)
        } else {
            p.leading()
        }
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

    /// Commits from now on use assignment version `version` (read before this call). First,
    /// every partition led here whose record (read now, after the version) names another
    /// leader or epoch is stepped down: a move this broker has not noticed yet must not let
    /// its later data be committed under the new version.
    async fn adopt_assignment(
        &self,
        version: u64,
    ) -> silt_metadata::Result<HashMap<(TopicId, i32), PartitionRecord>> {
        let records: HashMap<(TopicId, i32), PartitionRecord> = self
            .catalog
            .all_partitions()
            .await?
            .into_iter()
            .map(|v| ((v.topic_id, v.partition), v.record))
            .collect();
        let mut stepped = 0;
        for p in self.partitions.get().map(|f| f()).unwrap_or_default() {
            let Some(epoch) = p.leader_term() else {
                continue;
            };
            let still = records
                .get(&(p.topic_id, p.index))
                .is_some_and(|r| r.leader == self.node && r.leader_epoch == epoch);
            if !still {
                p.set_leading(false);
                stepped += 1;
                tracing::info!(topic = %p.topic, partition = p.index, "stepped down: the partition moved (found while adopting a new assignment version)");
            }
        }
        if stepped > 0 {
            self.notify_recorded();
        }
        self.assignment.fetch_max(version, Ordering::AcqRel);
        Ok(records)
    }

    /// Wakes everything waiting on recorded prefixes (to re-check, e.g. after leadership moved).
    pub fn notify_recorded(&self) {
        self.recorded.send_modify(|v| *v += 1);
    }

    /// After a fenced commit: reads the assignment version (first, so that any move after this
    /// read fails the next commit again), adopts it (stepping down what moved), and returns the
    /// extents whose partitions this broker still leads in the extent's epoch.
    async fn still_led(&self, extents: &[WalExtent]) -> silt_metadata::Result<Vec<WalExtent>> {
        let assignment = self.catalog.assignment_version(self.node).await?;
        let records = self.adopt_assignment(assignment).await?;
        Ok(extents
            .iter()
            // (The local check, `still_ours`, runs before every commit attempt.)
            .filter(|e| {
                records
                    .get(&(e.topic_id, e.partition))
                    .is_some_and(|r| r.leader == self.node && r.leader_epoch == e.epoch)
            })
            .cloned()
            .collect())
    }

    /// Rebuilds what the local disk lacks from the bucket. With [`LocalLog::Keep`] local data
    /// never recorded stays (the caller re-queues it). With [`LocalLog::Rebuild`] the local log
    /// is dropped and rebuilt from the manifest and the recorded tail (a takeover: local data
    /// may come from an older term that another leader overwrote); this broker's own
    /// unrecorded data of the last epoch is recorded in the bucket before anything local is
    /// cut, so a failed read, a crash or a WAL checkpoint during the rebuild cannot lose it.
    pub async fn recover(
        &self,
        p: &Arc<Partition>,
        record: &PartitionRecord,
        commits: &[(String, CommitRecord)],
        local: LocalLog,
        prefetched: &Prefetched,
    ) -> anyhow::Result<Recovered> {
        let mut manifest = match &record.manifest {
            Some(key) => {
                let path = Path::from(key.as_str());
                with_retries("read manifest", || {
                    Manifest::get(self.store.as_ref(), &path)
                })
                .await
                .with_context(|| format!("read manifest {key}"))?
            }
            None => Manifest::empty(p.topic_id, p.index),
        };
        manifest.log_start = manifest.log_start.max(record.log_start);
        let archived_end = manifest.end().0;
        // Declared before `tail`, which borrows it.
        let own: Option<(CommitRecord, Bytes)>;
        let mut tail: Vec<(&str, &WalExtent)> = commits
            .iter()
            .flat_map(|(_, c)| c.extents.iter().map(move |e| (c.object.as_str(), e)))
            .filter(|(_, e)| {
                e.topic_id == p.topic_id && e.partition == p.index && e.end().0 > archived_end
            })
            .collect();
        // An extent that starts where a later epoch had already begun was written by a leader
        // that had been replaced (fencing keeps such commits out; this is the second guard).
        tail.retain(|(object, e)| {
            let stale = record
                .epoch_history
                .iter()
                .any(|h| h.epoch > e.epoch && h.start_offset <= e.first);
            if stale {
                tracing::warn!(topic = %p.topic, partition = p.index, %object, epoch = e.epoch.0, first = e.first.0, "ignoring a recorded extent of a replaced leader");
            }
            !stale
        });
        tail.sort_by_key(|(_, e)| e.first);
        let mut recorded_end = archived_end;
        for (_, e) in &tail {
            if e.first.0 > recorded_end {
                break;
            }
            recorded_end = recorded_end.max(e.end().0);
        }
        if let LocalLog::Rebuild = local {
            let kept = own_unrecorded(p, record, recorded_end)?;
            own = match kept.last() {
                None => None,
                Some((last, _)) => {
                    // Recorded in the epoch it was written in, before the local log goes: from
                    // here on the bucket holds it like the rest of the tail.
                    let to = last.last_offset() + 1;
                    let Some(recorded) = self.record_now(p, recorded_end, to).await? else {
                        return Ok(Recovered::Moved);
                    };
                    tracing::info!(topic = %p.topic, partition = p.index, from = recorded_end, to, batches = kept.len(), object = %recorded.0.object, "recorded this broker's own unrecorded data of the partition's last epoch");
                    Some(recorded)
                }
            };
            if let Some((commit, _)) = &own {
                tail.extend(commit.extents.iter().map(|e| (commit.object.as_str(), e)));
                recorded_end =
                    recorded_end.max(commit.extents.iter().map(|e| e.end().0).max().unwrap_or(0));
            }
            p.reset_local(archived_end)?;
        } else {
            own = None;
        }
        let local_end = p.log_end();
        // The local log must join the archived segments without a gap.
        let joins = p.local_start() <= archived_end && local_end >= archived_end;
        if !joins && local_end > archived_end {
            tracing::warn!(topic = %p.topic, partition = p.index, archived_end, local_start = p.local_start(), local_end, "local log does not join the bucket's segments; rebuilding it from the bucket (local data never recorded is dropped)");
        }
        if local_end < recorded_end || !joins {
            let from = if joins {
                local_end
            } else {
                tracing::info!(topic = %p.topic, partition = p.index, archived_end, local_end, "local log does not reach the bucket's manifest; rebuilding it from the bucket");
                p.reset_local(archived_end)?;
                archived_end
            };
            // Read up to TAIL_READS extents at once (a tail can be hundreds of small extents),
            // replay in order.
            let wanted: Vec<(String, std::ops::Range<u64>)> = tail
                .iter()
                .filter(|(_, e)| e.end().0 > from && e.first.0 <= recorded_end)
                .map(|(object, e)| (object.to_string(), e.start..e.start + e.len))
                .collect();
            let store = self.store.clone();
            let mut reads = futures::stream::iter(wanted)
                .map(|(object, range)| {
                    let ahead = match &own {
                        // Just written: read from memory.
                        Some((commit, bytes)) if commit.object == object => {
                            usize::try_from(range.start)
                                .ok()
                                .zip(usize::try_from(range.end).ok())
                                .filter(|&(_, end)| end <= bytes.len())
                                .map(|(start, end)| bytes.slice(start..end))
                        }
                        _ => prefetched.slice(&object, &range),
                    };
                    let store = store.clone();
                    async move {
                        if let Some(bytes) = ahead {
                            return Ok(bytes);
                        }
                        let key = Path::from(object.as_str());
                        with_retries("read WAL object", || {
                            let (store, key, range) = (store.clone(), key.clone(), range.clone());
                            async move { store.get_range(&key, range).await }
                        })
                        .await
                        .with_context(|| format!("read {object}"))
                    }
                })
                .buffered(TAIL_READS);
            let mut replayed = 0;
            while let Some(bytes) = reads.next().await {
                let bytes = bytes?;
                for (pos, h) in silt_tiering::batch::batches(&bytes) {
                    if h.last_offset() < from {
                        continue;
                    }
                    p.replay(&bytes[pos..pos + h.total_size()])?;
                    replayed += 1;
                }
            }
            tracing::info!(topic = %p.topic, partition = p.index, from, to = recorded_end, batches = replayed, "replayed the recorded tail from WAL objects");
            anyhow::ensure!(
                p.log_end() >= recorded_end,
                "{}-{}: the recorded tail ends at {recorded_end} but its WAL objects only gave data up to {}",
                p.topic,
                p.index,
                p.log_end()
            );
        }
        p.set_manifest(manifest);
        p.init_recorded(recorded_end);
        p.note_tail_extents(
            tail.iter()
                .filter(|(_, e)| e.first.0 >= archived_end && e.first.0 < recorded_end)
                .map(|(_, e)| e.first.0),
        );
        Ok(Recovered::Ready {
            recorded_end,
            log_end: p.log_end(),
        })
    }

    /// Queues local batches `from..to` (recorded nowhere yet) for upload.
    pub fn requeue(&self, p: &Arc<Partition>, from: i64, to: i64) -> Result<usize, PartitionError> {
        if from >= to {
            return Ok(0);
        }
        let batches = p.read_local_range(from, to)?;
        for (h, bytes) in &batches {
            self.uploads.push(
                p,
                h.partition_leader_epoch,
                h.base_offset,
                h.last_offset(),
                bytes,
                0,
            );
        }
        if !batches.is_empty() {
            tracing::info!(topic = %p.topic, partition = p.index, from, to, "re-queued local data that was never recorded");
        }
        Ok(batches.len())
    }

    /// Records local batches `from..to` of `p` now, as one WAL object of their own and a
    /// commit record conditional on this broker's assignment version, in the epoch they were
    /// written in, and returns the commit and the object's bytes. For a takeover that keeps
    /// this broker's own unrecorded data (it led the partition's last epoch and nobody began
    /// one since): the data is recorded before the local log is rebuilt and before the new
    /// term begins, so every term still begins at the recorded end. `Ok(None)`: fenced (the
    /// partition moved meanwhile); nothing was recorded.
    pub async fn record_now(
        &self,
        p: &Arc<Partition>,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Option<(CommitRecord, Bytes)>> {
        let batches = p.read_local_range(from, to)?;
        let mut builder = WalObjectBuilder::default();
        for (h, bytes) in &batches {
            builder.push(
                p.topic_id,
                p.index,
                h.partition_leader_epoch,
                h.base_offset,
                h.last_offset(),
                bytes,
            );
        }
        anyhow::ensure!(
            !builder.is_empty(),
            "{}-{}: no local batches in {from}..{to} to record",
            p.topic,
            p.index
        );
        let (bytes, extents) = builder.finish();
        let seq = self.wal_seq.fetch_add(1, Ordering::AcqRel) + 1;
        // In flight: the garbage collector leaves the object alone until it is committed.
        self.uploads
            .in_flight
            .lock()
            .expect("upload queue lock")
            .insert(seq, Instant::now());
        let result = self.commit_own_object(seq, bytes.clone(), extents).await;
        self.uploads
            .in_flight
            .lock()
            .expect("upload queue lock")
            .remove(&seq);
        let Some(record) = result? else {
            return Ok(None);
        };
        for e in &record.extents {
            p.mark_recorded(e.first.0, e.end().0);
        }
        crate::metrics::metrics().wal_objects.inc();
        self.recorded.send_modify(|v| *v += 1);
        Ok(Some((record, bytes)))
    }

    /// Uploads WAL object `seq` and writes its commit record (retrying an unknown outcome a
    /// bounded number of times); `None` when the commit was fenced.
    async fn commit_own_object(
        &self,
        seq: u64,
        bytes: Bytes,
        extents: Vec<WalExtent>,
    ) -> anyhow::Result<Option<CommitRecord>> {
        let key = layout::wal_object_key(self.node, self.generation, seq);
        // Bounded: a takeover waits on this, and a store that refuses every PUT must not hold
        // the leadership round (and the controller's work) forever; the takeover is retried.
        tokio::time::timeout(
            RECORD_NOW_UPLOAD_DEADLINE,
            store::upload_with_retry(self.store.as_ref(), &key, bytes, usize::MAX, &self.cancel),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no upload within {RECORD_NOW_UPLOAD_DEADLINE:?}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("upload {key}"))?;
        let commit_key = Catalog::commit_key(self.node, self.generation, seq);
        let record = CommitRecord {
            object: key.to_string(),
            extents,
        };
        let assignment = self.assignment.load(Ordering::Acquire);
        let mut backoff = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self
                .catalog
                .commit_wal_object(self.node, assignment, &commit_key, &record)
                .await
            {
                Ok(()) => return Ok(Some(record)),
                Err(silt_metadata::Error::Fenced { reason, .. }) => {
                    tracing::info!(%commit_key, %reason, "commit of kept unrecorded data fenced");
                    return Ok(None);
                }
                Err(error) => error,
            };
            // The outcome is unknown until the record is read back.
            match self.catalog.commit_record(&commit_key).await {
                Ok(Some(_)) => return Ok(Some(record)),
                _ if attempt >= RECORD_NOW_ATTEMPTS => {
                    return Err(error).with_context(|| format!("commit {commit_key}"))
                }
                _ => {
                    tracing::warn!(%commit_key, %error, attempt, "commit of kept unrecorded data failed; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Cuts and uploads WAL objects until cancelled.
    pub async fn run_uploader(self: Arc<Self>, wal: Arc<crate::log::wal::Wal>) {
        let slots = Arc::new(Semaphore::new(self.settings.upload_concurrency.max(1)));
        let max_delay = Duration::from_millis(self.settings.wal_max_delay_ms);
        let acks_delay = Duration::from_millis(self.settings.wal_acks_all_delay_ms).min(max_delay);
        loop {
            // Wait until an object is due: by size, by age, or sooner for acks=all.
            loop {
                let (len, first_at) = self.uploads.peek();
                let delay = if self.uploads.acks_all_waiting.load(Ordering::Acquire) > 0 {
                    acks_delay
                } else {
                    max_delay
                };
                let due = first_at.map(|t| t + delay);
                if len >= self.settings.wal_object_bytes || due.is_some_and(|d| d <= Instant::now())
                {
                    break;
                }
                let sleep = async {
                    match due {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = self.uploads.notify.notified() => {}
                    _ = sleep => {}
                }
            }
            let permit = tokio::select! {
                _ = self.cancel.cancelled() => return,
                p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            let Some(buffered) = self.uploads.take() else {
                continue;
            };
            let seq = self.wal_seq.fetch_add(1, Ordering::AcqRel) + 1;
            let first_at = buffered.first_at.unwrap_or_else(Instant::now);
            self.uploads
                .in_flight
                .lock()
                .expect("upload queue lock")
                .insert(seq, first_at);
            let (this, wal) = (self.clone(), wal.clone());
            tokio::spawn(async move {
                this.upload_wal_object(seq, buffered, &wal).await;
                this.uploads
                    .in_flight
                    .lock()
                    .expect("upload queue lock")
                    .remove(&seq);
                drop(permit);
            });
        }
    }

    async fn upload_wal_object(&self, seq: u64, buffered: Buffered, wal: &crate::log::wal::Wal) {
        let (bytes, mut extents) = buffered.builder.finish();
        let data_bytes: u64 = extents.iter().map(|e| e.len).sum();
        let key = layout::wal_object_key(self.node, self.generation, seq);
        if let Err(error) = store::upload_with_retry(
            self.store.as_ref(),
            &key,
            bytes.clone(),
            usize::MAX,
            &self.cancel,
        )
        .await
        {
            tracing::warn!(%key, %error, "WAL object not uploaded before shutdown; the local WAL keeps the data");
            return;
        }
        // Nothing becomes visible that the local WAL refused: the commit waits for the WAL to
        // make every batch in the object durable (usually long done: the PUT takes longer).
        let durable = tokio::select! {
            _ = self.cancel.cancelled() => return,
            r = wal.wait_synced(buffered.wal_seq) => r,
        };
        if let Err(failed) = durable {
            // Some of it may be durable all the same (and acknowledged: acks=1, or a `local`
            // topic): a partition's synced end covers exactly what the WAL made durable, and
            // nothing is written past it once the WAL has failed. Only that part is committed.
            let refused: u64 = extents
                .iter_mut()
                .map(|e| {
                    let synced = buffered
                        .partitions
                        .get(&(e.topic_id, e.partition))
                        .map_or(i64::MIN, |p| p.synced_end());
                    durable_prefix(e, &bytes, synced)
                })
                .sum();
            extents.retain(|e| e.len > 0);
            if extents.is_empty() {
                tracing::error!(%key, reason = %failed.0, "the WAL failed before this object's data was durable; the object is not committed");
                self.uploads.release(data_bytes as usize);
                self.notify_recorded();
                return;
            }
            tracing::warn!(%key, reason = %failed.0, refused_bytes = refused, "the WAL failed before all of this object's data was durable; committing only the durable part");
        }
        let commit_key = Catalog::commit_key(self.node, self.generation, seq);
        let mut record = CommitRecord {
            object: key.to_string(),
            extents,
        };
        let mut backoff = Duration::from_millis(20);
        let mut fenced_rounds = 0;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            if attempts > COMMIT_ATTEMPTS && self.clustered.load(Ordering::Acquire) {
                // Unresolved (the store keeps failing, or the outcome stays unknown): step down
                // from these partitions rather than acknowledge or reuse anything. Takeover
                // fences this broker's commits and reads the truth before serving again.
                tracing::error!(%commit_key, attempts, "WAL object commit unresolved; stepping down from its partitions");
                for e in &record.extents {
                    if let Some(p) = buffered.partitions.get(&(e.topic_id, e.partition)) {
                        p.set_leading(false);
                    }
                }
                self.uploads.release(data_bytes as usize);
                self.notify_recorded();
                return;
            }
            let assignment = self.assignment.load(Ordering::Acquire);
            // Only data of partitions still led here in the epoch it was written in (checked
            // after reading the version: a step-down comes before any fence of this broker).
            record.extents.retain(|e| {
                buffered
                    .partitions
                    .get(&(e.topic_id, e.partition))
                    .is_some_and(|p| self.still_ours(p, e))
            });
            if record.extents.is_empty() {
                self.uploads.release(data_bytes as usize);
                return;
            }
            match self
                .catalog
                .commit_wal_object(self.node, assignment, &commit_key, &record)
                .await
            {
                Ok(()) => break,
                Err(silt_metadata::Error::Fenced { reason, .. }) => {
                    // A partition was taken from this broker. The data of partitions it still
                    // leads (in the epoch the data was written in) is committed again under the
                    // new assignment version; the rest never becomes visible.
                    fenced_rounds += 1;
                    match self.still_led(&record.extents).await {
                        Ok(kept) if fenced_rounds <= 8 => {
                            tracing::warn!(%commit_key, %reason, kept = kept.len(), dropped = record.extents.len() - kept.len(), "WAL object commit fenced; committing the extents of partitions still led here again");
                            record.extents = kept;
                            if record.extents.is_empty() {
                                self.uploads.release(data_bytes as usize);
                                return;
                            }
                            continue;
                        }
                        Ok(_) => {
                            tracing::error!(%commit_key, %reason, "WAL object commit fenced again and again; its data stays unrecorded");
                            self.uploads.release(data_bytes as usize);
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(%commit_key, %reason, %error, "WAL object commit fenced; reading what this broker still leads failed; retrying");
                        }
                    }
                }
                Err(error) => {
                    // The outcome is unknown until the record is read back.
                    match self.catalog.commit_record(&commit_key).await {
                        Ok(Some(_)) => break,
                        Ok(None) => {
                            tracing::warn!(%commit_key, %error, "WAL object commit failed; retrying")
                        }
                        Err(read_error) => {
                            tracing::warn!(%commit_key, %error, %read_error, "WAL object commit outcome unknown; retrying")
                        }
                    }
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        for e in &record.extents {
            if let Some(p) = buffered.partitions.get(&(e.topic_id, e.partition)) {
                p.mark_recorded(e.first.0, e.end().0);
            }
        }
        self.uploads.release(data_bytes as usize);
        crate::metrics::metrics().wal_objects.inc();
        self.recorded.send_modify(|v| *v += 1);
    }

    /// Waits (up to `deadline`) until everything queued so far is recorded.
    pub async fn flush(&self, deadline: Duration) -> bool {
        self.uploads.acks_all_begin();
        let mut recorded = self.subscribe_recorded();
        let done = tokio::time::timeout(deadline, async {
            while self.uploads.pending_bytes() > 0 {
                if recorded.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .is_ok();
        self.uploads.acks_all_end();
        done
    }

    /// One pass over a partition: archive sealed segments, apply retention, evict local copies.
    pub async fn archive(&self, p: &Arc<Partition>) -> anyhow::Result<()> {
        // The term this pass works for: manifest moves are checked against it, so a pass that
        // outlives this broker's leadership (even one regained later) cannot move the pointer.
        let Some(epoch) = p.leader_term() else {
            return Ok(());
        };
        let config = p.config();
        let (unarchived, oldest, count) = p.unarchived();
        let tail_too_old = oldest
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= Duration::from_millis(self.settings.tail_max_ms));
        // A long tail of small extents is a slow takeover (a GET each): archive it too.
        let tail_too_long = p.tail_extents() >= self.settings.tail_max_extents;
        if count == 1
            && (unarchived >= self.settings.tail_max_bytes || tail_too_old || tail_too_long)
        {
            p.roll()?;
        }
        for _ in 0..16 {
            let Some((base, end, file, size)) = p.archivable() else {
                break;
            };
            self.archive_segment(p, epoch, base, end, file, size)
                .await?;
        }
        if config.deletes_by_retention() {
            self.apply_retention(p, epoch, config.retention_ms, config.retention_bytes)
                .await?;
        }
        let evicted = p.evict_local(
            config.local_retention_bytes,
            config.local_retention_ms,
            now_ms(),
        );
        if evicted > 0 {
            tracing::debug!(topic = %p.topic, partition = p.index, bytes = evicted, "evicted local segment copies");
        }
        Ok(())
    }

    async fn archive_segment(
        &self,
        p: &Arc<Partition>,
        epoch: LeaderEpoch,
        base: i64,
        end: i64,
        file: Arc<std::fs::File>,
        size: u64,
    ) -> anyhow::Result<()> {
        let key = layout::segment_key(p.topic_id, p.index, Offset(base), Offset(end), epoch);
        let (object_len, max_timestamp) = self.upload_segment(&key, base, file, size).await?;
        let producers = p.producer_snapshot_at(end)?;
        let current = p.manifest();
        let mut next = current.clone();
        next.epoch = epoch;
        next.seq = current.seq + 1;
        next.log_start = current.log_start.max(Offset(p.log_start()));
        next.segments.push(SegmentRef {
            key: key.to_string(),
            base: Offset(base),
            end: Offset(end),
            size: object_len,
            max_timestamp,
            epoch,
        });
        next.epoch_history = p.record().epoch_history;
        next.producers = Some(producers);
        if let Err(error) = self.commit_manifest(p, epoch, &current, next).await {
            self.bury(key);
            return Err(error);
        }
        crate::metrics::metrics().segments_uploaded.inc();
        tracing::debug!(topic = %p.topic, partition = p.index, base, end, %key, "archived segment");
        Ok(())
    }

    /// Streams a local segment file into a segment object; returns its size and max timestamp.
    async fn upload_segment(
        &self,
        key: &Path,
        base: i64,
        file: Arc<std::fs::File>,
        size: u64,
    ) -> anyhow::Result<(u64, i64)> {
        const CHUNK: u64 = 4 * 1024 * 1024;
        let mut writer = SegmentWriter::new(base);
        let small = size <= self.settings.multipart_bytes as u64;
        let mut whole = Vec::new();
        let mut multipart = if small {
            whole.extend_from_slice(&SegmentWriter::header());
            None
        } else {
            let upload = self
                .store
                .put_multipart(key)
                .await
                .with_context(|| format!("start multipart upload of {key}"))?;
            let mut w = object_store::WriteMultipart::new_with_chunk_size(
                upload,
                self.settings.multipart_bytes,
            );
            w.write(&SegmentWriter::header());
            Some(w)
        };
        let mut pos = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        while pos < size {
            let n = CHUNK.min(size - pos);
            let chunk = {
                let file = file.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    let mut buf = vec![0u8; n as usize];
                    file.read_exact_at(&mut buf, pos)?;
                    Ok(buf)
                })
                .await??
            };
            pos += n;
            carry.extend_from_slice(&chunk);
            let whole_batches = silt_tiering::batch::batches(&carry)
                .last()
                .map_or(0, |(at, h)| at + h.total_size());
            anyhow::ensure!(
                whole_batches > 0 || carry.len() <= 2 * CHUNK as usize + (64 << 20),
                "segment file of {key} holds no whole batch in {} bytes",
                carry.len()
            );
            writer.add(&carry[..whole_batches])?;
            match &mut multipart {
                Some(w) => {
                    w.wait_for_capacity(2).await?;
                    w.write(&carry[..whole_batches]);
                }
                None => whole.extend_from_slice(&carry[..whole_batches]),
            }
            carry.drain(..whole_batches);
        }
        anyhow::ensure!(
            carry.is_empty(),
            "segment file of {key} ends inside a batch ({} bytes left)",
            carry.len()
        );
        let max_timestamp = writer.max_timestamp();
        let footer = writer.finish();
        let object_len = match multipart {
            Some(mut w) => {
                w.write(&footer);
                let len = SegmentWriter::header().len() as u64 + size + footer.len() as u64;
                w.finish()
                    .await
                    .with_context(|| format!("finish upload of {key}"))?;
                len
            }
            None => {
                whole.extend_from_slice(&footer);
                let len = whole.len() as u64;
                self.store
                    .put(key, Bytes::from(whole).into())
                    .await
                    .with_context(|| format!("upload {key}"))?;
                len
            }
        };
        Ok((object_len, max_timestamp))
    }

    /// Writes `next` to the bucket and moves the partition's manifest pointer to it (only if
    /// the partition's leader epoch is still ours), then installs it locally.
    async fn commit_manifest(
        &self,
        p: &Arc<Partition>,
        epoch: LeaderEpoch,
        current: &Manifest,
        mut next: Manifest,
    ) -> anyhow::Result<()> {
        next.archived_end = next.end();
        let key = match next.put(self.store.as_ref()).await {
            Ok(key) => key,
            Err(error) => {
                // The key may be taken by an attempt whose pointer update failed: skip it.
                self.skip_manifest_seq(p, next.seq);
                return Err(error).context("write manifest");
            }
        };
        let manifest_end = next.end();
        let log_start = next.log_start;
        let updated = self
            .catalog
            .update_partition(p.topic_id, p.index, epoch, |r| {
                Some(PartitionRecord {
                    manifest: Some(key.to_string()),
                    manifest_end,
                    log_start: r.log_start.max(log_start),
                    ..r.clone()
                })
            })
            .await;
        let stored = match updated {
            Ok(stored) => stored,
            Err(error) => {
                // The outcome may be unknown: adopt the new manifest if the pointer moved.
                match self.catalog.partition(p.topic_id, p.index).await {
                    Ok(Some(v)) if v.record.manifest.as_deref() == Some(key.as_ref()) => v.record,
                    _ => {
                        self.skip_manifest_seq(p, next.seq);
                        self.bury(key);
                        return Err(error).context("move the manifest pointer");
                    }
                }
            }
        };
        p.set_record(stored);
        p.set_manifest(next);
        if current.seq > 0 || !current.segments.is_empty() {
            self.bury(current.key());
        }
        Ok(())
    }

    /// Drops segment objects past `retention.ms` / `retention.bytes` or below the log start from
    /// the manifest (manifest first; the objects go after the grace period).
    async fn apply_retention(
        &self,
        p: &Arc<Partition>,
        epoch: LeaderEpoch,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> anyhow::Result<()> {
        let current = p.manifest();
        let log_start = p.log_start();
        let (unarchived, _, _) = p.unarchived();
        let now = now_ms();
        let mut total: u64 = current.segments.iter().map(|s| s.size).sum::<u64>() + unarchived;
        let mut drop = 0;
        for seg in &current.segments {
            let below_start = seg.end.0 <= log_start;
            let by_time = retention_ms >= 0
                && seg.max_timestamp >= 0
                && now - seg.max_timestamp > retention_ms;
            let by_size = retention_bytes >= 0 && total - seg.size >= retention_bytes as u64;
            if !(below_start || by_time || by_size) {
                break;
            }
            total -= seg.size;
            drop += 1;
        }
        let new_start = match current.segments.get(drop) {
            Some(s) if drop > 0 => s.base.0.max(log_start),
            None if drop > 0 => current.end().0.max(log_start),
            _ => log_start,
        };
        if drop == 0 && current.log_start.0 >= new_start {
            return Ok(());
        }
        let mut next = current.clone();
        let dropped: Vec<SegmentRef> = next.segments.drain(..drop).collect();
        next.seq = current.seq + 1;
        next.epoch = p.leader_epoch();
        next.log_start = Offset(new_start.max(current.log_start.0));
        self.commit_manifest(p, epoch, &current, next).await?;
        for seg in dropped {
            tracing::info!(topic = %p.topic, partition = p.index, base = seg.base.0, end = seg.end.0, "retention dropped segment object");
            self.reader.forget(&seg.key);
            self.bury(Path::from(seg.key));
        }
        Ok(())
    }

    /// Makes the next manifest of `p` use a sequence number above `seq`.
    fn skip_manifest_seq(&self, p: &Partition, seq: u64) {
        let mut m = p.manifest();
        m.seq = m.seq.max(seq);
        p.set_manifest(m);
    }

    fn bury(&self, key: Path) {
        let at = Instant::now() + Duration::from_millis(self.settings.gc_grace_ms);
        self.graveyard
            .lock()
            .expect("graveyard lock")
            .push((at, key));
    }

    /// Deletes buried objects whose grace period passed.
    pub async fn sweep_graveyard(&self) {
        let due: Vec<Path> = {
            let mut g = self.graveyard.lock().expect("graveyard lock");
            let now = Instant::now();
            let (due, keep): (Vec<_>, Vec<_>) = g.drain(..).partition(|(at, _)| *at <= now);
            *g = keep;
            due.into_iter().map(|(_, k)| k).collect()
        };
        for key in due {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    tracing::warn!(%key, %error, "deleting an unreferenced object failed; will retry");
                    self.bury(key);
                }
            }
        }
    }

    /// Deletes this broker's commit records whose extents are all archived (`archived_end`
    /// gives a partition's manifest end, `None` for a deleted partition), then WAL objects no
    /// commit record references that are older than the grace period.
    pub async fn collect_garbage(
        &self,
        archived_end: impl Fn(TopicId, i32) -> Option<i64>,
    ) -> anyhow::Result<()> {
        let records = self.catalog.commit_records().await?;
        let mine = format!("/silt/commits/{:05}/", self.node.0);
        let done: Vec<String> = records
            .iter()
            .filter(|(k, _)| k.starts_with(&mine))
            .filter(|(_, c)| {
                c.extents.iter().all(|e| {
                    archived_end(e.topic_id, e.partition).is_none_or(|end| end >= e.end().0)
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !done.is_empty() {
            self.catalog.delete_commit_records(&done).await?;
        }
        let live: std::collections::HashSet<&str> = records
            .iter()
            .filter(|(k, _)| !done.contains(k))
            .map(|(_, c)| c.object.as_str())
            .collect();
        use futures::TryStreamExt;
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&layout::wal_prefix()))
            .try_collect()
            .await?;
        let in_flight: std::collections::HashSet<u64> = self
            .uploads
            .in_flight
            .lock()
            .expect("upload queue lock")
            .keys()
            .copied()
            .collect();
        let mut candidates = Vec::new();
        for meta in objects {
            if live.contains(meta.location.as_ref()) {
                continue;
            }
            // Only this broker's objects, and never one whose commit is still being tried.
            let Some((node, generation, seq)) = parse_wal_key(meta.location.as_ref()) else {
                continue;
            };
            if node != self.node.0 || (generation == self.generation && in_flight.contains(&seq)) {
                continue;
            }
            candidates.push(meta.location.to_string());
        }
        // No wall clock is compared with the object's last_modified (the store's clock): a
        // broker whose clock ran ahead would delete objects just committed. An object is
        // deleted once this broker has seen it unreferenced for the grace period.
        let due = self.unreferenced.lock().expect("unreferenced lock").due(
            candidates,
            Duration::from_millis(self.settings.gc_grace_ms),
            Instant::now(),
        );
        for key in due {
            if let Err(error) = self.store.delete(&Path::from(key.as_str())).await {
                tracing::warn!(%key, %error, "deleting an unreferenced WAL object failed");
            }
        }
        Ok(())
    }

    /// Deletes every object of a deleted topic (bounded retries; leftovers are logged).
    pub async fn delete_topic_objects(&self, topic: TopicId) {
        use futures::TryStreamExt;
        let prefix = layout::topic_prefix(topic);
        for attempt in 1..=5 {
            let result: Result<(), object_store::Error> = async {
                let objects: Vec<object_store::ObjectMeta> =
                    self.store.list(Some(&prefix)).try_collect().await?;
                for meta in objects {
                    self.reader.forget(meta.location.as_ref());
                    match self.store.delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%prefix, attempt, %error, "deleting a deleted topic's objects failed");
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
            }
        }
        tracing::error!(%prefix, "gave up deleting a deleted topic's objects; delete them by hand");
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

/// (node, generation, sequence) from a WAL object key.
fn parse_wal_key(key: &str) -> Option<(i32, u64, u64)> {
    let name = key.rsplit('/').next()?.strip_suffix(".wal")?;
    let mut parts = name.split('-');
    let node = parts.next()?.parse().ok()?;
    let generation = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((node, generation, seq))
}

/// Mark and sweep of unreferenced WAL objects on this broker's monotonic clock.
#[derive(Default)]
struct Unreferenced {
    first_seen: HashMap<String, Instant>,
}

impl Unreferenced {
    /// Takes one pass's unreferenced keys and returns those seen unreferenced, pass after pass,
    /// for at least `grace`. A key missing from a pass (referenced again, or gone) starts over.
    fn due(&mut self, keys: Vec<String>, grace: Duration, now: Instant) -> Vec<String> {
        let mut next = HashMap::with_capacity(keys.len());
        let mut due = Vec::new();
        for key in keys {
            let seen = self.first_seen.get(&key).copied().unwrap_or(now);
            if now.saturating_duration_since(seen) >= grace {
                due.push(key);
            } else {
                next.insert(key, seen);
            }
        }
        self.first_seen = next;
        due
    }
}

/// Retries an object-store read a few times (startup recovery; a store that stays down fails
/// the start with the error).
async fn with_retries<T, E: std::fmt::Display, F, Fut>(what: &str, mut f: F) -> Result<T, E>
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
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    /// A partition on a temporary disk with `batches` batches of 10 records written in epoch 4.
    async fn written(dir: &std::path::Path, batches: usize) -> Arc<Partition> {
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

    fn history(entries: &[(i32, i64)]) -> PartitionRecord {
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_the_wal_refused_is_committed_to_the_bucket() {
        use crate::log::batch::{tests::encode, validate_record_set};
        use crate::log::wal::{MemoryWalStorage, Wal};
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory()));
        let settings = TieringSettings {
            wal_max_delay_ms: 1,
            ..TieringSettings::default()
        };
        let tier = Tier::open(
            Arc::new(InMemory::new()),
            catalog.clone(),
            NodeId(1),
            settings,
            dir.path().join("cache"),
        )
        .await
        .unwrap();
        let storage = MemoryWalStorage::default();
        let wal = Wal::start(Box::new(storage.clone()), None);
        let pdir = dir.path().join("p");
        std::fs::create_dir_all(&pdir).unwrap();
        let record = history(&[(4, 0)]);
        let defaults = crate::config::LogDefaults::default();
        let config = Arc::new(crate::topic_config::TopicConfig::resolve(
            &defaults,
            &Default::default(),
        ));
        let p = Arc::new(
            Partition::open(
                &pdir,
                "t",
                TopicId::random(),
                0,
                record,
                config,
                Some(tier.uploads.clone()),
            )
            .unwrap(),
        );
        // The batch is in the upload queue before its WAL write fails.
        storage.fill_up();
        let mut bytes = encode(10, kafka_protocol::records::Compression::None);
        let parsed = validate_record_set(&bytes, &crate::log::batch::tests::LIMITS).unwrap();
        let appended = p.append(&mut bytes, &parsed, &wal).unwrap();
        assert!(tier.uploads.pending_bytes() > 0);
        assert!(wal.wait_synced(appended.wal_seq).await.is_err());
        let uploader = tokio::spawn(tier.clone().run_uploader(wal.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tier.uploads.pending_bytes() > 0 {
            assert!(Instant::now() < deadline, "the upload never resolved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(catalog.commit_records().await.unwrap().is_empty());
        assert_eq!((p.recorded_end(), p.high_watermark()), (0, 0));
        tier.cancel.cancel();
        uploader.await.unwrap();
    }

    /// An object that mixes batches the WAL made durable (acknowledged with acks=1, or on a
    /// `local` topic) and batches it refused: the durable ones are still committed, in a
    /// cluster too (the broker flushes before it steps down), and the refused ones never are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_durable_part_of_an_object_the_wal_failed_under_is_committed() {
        use crate::log::batch::{tests::encode, validate_record_set};
        use crate::log::wal::{MemoryWalStorage, Wal};
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory()));
        let tier = Tier::open(
            Arc::new(InMemory::new()),
            catalog.clone(),
            NodeId(1),
            TieringSettings::default(),
            dir.path().join("cache"),
        )
        .await
        .unwrap();
        tier.set_clustered();
        tier.fence_own_commits().await.unwrap();
        let storage = MemoryWalStorage::default();
        let wal = Wal::start(Box::new(storage.clone()), None);
        let pdir = dir.path().join("p");
        std::fs::create_dir_all(&pdir).unwrap();
        let defaults = crate::config::LogDefaults::default();
        let config = Arc::new(crate::topic_config::TopicConfig::resolve(
            &defaults,
            &Default::default(),
        ));
        let p = Arc::new(
            Partition::open(
                &pdir,
                "t",
                TopicId::random(),
                0,
                history(&[(4, 0)]),
                config,
                Some(tier.uploads.clone()),
            )
            .unwrap(),
        );
        p.set_leading(true);
        let append = || {
            let mut bytes = encode(10, kafka_protocol::records::Compression::None);
            let parsed = validate_record_set(&bytes, &crate::log::batch::tests::LIMITS).unwrap();
            p.append(&mut bytes, &parsed, &wal).unwrap()
        };
        // 0..10 is durable in the WAL; 10..20 is refused (the disk filled up).
        let first = append();
        wal.wait_synced(first.wal_seq).await.unwrap();
        storage.fill_up();
        let second = append();
        assert!(wal.wait_synced(second.wal_seq).await.is_err());
        // Both wait in one object for the uploader (started only now).
        let uploader = tokio::spawn(tier.clone().run_uploader(wal.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tier.uploads.pending_bytes() > 0 {
            assert!(Instant::now() < deadline, "the upload never resolved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let commits = catalog.commit_records().await.unwrap();
        let extents: Vec<(i64, i64)> = commits
            .iter()
            .flat_map(|(_, c)| c.extents.iter().map(|e| (e.first.0, e.end().0)))
            .collect();
        assert_eq!(extents, vec![(0, 10)]);
        assert_eq!(p.recorded_end(), 10);
        tier.cancel.cancel();
        uploader.await.unwrap();
    }

    #[tokio::test]
    async fn a_takeover_keeps_unrecorded_data_only_of_the_last_epoch_begun() {
        let dir = tempfile::tempdir().unwrap();
        let p = written(dir.path(), 3).await;
        let kept = |record: &PartitionRecord, recorded_end| {
            own_unrecorded(&p, record, recorded_end)
                .unwrap()
                .iter()
                .map(|(h, _)| h.base_offset)
                .collect::<Vec<_>>()
        };
        let dropped = crate::metrics::metrics().unrecorded_offsets_dropped.get();
        // Epoch 4 is still the last begun: its batches past the recorded end are this broker's.
        assert_eq!(kept(&history(&[(4, 0)]), 10), vec![10, 20]);
        // A later epoch began at 10 (another leader may have written 10..): nothing is kept.
        assert!(kept(&history(&[(4, 0), (5, 10)]), 10).is_empty());
        // Nor when the epoch begun last starts past the recorded end, or the data does not
        // start at the recorded end.
        assert!(kept(&history(&[(4, 0), (5, 20)]), 10).is_empty());
        assert!(kept(&history(&[(4, 0)]), 15).is_empty());
        assert_eq!(
            crate::metrics::metrics().unrecorded_offsets_dropped.get() - dropped,
            20 + 20 + 15
        );
        // Everything recorded: nothing to keep, nothing dropped.
        assert!(kept(&history(&[(4, 0), (5, 30)]), 30).is_empty());
    }

    /// A takeover keeping this broker's own unrecorded data must not lose it when the read of
    /// the recorded tail fails (or the broker dies meanwhile): nothing but the local log held it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_takeover_whose_tail_read_fails_still_keeps_its_own_unrecorded_data() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let p = written(dir.path(), 3).await;
        let catalog = Catalog::new(Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory()));
        let faulty = Arc::new(silt_tiering::store::FaultyStore::new(Arc::new(
            InMemory::new(),
        )));
        let tier = Tier::open(
            faulty.clone(),
            catalog.clone(),
            NodeId(1),
            TieringSettings::default(),
            cache.path().to_path_buf(),
        )
        .await
        .unwrap();
        tier.fence_own_commits().await.unwrap();
        // 0..10 is recorded in the bucket; 10..30 (epoch 4, still the last begun) only here.
        assert!(tier.record_now(&p, 0, 10).await.unwrap().is_some());
        let record = history(&[(4, 0)]);
        faulty.set_failing_reads(true);
        let commits = catalog.commit_records().await.unwrap();
        let local = LocalLog::Rebuild;
        let failed = tier
            .recover(&p, &record, &commits, local, &Default::default())
            .await;
        assert!(failed.is_err(), "the tail could not be read");
        // The takeover is tried again once the bucket answers.
        faulty.set_failing_reads(false);
        let commits = catalog.commit_records().await.unwrap();
        let recovered = tier
            .recover(&p, &record, &commits, local, &Default::default())
            .await
            .unwrap();
        assert_eq!(p.log_end(), 30, "kept 10..30: {recovered:?}");
        let offsets: Vec<i64> = p
            .read_local_range(0, 30)
            .unwrap()
            .iter()
            .map(|(h, _)| h.base_offset)
            .collect();
        assert_eq!(offsets, vec![0, 10, 20]);
    }

    #[tokio::test]
    async fn wal_batches_replay_in_a_cluster_only_where_they_fit_the_epoch_history() {
        let dir = tempfile::tempdir().unwrap();
        let p = written(dir.path(), 2).await;
        let batch = |epoch: i32, base: i64| {
            let mut bytes =
                crate::log::batch::tests::encode(10, kafka_protocol::records::Compression::None);
            bytes[0..8].copy_from_slice(&base.to_be_bytes());
            bytes[12..16].copy_from_slice(&epoch.to_be_bytes());
            bytes
        };
        p.set_record(history(&[(4, 0)]));
        assert!(
            p.fits_history(&batch(4, 20)),
            "continues the log in its epoch"
        );
        assert!(p.fits_history(&batch(4, 10)), "already in the log");
        assert!(!p.fits_history(&batch(4, 30)), "a gap");
        p.set_record(history(&[(4, 0), (6, 20)]));
        assert!(
            !p.fits_history(&batch(4, 20)),
            "epoch 6 began at 20: a batch of epoch 4 there is of a term that lost"
        );
        assert!(p.fits_history(&batch(6, 20)));
    }

    fn extent(topic: TopicId, partition: i32, first: i64, start: u64, len: u64) -> WalExtent {
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

    #[test]
    fn unreferenced_objects_are_deleted_after_the_grace_on_this_brokers_clock() {
        let grace = Duration::from_secs(600);
        let t0 = Instant::now();
        let mut u = Unreferenced::default();
        // However old the store says an object is, the first sighting deletes nothing.
        assert!(u.due(vec!["a".into(), "b".into()], grace, t0).is_empty());
        let later = t0 + Duration::from_secs(300);
        assert!(u.due(vec!["a".into(), "b".into()], grace, later).is_empty());
        // "b" became referenced (a commit listed late): it leaves the candidates and starts over.
        let after = t0 + grace;
        assert_eq!(u.due(vec!["a".into()], grace, after), vec!["a".to_string()]);
        assert!(u.due(vec!["b".into()], grace, after).is_empty());
        assert_eq!(
            u.due(vec!["b".into()], grace, after + grace),
            vec!["b".to_string()]
        );
    }

    #[tokio::test]
    async fn prefetch_reads_an_object_once_for_several_partitions_tails() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..=255u8).collect();
        store
            .put(&Path::from("wal/a"), data.clone().into())
            .await
            .unwrap();
        store
            .put(&Path::from("wal/b"), data.clone().into())
            .await
            .unwrap();
        let t = TopicId::random();
        let commits = vec![
            (
                "k1".to_string(),
                CommitRecord {
                    object: "wal/a".into(),
                    extents: vec![extent(t, 0, 0, 10, 20), extent(t, 1, 0, 40, 30)],
                },
            ),
            (
                "k2".to_string(),
                // Only partition 0's tail is wanted here: read per extent later.
                CommitRecord {
                    object: "wal/b".into(),
                    extents: vec![extent(t, 0, 10, 0, 5), extent(t, 7, 0, 5, 5)],
                },
            ),
        ];
        let wanted = HashMap::from([((t, 0), 0), ((t, 1), 0)]);
        let prefetched = Prefetched::read(&store, &commits, &wanted).await;
        assert_eq!(
            prefetched.slice("wal/a", &(10..30)).unwrap()[..],
            data[10..30]
        );
        assert_eq!(
            prefetched.slice("wal/a", &(40..70)).unwrap()[..],
            data[40..70]
        );
        assert!(
            prefetched.slice("wal/a", &(60..90)).is_none(),
            "outside the range read"
        );
        assert!(
            prefetched.slice("wal/b", &(0..5)).is_none(),
            "one wanted extent: not read ahead"
        );
        // Extents below the manifest's end are not part of the tail.
        let archived = HashMap::from([((t, 0), 100), ((t, 1), 100)]);
        let none = Prefetched::read(&store, &commits, &archived).await;
        assert!(none.slice("wal/a", &(10..30)).is_none());
    }
}
