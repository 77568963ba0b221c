//! One partition's log on this broker: hot segments, log end offset (LEO), high watermark (HW),
//! leader epoch and its history.
//!
//! Append path: validate (outside the lock) → lock → assign offsets and stamp the leader epoch →
//! write to the active segment → append to the WAL and to the upload queue → unlock → wait for
//! the WAL sync (acks=1, durability `local`) or for the data to be recorded in the bucket
//! (acks=all with durability `object`). The HW is the end of the recorded prefix (or of the
//! locally synced one for durability `local`); consumers read below it only.
//!
//! Below the first local segment, reads go to the segment objects the manifest lists.

use super::batch::{self, BatchHeader};
use super::producer::{self, BatchMeta, Check, ProducerStates, SequenceError};
use super::segment::Segment;
use super::wal::{OnDurable, Wal, WalFailed};
use crate::log::upload::UploadSink;
use crate::topic_config::{TimestampType, TopicConfig};
use silt_metadata::catalog::PartitionRecord;
use silt_metadata::{LeaderEpoch, Offset, TopicId};
use silt_tiering::manifest::{Manifest, SegmentRef};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition {0} was deleted")]
    Deleted(String),
    /// Another broker leads the partition now (or none yet): clients refresh their metadata.
    #[error("this broker does not lead partition {0}")]
    NotLeader(String),
    #[error("offset {offset} is outside [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("log I/O on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write-ahead log failed: {}", .0.0)]
    Wal(WalFailed),
    #[error(transparent)]
    Batch(#[from] batch::BatchError),
    #[error(transparent)]
    Sequence(#[from] SequenceError),
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Log {
    /// Ascending by base offset; the last one is active. Never empty.
    segments: Vec<Segment>,
    log_start: i64,
    log_end: i64,
    record: PartitionRecord,
    config: Arc<TopicConfig>,
    deleted: bool,
    /// This broker leads the partition: appends are accepted and reads served.
    leading: bool,
    producers: ProducerStates,
    /// Producer state changed since the last snapshot.
    producers_dirty: bool,
    /// The current manifest: segment objects below the local log, producer snapshot.
    manifest: Manifest,
}

/// What of the log is recorded in the bucket: a contiguous prefix, and the ranges recorded
/// past a gap (WAL objects may be recorded out of order).
#[derive(Default)]
struct Recorded {
    end: i64,
    ahead: BTreeMap<i64, i64>,
    /// First offsets of the recorded extents not yet archived (approximately: pruned against
    /// the manifest's end when counted): a new leader replays one ranged GET per extent.
    extents: std::collections::VecDeque<i64>,
}

/// Extents remembered per partition at most (a counter's bound, not a data bound).
const MAX_TRACKED_EXTENTS: usize = 1 << 16;

impl Recorded {
    /// Remembers a recorded extent starting at `first`, forgetting the oldest past the bound.
    fn note_extent(&mut self, first: i64) {
        if self.extents.len() >= MAX_TRACKED_EXTENTS {
            self.extents.pop_front();
        }
        self.extents.push_back(first);
    }
}

pub struct Partition {
    pub topic: String,
    pub topic_id: TopicId,
    pub index: i32,
    dir: PathBuf,
    log: Mutex<Log>,
    high_watermark: AtomicI64,
    /// End of the locally synced prefix.
    synced_end: AtomicI64,
    recorded: Mutex<Recorded>,
    durability_object: AtomicBool,
    uploads: Option<Arc<dyn UploadSink>>,
}

impl OnDurable for Partition {
    fn durable(&self, end_offset: i64) {
        self.synced_end.fetch_max(end_offset, Ordering::AcqRel);
        if !self.durability_object.load(Ordering::Acquire) {
            self.high_watermark.fetch_max(end_offset, Ordering::AcqRel);
        }
    }
}

/// What an append did.
pub struct Appended {
    pub base_offset: i64,
    /// The offset after the last record of this append (or of the duplicates it matched).
    pub end_offset: i64,
    pub log_append_time: Option<i64>,
    pub wal_seq: u64,
    pub log_start: i64,
    /// The leader epoch the batches were stamped with.
    pub leader_epoch: i32,
}

/// What a read found.
pub struct ReadResult {
    pub records: Vec<u8>,
    pub high_watermark: i64,
    pub log_start: i64,
    /// The offset lies below the local log, in this segment object.
    pub remote: Option<SegmentRef>,
}

/// Where a ListOffsets lookup landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetLookup {
    pub offset: i64,
    pub timestamp: i64,
    pub leader_epoch: i32,
}

/// Where DeleteRecords persists a log start offset inside the first segment.
const LOG_START_FILE: &str = "log-start-offset";

/// Decompression bound used when the log itself decodes records (timestamp lookups).
const LOOKUP_DECOMPRESS_LIMIT: usize = 256 * 1024 * 1024;

impl Partition {
    /// Opens (or creates) the partition's directory and validates its segments. A segment with
    /// a corrupt or torn tail is cut there and every later segment removed: the WAL replays
    /// what they held.
    pub fn open(
        dir: &Path,
        topic: &str,
        topic_id: TopicId,
        index: i32,
        record: PartitionRecord,
        config: Arc<TopicConfig>,
        uploads: Option<Arc<dyn UploadSink>>,
    ) -> Result<Partition, PartitionError> {
        let io_err = |source| PartitionError::Io {
            path: dir.to_path_buf(),
            source,
        };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io_err)?;
            // Make the new directory entries durable up to the logs directory.
            let mut d = Some(dir);
            for _ in 0..3 {
                let Some(parent) = d.and_then(Path::parent) else {
                    break;
                };
                super::segment::sync_dir(parent).map_err(io_err)?;
                d = Some(parent);
            }
        }
        let mut bases: Vec<i64> = std::fs::read_dir(dir)
            .map_err(io_err)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".log"))
                    .and_then(|n| n.parse::<i64>().ok())
            })
            .collect();
        bases.sort_unstable();
        let mut segments: Vec<Segment> = Vec::new();
        let mut broken = false;
        for base in bases {
            let path = super::segment::segment_path(dir, base);
            let contiguous = segments.last().is_none_or(|s| s.next_offset() == base);
            if broken || !contiguous {
                // The WAL replays what this held; keep the file aside until an operator looks.
                let aside = path.with_extension("log.orphaned");
                tracing::warn!(path = %path.display(), aside = %aside.display(), "setting aside a segment after a gap in the log; the WAL replays its data");
                std::fs::rename(&path, &aside).map_err(io_err)?;
                broken = true;
                continue;
            }
            let (segment, cut) = Segment::open(&path, base).map_err(io_err)?;
            if cut {
                tracing::warn!(path = %path.display(), size = segment.size(), "cut a torn or corrupt segment tail");
                broken = true;
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            segments.push(Segment::create(dir, 0).map_err(io_err)?);
        }
        let log_end = segments.last().expect("one segment").next_offset();
        // DeleteRecords may have moved the log start (it persists it first). The first local
        // segment says nothing about the log's start: segments below it may be in the bucket
        // (evicted copies, or a log rebuilt from the manifest's end), and the manifest decides
        // once it is known (`set_manifest`: the lowest offset available there or here).
        let log_start = std::fs::read_to_string(dir.join(LOG_START_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
            .min(log_end);
        let durability_object = config.durability_object;
        Ok(Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            dir: dir.to_path_buf(),
            log: Mutex::new(Log {
                segments,
                log_start,
                log_end,
                record,
                config,
                deleted: false,
                leading: true,
                producers: ProducerStates::default(),
                producers_dirty: false,
                manifest: Manifest::empty(topic_id, index),
            }),
            high_watermark: AtomicI64::new(log_end),
            synced_end: AtomicI64::new(log_end),
            recorded: Mutex::new(Recorded {
                extents: Default::default(),
                end: log_end,
                ahead: BTreeMap::new(),
            }),
            durability_object: AtomicBool::new(durability_object),
            uploads,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().expect("partition lock")
    }

    fn io_err(&self) -> impl Fn(io::Error) -> PartitionError + '_ {
        move |source| PartitionError::Io {
            path: self.dir.clone(),
            source,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_end(&self) -> i64 {
        self.lock().log_end
    }

    pub fn log_start(&self) -> i64 {
        self.lock().log_start
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.lock().record.leader_epoch
    }

    pub fn record(&self) -> PartitionRecord {
        self.lock().record.clone()
    }

    /// Whether this broker leads the partition.
    pub fn leading(&self) -> bool {
        self.lock().leading
    }

    /// Starts or stops serving as the partition's leader.
    pub fn set_leading(&self, leading: bool) {
        self.lock().leading = leading;
    }

    /// The leader epoch this broker leads the partition in, if it does.
    pub fn leader_term(&self) -> Option<LeaderEpoch> {
        let log = self.lock();
        log.leading.then_some(log.record.leader_epoch)
    }

    /// Whether this broker still leads the partition in leader epoch `epoch`.
    pub fn leading_in(&self, epoch: i32) -> bool {
        let log = self.lock();
        log.leading && log.record.leader_epoch.0 == epoch
    }

    fn not_leader(&self) -> PartitionError {
        PartitionError::NotLeader(format!("{}-{}", self.topic, self.index))
    }

    pub fn set_record(&self, record: PartitionRecord) {
        self.lock().record = record;
    }

    pub fn config(&self) -> Arc<TopicConfig> {
        self.lock().config.clone()
    }

    pub fn set_config(&self, config: Arc<TopicConfig>) {
        self.durability_object
            .store(config.durability_object, Ordering::Release);
        if !config.durability_object {
            self.high_watermark
                .fetch_max(self.synced_end.load(Ordering::Acquire), Ordering::AcqRel);
        }
        self.lock().config = config;
    }

    /// Whether acks=all waits for the bucket.
    pub fn durability_object(&self) -> bool {
        self.durability_object.load(Ordering::Acquire)
    }

    /// Where the recorded prefix ends.
    /// End of the prefix the WAL (or a segment sync) made durable.
    pub fn synced_end(&self) -> i64 {
        self.synced_end.load(Ordering::Acquire)
    }

    pub fn recorded_end(&self) -> i64 {
        self.recorded.lock().expect("recorded lock").end
    }

    /// Sets the recorded end found at startup, and the HW with it.
    pub fn init_recorded(&self, end: i64) {
        let log_end = self.log_end();
        let mut r = self.recorded.lock().expect("recorded lock");
        r.end = end;
        r.ahead.clear();
        r.extents.clear();
        let hw = if self.durability_object() {
            end.min(log_end)
        } else {
            log_end
        };
        self.high_watermark.store(hw, Ordering::Release);
    }

    /// Offsets `first..end` are recorded in the bucket; advances the recorded prefix (and the
    /// HW, for durability `object`) over every contiguous range.
    pub fn mark_recorded(&self, first: i64, end: i64) {
        let mut r = self.recorded.lock().expect("recorded lock");
        r.note_extent(first);
        if first > r.end {
            let e = r.ahead.entry(first).or_insert(end);
            *e = (*e).max(end);
            return;
        }
        r.end = r.end.max(end);
        while let Some((&f, &e)) = r.ahead.first_key_value() {
            if f > r.end {
                break;
            }
            r.ahead.remove(&f);
            r.end = r.end.max(e);
        }
        if self.durability_object() {
            self.high_watermark.fetch_max(r.end, Ordering::AcqRel);
        }
    }

    /// Notes extents of the tail this broker did not record itself (replayed at a takeover or
    /// a restart), so the tail's extent count holds for them too.
    pub fn note_tail_extents(&self, firsts: impl IntoIterator<Item = i64>) {
        let mut r = self.recorded.lock().expect("recorded lock");
        for first in firsts {
            r.note_extent(first);
        }
    }

    /// Recorded extents above the manifest's end: the GETs a new leader would replay.
    pub fn tail_extents(&self) -> usize {
        let archived_end = self.lock().manifest.end().0;
        let mut r = self.recorded.lock().expect("recorded lock");
        r.extents.retain(|&f| f >= archived_end);
        r.extents.len()
    }

    /// The current manifest.
    pub fn manifest(&self) -> Manifest {
        self.lock().manifest.clone()
    }

    /// Installs the current manifest; the log start follows its log start.
    pub fn set_manifest(&self, manifest: Manifest) {
        let mut log = self.lock();
        let first_remote = manifest.segments.first().map(|s| s.base.0);
        let lowest = first_remote
            .unwrap_or(log.segments[0].base_offset)
            .min(log.segments[0].base_offset);
        log.log_start = log.log_start.max(manifest.log_start.0).max(lowest);
        if log.log_start > log.log_end {
            log.log_start = log.log_end;
        }
        log.manifest = manifest;
    }

    /// Replaces the local log with one empty segment at `offset` (local data that does not
    /// reach the bucket's manifest is of no use; the manifest and the tail are the truth).
    pub fn reset_local(&self, offset: i64) -> Result<(), PartitionError> {
        let mut log = self.lock();
        let old: Vec<Segment> = log.segments.drain(..).collect();
        for s in &old {
            let _ = std::fs::remove_file(&s.path);
        }
        let _ = std::fs::remove_file(self.dir.join(LOG_START_FILE));
        for (_, path) in self.producer_snapshots() {
            let _ = std::fs::remove_file(path);
        }
        log.segments
            .push(Segment::create(&self.dir, offset).map_err(self.io_err())?);
        log.log_end = offset;
        log.log_start = log.log_start.min(offset);
        self.synced_end.store(offset, Ordering::Release);
        self.high_watermark.store(offset, Ordering::Release);
        Ok(())
    }

    /// After the WAL failed: cuts the local log back to what the WAL made durable. Batches
    /// past it were refused or their write failed; they were never acknowledged, and must never
    /// be visible, uploaded, or re-queued after a restart. The producer state is rebuilt
    /// without them. Returns how many offsets were cut.
    pub fn discard_unsynced(&self) -> Result<i64, PartitionError> {
        let cut = {
            let mut log = self.lock();
            let durable = self.synced_end.load(Ordering::Acquire);
            if log.log_end <= durable {
                return Ok(0);
            }
            let cut = log.log_end - durable;
            self.truncate_locked(&mut log, durable)?;
            cut
        };
        self.load_producers()?;
        Ok(cut)
    }

    /// Cuts the local log at `offset` (a batch boundary, at or after the local start).
    fn truncate_locked(&self, log: &mut Log, offset: i64) -> Result<(), PartitionError> {
        while log.segments.len() > 1 && log.segments.last().expect("active").base_offset >= offset {
            let gone = log.segments.pop().expect("more than one");
            std::fs::remove_file(&gone.path).map_err(self.io_err())?;
        }
        log.segments
            .last_mut()
            .expect("active segment")
            .truncate_to(offset)
            .map_err(self.io_err())?;
        log.log_end = offset;
        self.high_watermark.fetch_min(offset, Ordering::AcqRel);
        self.synced_end.fetch_min(offset, Ordering::AcqRel);
        // A snapshot past the cut describes batches that are gone.
        for (at, path) in self.producer_snapshots() {
            if at > offset {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(())
    }

    /// Base offset of the first local segment.
    pub fn local_start(&self) -> i64 {
        self.lock().segments[0].base_offset
    }

    /// Local batches in `from..to` regardless of the HW (re-uploads after a restart).
    pub fn read_local_range(
        &self,
        from: i64,
        to: i64,
    ) -> Result<Vec<(BatchHeader, Vec<u8>)>, PartitionError> {
        let log = self.lock();
        let mut out = Vec::new();
        for segment in &log.segments {
            if segment.next_offset() <= from || segment.base_offset >= to {
                continue;
            }
            let mut pos = segment.locate(from).map_err(self.io_err())?;
            while pos < segment.size() {
                let (h, bytes) = segment.read_batch(pos).map_err(self.io_err())?;
                pos += h.total_size() as u64;
                if h.base_offset >= to {
                    break;
                }
                if h.last_offset() >= from {
                    out.push((h, bytes));
                }
            }
        }
        Ok(out)
    }

    /// The first sealed local segment not yet in the manifest, if all of it is recorded:
    /// (base, end, file, size).
    pub fn archivable(&self) -> Option<(i64, i64, Arc<std::fs::File>, u64)> {
        let recorded = self.recorded_end();
        let log = self.lock();
        let end = log.manifest.end().0;
        let n = log.segments.len();
        log.segments[..n - 1]
            .iter()
            .find(|s| s.base_offset == end && !s.is_empty())
            .filter(|s| s.next_offset() <= recorded)
            .map(|s| (s.base_offset, s.next_offset(), s.file(), s.size()))
    }

    /// Bytes of local segments not yet in the manifest, when the oldest of them was created,
    /// and how many there are.
    pub fn unarchived(&self) -> (u64, Option<SystemTime>, usize) {
        let log = self.lock();
        let end = log.manifest.end().0;
        let pending: Vec<&Segment> = log
            .segments
            .iter()
            .filter(|s| s.next_offset() > end && !s.is_empty())
            .collect();
        (
            pending.iter().map(|s| s.size()).sum(),
            pending.first().map(|s| s.created),
            pending.len(),
        )
    }

    /// Seals the active segment now (the tail of recorded data grew past its bound).
    pub fn roll(&self) -> Result<(), PartitionError> {
        let mut log = self.lock();
        if log.segments.last().expect("active").is_empty() {
            return Ok(());
        }
        let segment = Segment::create(&self.dir, log.log_end).map_err(self.io_err())?;
        log.segments.push(segment);
        Ok(())
    }

    /// Producer state as of `end`: the manifest's snapshot plus the batches of local segments
    /// from the manifest's end up to `end`.
    pub fn producer_snapshot_at(&self, end: i64) -> Result<serde_json::Value, PartitionError> {
        let log = self.lock();
        let mut states: ProducerStates = log
            .manifest
            .producers
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let from = log.manifest.end().0;
        let now = now_ms();
        for segment in &log.segments {
            if segment.next_offset() <= from || segment.base_offset >= end {
                continue;
            }
            for h in segment.headers_from(from).map_err(self.io_err())? {
                if h.producer_id < 0 || h.base_offset < from || h.last_offset() >= end {
                    continue;
                }
                let meta = BatchMeta {
                    first_seq: h.base_sequence,
                    last_seq: producer::last_sequence(h.base_sequence, h.last_offset_delta),
                    base_offset: h.base_offset,
                    last_offset: h.last_offset(),
                    wal_seq: 0,
                };
                states.record(h.producer_id, h.producer_epoch, meta, now);
            }
        }
        Ok(serde_json::to_value(&states).unwrap_or(serde_json::Value::Null))
    }

    /// Removes local copies of segments in the manifest, oldest first, while the local log is
    /// larger than `max_bytes` or they are older than `max_ms` (-1: no limit), and every local
    /// segment below the log start. Never the active segment. Returns bytes removed.
    pub fn evict_local(&self, max_bytes: i64, max_ms: i64, now_ms: i64) -> u64 {
        let removed: Vec<Segment> = {
            let mut log = self.lock();
            let archived_end = log.manifest.end().0;
            let mut total: u64 = log.segments.iter().map(|s| s.size()).sum();
            let mut count = 0;
            let n = log.segments.len();
            for segment in &log.segments[..n - 1] {
                if segment.next_offset() > archived_end {
                    break;
                }
                let newest = if segment.max_timestamp >= 0 {
                    segment.max_timestamp
                } else {
                    segment
                        .created
                        .duration_since(UNIX_EPOCH)
                        .map_or(now_ms, |d| d.as_millis() as i64)
                };
                let below_start = segment.next_offset() <= log.log_start;
                let by_time = max_ms >= 0 && now_ms - newest > max_ms;
                let by_size = max_bytes >= 0 && total > max_bytes as u64;
                if !(below_start || by_time || by_size) {
                    break;
                }
                total -= segment.size();
                count += 1;
            }
            log.segments.drain(..count).collect()
        };
        let mut bytes = 0;
        for segment in removed {
            bytes += segment.size();
            tracing::debug!(topic = %self.topic, partition = self.index, base_offset = segment.base_offset, "evicted local copy of an archived segment");
            if let Err(e) = std::fs::remove_file(&segment.path) {
                tracing::warn!(path = %segment.path.display(), error = %e, "removing an evicted segment failed");
            }
        }
        bytes
    }

    /// Appends validated batches (ranges within `records`, which is rewritten in place).
    pub fn append(
        self: &Arc<Self>,
        records: &mut [u8],
        batches: &[(BatchHeader, std::ops::Range<usize>)],
        wal: &Wal,
    ) -> Result<Appended, PartitionError> {
        let mut log = self.lock();
        if log.deleted {
            return Err(PartitionError::Deleted(format!(
                "{}-{}",
                self.topic, self.index
            )));
        }
        if !log.leading {
            return Err(self.not_leader());
        }
        let now = now_ms();
        let log_append_time =
            (log.config.message_timestamp_type == TimestampType::LogAppendTime).then_some(now);
        let epoch = log.record.leader_epoch.0;
        // Check every idempotent batch first (against a scratch copy, so that several batches
        // of one producer in a request follow each other): all or nothing.
        let mut scratch = log
            .producers
            .clone_for(batches.iter().map(|(h, _)| h.producer_id));
        let mut checks = Vec::with_capacity(batches.len());
        for (header, _) in batches {
            if header.producer_id < 0 {
                checks.push(Check::Append);
                continue;
            }
            let last_seq = producer::last_sequence(header.base_sequence, header.last_offset_delta);
            let check = scratch.check(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                last_seq,
            )?;
            if check == Check::Append {
                let meta = BatchMeta {
                    first_seq: header.base_sequence,
                    last_seq,
                    base_offset: 0,
                    last_offset: 0,
                    wal_seq: 0,
                };
                scratch.record(header.producer_id, header.producer_epoch, meta, now);
            }
            checks.push(check);
        }
        let mut base_offset = None;
        let mut wal_seq = 0;
        let mut end_offset = 0;
        for ((header, range), check) in batches.iter().zip(checks) {
            if let Check::Duplicate(dup) = check {
                base_offset.get_or_insert(dup.base_offset);
                wal_seq = wal_seq.max(dup.wal_seq);
                end_offset = end_offset.max(dup.last_offset + 1);
                continue;
            }
            let offset = log.log_end;
            base_offset.get_or_insert(offset);
            let bytes = &mut records[range.clone()];
            batch::stamp(bytes, offset, epoch, log_append_time, header.max_timestamp);
            let mut stamped = *header;
            stamped.base_offset = offset;
            stamped.partition_leader_epoch = epoch;
            if let Some(t) = log_append_time {
                stamped.max_timestamp = t;
                stamped.attributes |= 0x08;
            }
            self.maybe_roll(&mut log, bytes.len() as u64)?;
            let active = log.segments.last_mut().expect("active segment");
            active.append(bytes, &stamped).map_err(self.io_err())?;
            let end = stamped.last_offset() + 1;
            log.log_end = end;
            // Segment first, then WAL: a checkpoint that rotates the WAL and then syncs segments
            // covers every record in the files it removes.
            wal_seq = match wal.append(&self.topic_id.0, self.index, bytes, self.clone(), end) {
                Ok(seq) => seq,
                Err(failed) => {
                    // Refused: the batch must not stay in the segment (the batches before it
                    // in this request were accepted by the WAL, and the WAL failure cuts those
                    // not yet durable).
                    self.truncate_locked(&mut log, offset)?;
                    return Err(PartitionError::Wal(failed));
                }
            };
            if let Some(uploads) = &self.uploads {
                uploads.push(self, epoch, offset, end - 1, bytes, wal_seq);
            }
            end_offset = end;
            if stamped.producer_id >= 0 {
                let meta = BatchMeta {
                    first_seq: stamped.base_sequence,
                    last_seq: producer::last_sequence(
                        stamped.base_sequence,
                        stamped.last_offset_delta,
                    ),
                    base_offset: offset,
                    last_offset: stamped.last_offset(),
                    wal_seq,
                };
                log.producers
                    .record(stamped.producer_id, stamped.producer_epoch, meta, now);
                log.producers_dirty = true;
            }
        }
        Ok(Appended {
            end_offset,
            base_offset: base_offset.unwrap_or(log.log_end),
            log_append_time,
            wal_seq,
            log_start: log.log_start,
            leader_epoch: epoch,
        })
    }

    /// Writes a snapshot of the producer state (as of the log end) if it changed since the
    /// last one, and removes older snapshots. Called at checkpoints, after segments are synced.
    pub fn snapshot_producers(&self) -> Result<(), PartitionError> {
        let snapshot = {
            let mut log = self.lock();
            if !log.producers_dirty || log.deleted {
                return Ok(());
            }
            log.producers_dirty = false;
            producer::Snapshot {
                offset: log.log_end,
                states: log.producers.clone(),
            }
        };
        let io_err = self.io_err();
        let path = self.dir.join(format!("{:020}.producers", snapshot.offset));
        let tmp = path.with_extension("producers.tmp");
        let bytes = serde_json::to_vec(&snapshot).map_err(|e| io_err(io::Error::other(e)))?;
        let write = || -> io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            super::segment::sync_dir(&self.dir)
        };
        if let Err(e) = write() {
            self.lock().producers_dirty = true;
            return Err(io_err(e));
        }
        for (offset, old) in self.producer_snapshots() {
            if offset < snapshot.offset {
                let _ = std::fs::remove_file(old);
            }
        }
        Ok(())
    }

    fn producer_snapshots(&self) -> Vec<(i64, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(i64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name();
                let offset = name.to_str()?.strip_suffix(".producers")?.parse().ok()?;
                Some((offset, e.path()))
            })
            .collect();
        out.sort();
        out
    }

    /// Rebuilds producer state at startup (after WAL replay): the newest snapshot at or below
    /// the log end, then the batches after it.
    pub fn load_producers(&self) -> Result<usize, PartitionError> {
        let log_end = self.log_end();
        let mut states = ProducerStates::default();
        let mut from = self.log_start();
        // A log rebuilt from the bucket starts from the manifest's snapshot.
        let manifest = self.manifest();
        let mut floor = i64::MIN;
        if let Some(snapshot) = manifest
            .producers
            .clone()
            .and_then(|v| serde_json::from_value::<ProducerStates>(v).ok())
        {
            states = snapshot;
            from = from.max(manifest.end().0);
            floor = manifest.end().0;
        }
        // A local snapshot is better only if it is newer than the manifest's.
        if let Some((offset, path)) = self
            .producer_snapshots()
            .into_iter()
            .rev()
            .find(|(o, _)| *o <= log_end && *o >= floor)
        {
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<producer::Snapshot>(&b).map_err(|e| e.to_string())
                }) {
                Ok(snapshot) => {
                    states = snapshot.states;
                    from = from.max(offset);
                }
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "unreadable producer snapshot; rebuilding from the log");
                }
            }
        }
        let now = now_ms();
        let mut log = self.lock();
        let mut replayed = 0;
        for segment in &log.segments {
            if segment.next_offset() <= from {
                continue;
            }
            for h in segment.headers_from(from).map_err(self.io_err())? {
                if h.producer_id < 0 || h.base_offset < from {
                    continue;
                }
                let meta = BatchMeta {
                    first_seq: h.base_sequence,
                    last_seq: producer::last_sequence(h.base_sequence, h.last_offset_delta),
                    base_offset: h.base_offset,
                    last_offset: h.last_offset(),
                    wal_seq: 0,
                };
                states.record(h.producer_id, h.producer_epoch, meta, now);
                replayed += 1;
            }
        }
        log.producers = states;
        log.producers_dirty = replayed > 0;
        Ok(replayed)
    }

    /// Forgets producers idle longer than `expiration_ms`.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) {
        let mut log = self.lock();
        if log.producers.expire(now_ms, expiration_ms) > 0 {
            log.producers_dirty = true;
        }
    }

    /// Whether a WAL batch may be replayed on a broker in a cluster: it continues the local log
    /// (or is already in it) and was written in the epoch the partition's history gives its
    /// offsets. A batch of a term another leader followed fails that.
    pub fn fits_history(&self, batch: &[u8]) -> bool {
        let log = self.lock();
        BatchHeader::parse(batch).is_some_and(|h| {
            (h.last_offset() < log.log_end || h.base_offset == log.log_end)
                && Self::epoch_for_offset(&log.record, h.base_offset) == h.partition_leader_epoch
        })
    }

    /// Replays one WAL batch at startup: appended if it starts at the log end, skipped if the
    /// log already holds it.
    pub fn replay(&self, batch: &[u8]) -> Result<bool, PartitionError> {
        let mut log = self.lock();
        let Some(h) = BatchHeader::parse(batch) else {
            return Ok(false);
        };
        if h.last_offset() < log.log_end {
            return Ok(false);
        }
        if h.base_offset != log.log_end {
            // Data between the log end and this batch is neither in a segment nor in the WAL.
            // Refuse to start rather than serve a log with a hole (or drop the WAL).
            return Err(PartitionError::Io {
                path: self.dir.clone(),
                source: io::Error::other(format!(
                    "WAL replay found a gap: the log ends at {} but the WAL continues at {}; \
                     set-aside segments (*.orphaned) may hold the missing data",
                    log.log_end, h.base_offset
                )),
            });
        }
        self.maybe_roll(&mut log, batch.len() as u64)?;
        log.segments
            .last_mut()
            .expect("active segment")
            .append(batch, &h)
            .map_err(self.io_err())?;
        log.log_end = h.last_offset() + 1;
        self.high_watermark.store(log.log_end, Ordering::Release);
        // Replayed data comes from a durable copy (the WAL, the bucket).
        self.synced_end.fetch_max(log.log_end, Ordering::AcqRel);
        Ok(true)
    }

    fn maybe_roll(&self, log: &mut Log, incoming: u64) -> Result<(), PartitionError> {
        let active = log.segments.last().expect("active segment");
        if active.is_empty() {
            return Ok(());
        }
        let too_big = active.size() + incoming > log.config.segment_bytes;
        let too_old = active
            .created
            .elapsed()
            .is_ok_and(|age| age > Duration::from_millis(log.config.segment_ms.max(0) as u64));
        if too_big || too_old {
            let segment = Segment::create(&self.dir, log.log_end).map_err(self.io_err())?;
            log.segments.push(segment);
        }
        Ok(())
    }

    /// fsyncs every segment written since the last checkpoint (outside the partition lock).
    pub fn sync(&self) -> Result<(), PartitionError> {
        let handles: Vec<_> = self
            .lock()
            .segments
            .iter()
            .map(|s| s.sync_handle())
            .collect();
        for handle in handles {
            handle.sync_if_dirty().map_err(self.io_err())?;
        }
        Ok(())
    }

    /// Reads whole batches from `offset`, below the high watermark: at most `max_bytes`, except
    /// that with `min_one` the first batch is returned whole even when larger (KIP-74).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, PartitionError> {
        let hw = self.high_watermark();
        let (file, pos, end, log_start) = {
            let log = self.lock();
            if log.deleted {
                return Err(PartitionError::Deleted(format!(
                    "{}-{}",
                    self.topic, self.index
                )));
            }
            if offset < log.log_start || offset > log.log_end {
                return Err(PartitionError::OffsetOutOfRange {
                    offset,
                    log_start: log.log_start,
                    log_end: log.log_end,
                });
            }
            if offset >= hw || (max_bytes == 0 && !min_one) {
                return Ok(ReadResult {
                    records: Vec::new(),
                    high_watermark: hw,
                    log_start: log.log_start,
                    remote: None,
                });
            }
            if offset < log.segments[0].base_offset {
                return match log.manifest.segment_for(offset) {
                    Some(seg) => Ok(ReadResult {
                        records: Vec::new(),
                        high_watermark: hw,
                        log_start: log.log_start,
                        remote: Some(seg.clone()),
                    }),
                    None => Err(PartitionError::OffsetOutOfRange {
                        offset,
                        log_start: log.log_start,
                        log_end: log.log_end,
                    }),
                };
            }
            let i = log.segments.partition_point(|s| s.base_offset <= offset) - 1;
            let mut segment = &log.segments[i];
            let mut pos = segment.locate(offset).map_err(self.io_err())?;
            if pos >= segment.size() && i + 1 < log.segments.len() {
                segment = &log.segments[i + 1];
                pos = 0;
            }
            (segment.file(), pos, segment.size(), log.log_start)
        };
        let mut records = Vec::new();
        let available = end.saturating_sub(pos);
        let want = (max_bytes as u64).min(available) as usize;
        let mut buf = vec![0u8; want.max(batch::HEADER_LEN.min(available as usize))];
        file.read_exact_at(&mut buf, pos).map_err(self.io_err())?;
        let mut at = 0;
        while let Some(h) = BatchHeader::parse(&buf[at..]) {
            if h.base_offset >= hw {
                break;
            }
            let size = h.total_size();
            if at + size > buf.len() {
                if at == 0 && min_one {
                    // KIP-74: the first batch goes out whole even past max_bytes.
                    let mut whole = vec![0u8; size];
                    file.read_exact_at(&mut whole, pos).map_err(self.io_err())?;
                    records = whole;
                }
                break;
            }
            at += size;
        }
        if records.is_empty() {
            buf.truncate(at);
            records = buf;
        }
        Ok(ReadResult {
            records,
            high_watermark: hw,
            log_start,
            remote: None,
        })
    }

    fn epoch_for_offset(record: &PartitionRecord, offset: i64) -> i32 {
        record
            .epoch_history
            .iter()
            .rev()
            .find(|e| e.start_offset.0 <= offset)
            .map_or(-1, |e| e.epoch.0)
    }

    pub fn earliest(&self) -> OffsetLookup {
        let log = self.lock();
        OffsetLookup {
            offset: log.log_start,
            timestamp: -1,
            leader_epoch: Self::epoch_for_offset(&log.record, log.log_start),
        }
    }

    /// The first offset still in the local log (Kafka's local log start offset).
    pub fn earliest_local(&self) -> OffsetLookup {
        let log = self.lock();
        let offset = log.segments[0].base_offset.max(log.log_start);
        OffsetLookup {
            offset,
            timestamp: -1,
            leader_epoch: Self::epoch_for_offset(&log.record, offset),
        }
    }

    /// The last offset in the partition's segment objects (the manifest's end, less one), or
    /// -1 when there is none: what Kafka reports as the latest tiered offset. Records after it
    /// are the tail, recorded in WAL objects (or, for `silt.durability=local`, maybe only
    /// here).
    pub fn latest_tiered(&self) -> OffsetLookup {
        let log = self.lock();
        let offset = log.manifest.end().0 - 1;
        OffsetLookup {
            offset: offset.max(-1),
            timestamp: -1,
            leader_epoch: if offset >= 0 {
                Self::epoch_for_offset(&log.record, offset)
            } else {
                -1
            },
        }
    }

    pub fn latest(&self) -> OffsetLookup {
        let log = self.lock();
        OffsetLookup {
            offset: self.high_watermark(),
            timestamp: -1,
            leader_epoch: log.record.leader_epoch.0,
        }
    }

    /// The first record (below the HW) whose timestamp is at least `timestamp`.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<OffsetLookup>, PartitionError> {
        let hw = self.high_watermark();
        let log = self.lock();
        for segment in &log.segments {
            if segment.base_offset >= hw {
                break;
            }
            let mut from = segment.find_timestamp(timestamp).map_err(self.io_err())?;
            while let Some((h, pos)) = from {
                if h.base_offset >= hw {
                    return Ok(None);
                }
                let (h, bytes) = segment.read_batch(pos).map_err(self.io_err())?;
                let stamps = batch::record_timestamps(&h, &bytes, LOOKUP_DECOMPRESS_LIMIT)?;
                if let Some((offset, ts)) = stamps
                    .into_iter()
                    .find(|(o, ts)| *ts >= timestamp && *o >= log.log_start)
                {
                    return Ok(Some(OffsetLookup {
                        offset,
                        timestamp: ts,
                        leader_epoch: h.partition_leader_epoch,
                    }));
                }
                // The batch claimed a max timestamp none of its records has: try the next.
                let next = pos + h.total_size() as u64;
                from = if next < segment.size() {
                    Some((segment.read_batch(next).map_err(self.io_err())?.0, next))
                } else {
                    None
                };
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the first one, if several share it).
    pub fn max_timestamp(&self) -> Result<Option<OffsetLookup>, PartitionError> {
        let hw = self.high_watermark();
        let log = self.lock();
        let best = log
            .segments
            .iter()
            .filter(|s| s.max_timestamp_batch >= 0 && s.max_timestamp_batch < hw)
            .fold(None::<&Segment>, |best, s| match best {
                Some(b) if b.max_timestamp >= s.max_timestamp => Some(b),
                _ => Some(s),
            });
        let Some(segment) = best else {
            return Ok(None);
        };
        let pos = segment
            .position_of_batch(segment.max_timestamp_batch)
            .map_err(self.io_err())?;
        let (h, bytes) = segment.read_batch(pos).map_err(self.io_err())?;
        let stamps = batch::record_timestamps(&h, &bytes, LOOKUP_DECOMPRESS_LIMIT)?;
        let Some(max) = stamps.iter().map(|(_, ts)| *ts).max() else {
            return Ok(None);
        };
        let (offset, ts) = stamps
            .into_iter()
            .find(|(_, ts)| *ts == max)
            .expect("max exists");
        Ok(Some(OffsetLookup {
            offset,
            timestamp: ts,
            leader_epoch: h.partition_leader_epoch,
        }))
    }

    /// Kafka's OffsetForLeaderEpoch answer; `None` = undefined (-1, -1).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let log = self.lock();
        log.record
            .end_offset_for(LeaderEpoch(epoch), Offset(log.log_end))
            .map(|(e, o)| (e.0, o.0))
    }

    /// DeleteRecords: moves the log start offset to `offset` (-1: the high watermark) and removes
    /// the segments wholly below it. Returns the new log start offset.
    pub fn delete_records(&self, offset: i64) -> Result<i64, PartitionError> {
        let hw = self.high_watermark();
        let removed: Vec<Segment> = {
            let mut log = self.lock();
            if log.deleted {
                return Err(PartitionError::Deleted(format!(
                    "{}-{}",
                    self.topic, self.index
                )));
            }
            if !log.leading {
                return Err(self.not_leader());
            }
            let target = if offset == -1 { hw } else { offset };
            if target < 0 || target > hw {
                return Err(PartitionError::OffsetOutOfRange {
                    offset,
                    log_start: log.log_start,
                    log_end: hw,
                });
            }
            if target <= log.log_start {
                return Ok(log.log_start);
            }
            // Persist first: a restart must not bring the deleted records back.
            let path = self.dir.join(LOG_START_FILE);
            let tmp = self.dir.join(format!("{LOG_START_FILE}.tmp"));
            let write = || -> io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                io::Write::write_all(&mut f, target.to_string().as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                super::segment::sync_dir(&self.dir)
            };
            write().map_err(self.io_err())?;
            log.log_start = target;
            // Segments not yet archived stay until they are: the archiver cuts at the manifest's
            // end, and the next retention pass drops them from the manifest.
            let archived_end = log.manifest.end().0;
            let keep_from = log.segments[..log.segments.len() - 1]
                .iter()
                .take_while(|s| s.next_offset() <= target.min(archived_end))
                .count();
            log.segments.drain(..keep_from).collect()
        };
        for segment in removed {
            if let Err(e) = std::fs::remove_file(&segment.path) {
                tracing::warn!(path = %segment.path.display(), error = %e, "removing a segment below the log start failed");
            }
        }
        Ok(self.log_start())
    }

    /// Bytes of segments on local disk.
    pub fn size_bytes(&self) -> u64 {
        self.lock().segments.iter().map(|s| s.size()).sum()
    }

    /// Marks the partition deleted (appends and reads fail from now on) and removes its files.
    pub fn delete(&self) -> Result<(), PartitionError> {
        let mut log = self.lock();
        log.deleted = true;
        std::fs::remove_dir_all(&self.dir).or_else(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(self.io_err()(e))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogDefaults;
    use crate::log::batch::{tests::encode, validate_record_set};
    use crate::log::wal::MemoryWalStorage;
    use kafka_protocol::records::Compression;
    use silt_metadata::catalog::EpochEntry;
    use silt_metadata::NodeId;
    use std::collections::BTreeMap;

    fn record() -> PartitionRecord {
        PartitionRecord {
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(4),
            epoch_history: vec![EpochEntry {
                epoch: LeaderEpoch(4),
                start_offset: Offset(0),
            }],
            manifest: None,
            manifest_end: Offset(0),
            log_start: Offset(0),
        }
    }

    /// Marks every sealed local segment as archived (as the archiver would after uploading).
    fn archive_all(p: &Partition) {
        let log = p.lock();
        let mut m = Manifest::empty(p.topic_id, p.index);
        let n = log.segments.len();
        for s in &log.segments[..n - 1] {
            m.segments.push(SegmentRef {
                key: format!("seg-{}", s.base_offset),
                base: Offset(s.base_offset),
                end: Offset(s.next_offset()),
                size: s.size(),
                max_timestamp: s.max_timestamp,
                epoch: LeaderEpoch(4),
            });
        }
        drop(log);
        p.set_manifest(m);
    }

    /// Durability `local` unless asked otherwise: these tests run without an uploader.
    fn config(overrides: &[(&str, &str)]) -> Arc<TopicConfig> {
        let mut map: BTreeMap<String, String> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.entry("silt.durability".into())
            .or_insert_with(|| "local".into());
        Arc::new(TopicConfig::resolve(&LogDefaults::default(), &map))
    }

    async fn append(p: &Arc<Partition>, wal: &Wal, records: usize) -> Appended {
        let mut bytes = encode(records, Compression::None);
        let batches = validate_record_set(&bytes, &crate::log::batch::tests::LIMITS).unwrap();
        let appended = p.append(&mut bytes, &batches, wal).unwrap();
        wal.wait_synced(appended.wal_seq).await.unwrap();
        appended
    }

    #[tokio::test]
    async fn batches_the_wal_refused_are_cut_and_never_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let storage = MemoryWalStorage::default();
        let wal = Wal::start(Box::new(storage.clone()), None);
        let p = Arc::new(
            Partition::open(
                dir.path(),
                "t",
                TopicId::random(),
                0,
                record(),
                config(&[]),
                None,
            )
            .unwrap(),
        );
        for _ in 0..3 {
            append(&p, &wal, 10).await;
        }
        // The disk fills up: the next batch's WAL write fails half-way.
        storage.fill_up();
        let mut bytes = encode(10, Compression::None);
        let batches = validate_record_set(&bytes, &crate::log::batch::tests::LIMITS).unwrap();
        let appended = p.append(&mut bytes, &batches, &wal).unwrap();
        assert!(wal.wait_synced(appended.wal_seq).await.is_err());
        assert_eq!(
            p.log_end(),
            40,
            "in the segment until the failure is handled"
        );
        // Refused at once from now on: nothing reaches the segment.
        let mut bytes = encode(10, Compression::None);
        assert!(matches!(
            p.append(&mut bytes, &batches, &wal),
            Err(PartitionError::Wal(_))
        ));
        assert_eq!(p.log_end(), 40);
        assert_eq!(p.discard_unsynced().unwrap(), 10);
        assert_eq!((p.log_end(), p.high_watermark()), (30, 30));
        assert_eq!(p.read_local_range(0, 100).unwrap().len(), 3);
        // Neither the WAL file nor the segment gives the refused batch back after a restart.
        let (records, intact) = crate::log::wal::decode_file(&storage.bytes(0));
        assert_eq!((records.len(), intact), (3, storage.bytes(0).len()));
        drop(p);
        let again = Partition::open(
            dir.path(),
            "t",
            TopicId::random(),
            0,
            record(),
            config(&[]),
            None,
        )
        .unwrap();
        assert_eq!(again.log_end(), 30);
    }

    #[tokio::test]
    async fn rolls_on_segment_bytes_and_evicts_only_archived_copies() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(Box::new(MemoryWalStorage::default()), None);
        let cfg = config(&[("segment.bytes", "4096")]);
        let p = Arc::new(
            Partition::open(dir.path(), "t", TopicId::random(), 0, record(), cfg, None).unwrap(),
        );
        for i in 0..40 {
            let a = append(&p, &wal, 10).await;
            assert_eq!(a.base_offset, i * 10);
            assert_eq!(a.end_offset, i * 10 + 10);
        }
        assert_eq!(p.high_watermark(), 400);
        let segments = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(segments > 3, "rolled into {segments} segments");
        // Nothing is archived yet: eviction keeps everything however small the limit.
        assert_eq!(p.evict_local(0, 0, now_ms()), 0);
        let (unarchived, _, count) = p.unarchived();
        assert_eq!(count, segments);
        assert_eq!(unarchived, p.size_bytes());
        // The first sealed segment is archivable once recorded.
        assert!(p.archivable().is_none(), "nothing recorded yet");
        p.mark_recorded(0, 400);
        let (base, end, _, _) = p.archivable().expect("sealed and recorded");
        assert_eq!(base, 0);
        archive_all(&p);
        assert_eq!(
            p.unarchived().2,
            1,
            "only the active segment is left to archive"
        );
        let removed = p.evict_local(0, -1, now_ms());
        assert!(removed > 0);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "the active segment stays"
        );
        assert_eq!(p.log_start(), 0, "eviction does not move the log start");
        // Below the local log, reads point at the segment object.
        let r = p.read(5, 1 << 20, true).unwrap();
        assert_eq!(r.remote.unwrap().base, Offset(0));
        assert!(end > 0);
    }

    #[tokio::test]
    async fn recorded_prefix_advances_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(Box::new(MemoryWalStorage::default()), None);
        let p = Arc::new(
            Partition::open(
                dir.path(),
                "t",
                TopicId::random(),
                0,
                record(),
                config(&[("silt.durability", "object")]),
                None,
            )
            .unwrap(),
        );
        p.init_recorded(0);
        for _ in 0..3 {
            append(&p, &wal, 10).await;
        }
        assert_eq!(
            p.high_watermark(),
            0,
            "durability object: synced is not enough"
        );
        p.mark_recorded(20, 30);
        assert_eq!((p.recorded_end(), p.high_watermark()), (0, 0));
        p.mark_recorded(0, 10);
        assert_eq!(p.high_watermark(), 10);
        p.mark_recorded(10, 20);
        assert_eq!(p.high_watermark(), 30, "the gap closed: both ranges count");
        assert_eq!(p.tail_extents(), 3, "three extents, none archived");
        let mut archived = p.manifest();
        archived.archived_end = Offset(20);
        p.set_manifest(archived);
        assert_eq!(
            p.tail_extents(),
            1,
            "the extents below the manifest's end are gone"
        );
        // durability=local: the synced end is the HW.
        p.set_config(config(&[("silt.durability", "local")]));
        assert_eq!(p.high_watermark(), 30);
    }

    #[tokio::test]
    async fn delete_records_moves_log_start_durably() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(Box::new(MemoryWalStorage::default()), None);
        let cfg = config(&[("segment.bytes", "4096")]);
        let id = TopicId::random();
        let p =
            Arc::new(Partition::open(dir.path(), "t", id, 0, record(), cfg.clone(), None).unwrap());
        for _ in 0..20 {
            append(&p, &wal, 10).await;
        }
        assert!(matches!(
            p.delete_records(201),
            Err(PartitionError::OffsetOutOfRange { .. })
        ));
        assert_eq!(p.delete_records(55).unwrap(), 55);
        assert_eq!(p.delete_records(30).unwrap(), 55, "never backwards");
        assert!(p.read(54, 1 << 20, true).is_err());
        assert!(p.read(55, 1 << 20, true).is_ok());
        drop(p);
        let p = Partition::open(dir.path(), "t", id, 0, record(), cfg, None).unwrap();
        assert_eq!(p.log_start(), 55, "survives a restart");
        let p = Arc::new(p);
        p.high_watermark.store(p.log_end(), Ordering::Release);
        assert_eq!(
            p.delete_records(-1).unwrap(),
            200,
            "-1 means the high watermark"
        );
    }

    #[tokio::test]
    async fn segment_ms_rolls_and_local_retention_ms_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(Box::new(MemoryWalStorage::default()), None);
        let cfg = config(&[("segment.ms", "1")]);
        let p = Arc::new(
            Partition::open(dir.path(), "t", TopicId::random(), 0, record(), cfg, None).unwrap(),
        );
        for _ in 0..3 {
            append(&p, &wal, 5).await;
            std::thread::sleep(Duration::from_millis(5));
        }
        // segment.ms = 1: every append after the first rolled a new segment.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        archive_all(&p);
        // The records carry 2023 timestamps: far past a 1 s local retention.
        p.evict_local(-1, 1000, now_ms());
        assert_eq!(p.local_start(), 10);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn reads_respect_high_watermark_and_kip74() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::start(Box::new(MemoryWalStorage::default()), None);
        let p = Arc::new(
            Partition::open(
                dir.path(),
                "t",
                TopicId::random(),
                0,
                record(),
                config(&[]),
                None,
            )
            .unwrap(),
        );
        append(&p, &wal, 20).await;
        append(&p, &wal, 20).await;
        // A read smaller than the first batch still returns that batch whole.
        assert!(
            p.read(5, 10, false).unwrap().records.is_empty(),
            "without min_one nothing fits"
        );
        let r = p.read(5, 10, true).unwrap();
        let h = BatchHeader::parse(&r.records).unwrap();
        assert_eq!((h.base_offset, r.records.len()), (0, h.total_size()));
        assert_eq!(
            h.partition_leader_epoch, 4,
            "batches carry the leader epoch"
        );
        // Reading at the HW gives nothing; past the LEO is out of range.
        assert!(p.read(40, 1 << 20, true).unwrap().records.is_empty());
        assert!(p.read(41, 1 << 20, true).is_err());
        // Timestamps: encode() stamps 1_700_000_000_000 + 10 * i.
        let found = p.offset_for_timestamp(1_700_000_000_055).unwrap().unwrap();
        assert_eq!(found.offset, 6);
        let max = p.max_timestamp().unwrap().unwrap();
        assert_eq!((max.offset, max.timestamp), (19, 1_700_000_000_190));
        assert_eq!(p.end_offset_for_epoch(4), Some((4, 40)));
        assert_eq!(p.end_offset_for_epoch(9), None);
    }
}
