//! Kafka record batches (magic 2) as the log stores them: the fixed header, enough to index
//! and cut segments without decoding records. Validation and rewrites live in the broker.
//!
//! Layout: base offset (8) | batch length (4) | partition leader epoch (4) | magic (1) |
//! CRC-32C (4) | attributes (2) | last offset delta (4) | base timestamp (8) | max timestamp (8) |
//! producer id (8) | producer epoch (2) | base sequence (4) | record count (4) | records.

pub const HEADER_LEN: usize = 61;
/// Bytes before the batch-length field's coverage begins (base offset + length).
pub const LOG_OVERHEAD: usize = 12;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("caller checked the length")
}

impl BatchHeader {
    /// Parses the fixed header; `None` when fewer than [`HEADER_LEN`] bytes are given.
    pub fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: i64::from_be_bytes(be(b, 0)),
            batch_length: i32::from_be_bytes(be(b, 8)),
            partition_leader_epoch: i32::from_be_bytes(be(b, 12)),
            magic: b[16] as i8,
            crc: u32::from_be_bytes(be(b, 17)),
            attributes: i16::from_be_bytes(be(b, 21)),
            last_offset_delta: i32::from_be_bytes(be(b, 23)),
            base_timestamp: i64::from_be_bytes(be(b, 27)),
            max_timestamp: i64::from_be_bytes(be(b, 35)),
            producer_id: i64::from_be_bytes(be(b, 43)),
            producer_epoch: i16::from_be_bytes(be(b, 51)),
            base_sequence: i32::from_be_bytes(be(b, 53)),
            record_count: i32::from_be_bytes(be(b, 57)),
        })
    }

    /// Size of the whole batch on disk and on the wire.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Iterates the whole batches at the start of `bytes` with their positions; stops at the first
/// incomplete or malformed one.
pub fn batches(bytes: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = BatchHeader::parse(&bytes[at..])?;
        let size = h.total_size();
        if h.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 || bytes.len() - at < size {
            return None;
        }
        let pos = at;
        at += size;
        Some((pos, h))
    })
}
