//! The upload queue: appends land here (under the partition's lock, so in offset order) and
//! wait to become one multi-partition WAL object; it also bounds the data not yet recorded.

use super::*;

/// Data waiting to become a WAL object.
#[derive(Default)]
pub(super) struct Buffered {
    pub(super) builder: WalObjectBuilder,
    pub(super) partitions: HashMap<(TopicId, i32), Arc<Partition>>,
    pub(super) first_at: Option<Instant>,
    /// The WAL append the newest batch was: nothing is committed before the WAL made it durable.
    pub(super) wal_seq: u64,
}

/// Appends waiting for upload, and the bound on data not yet recorded.
pub struct UploadQueue {
    pub(super) buffered: Mutex<Buffered>,
    pub(super) notify: Notify,
    /// Bytes pushed and not yet recorded (buffered and in flight).
    pub(super) pending_bytes: AtomicUsize,
    pub(super) acks_all_waiting: AtomicUsize,
    /// When the oldest in-flight object's data was first buffered, by object sequence.
    pub(super) in_flight: Mutex<HashMap<u64, Instant>>,
    pub(super) limit: usize,
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
    pub(super) fn release(&self, bytes: usize) {
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

    pub(super) fn peek(&self) -> (usize, Option<Instant>) {
        let b = self.buffered.lock().expect("upload queue lock");
        (b.builder.len(), b.first_at)
    }

    pub(super) fn take(&self) -> Option<Buffered> {
        let mut b = self.buffered.lock().expect("upload queue lock");
        if b.builder.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut *b))
    }

    /// Age of the oldest data not yet recorded.
    pub(super) fn lag(&self) -> Duration {
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

impl crate::log::upload::UploadSink for UploadQueue {
    fn push(
        &self,
        p: &Arc<Partition>,
        epoch: i32,
        first: i64,
        last: i64,
        batch: &[u8],
        wal_seq: u64,
    ) {
        UploadQueue::push(self, p, epoch, first, last, batch, wal_seq);
    }
}
