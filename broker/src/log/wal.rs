//! The broker's write-ahead log: one log for all partitions, with group commit.
//!
//! Appends are buffered in memory in the order they are made (callers append while holding
//! their partition's lock, right after writing the same batch to the partition's segment, so
//! WAL order is offset order per partition). One writer thread takes everything buffered,
//! writes it and calls `fdatasync` once: every request that arrived during the previous sync
//! shares the next one. After each sync it advances the high watermarks of the partitions whose
//! data it made durable and publishes the synced position.
//!
//! Record framing: `[len: u32 BE][crc32c(payload): u32 BE][payload]`, payload
//! `[topic id: 16][partition: i32 BE][record batch]`. Replay stops at the first record whose
//! length or checksum does not hold: that is the torn tail of a crash, and it is truncated.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};

/// Storage under the WAL: an append-only sequence of files. Behind a trait so that tests can
/// use [`MemoryWalStorage`], whose crash drops what was not synced.
pub trait WalStorage: Send + 'static {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Starts a new file; returns its sequence number. Earlier files are complete.
    fn rotate(&mut self) -> io::Result<u64>;
    /// Removes every file with a sequence number below `seq`.
    fn truncate_before(&mut self, seq: u64) -> io::Result<()>;
    /// Sequence numbers of the files, oldest first.
    fn files(&self) -> io::Result<Vec<u64>>;
    /// One file's contents, for replay (one file in memory at a time).
    fn read(&self, seq: u64) -> io::Result<Vec<u8>>;
    /// Cuts file `seq` to `len` bytes (a torn tail found on replay).
    fn cut(&mut self, seq: u64, len: u64) -> io::Result<()>;
    /// After a failed write or sync: cuts the current file back to its last synced length, so
    /// that records the WAL refused are not replayed after a restart.
    fn discard_unsynced(&mut self) -> io::Result<()>;
}

/// WAL files `{seq:020}.wal` in one directory.
pub struct FileWalStorage {
    dir: PathBuf,
    current: File,
    current_seq: u64,
    /// Bytes of the current file known to be synced.
    synced_len: u64,
}

fn wal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

fn list_wal_files(dir: &Path) -> io::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

impl FileWalStorage {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let seqs = list_wal_files(dir)?;
        let current_seq = seqs.last().copied().unwrap_or(0);
        let current = OpenOptions::new()
            .create(true)
            .append(true)
            .open(wal_path(dir, current_seq))?;
        sync_dir(dir)?;
        let synced_len = current.metadata()?.len();
        Ok(Self {
            dir: dir.to_path_buf(),
            current,
            current_seq,
            synced_len,
        })
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl WalStorage for FileWalStorage {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.current.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        let len = self.current.metadata()?.len();
        self.current.sync_data()?;
        self.synced_len = len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<u64> {
        self.sync()?;
        let next = self.current_seq + 1;
        self.current = OpenOptions::new()
            .create(true)
            .append(true)
            .open(wal_path(&self.dir, next))?;
        sync_dir(&self.dir)?;
        self.current_seq = next;
        self.synced_len = 0;
        Ok(next)
    }

    fn discard_unsynced(&mut self) -> io::Result<()> {
        self.current.set_len(self.synced_len)?;
        self.current.sync_all()
    }

    fn truncate_before(&mut self, seq: u64) -> io::Result<()> {
        for old in list_wal_files(&self.dir)? {
            if old < seq && old != self.current_seq {
                std::fs::remove_file(wal_path(&self.dir, old))?;
            }
        }
        sync_dir(&self.dir)
    }

    fn files(&self) -> io::Result<Vec<u64>> {
        list_wal_files(&self.dir)
    }

    fn read(&self, seq: u64) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        File::open(wal_path(&self.dir, seq))?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn cut(&mut self, seq: u64, len: u64) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .open(wal_path(&self.dir, seq))?;
        file.set_len(len)?;
        file.sync_all()
    }
}

/// In-memory WAL storage for tests. [`MemoryWalStorage::crash`] keeps only synced bytes.
#[derive(Clone, Default)]
pub struct MemoryWalStorage {
    inner: Arc<Mutex<MemoryFiles>>,
}

#[derive(Default)]
struct MemoryFiles {
    files: BTreeMap<u64, (Vec<u8>, usize)>,
    current: u64,
    /// Appends write half their bytes and fail (a disk that filled up).
    full: bool,
}

impl MemoryWalStorage {
    /// What a restarted process would find: each file cut to its synced length.
    pub fn crash(&self) -> MemoryWalStorage {
        let inner = self.inner.lock().expect("wal lock");
        let files = inner
            .files
            .iter()
            .map(|(seq, (bytes, synced))| (*seq, (bytes[..*synced].to_vec(), *synced)))
            .collect();
        MemoryWalStorage {
            inner: Arc::new(Mutex::new(MemoryFiles {
                files,
                current: inner.current,
                full: false,
            })),
        }
    }

    /// From now on appends write part of their bytes and fail with ENOSPC.
    pub fn fill_up(&self) {
        self.inner.lock().expect("wal lock").full = true;
    }

    /// Every byte in file `seq`, synced or not.
    pub fn bytes(&self, seq: u64) -> Vec<u8> {
        let inner = self.inner.lock().expect("wal lock");
        inner
            .files
            .get(&seq)
            .map(|f| f.0.clone())
            .unwrap_or_default()
    }
}

impl WalStorage for MemoryWalStorage {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("wal lock");
        let current = inner.current;
        let full = inner.full;
        let written = if full {
            &bytes[..bytes.len() / 2]
        } else {
            bytes
        };
        inner
            .files
            .entry(current)
            .or_default()
            .0
            .extend_from_slice(written);
        if full {
            return Err(io::Error::from_raw_os_error(28));
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("wal lock");
        let current = inner.current;
        let file = inner.files.entry(current).or_default();
        file.1 = file.0.len();
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<u64> {
        self.sync()?;
        let mut inner = self.inner.lock().expect("wal lock");
        inner.current += 1;
        let current = inner.current;
        inner.files.entry(current).or_default();
        Ok(current)
    }

    fn truncate_before(&mut self, seq: u64) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("wal lock");
        let current = inner.current;
        inner.files.retain(|s, _| *s >= seq || *s == current);
        Ok(())
    }

    fn files(&self) -> io::Result<Vec<u64>> {
        Ok(self
            .inner
            .lock()
            .expect("wal lock")
            .files
            .keys()
            .copied()
            .collect())
    }

    fn read(&self, seq: u64) -> io::Result<Vec<u8>> {
        let inner = self.inner.lock().expect("wal lock");
        Ok(inner
            .files
            .get(&seq)
            .map(|(b, _)| b.clone())
            .unwrap_or_default())
    }

    fn cut(&mut self, seq: u64, len: u64) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("wal lock");
        if let Some(file) = inner.files.get_mut(&seq) {
            file.0.truncate(len as usize);
            file.1 = file.1.min(len as usize);
        }
        Ok(())
    }

    fn discard_unsynced(&mut self) -> io::Result<()> {
        let mut inner = self.inner.lock().expect("wal lock");
        let current = inner.current;
        if let Some(file) = inner.files.get_mut(&current) {
            let synced = file.1;
            file.0.truncate(synced);
        }
        Ok(())
    }
}

/// One decoded WAL record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub batch: Vec<u8>,
}

const RECORD_OVERHEAD: usize = 8;
const PAYLOAD_PREFIX: usize = 20;
/// A bound on one record's length so a corrupt length field cannot cause a huge allocation.
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

fn frame(topic_id: &uuid::Uuid, partition: i32, batch: &[u8], out: &mut Vec<u8>) {
    let len = PAYLOAD_PREFIX + batch.len();
    let start = out.len();
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(topic_id.as_bytes());
    out.extend_from_slice(&partition.to_be_bytes());
    out.extend_from_slice(batch);
    let crc = crc32c::crc32c(&out[start + RECORD_OVERHEAD..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Decodes the intact prefix of one WAL file; returns the records and the prefix length.
pub fn decode_file(bytes: &[u8]) -> (Vec<WalRecord>, usize) {
    let mut records = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= RECORD_OVERHEAD {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if !(PAYLOAD_PREFIX..=MAX_RECORD_BYTES).contains(&len)
            || bytes.len() - pos - RECORD_OVERHEAD < len
        {
            break;
        }
        let payload = &bytes[pos + RECORD_OVERHEAD..pos + RECORD_OVERHEAD + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        records.push(WalRecord {
            topic_id: uuid::Uuid::from_bytes(payload[..16].try_into().expect("16 bytes")),
            partition: i32::from_be_bytes(payload[16..20].try_into().expect("4 bytes")),
            batch: payload[PAYLOAD_PREFIX..].to_vec(),
        });
        pos += RECORD_OVERHEAD + len;
    }
    (records, pos)
}

/// Called by the writer thread for each appended record once it is durable.
pub trait OnDurable: Send + Sync {
    fn durable(&self, end_offset: i64);
}

struct Pending {
    buf: Vec<u8>,
    callbacks: Vec<(Arc<dyn OnDurable>, i64)>,
    /// Sequence number of the last append.
    appended: u64,
    rotate: Vec<oneshot::Sender<io::Result<u64>>>,
    truncate: Option<u64>,
    closed: bool,
}

/// Error state after a failed write or sync: the WAL refuses further appends.
#[derive(Debug, Clone)]
pub struct WalFailed(pub String);

pub struct Wal {
    pending: Mutex<Pending>,
    wake: Condvar,
    synced: watch::Sender<u64>,
    failed: watch::Sender<Option<WalFailed>>,
    bytes_since_rotate: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Observed by the writer thread after every sync (for metrics).
pub type SyncObserver = Box<dyn Fn(Duration, usize) + Send>;

impl Wal {
    /// Starts the writer thread over `storage`. Replay (with [`decode_file`]) comes first.
    pub fn start(storage: Box<dyn WalStorage>, observer: Option<SyncObserver>) -> Arc<Wal> {
        let wal = Arc::new(Wal {
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                callbacks: Vec::new(),
                appended: 0,
                rotate: Vec::new(),
                truncate: None,
                closed: false,
            }),
            wake: Condvar::new(),
            synced: watch::channel(0).0,
            failed: watch::channel(None).0,
            bytes_since_rotate: 0.into(),
            thread: Mutex::new(None),
        });
        let writer = wal.clone();
        let handle = std::thread::Builder::new()
            .name("silt-wal".into())
            .spawn(move || writer.run(storage, observer))
            .expect("spawn WAL writer thread");
        *wal.thread.lock().expect("wal lock") = Some(handle);
        wal
    }

    /// Buffers one batch; `on_durable.durable(end_offset)` runs once it is synced. Returns the
    /// sequence number to wait for with [`Wal::wait_synced`].
    pub fn append(
        &self,
        topic_id: &uuid::Uuid,
        partition: i32,
        batch: &[u8],
        on_durable: Arc<dyn OnDurable>,
        end_offset: i64,
    ) -> Result<u64, WalFailed> {
        if let Some(failed) = self.failed.borrow().clone() {
            return Err(failed);
        }
        let mut pending = self.pending.lock().expect("wal lock");
        if pending.closed {
            return Err(WalFailed("the WAL is shut down".into()));
        }
        frame(topic_id, partition, batch, &mut pending.buf);
        pending.callbacks.push((on_durable, end_offset));
        pending.appended += 1;
        let seq = pending.appended;
        drop(pending);
        self.wake.notify_one();
        Ok(seq)
    }

    /// Waits until append `seq` is durable.
    pub async fn wait_synced(&self, seq: u64) -> Result<(), WalFailed> {
        let mut synced = self.synced.subscribe();
        let mut failed = self.failed.subscribe();
        loop {
            if *synced.borrow_and_update() >= seq {
                return Ok(());
            }
            if let Some(f) = failed.borrow_and_update().clone() {
                return Err(f);
            }
            tokio::select! {
                r = synced.changed() => if r.is_err() { return Err(WalFailed("WAL closed".into())) },
                r = failed.changed() => if r.is_err() { return Err(WalFailed("WAL closed".into())) },
            }
        }
    }

    /// Why the WAL refuses writes, if it does.
    pub fn failed(&self) -> Option<WalFailed> {
        self.failed.borrow().clone()
    }

    /// Changes when the WAL fails.
    pub fn subscribe_failed(&self) -> watch::Receiver<Option<WalFailed>> {
        self.failed.subscribe()
    }

    /// Bytes appended but not yet written and synced (for backpressure).
    pub fn buffered_bytes(&self) -> usize {
        self.pending.lock().expect("wal lock").buf.len()
    }

    /// The synced position; it changes after every sync (high watermarks may have moved).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.synced.subscribe()
    }

    /// Bytes appended since the last rotation (drives checkpoints).
    pub fn bytes_since_rotate(&self) -> u64 {
        self.bytes_since_rotate.load(Ordering::Relaxed)
    }

    /// Starts a new WAL file after everything appended so far; returns its sequence number.
    /// Every record appended before this call is in an earlier file.
    pub async fn rotate(&self) -> io::Result<u64> {
        if let Some(failed) = self.failed() {
            return Err(io::Error::other(failed.0));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("wal lock");
            if pending.closed {
                return Err(io::Error::other("the WAL is shut down"));
            }
            pending.rotate.push(tx);
        }
        self.wake.notify_one();
        rx.await
            .map_err(|_| io::Error::other("WAL writer stopped"))?
    }

    /// Removes WAL files older than `seq` (a value from [`Wal::rotate`]) once every partition
    /// has made the data in them durable in its segments.
    pub fn truncate_before(&self, seq: u64) {
        self.pending.lock().expect("wal lock").truncate = Some(seq);
        self.wake.notify_one();
    }

    /// Stops the writer after it has written and synced everything appended so far.
    pub fn shutdown(&self) {
        self.pending.lock().expect("wal lock").closed = true;
        self.wake.notify_one();
        if let Some(handle) = self.thread.lock().expect("wal lock").take() {
            let _ = handle.join();
        }
    }

    fn run(self: Arc<Self>, mut storage: Box<dyn WalStorage>, observer: Option<SyncObserver>) {
        loop {
            let (buf, callbacks, upto, rotate, truncate, closed) = {
                let mut pending = self.pending.lock().expect("wal lock");
                while pending.buf.is_empty()
                    && pending.rotate.is_empty()
                    && pending.truncate.is_none()
                    && !pending.closed
                {
                    pending = self.wake.wait(pending).expect("wal lock");
                }
                (
                    std::mem::take(&mut pending.buf),
                    std::mem::take(&mut pending.callbacks),
                    pending.appended,
                    std::mem::take(&mut pending.rotate),
                    pending.truncate.take(),
                    pending.closed,
                )
            };
            if !buf.is_empty() {
                let started = Instant::now();
                let result = storage.append(&buf).and_then(|()| storage.sync());
                if let Err(e) = result {
                    tracing::error!(error = %e, "WAL write failed; refusing further writes");
                    // What this group wrote before failing must not be replayed at a restart.
                    if let Err(cut) = storage.discard_unsynced() {
                        tracing::error!(error = %cut, "cutting the refused WAL records failed; a restart may replay records that were never acknowledged");
                    }
                    self.failed
                        .send_replace(Some(WalFailed(format!("WAL write failed: {e}"))));
                    // Nothing queued now or later may wait on this thread.
                    let mut pending = self.pending.lock().expect("wal lock");
                    pending.closed = true;
                    let queued = std::mem::take(&mut pending.rotate);
                    drop(pending);
                    for tx in rotate.into_iter().chain(queued) {
                        let _ = tx.send(Err(io::Error::other("WAL failed")));
                    }
                    return;
                }
                if let Some(observe) = &observer {
                    observe(started.elapsed(), buf.len());
                }
                self.bytes_since_rotate
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
                for (callback, end) in callbacks {
                    callback.durable(end);
                }
                self.synced.send_replace(upto);
            }
            for tx in rotate {
                let result = storage.rotate();
                if result.is_ok() {
                    self.bytes_since_rotate.store(0, Ordering::Relaxed);
                }
                let _ = tx.send(result);
            }
            if let Some(seq) = truncate {
                if let Err(e) = storage.truncate_before(seq) {
                    tracing::warn!(error = %e, "removing old WAL files failed; retrying at the next checkpoint");
                }
            }
            if closed {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    struct Hw(AtomicI64);
    impl OnDurable for Hw {
        fn durable(&self, end: i64) {
            self.0.fetch_max(end, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn group_commit_advances_and_replays() {
        let storage = MemoryWalStorage::default();
        let wal = Wal::start(Box::new(storage.clone()), None);
        let hw = Arc::new(Hw(AtomicI64::new(0)));
        let topic = uuid::Uuid::new_v4();
        let mut last = 0;
        for i in 0..100 {
            last = wal
                .append(&topic, i % 3, &[i as u8; 10], hw.clone(), i as i64 + 1)
                .unwrap();
        }
        wal.wait_synced(last).await.unwrap();
        assert_eq!(hw.0.load(Ordering::SeqCst), 100);
        let rotated = wal.rotate().await.unwrap();
        wal.append(&topic, 0, b"after", hw.clone(), 101).unwrap();
        wal.truncate_before(rotated);
        wal.shutdown();

        let crashed = storage.crash();
        let files = crashed.files().unwrap();
        assert_eq!(files.len(), 1, "the pre-rotation file was removed");
        let bytes = crashed.read(files[0]).unwrap();
        let (records, len) = decode_file(&bytes);
        assert_eq!(len, bytes.len());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].batch, b"after");
    }

    /// Storage whose sync takes a while, as a real disk's does.
    struct SlowSync(MemoryWalStorage);
    impl WalStorage for SlowSync {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.0.append(bytes)
        }
        fn sync(&mut self) -> io::Result<()> {
            std::thread::sleep(Duration::from_millis(5));
            self.0.sync()
        }
        fn rotate(&mut self) -> io::Result<u64> {
            self.0.rotate()
        }
        fn truncate_before(&mut self, seq: u64) -> io::Result<()> {
            self.0.truncate_before(seq)
        }
        fn files(&self) -> io::Result<Vec<u64>> {
            self.0.files()
        }
        fn read(&self, seq: u64) -> io::Result<Vec<u8>> {
            self.0.read(seq)
        }
        fn cut(&mut self, seq: u64, len: u64) -> io::Result<()> {
            self.0.cut(seq, len)
        }
        fn discard_unsynced(&mut self) -> io::Result<()> {
            self.0.discard_unsynced()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_syncs() {
        let syncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = syncs.clone();
        let observer: SyncObserver = Box::new(move |_, _| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let wal = Wal::start(
            Box::new(SlowSync(MemoryWalStorage::default())),
            Some(observer),
        );
        let topic = uuid::Uuid::new_v4();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    let hw = Arc::new(Hw(AtomicI64::new(0)));
                    let seq = wal.append(&topic, 0, &[1; 100], hw.clone(), i + 1).unwrap();
                    wal.wait_synced(seq).await.unwrap();
                    assert_eq!(
                        hw.0.load(Ordering::SeqCst),
                        i + 1,
                        "durable before the wait ends"
                    );
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let syncs = syncs.load(Ordering::SeqCst);
        assert!(syncs < 50, "200 appends took {syncs} syncs: group commit");
        wal.shutdown();
    }

    #[test]
    fn torn_tail_stops_replay() {
        let topic = uuid::Uuid::new_v4();
        let mut bytes = Vec::new();
        frame(&topic, 1, b"one", &mut bytes);
        let first = bytes.len();
        frame(&topic, 2, b"two", &mut bytes);
        let full = bytes.len();
        for cut in first..full {
            let (records, len) = decode_file(&bytes[..cut]);
            assert_eq!((records.len(), len), (1, first), "cut at {cut}");
        }
        bytes[full - 1] ^= 1;
        assert_eq!(decode_file(&bytes).0.len(), 1, "bad checksum ends replay");
    }
}
