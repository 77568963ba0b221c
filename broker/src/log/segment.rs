//! A hot segment: a file of record batches as Kafka stores them, named by its base offset, with
//! sparse in-memory indexes (offset → position, timestamp → position) rebuilt on open.

use super::batch::{BatchHeader, HEADER_LEN};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// One index entry per this many bytes of batches (Kafka's `index.interval.bytes`).
const INDEX_INTERVAL_BYTES: u64 = 4096;

pub fn segment_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(format!("{base_offset:020}.log"))
}

pub struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    file: Arc<File>,
    size: u64,
    /// Offset after the last batch (the base offset while empty).
    next_offset: i64,
    /// (batch base offset, position), ascending.
    offset_index: Vec<(i64, u64)>,
    /// (running max timestamp, position), both ascending.
    time_index: Vec<(i64, u64)>,
    bytes_since_index: u64,
    pub max_timestamp: i64,
    /// Base offset of the first batch carrying `max_timestamp`.
    pub max_timestamp_batch: i64,
    pub created: SystemTime,
    dirty: Arc<AtomicBool>,
    poisoned: Arc<AtomicBool>,
}

/// What a checkpoint needs to fsync a segment without holding its partition's lock.
pub struct SyncHandle {
    file: Arc<File>,
    dirty: Arc<AtomicBool>,
    poisoned: Arc<AtomicBool>,
}

impl SyncHandle {
    /// fsyncs the file if anything was written since the last sync. After a failed fsync the
    /// kernel may have dropped the dirty pages, so a retry could "succeed" over lost data: the
    /// segment stays failed and the WAL that covers it is never removed.
    pub fn sync_if_dirty(&self) -> io::Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(io::Error::other("an earlier fsync of this segment failed"));
        }
        if self.dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.file.sync_data() {
                self.poisoned.store(true, Ordering::Release);
                tracing::error!(error = %e, "segment fsync failed; keeping the WAL until restart");
                return Err(e);
            }
        }
        Ok(())
    }
}

/// fsyncs a directory so that a file created or removed in it survives a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Segment {
    pub fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let path = segment_path(dir, base_offset);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        sync_dir(dir)?;
        Ok(Segment::empty(path, Arc::new(file), base_offset))
    }

    fn empty(path: PathBuf, file: Arc<File>, base_offset: i64) -> Segment {
        Segment {
            base_offset,
            path,
            file,
            size: 0,
            next_offset: base_offset,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            bytes_since_index: INDEX_INTERVAL_BYTES,
            max_timestamp: -1,
            max_timestamp_batch: -1,
            created: SystemTime::now(),
            dirty: Arc::new(AtomicBool::new(true)),
            poisoned: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Opens a segment, validating every batch (checksum, contiguous offsets). A torn or corrupt
    /// tail is cut off; returns the segment and whether anything was cut.
    pub fn open(path: &Path, base_offset: i64) -> io::Result<(Segment, bool)> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        let created = file
            .metadata()?
            .modified()
            .unwrap_or_else(|_| SystemTime::now());
        let file = Arc::new(file);
        let mut segment = Segment::empty(path.to_path_buf(), file.clone(), base_offset);
        segment.created = created;
        let mut reader = BufReader::with_capacity(1 << 20, &*file);
        let mut header = [0u8; HEADER_LEN];
        let mut body = Vec::new();
        let mut pos = 0u64;
        loop {
            if reader.read_exact(&mut header).is_err() {
                break;
            }
            let Some(h) = BatchHeader::parse(&header) else {
                break;
            };
            let total = h.total_size() as u64;
            if h.magic != 2
                || total < HEADER_LEN as u64
                || pos + total > len
                || h.base_offset != segment.next_offset
                || h.last_offset_delta < 0
            {
                break;
            }
            body.resize(total as usize - HEADER_LEN, 0);
            if reader.read_exact(&mut body).is_err() {
                break;
            }
            let crc = crc32c::crc32c_append(crc32c::crc32c(&header[21..]), &body);
            if crc != h.crc {
                break;
            }
            segment.index_batch(&h, pos, total);
            pos += total;
        }
        let cut = pos < len;
        if cut {
            file.set_len(pos)?;
            file.sync_all()?;
        }
        segment.size = pos;
        // Stays dirty: what a killed process wrote may be only in the page cache, and the WAL
        // that covers it is removed only after the next sync.
        Ok((segment, cut))
    }

    fn index_batch(&mut self, h: &BatchHeader, pos: u64, total: u64) {
        if self.bytes_since_index >= INDEX_INTERVAL_BYTES {
            self.offset_index.push((h.base_offset, pos));
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += total;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.max_timestamp_batch = h.base_offset;
            if self
                .time_index
                .last()
                .is_none_or(|(_, p)| pos - p >= INDEX_INTERVAL_BYTES)
            {
                self.time_index.push((h.max_timestamp, pos));
            }
        }
        self.next_offset = h.last_offset() + 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Appends one stamped batch.
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader) -> io::Result<()> {
        self.file.write_all_at(batch, self.size)?;
        self.dirty.store(true, Ordering::Release);
        let pos = self.size;
        self.size += batch.len() as u64;
        self.index_batch(header, pos, batch.len() as u64);
        Ok(())
    }

    /// Cuts the segment before the batch holding `offset` (a batch the WAL refused must not
    /// stay in the log) and rebuilds the in-memory index from the headers kept.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<()> {
        let cut = self.locate(offset)?;
        let mut kept = Vec::new();
        let mut pos = 0;
        while pos < cut {
            let h = self.header_at(pos)?;
            pos += h.total_size() as u64;
            kept.push(h);
        }
        self.file.set_len(cut)?;
        let mut fresh = Segment::empty(self.path.clone(), self.file.clone(), self.base_offset);
        fresh.created = self.created;
        fresh.dirty = self.dirty.clone();
        fresh.poisoned = self.poisoned.clone();
        let mut pos = 0;
        for h in &kept {
            let total = h.total_size() as u64;
            fresh.index_batch(h, pos, total);
            pos += total;
        }
        fresh.size = cut;
        fresh.dirty.store(true, Ordering::Release);
        *self = fresh;
        Ok(())
    }

    pub fn sync_handle(&self) -> SyncHandle {
        SyncHandle {
            file: self.file.clone(),
            dirty: self.dirty.clone(),
            poisoned: self.poisoned.clone(),
        }
    }

    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    fn header_at(&self, pos: u64) -> io::Result<BatchHeader> {
        let mut buf = [0u8; HEADER_LEN];
        self.file.read_exact_at(&mut buf, pos)?;
        BatchHeader::parse(&buf).ok_or_else(|| io::Error::other("short batch header"))
    }

    /// Position of the batch holding `offset` (or of the first batch after it); `size()` if
    /// the segment holds nothing at or after `offset`.
    pub fn locate(&self, offset: i64) -> io::Result<u64> {
        let start = match self.offset_index.partition_point(|(o, _)| *o <= offset) {
            0 => 0,
            i => self.offset_index[i - 1].1,
        };
        let mut pos = start;
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.last_offset() >= offset {
                return Ok(pos);
            }
            pos += h.total_size() as u64;
        }
        Ok(self.size)
    }

    /// The first batch whose max timestamp is at least `timestamp`, with its position.
    pub fn find_timestamp(&self, timestamp: i64) -> io::Result<Option<(BatchHeader, u64)>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let start = match self.time_index.partition_point(|(t, _)| *t < timestamp) {
            0 => 0,
            i => self.time_index[i - 1].1,
        };
        let mut pos = start;
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.max_timestamp >= timestamp {
                return Ok(Some((h, pos)));
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Headers of every batch holding offsets at or after `offset`, in order.
    pub fn headers_from(&self, offset: i64) -> io::Result<Vec<BatchHeader>> {
        let mut pos = self.locate(offset)?;
        let mut out = Vec::new();
        while pos < self.size {
            let h = self.header_at(pos)?;
            pos += h.total_size() as u64;
            out.push(h);
        }
        Ok(out)
    }

    /// Reads the whole batch at `pos`.
    pub fn read_batch(&self, pos: u64) -> io::Result<(BatchHeader, Vec<u8>)> {
        let h = self.header_at(pos)?;
        let mut buf = vec![0u8; h.total_size()];
        self.file.read_exact_at(&mut buf, pos)?;
        Ok((h, buf))
    }

    pub fn position_of_batch(&self, base_offset: i64) -> io::Result<u64> {
        self.locate(base_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{stamp, tests::encode};
    use kafka_protocol::records::Compression;
    use std::io::Write;

    #[test]
    fn append_locate_reopen_and_cut_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100).unwrap();
        let mut next = 100;
        for _ in 0..200 {
            let mut b = encode(5, Compression::None);
            let max = BatchHeader::parse(&b).unwrap().max_timestamp;
            stamp(&mut b, next, 3, None, max);
            let h = BatchHeader::parse(&b).unwrap();
            seg.append(&b, &h).unwrap();
            next += 5;
        }
        assert_eq!(seg.next_offset(), 1100);
        let pos = seg.locate(503).unwrap();
        let (h, _) = seg.read_batch(pos).unwrap();
        assert_eq!(h.base_offset, 500, "offset inside a batch finds that batch");
        assert_eq!(seg.locate(5000).unwrap(), seg.size());

        let size = seg.size();
        drop(seg);
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 100))
            .unwrap();
        f.write_all(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        drop(f);
        let (seg, cut) = Segment::open(&segment_path(dir.path(), 100), 100).unwrap();
        assert!(cut);
        assert_eq!(seg.size(), size);
        assert_eq!(seg.next_offset(), 1100);
        let (h, _) = seg.find_timestamp(1_700_000_000_030).unwrap().unwrap();
        assert_eq!(h.base_offset, 100);
    }
}
