//! The embedded metadata store: one process, state in memory, every transaction appended to a
//! checksummed log file and fsynced before it is acknowledged, compacted into a snapshot.
//!
//! On-disk layout under its directory:
//! - `snapshot.json`: `{"revision": R, "kvs": [...]}`, replaced atomically (write, fsync, rename).
//! - `txn.log`: records `[len: u32 BE][crc32c(payload): u32 BE][payload: JSON LogEntry]` applied
//!   on top of the snapshot. Only a torn last record (a crash mid-append) is cut on open; a bad
//!   record followed by more data stops `open` with [`Error::Corrupt`] naming its offset. Values
//!   are base64 text (older arrays of numbers still read); a record over [`MAX_RECORD_BYTES`] is
//!   refused when written, so everything acknowledged can be replayed.
//!
//! Leases live only in memory: a restarted store has none, so keys that were bound to a lease
//! are deleted on open, as etcd would once the lease ran out.

use crate::store::{
    Compare, KeyValue, LeaseId, MetadataStore, Op, Txn, TxnResponse, WatchEvent, WatchEventKind,
};
use crate::{Error, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

const LOG_FILE: &str = "txn.log";
const SNAPSHOT_FILE: &str = "snapshot.json";
/// Compact the log into a snapshot past this many bytes.
const COMPACT_LOG_BYTES: u64 = 8 * 1024 * 1024;
/// Largest log record: a transaction over it is refused when written ([`Error::TooLarge`]),
/// so every record written can be replayed, and a longer length field on replay is corrupt.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
const WATCH_CHANNEL: usize = 1024;
const LEASE_TICK: Duration = Duration::from_millis(100);

#[derive(Serialize, Deserialize)]
struct LogEntry {
    revision: i64,
    ops: Vec<Op>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    revision: i64,
    kvs: Vec<KeyValue>,
}

struct Lease {
    ttl: Duration,
    deadline: Instant,
}

struct Durable {
    dir: PathBuf,
    log: File,
    log_bytes: u64,
    /// Set when a failed append could not be cut back off the log: nothing more is written.
    failed: bool,
}

struct Inner {
    kvs: BTreeMap<String, KeyValue>,
    revision: i64,
    leases: HashMap<LeaseId, Lease>,
    next_lease: LeaseId,
    durable: Option<Durable>,
}

struct Shared {
    inner: Mutex<Inner>,
    events: broadcast::Sender<WatchEvent>,
}

/// A [`MetadataStore`] for a single process; see the module docs for its files.
pub struct EmbeddedMetadataStore {
    shared: Arc<Shared>,
}

impl EmbeddedMetadataStore {
    /// Opens (creating if needed) a store in `dir`. Must be called inside a Tokio runtime: it
    /// starts the task that expires leases.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (kvs, revision) = load_snapshot(&dir.join(SNAPSHOT_FILE))?;
        let mut inner = Inner {
            kvs,
            revision,
            leases: HashMap::new(),
            next_lease: 1,
            durable: None,
        };
        let log_path = dir.join(LOG_FILE);
        let (entries, valid_len) = read_log(&log_path)?;
        for entry in entries {
            if entry.revision > inner.revision {
                inner.apply(&entry.ops, entry.revision);
            }
        }
        let created = !log_path.exists();
        let log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| Error::Io {
                path: log_path.clone(),
                source,
            })?;
        if created {
            // The new file's directory entry must be durable before any record in it counts.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        let actual_len = log.metadata().map(|m| m.len()).unwrap_or(valid_len);
        if actual_len > valid_len {
            tracing::warn!(path = %log_path.display(), valid_len, actual_len, "truncating torn metadata log tail");
            log.set_len(valid_len)
                .and_then(|()| log.sync_all())
                .map_err(|source| Error::Io {
                    path: log_path.clone(),
                    source,
                })?;
        }
        inner.durable = Some(Durable {
            dir: dir.to_path_buf(),
            log,
            log_bytes: valid_len,
            failed: false,
        });
        // Leases did not survive the restart: drop the keys bound to them.
        let orphaned: Vec<Op> = inner
            .kvs
            .values()
            .filter(|kv| kv.lease.is_some())
            .map(|kv| Op::delete(kv.key.clone()))
            .collect();
        let store = Self::from_inner(inner);
        if !orphaned.is_empty() {
            let mut inner = store.shared.inner.lock().expect("metadata lock");
            store.shared.commit(&mut inner, orphaned)?;
        }
        Ok(store)
    }

    /// A store that keeps nothing on disk, for unit tests.
    pub fn in_memory() -> Self {
        Self::from_inner(Inner {
            kvs: BTreeMap::new(),
            revision: 0,
            leases: HashMap::new(),
            next_lease: 1,
            durable: None,
        })
    }

    fn from_inner(inner: Inner) -> Self {
        let (events, _) = broadcast::channel(WATCH_CHANNEL);
        let shared = Arc::new(Shared {
            inner: Mutex::new(inner),
            events,
        });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(expire_leases(Arc::downgrade(&shared)));
        }
        Self { shared }
    }
}

async fn expire_leases(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(LEASE_TICK);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = Instant::now();
        let mut inner = shared.inner.lock().expect("metadata lock");
        let expired: Vec<LeaseId> = inner
            .leases
            .iter()
            .filter(|(_, lease)| lease.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        if expired.is_empty() {
            continue;
        }
        if let Err(error) = shared.revoke(&mut inner, &expired) {
            tracing::warn!(%error, "expiring metadata leases failed; will retry");
        }
    }
}

impl Shared {
    /// Appends `ops` durably, applies them and publishes the events.
    fn commit(&self, inner: &mut Inner, ops: Vec<Op>) -> Result<i64> {
        let revision = inner.revision + 1;
        let entry = LogEntry { revision, ops };
        // The limit holds for the in-memory store too, so unit tests meet it.
        let payload = serde_json::to_vec(&entry).map_err(|source| Error::Codec {
            key: "<log entry>".into(),
            source,
        })?;
        if payload.len() > MAX_RECORD_BYTES {
            return Err(Error::TooLarge {
                bytes: payload.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        if let Some(durable) = inner.durable.as_mut() {
            let mut record = Vec::with_capacity(payload.len() + 8);
            record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            record.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
            record.extend_from_slice(&payload);
            let path = durable.dir.join(LOG_FILE);
            if durable.failed {
                return Err(Error::Io {
                    path,
                    source: std::io::Error::other("an earlier write failed; restart the broker"),
                });
            }
            let written = durable
                .log
                .write_all(&record)
                .and_then(|()| durable.log.sync_data());
            if let Err(source) = written {
                // The record may be partly or wholly in the file; a later record must not
                // follow it there (replay would apply this unacknowledged one, or stop at it).
                let cut = durable
                    .log
                    .set_len(durable.log_bytes)
                    .and_then(|()| durable.log.sync_all());
                if cut.is_err() {
                    durable.failed = true;
                }
                tracing::error!(error = %source, path = %path.display(), "metadata log write failed");
                return Err(Error::Io { path, source });
            }
            durable.log_bytes += record.len() as u64;
        }
        let events = inner.apply(&entry.ops, revision);
        for event in events {
            // No receivers is fine.
            let _ = self.events.send(event);
        }
        if inner
            .durable
            .as_ref()
            .is_some_and(|d| d.log_bytes > COMPACT_LOG_BYTES)
        {
            if let Err(error) = inner.compact() {
                tracing::warn!(%error, "metadata snapshot failed; the log keeps growing until the next try");
            }
        }
        Ok(revision)
    }

    fn revoke(&self, inner: &mut Inner, leases: &[LeaseId]) -> Result<()> {
        let ops: Vec<Op> = inner
            .kvs
            .values()
            .filter(|kv| kv.lease.is_some_and(|l| leases.contains(&l)))
            .map(|kv| Op::delete(kv.key.clone()))
            .collect();
        if !ops.is_empty() {
            self.commit(inner, ops)?;
        }
        for lease in leases {
            inner.leases.remove(lease);
        }
        Ok(())
    }
}

impl Inner {
    fn apply(&mut self, ops: &[Op], revision: i64) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let kv = match self.kvs.get(key) {
                        Some(old) => KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: old.create_revision,
                            mod_revision: revision,
                            version: old.version + 1,
                            lease: *lease,
                        },
                        None => KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: revision,
                            mod_revision: revision,
                            version: 1,
                            lease: *lease,
                        },
                    };
                    self.kvs.insert(key.clone(), kv.clone());
                    events.push(WatchEvent {
                        kind: WatchEventKind::Put,
                        kv,
                    });
                }
                Op::Delete { key } => {
                    if let Some(old) = self.kvs.remove(key) {
                        events.push(deleted(old, revision));
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let keys: Vec<String> = self
                        .kvs
                        .range(prefix.clone()..)
                        .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in keys {
                        if let Some(old) = self.kvs.remove(&key) {
                            events.push(deleted(old, revision));
                        }
                    }
                }
            }
        }
        self.revision = revision;
        events
    }

    fn check(&self, compare: &Compare) -> bool {
        match compare {
            Compare::ModRevision { key, revision } => {
                self.kvs.get(key).map_or(0, |kv| kv.mod_revision) == *revision
            }
            Compare::Value { key, value } => self.kvs.get(key).is_some_and(|kv| &kv.value == value),
        }
    }

    fn compact(&mut self) -> Result<()> {
        let Some(durable) = self.durable.as_mut() else {
            return Ok(());
        };
        let snapshot = Snapshot {
            revision: self.revision,
            kvs: self.kvs.values().cloned().collect(),
        };
        let bytes = serde_json::to_vec(&snapshot).map_err(|source| Error::Codec {
            key: "<snapshot>".into(),
            source,
        })?;
        let tmp = durable.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let target = durable.dir.join(SNAPSHOT_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &target).map_err(io(&target))?;
        File::open(&durable.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&durable.dir))?;
        // The snapshot now covers every log entry: entries at or below its revision are skipped
        // on replay, so truncating after the rename is safe at any crash point.
        durable.log.set_len(0).map_err(io(&target))?;
        durable.log.sync_all().map_err(io(&target))?;
        durable.log_bytes = 0;
        Ok(())
    }
}

fn deleted(old: KeyValue, revision: i64) -> WatchEvent {
    WatchEvent {
        kind: WatchEventKind::Delete,
        kv: KeyValue {
            value: Vec::new(),
            mod_revision: revision,
            ..old
        },
    }
}

fn load_snapshot(path: &Path) -> Result<(BTreeMap<String, KeyValue>, i64)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((BTreeMap::new(), 0)),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let kvs = snapshot
        .kvs
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    Ok((kvs, snapshot.revision))
}

/// Reads the log's records; returns them and the length of the intact prefix.
///
/// Only the last record may be torn (a crash while it was being appended): one whose length
/// runs past the end of the file, or whose bytes end exactly at the end of the file but fail
/// their check. A bad record with intact records after it is corruption, not a torn tail:
/// cutting there would silently drop every later change, so it is an error naming the offset.
fn read_log(path: &Path) -> Result<(Vec<LogEntry>, u64)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => {
            f.read_to_end(&mut bytes).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let mut entries = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        match parse_record(&bytes, pos) {
            Record::Entry(entry, next) => {
                entries.push(entry);
                pos = next;
            }
            Record::Incomplete => break,
            Record::Bad(reason, end) => {
                let later = (pos + 1..bytes.len())
                    .find(|&at| matches!(parse_record(&bytes, at), Record::Entry(..)));
                if end < bytes.len() || later.is_some() {
                    return Err(Error::Corrupt {
                        path: path.to_path_buf(),
                        reason: format!(
                            "record at byte {pos} of {}: {reason}, with {} more bytes after it{}; \
                             not a torn tail, so nothing is cut: restore the file or move it aside \
                             to start from {SNAPSHOT_FILE} alone",
                            bytes.len(),
                            bytes.len() - pos,
                            later.map_or(String::new(), |at| format!(
                                " (an intact record starts at byte {at})"
                            )),
                        ),
                    });
                }
                break;
            }
        }
    }
    Ok((entries, pos as u64))
}

enum Record {
    /// An intact record and the offset just past it.
    Entry(LogEntry, usize),
    /// The file ends inside the record's header or payload.
    Incomplete,
    /// The record is complete but fails a check; `usize` is where it ends.
    Bad(&'static str, usize),
}

fn parse_record(bytes: &[u8], pos: usize) -> Record {
    let Some(header) = bytes.get(pos..pos + 8) else {
        return Record::Incomplete;
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len as usize > MAX_RECORD_BYTES {
        return Record::Bad("length over the record limit", pos + 8);
    }
    let end = pos + 8 + len as usize;
    let Some(payload) = bytes.get(pos + 8..end) else {
        return Record::Incomplete;
    };
    if crc32c::crc32c(payload) != crc {
        return Record::Bad("checksum mismatch", end);
    }
    match serde_json::from_slice::<LogEntry>(payload) {
        Ok(entry) => Record::Entry(entry, end),
        Err(_) => Record::Bad("undecodable payload", end),
    }
}

impl EmbeddedMetadataStore {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared, &mut Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut inner = shared.inner.lock().expect("metadata lock");
            f(&shared, &mut inner)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

#[async_trait]
impl MetadataStore for EmbeddedMetadataStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let inner = self.shared.inner.lock().expect("metadata lock");
        Ok(inner.kvs.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        let inner = self.shared.inner.lock().expect("metadata lock");
        Ok(inner
            .kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect())
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.blocking(move |shared, inner| {
            if !txn.compares.iter().all(|c| inner.check(c)) {
                return Ok(TxnResponse {
                    succeeded: false,
                    revision: inner.revision,
                });
            }
            for op in &txn.ops {
                if let Op::Put {
                    lease: Some(lease), ..
                } = op
                {
                    if !inner.leases.contains_key(lease) {
                        return Err(Error::LeaseNotFound(*lease));
                    }
                }
            }
            if txn.ops.is_empty() {
                return Ok(TxnResponse {
                    succeeded: true,
                    revision: inner.revision,
                });
            }
            let revision = shared.commit(inner, txn.ops)?;
            Ok(TxnResponse {
                succeeded: true,
                revision,
            })
        })
        .await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        let mut inner = self.shared.inner.lock().expect("metadata lock");
        let id = inner.next_lease;
        inner.next_lease += 1;
        inner.leases.insert(
            id,
            Lease {
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let mut inner = self.shared.inner.lock().expect("metadata lock");
        let now = Instant::now();
        match inner.leases.get_mut(&lease) {
            Some(l) if l.deadline > now => {
                l.deadline = now + l.ttl;
                Ok(())
            }
            _ => Err(Error::LeaseNotFound(lease)),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.blocking(move |shared, inner| {
            if !inner.leases.contains_key(&lease) {
                return Err(Error::LeaseNotFound(lease));
            }
            shared.revoke(inner, &[lease])
        })
        .await
    }

    async fn watch(&self, prefix: &str) -> Result<mpsc::Receiver<WatchEvent>> {
        let mut events = self.shared.events.subscribe();
        let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
        let prefix = prefix.to_string();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) if event.kv.key.starts_with(&prefix) => {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Lagged or closed: end the watch; the contract says re-read and re-watch.
                    Err(_) => return,
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance_in_memory() {
        crate::testsuite::run_all(Arc::new(EmbeddedMetadataStore::in_memory())).await;
    }

    #[tokio::test]
    async fn state_survives_reopen_and_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
            store.put("/a", b"1".to_vec()).await.unwrap();
            store.put("/b", b"2".to_vec()).await.unwrap();
            let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
            store
                .txn(Txn::new().then(Op::Put {
                    key: "/leased".into(),
                    value: b"x".to_vec(),
                    lease: Some(lease),
                }))
                .await
                .unwrap();
        }
        // Simulate a crash in the middle of appending a record.
        let mut log = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG_FILE))
            .unwrap();
        log.write_all(&[0, 0, 0, 50, 1, 2]).unwrap();
        drop(log);

        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.get("/a").await.unwrap().unwrap().value, b"1");
        assert_eq!(store.get("/b").await.unwrap().unwrap().value, b"2");
        assert!(store.get("/leased").await.unwrap().is_none());
        store.put("/c", b"3".to_vec()).await.unwrap();
        drop(store);
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.get("/c").await.unwrap().unwrap().value, b"3");
    }

    #[tokio::test]
    async fn a_bad_record_in_the_middle_stops_open_and_cuts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
            store.put("/a", b"1".to_vec()).await.unwrap();
            store.put("/b", b"2".to_vec()).await.unwrap();
            store.put("/c", b"3".to_vec()).await.unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let first_len = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        // Flip one payload byte of the second record; the third stays intact after it.
        bytes[first_len + 8 + 8 + 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();

        let error = EmbeddedMetadataStore::open(dir.path())
            .err()
            .expect("open must fail");
        let text = error.to_string();
        assert!(matches!(error, Error::Corrupt { .. }), "{text}");
        assert!(text.contains(&format!("byte {}", first_len + 8)), "{text}");
        assert!(text.contains("txn.log"), "{text}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    }

    #[tokio::test]
    async fn a_bad_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
            store.put("/a", b"1".to_vec()).await.unwrap();
            store.put("/b", b"2".to_vec()).await.unwrap();
        }
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.get("/a").await.unwrap().unwrap().value, b"1");
        assert!(store.get("/b").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_transaction_over_the_record_limit_is_refused_and_the_store_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        // Base64 makes 3 bytes 4: a value of 3/4 of the limit plus a little is over it.
        let value = vec![1u8; MAX_RECORD_BYTES / 4 * 3 + 1024];
        let result = store.put("/big", value).await;
        assert!(
            matches!(result, Err(Error::TooLarge { limit, .. }) if limit == MAX_RECORD_BYTES),
            "{result:?}"
        );
        store.put("/small", b"ok".to_vec()).await.unwrap();
        drop(store);
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        assert!(store.get("/big").await.unwrap().is_none());
        assert_eq!(store.get("/small").await.unwrap().unwrap().value, b"ok");
    }

    #[tokio::test]
    async fn compaction_keeps_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        let big = vec![7u8; 512 * 1024];
        for i in 0..20 {
            store.put(&format!("/k{i}"), big.clone()).await.unwrap();
        }
        let log_len = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(log_len < COMPACT_LOG_BYTES, "log was compacted: {log_len}");
        drop(store);
        let store = EmbeddedMetadataStore::open(dir.path()).unwrap();
        assert_eq!(store.list("/k").await.unwrap().len(), 20);
        assert_eq!(store.get("/k19").await.unwrap().unwrap().value, big);
    }

    #[tokio::test(start_paused = true)]
    async fn lease_expiry_with_paused_time() {
        let store = EmbeddedMetadataStore::in_memory();
        let lease = store.grant_lease(Duration::from_secs(5)).await.unwrap();
        store
            .txn(Txn::new().then(Op::Put {
                key: "/brokers/1".into(),
                value: b"b".to_vec(),
                lease: Some(lease),
            }))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        store.keep_alive(lease).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(store.get("/brokers/1").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(store.get("/brokers/1").await.unwrap().is_none());
        assert!(matches!(
            store.keep_alive(lease).await,
            Err(Error::LeaseNotFound(_))
        ));
    }
}
