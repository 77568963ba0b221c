//! Kafka record batches (magic 2): header parsing, validation as Kafka's log validator does it,
//! and the in-place rewrites of the append path (base offset, leader epoch, LogAppendTime).
//!
//! Layout: base offset (8) | batch length (4) | partition leader epoch (4) | magic (1) |
//! CRC-32C (4) | attributes (2) | last offset delta (4) | base timestamp (8) | max timestamp (8) |
//! producer id (8) | producer epoch (2) | base sequence (4) | record count (4) | records.
//! The CRC covers attributes to the end, so rewriting the first 17 bytes keeps it valid.

use std::io::Read;

pub use silt_tiering::batch::{BatchHeader, HEADER_LEN, LOG_OVERHEAD};

const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("caller checked the length")
}

/// Why a batch was refused; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    #[error("record batch magic {0} is not supported; only magic 2")]
    UnsupportedMagic(i8),
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// What validation enforces beyond the format itself.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_decompressed_bytes: usize,
    /// Compacted topics refuse records without a key.
    pub require_keys: bool,
}

/// Splits a produce request's record set into batches and validates each. Returns each batch's
/// header and its byte range within `records`. The header's `max_timestamp` is the one computed
/// from the records (Kafka does not trust the producer's).
pub fn validate_record_set(
    records: &[u8],
    limits: &Limits,
) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, BatchError> {
    let max_message_bytes = limits.max_message_bytes;
    let mut out = Vec::new();
    let mut pos = 0;
    if records.is_empty() {
        return Err(BatchError::Corrupt("empty record set".into()));
    }
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD + 5 {
            return Err(BatchError::Corrupt(format!(
                "truncated batch header at byte {pos}"
            )));
        }
        let magic = rest[16] as i8;
        if magic != 2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        let header = BatchHeader::parse(rest)
            .ok_or_else(|| BatchError::Corrupt(format!("truncated batch header at byte {pos}")))?;
        if (header.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::Corrupt(format!(
                "batch length {} is below the minimum",
                header.batch_length
            )));
        }
        let size = header.total_size();
        if size > rest.len() {
            return Err(BatchError::Corrupt(format!(
                "batch length {} runs past the end of the record set",
                header.batch_length
            )));
        }
        if size > max_message_bytes {
            return Err(BatchError::TooLarge {
                size,
                max: max_message_bytes,
            });
        }
        let max_timestamp = validate_batch(&header, &rest[..size], limits)?;
        let mut header = header;
        header.max_timestamp = max_timestamp;
        out.push((header, pos..pos + size));
        pos += size;
    }
    Ok(out)
}

/// Validates one batch; returns the max timestamp of its records.
fn validate_batch(header: &BatchHeader, batch: &[u8], limits: &Limits) -> Result<i64, BatchError> {
    let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    if crc != header.crc {
        return Err(BatchError::Corrupt(format!(
            "CRC mismatch: batch says {:#010x}, data gives {crc:#010x}",
            header.crc
        )));
    }
    if header.is_control() {
        return Err(BatchError::InvalidRecord(
            "control batches may only be written by the broker".into(),
        ));
    }
    if header.is_transactional() {
        return Err(BatchError::Unsupported(
            "transactional batches: transactions are not supported".into(),
        ));
    }
    if header.record_count <= 0 {
        return Err(BatchError::InvalidRecord(format!(
            "batch record count {} must be positive",
            header.record_count
        )));
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(BatchError::InvalidRecord(format!(
            "last offset delta {} does not match record count {}",
            header.last_offset_delta, header.record_count
        )));
    }
    let body = &batch[HEADER_LEN..];
    let mut max_delta = i64::MIN;
    let mut null_key = false;
    let visit = |r: RecordInfo| {
        max_delta = max_delta.max(r.timestamp_delta);
        null_key |= r.null_key;
    };
    let codec = header.compression();
    if codec == 0 {
        walk_records(body, header.record_count, visit)?;
    } else {
        let plain = decompress(codec, body, limits.max_decompressed_bytes)?;
        walk_records(&plain, header.record_count, visit)?;
    }
    if limits.require_keys && null_key {
        return Err(BatchError::InvalidRecord(
            "compacted topics refuse records without a key".into(),
        ));
    }
    if header.is_log_append_time() {
        // The broker stamped it (a batch read back from the log): the header is the truth.
        return Ok(header.max_timestamp);
    }
    Ok(header.base_timestamp.saturating_add(max_delta))
}

/// Decompresses a batch body with the batch's codec (1 gzip, 2 snappy, 3 lz4, 4 zstd), refusing
/// to produce more than `limit` bytes.
pub fn decompress(codec: u8, data: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let too_big = || BatchError::Corrupt(format!("batch decompresses to more than {limit} bytes"));
    let read_bounded = |reader: &mut dyn Read, out: &mut Vec<u8>| -> Result<(), BatchError> {
        reader
            .take(limit as u64 + 1)
            .read_to_end(out)
            .map_err(|e| BatchError::Corrupt(format!("decompression failed: {e}")))?;
        if out.len() > limit {
            return Err(too_big());
        }
        Ok(())
    };
    match codec {
        1 => read_bounded(&mut flate2::read::GzDecoder::new(data), &mut out)?,
        2 => snappy_decompress(data, limit, &mut out)?,
        3 => {
            let mut decoder = lz4::Decoder::new(data)
                .map_err(|e| BatchError::Corrupt(format!("lz4 frame: {e}")))?;
            read_bounded(&mut decoder, &mut out)?
        }
        4 => {
            let mut decoder = zstd::stream::read::Decoder::new(data)
                .map_err(|e| BatchError::Corrupt(format!("zstd frame: {e}")))?;
            read_bounded(&mut decoder, &mut out)?
        }
        other => {
            return Err(BatchError::Corrupt(format!(
                "unknown compression codec {other}"
            )))
        }
    }
    Ok(out)
}

/// The xerial framing that the Java client's snappy stream writes.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

fn snappy_decompress(data: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let raw_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), BatchError> {
        let len = snap::raw::decompress_len(block)
            .map_err(|e| BatchError::Corrupt(format!("snappy: {e}")))?;
        if out.len() + len > limit {
            return Err(BatchError::Corrupt(format!(
                "batch decompresses to more than {limit} bytes"
            )));
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| BatchError::Corrupt(format!("snappy: {e}")))?;
        Ok(())
    };
    if data.len() >= XERIAL_HEADER_LEN && data.starts_with(XERIAL_MAGIC) {
        let mut pos = XERIAL_HEADER_LEN;
        while pos < data.len() {
            if data.len() - pos < 4 {
                return Err(BatchError::Corrupt("snappy: truncated block length".into()));
            }
            let len = u32::from_be_bytes(be(data, pos)) as usize;
            pos += 4;
            if data.len() - pos < len {
                return Err(BatchError::Corrupt("snappy: truncated block".into()));
            }
            raw_block(&data[pos..pos + len], out)?;
            pos += len;
        }
        Ok(())
    } else {
        raw_block(data, out)
    }
}

/// A cursor over record bytes that never reads past its slice.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .b
                .get(self.pos)
                .ok_or_else(|| BatchError::Corrupt("truncated varint".into()))?;
            self.pos += 1;
            if shift == 63 && byte > 1 {
                return Err(BatchError::Corrupt("varint overflows 64 bits".into()));
            }
            value |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(BatchError::Corrupt("varint too long".into()))
    }

    fn varint(&mut self) -> Result<i32, BatchError> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| BatchError::Corrupt(format!("varint {v} overflows 32 bits")))
    }

    fn skip(&mut self, n: usize) -> Result<(), BatchError> {
        if self.b.len() - self.pos < n {
            return Err(BatchError::Corrupt(
                "record field runs past its record".into(),
            ));
        }
        self.pos += n;
        Ok(())
    }

    /// A nullable length-prefixed field (-1 = null).
    fn skip_nullable(&mut self, what: &str) -> Result<(), BatchError> {
        let len = self.varint()?;
        if len < -1 {
            return Err(BatchError::Corrupt(format!("negative {what} length {len}")));
        }
        if len > 0 {
            self.skip(len as usize)?;
        }
        Ok(())
    }
}

/// What [`walk_records`] tells about each record.
#[derive(Debug, Clone, Copy)]
pub struct RecordInfo {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub null_key: bool,
}

/// Walks `count` records in uncompressed record bytes, checking that every length fits, offset
/// deltas run 0..count and nothing trails; calls `visit` for each record.
pub fn walk_records(
    body: &[u8],
    count: i32,
    mut visit: impl FnMut(RecordInfo),
) -> Result<(), BatchError> {
    let mut outer = Cursor { b: body, pos: 0 };
    for expected in 0..count {
        let len = outer.varint()?;
        if len < 0 || (len as usize) > body.len() - outer.pos {
            return Err(BatchError::Corrupt(format!(
                "record {expected} length {len} runs past the batch"
            )));
        }
        let record = &body[outer.pos..outer.pos + len as usize];
        outer.pos += len as usize;
        let mut c = Cursor { b: record, pos: 0 };
        c.skip(1)?; // attributes
        let timestamp_delta = c.varlong()?;
        let offset_delta = c.varint()?;
        if offset_delta != expected {
            return Err(BatchError::InvalidRecord(format!(
                "record {expected} has offset delta {offset_delta}"
            )));
        }
        let key_len = c.varint()?;
        if key_len < -1 {
            return Err(BatchError::Corrupt(format!(
                "negative key length {key_len}"
            )));
        }
        if key_len > 0 {
            c.skip(key_len as usize)?;
        }
        c.skip_nullable("value")?;
        let headers = c.varint()?;
        if headers < 0 {
            return Err(BatchError::Corrupt(format!(
                "negative header count {headers}"
            )));
        }
        for _ in 0..headers {
            let key_len = c.varint()?;
            if key_len < 0 {
                return Err(BatchError::Corrupt("null header key".into()));
            }
            c.skip(key_len as usize)?;
            c.skip_nullable("header value")?;
        }
        if c.pos != record.len() {
            return Err(BatchError::Corrupt(format!(
                "record {expected} has {} trailing bytes",
                record.len() - c.pos
            )));
        }
        visit(RecordInfo {
            offset_delta,
            timestamp_delta,
            null_key: key_len == -1,
        });
    }
    if outer.pos != body.len() {
        return Err(BatchError::InvalidRecord(format!(
            "batch holds more bytes than its {count} records"
        )));
    }
    Ok(())
}

/// Rewrites the base offset and partition leader epoch (outside the CRC). With
/// `log_append_time` it sets the timestamp type and the max timestamp to that time; otherwise
/// it sets the max timestamp to `create_max_timestamp` (computed from the records). The CRC is
/// recomputed only when a covered byte changed.
pub fn stamp(
    batch: &mut [u8],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
    create_max_timestamp: i64,
) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
    batch[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    let old_attributes = i16::from_be_bytes(be(batch, ATTRIBUTES_OFFSET));
    let old_max = i64::from_be_bytes(be(batch, MAX_TIMESTAMP_OFFSET));
    let (attributes, max) = match log_append_time {
        Some(now) => (old_attributes | TIMESTAMP_TYPE_BIT, now),
        None => (old_attributes, create_max_timestamp),
    };
    if (attributes, max) != (old_attributes, old_max) {
        batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
        batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&max.to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Timestamps of each record in a stored batch, as `(offset, timestamp)`; LogAppendTime batches
/// report their max timestamp for every record, as Kafka does.
pub fn record_timestamps(
    header: &BatchHeader,
    batch: &[u8],
    max_decompressed_bytes: usize,
) -> Result<Vec<(i64, i64)>, BatchError> {
    let mut out = Vec::with_capacity(header.record_count.clamp(0, 4096) as usize);
    let mut visit = |r: RecordInfo| {
        let ts = if header.is_log_append_time() {
            header.max_timestamp
        } else {
            header.base_timestamp.saturating_add(r.timestamp_delta)
        };
        out.push((header.base_offset + r.offset_delta as i64, ts));
    };
    let body = &batch[HEADER_LEN..header.total_size().min(batch.len())];
    if header.compression() == 0 {
        walk_records(body, header.record_count, &mut visit)?;
    } else {
        let plain = decompress(header.compression(), body, max_decompressed_bytes)?;
        walk_records(&plain, header.record_count, &mut visit)?;
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    pub(crate) fn encode(records: usize, compression: Compression) -> Vec<u8> {
        encode_keyed(records, compression, true)
    }

    pub(crate) fn encode_keyed(records: usize, compression: Compression, keys: bool) -> Vec<u8> {
        let records: Vec<Record> = (0..records)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder starts a new batch unless offset - sequence stays constant.
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i as i64 * 10,
                key: keys.then(|| format!("k{i}").into_bytes().into()),
                value: if i % 3 == 0 {
                    None
                } else {
                    Some(vec![b'v'; i * 7].into())
                },
                headers: [("h".into(), Some(b"x".to_vec().into()))]
                    .into_iter()
                    .collect(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.to_vec()
    }

    pub(crate) const LIMITS: Limits = Limits {
        max_message_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 24,
        require_keys: false,
    };

    #[test]
    fn every_codec_validates() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let batch = encode(50, codec);
            let parsed = validate_record_set(&batch, &LIMITS).unwrap();
            assert_eq!(parsed.len(), 1, "{codec:?}");
            assert_eq!(parsed[0].0.record_count, 50);
            let ts = record_timestamps(&parsed[0].0, &batch, 1 << 24).unwrap();
            assert_eq!(ts[7], (7, 1_700_000_000_070), "{codec:?}");
        }
    }

    #[test]
    fn corruption_is_refused() {
        let mut batch = encode(5, Compression::None);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(
            validate_record_set(&batch, &LIMITS),
            Err(BatchError::Corrupt(_))
        ));

        // A record count that disagrees with the records, with a valid CRC.
        let mut batch = encode(5, Compression::None);
        batch[57..61].copy_from_slice(&6i32.to_be_bytes());
        batch[23..27].copy_from_slice(&5i32.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(validate_record_set(&batch, &LIMITS).is_err());

        let batch = encode(5, Compression::None);
        assert!(matches!(
            validate_record_set(
                &batch,
                &Limits {
                    max_message_bytes: 64,
                    ..LIMITS
                }
            ),
            Err(BatchError::TooLarge { .. })
        ));
        assert!(validate_record_set(&batch[..batch.len() - 3], &LIMITS).is_err());
    }

    #[test]
    fn compacted_topics_need_keys_and_max_timestamp_is_recomputed() {
        let strict = Limits {
            require_keys: true,
            ..LIMITS
        };
        assert!(validate_record_set(&encode(4, Compression::Lz4), &strict).is_ok());
        let keyless = encode_keyed(4, Compression::Lz4, false);
        assert!(validate_record_set(&keyless, &LIMITS).is_ok());
        assert!(matches!(
            validate_record_set(&keyless, &strict),
            Err(BatchError::InvalidRecord(_))
        ));
        let mut lying = encode(4, Compression::None);
        lying[35..43].copy_from_slice(&4_000_000_000_000i64.to_be_bytes());
        let crc = crc32c::crc32c(&lying[21..]);
        lying[17..21].copy_from_slice(&crc.to_be_bytes());
        let (h, _) = validate_record_set(&lying, &LIMITS).unwrap()[0].clone();
        assert_eq!(
            h.max_timestamp, 1_700_000_000_030,
            "computed from the records"
        );
        stamp(&mut lying, 0, 0, None, h.max_timestamp);
        let again = validate_record_set(&lying, &LIMITS).unwrap()[0].0;
        assert_eq!(
            BatchHeader::parse(&lying).unwrap().max_timestamp,
            1_700_000_000_030
        );
        assert_eq!(again.max_timestamp, 1_700_000_000_030);
    }

    #[test]
    fn decompression_is_bounded() {
        let batch = encode(200, Compression::Zstd);
        assert!(matches!(
            validate_record_set(
                &batch,
                &Limits {
                    max_decompressed_bytes: 1000,
                    ..LIMITS
                }
            ),
            Err(BatchError::Corrupt(_))
        ));
    }

    #[test]
    fn stamping_keeps_the_crc_valid() {
        let mut batch = encode(3, Compression::Gzip);
        let computed = validate_record_set(&batch, &LIMITS).unwrap()[0]
            .0
            .max_timestamp;
        stamp(&mut batch, 42, 7, None, computed);
        let h = validate_record_set(&batch, &LIMITS).unwrap()[0].0;
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        stamp(&mut batch, 43, 8, Some(1_800_000_000_000), computed);
        let h = validate_record_set(&batch, &LIMITS).unwrap()[0].0;
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 1_800_000_000_000);
        assert_eq!(h.last_offset(), 45);
    }
}
