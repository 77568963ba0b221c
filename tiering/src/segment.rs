//! Segment objects: a sealed run of a partition's record batches, exactly as the log stores
//! them, with an index and checksums in a footer, so a reader finds any offset with one ranged
//! GET for the footer and index (cached) and one for the data.
//!
//! ```text
//! "SILTSEG1" | version: u32 BE | reserved: u32               header, 16 bytes
//! record batches as stored                                    data, data_len bytes
//! index entries: (offset i64, position u64, max_ts_before i64)   24 bytes each, BE
//! footer, 64 bytes: base i64 | end i64 | data_len u64 | entries u32 | crc32c(data) u32 |
//!   crc32c(index) u32 | max_timestamp i64 | version u32 | reserved 4 | "SILTSEGF"
//! ```
//! An index entry points at a batch (`position` is relative to the data start) and carries the
//! largest timestamp of every batch before it, so both offset and timestamp lookups start at
//! an entry and scan at most [`INDEX_INTERVAL`] bytes.

use crate::batch::{self, BatchHeader};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

pub const HEADER_LEN: u64 = 16;
pub const FOOTER_LEN: u64 = 64;
const ENTRY_LEN: usize = 24;
/// One index entry per this many bytes of data.
pub const INDEX_INTERVAL: u64 = 64 * 1024;
const MAGIC: &[u8; 8] = b"SILTSEG1";
const FOOTER_MAGIC: &[u8; 8] = b"SILTSEGF";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub offset: i64,
    pub position: u64,
    pub max_timestamp_before: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    pub base: i64,
    pub end: i64,
    pub data_len: u64,
    pub entries: u32,
    pub data_crc: u32,
    pub index_crc: u32,
    pub max_timestamp: i64,
    pub version: u32,
}

impl Footer {
    /// Where the index starts in the object.
    pub fn index_start(&self) -> u64 {
        HEADER_LEN + self.data_len
    }

    pub fn index_len(&self) -> u64 {
        self.entries as u64 * ENTRY_LEN as u64
    }

    pub fn object_len(&self) -> u64 {
        self.index_start() + self.index_len() + FOOTER_LEN
    }

    pub fn parse(key: &str, b: &[u8]) -> Result<Footer> {
        let corrupt = |reason: &str| Error::Corrupt {
            key: key.into(),
            reason: reason.into(),
        };
        if b.len() != FOOTER_LEN as usize || &b[56..64] != FOOTER_MAGIC {
            return Err(corrupt("not a segment footer"));
        }
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8"));
        let u32_at = |at: usize| u32::from_be_bytes(b[at..at + 4].try_into().expect("4"));
        let footer = Footer {
            base: i64_at(0),
            end: i64_at(8),
            data_len: i64_at(16) as u64,
            entries: u32_at(24),
            data_crc: u32_at(28),
            index_crc: u32_at(32),
            max_timestamp: i64_at(36),
            version: u32_at(44),
        };
        if footer.version != crate::layout::FORMAT_VERSION {
            return Err(corrupt(&format!(
                "segment format version {}",
                footer.version
            )));
        }
        if footer.end < footer.base {
            return Err(corrupt("end before base"));
        }
        Ok(footer)
    }

    fn encode(&self) -> [u8; FOOTER_LEN as usize] {
        let mut b = [0u8; FOOTER_LEN as usize];
        b[0..8].copy_from_slice(&self.base.to_be_bytes());
        b[8..16].copy_from_slice(&self.end.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_len.to_be_bytes());
        b[24..28].copy_from_slice(&self.entries.to_be_bytes());
        b[28..32].copy_from_slice(&self.data_crc.to_be_bytes());
        b[32..36].copy_from_slice(&self.index_crc.to_be_bytes());
        b[36..44].copy_from_slice(&self.max_timestamp.to_be_bytes());
        b[44..48].copy_from_slice(&self.version.to_be_bytes());
        b[56..64].copy_from_slice(FOOTER_MAGIC);
        b
    }
}

/// The footer and index of one segment object.
#[derive(Debug, Clone)]
pub struct SegmentIndex {
    pub footer: Footer,
    pub entries: Vec<IndexEntry>,
}

impl SegmentIndex {
    /// Parses the index bytes (between data and footer) and checks their checksum.
    pub fn parse(key: &str, footer: Footer, bytes: &[u8]) -> Result<SegmentIndex> {
        if bytes.len() as u64 != footer.index_len() || crc32c::crc32c(bytes) != footer.index_crc {
            return Err(Error::Corrupt {
                key: key.into(),
                reason: "segment index checksum mismatch".into(),
            });
        }
        let entries = bytes
            .chunks_exact(ENTRY_LEN)
            .map(|e| IndexEntry {
                offset: i64::from_be_bytes(e[0..8].try_into().expect("8")),
                position: u64::from_be_bytes(e[8..16].try_into().expect("8")),
                max_timestamp_before: i64::from_be_bytes(e[16..24].try_into().expect("8")),
            })
            .collect();
        Ok(SegmentIndex { footer, entries })
    }

    /// Data position of the indexed batch at or before `offset`.
    pub fn position_for_offset(&self, offset: i64) -> u64 {
        let i = self.entries.partition_point(|e| e.offset <= offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }

    /// Data position from which to scan for the first record with a timestamp ≥ `ts`.
    pub fn position_for_timestamp(&self, ts: i64) -> u64 {
        let i = self
            .entries
            .partition_point(|e| e.max_timestamp_before < ts);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].position
        }
    }
}

/// Builds a segment object from whole batches, streaming: [`SegmentWriter::header`], then the
/// data as given to [`SegmentWriter::add`], then [`SegmentWriter::finish`].
pub struct SegmentWriter {
    base: i64,
    end: i64,
    data_len: u64,
    crc: u32,
    index: Vec<IndexEntry>,
    last_indexed: Option<u64>,
    max_timestamp: i64,
}

impl SegmentWriter {
    pub fn new(base: i64) -> Self {
        SegmentWriter {
            base,
            end: base,
            data_len: 0,
            crc: 0,
            index: Vec::new(),
            last_indexed: None,
            max_timestamp: -1,
        }
    }

    pub fn header() -> [u8; HEADER_LEN as usize] {
        let mut h = [0u8; HEADER_LEN as usize];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&crate::layout::FORMAT_VERSION.to_be_bytes());
        h
    }

    /// Adds whole, consecutive batches; the same bytes go into the object after the header.
    pub fn add(&mut self, bytes: &[u8]) -> Result<()> {
        let mut consumed = 0;
        for (pos, h) in batch::batches(bytes) {
            self.note(self.data_len + pos as u64, &h)?;
            consumed = pos + h.total_size();
        }
        if consumed != bytes.len() {
            return Err(Error::Corrupt {
                key: format!("segment at {}", self.base),
                reason: "data handed to the segment writer does not end on a batch boundary".into(),
            });
        }
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.data_len += bytes.len() as u64;
        Ok(())
    }

    fn note(&mut self, position: u64, h: &BatchHeader) -> Result<()> {
        if h.base_offset < self.end {
            return Err(Error::Corrupt {
                key: format!("segment at {}", self.base),
                reason: format!(
                    "batch at offset {} goes backwards (expected {})",
                    h.base_offset, self.end
                ),
            });
        }
        if self
            .last_indexed
            .is_none_or(|last| position - last >= INDEX_INTERVAL)
        {
            self.index.push(IndexEntry {
                offset: h.base_offset,
                position,
                max_timestamp_before: self.max_timestamp,
            });
            self.last_indexed = Some(position);
        }
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        self.end = h.last_offset() + 1;
        Ok(())
    }

    /// Offset after the last batch added.
    pub fn end(&self) -> i64 {
        self.end
    }

    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Index and footer: the object's last bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.index.len() * ENTRY_LEN + FOOTER_LEN as usize);
        for e in &self.index {
            out.extend_from_slice(&e.offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
            out.extend_from_slice(&e.max_timestamp_before.to_be_bytes());
        }
        let footer = Footer {
            base: self.base,
            end: self.end,
            data_len: self.data_len,
            entries: self.index.len() as u32,
            data_crc: self.crc,
            index_crc: crc32c::crc32c(&out),
            max_timestamp: self.max_timestamp,
            version: crate::layout::FORMAT_VERSION,
        };
        out.extend_from_slice(&footer.encode());
        out
    }
}

/// Builds a whole segment object in memory (small segments and tests).
pub fn build(base: i64, data: &[u8]) -> Result<Vec<u8>> {
    let mut w = SegmentWriter::new(base);
    w.add(data)?;
    let mut out = SegmentWriter::header().to_vec();
    out.extend_from_slice(data);
    out.extend_from_slice(&w.finish());
    Ok(out)
}

/// From `window` (data bytes starting at a batch boundary), the whole batches that hold
/// offsets ≥ `offset`: at most `max_bytes`, except that with `min_one` the first is returned
/// whole: `Err((position, size))` asks the caller for that batch when the window holds only part
/// of it.
pub fn cut_batches(
    window: &[u8],
    offset: i64,
    max_bytes: usize,
    min_one: bool,
) -> std::result::Result<std::ops::Range<usize>, (usize, usize)> {
    let mut start = None;
    let mut end = 0;
    let mut at = 0;
    while let Some(h) = BatchHeader::parse(&window[at..]) {
        let size = h.total_size();
        if h.last_offset() < offset {
            if window.len() - at < size {
                break;
            }
            at += size;
            continue;
        }
        let first = *start.get_or_insert(at);
        if window.len() - at < size || at + size - first > max_bytes {
            if at == first && min_one {
                if window.len() - at >= size {
                    return Ok(at..at + size);
                }
                return Err((at, size));
            }
            break;
        }
        at += size;
        end = at;
    }
    match start {
        Some(s) if end > s => Ok(s..end),
        _ => Ok(0..0),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid-looking batch header + `pad` bytes (CRC not checked here).
    pub fn fake_batch(base: i64, records: i32, ts: i64, pad: usize) -> Vec<u8> {
        let mut b = vec![0u8; batch::HEADER_LEN + pad];
        let len = (b.len() - batch::LOG_OVERHEAD) as i32;
        b[0..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
        b[27..35].copy_from_slice(&ts.to_be_bytes());
        b[35..43].copy_from_slice(&ts.to_be_bytes());
        b[57..61].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn footer_and_index_find_offsets_and_times() {
        let mut data = Vec::new();
        for i in 0..100 {
            data.extend(fake_batch(1000 + i * 10, 10, 5000 + i, 4000));
        }
        let object = build(1000, &data).unwrap();
        let n = object.len();
        let footer = Footer::parse("k", &object[n - 64..]).unwrap();
        assert_eq!(
            (footer.base, footer.end, footer.data_len),
            (1000, 2000, data.len() as u64)
        );
        assert_eq!(footer.object_len(), n as u64);
        let idx_bytes = &object[footer.index_start() as usize..n - 64];
        let index = SegmentIndex::parse("k", footer, idx_bytes).unwrap();
        assert!(index.entries.len() > 3 && index.entries.len() < 20);
        assert_eq!(
            crc32c::crc32c(&object[16..16 + data.len()]),
            footer.data_crc
        );
        for target in [1000, 1005, 1555, 1999] {
            let pos = index.position_for_offset(target) as usize;
            let h = BatchHeader::parse(&data[pos..]).unwrap();
            assert!(h.base_offset <= target, "{target}");
            let window = &data[pos..];
            let r = cut_batches(window, target, 1 << 20, true).unwrap();
            let first = BatchHeader::parse(&window[r.start..]).unwrap();
            assert!(first.base_offset <= target && first.last_offset() >= target);
        }
        let pos = index.position_for_timestamp(5050) as usize;
        let h = BatchHeader::parse(&data[pos..]).unwrap();
        assert!(h.max_timestamp <= 5050);
        let mut bad = idx_bytes.to_vec();
        bad[3] ^= 1;
        assert!(SegmentIndex::parse("k", footer, &bad).is_err());
    }

    #[test]
    fn cut_respects_max_bytes_and_min_one() {
        let mut data = Vec::new();
        for i in 0..4 {
            data.extend(fake_batch(i * 5, 5, 0, 100));
        }
        let one = data.len() / 4;
        assert_eq!(cut_batches(&data, 7, one * 2, false).unwrap(), one..one * 3);
        assert_eq!(cut_batches(&data, 0, one - 1, false).unwrap(), 0..0);
        assert_eq!(cut_batches(&data, 0, one - 1, true), Ok(0..one));
        assert_eq!(
            cut_batches(&data[..one + 70], 5, 1 << 20, true),
            Err((one, one))
        );
        assert_eq!(cut_batches(&data, 100, 1 << 20, true).unwrap(), 0..0);
        let mut w = SegmentWriter::new(0);
        assert!(w.add(&data[..one + 1]).is_err(), "partial batch refused");
    }
}
