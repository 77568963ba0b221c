//! WAL objects: the broker's recent writes for many partitions, one PUT per object.
//!
//! ```text
//! "SILTWAL1" | version: u32 BE | per partition, its batches back to back | trailer JSON |
//! trailer length: u32 BE | crc32c(trailer): u32 BE | "SILTWALT"
//! ```
//! The trailer lists the extents (as in the commit record the metadata store holds), so the
//! bucket alone describes what an object contains. A partition's batches are contiguous in an
//! object and in offset order.

use crate::{Error, Result};
use bytes::Bytes;
use silt_metadata::{LeaderEpoch, Offset, TopicId};
use std::collections::BTreeMap;

const MAGIC: &[u8; 8] = b"SILTWAL1";
const TRAILER_MAGIC: &[u8; 8] = b"SILTWALT";
pub const HEADER_LEN: usize = 12;

pub use silt_metadata::catalog::WalExtent as Extent;

#[derive(Default)]
struct Section {
    bytes: Vec<u8>,
    epoch: i32,
    first: i64,
    last: i64,
}

/// Collects batches for one WAL object.
#[derive(Default)]
pub struct WalObjectBuilder {
    sections: BTreeMap<(TopicId, i32), Section>,
    bytes: usize,
}

impl WalObjectBuilder {
    /// Adds one batch (already offset-stamped) of `topic`/`partition` covering `first..=last`.
    /// Batches of a partition must come in offset order.
    pub fn push(
        &mut self,
        topic: TopicId,
        partition: i32,
        epoch: i32,
        first: i64,
        last: i64,
        batch: &[u8],
    ) {
        let section = self
            .sections
            .entry((topic, partition))
            .or_insert_with(|| Section {
                first,
                ..Section::default()
            });
        section.bytes.extend_from_slice(batch);
        section.epoch = section.epoch.max(epoch);
        section.last = last;
        self.bytes += batch.len();
    }

    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
    }

    /// Bytes of batches collected so far.
    pub fn len(&self) -> usize {
        self.bytes
    }

    /// The object's bytes and its extents.
    pub fn finish(self) -> (Bytes, Vec<Extent>) {
        let mut out = Vec::with_capacity(HEADER_LEN + self.bytes + 256);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&crate::layout::FORMAT_VERSION.to_be_bytes());
        let mut extents = Vec::with_capacity(self.sections.len());
        for ((topic_id, partition), s) in self.sections {
            extents.push(Extent {
                topic_id,
                partition,
                epoch: LeaderEpoch(s.epoch),
                first: Offset(s.first),
                last: Offset(s.last),
                start: out.len() as u64,
                len: s.bytes.len() as u64,
            });
            out.extend_from_slice(&s.bytes);
        }
        let trailer = serde_json::to_vec(&extents).expect("extents serialize");
        out.extend_from_slice(&trailer);
        out.extend_from_slice(&(trailer.len() as u32).to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&trailer).to_be_bytes());
        out.extend_from_slice(TRAILER_MAGIC);
        (Bytes::from(out), extents)
    }
}

/// Reads the extents a whole WAL object describes (for tools and recovery checks).
pub fn decode_extents(key: &str, object: &[u8]) -> Result<Vec<Extent>> {
    let corrupt = |reason: &str| Error::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if object.len() < HEADER_LEN + 16 || &object[..8] != MAGIC {
        return Err(corrupt("not a WAL object"));
    }
    let n = object.len();
    if &object[n - 8..] != TRAILER_MAGIC {
        return Err(corrupt("missing trailer"));
    }
    let len = u32::from_be_bytes(object[n - 16..n - 12].try_into().expect("4")) as usize;
    let crc = u32::from_be_bytes(object[n - 12..n - 8].try_into().expect("4"));
    if len > n - 16 - HEADER_LEN {
        return Err(corrupt("trailer length out of range"));
    }
    let trailer = &object[n - 16 - len..n - 16];
    if crc32c::crc32c(trailer) != crc {
        return Err(corrupt("trailer checksum mismatch"));
    }
    serde_json::from_slice(trailer).map_err(|e| corrupt(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_describe_the_bytes() {
        let (a, b) = (TopicId::random(), TopicId::random());
        let mut w = WalObjectBuilder::default();
        w.push(a, 0, 3, 10, 14, b"aaaaa");
        w.push(b, 1, 3, 0, 0, b"b");
        w.push(a, 0, 3, 15, 15, b"AA");
        assert_eq!(w.len(), 8);
        let (bytes, extents) = w.finish();
        assert_eq!(extents.len(), 2);
        let ea = extents.iter().find(|e| e.topic_id == a).unwrap();
        assert_eq!(
            (ea.first, ea.last, ea.end()),
            (Offset(10), Offset(15), Offset(16))
        );
        let slice = &bytes[ea.start as usize..(ea.start + ea.len) as usize];
        assert_eq!(slice, b"aaaaaAA");
        assert_eq!(decode_extents("k", &bytes).unwrap(), extents);
        let mut torn = bytes.to_vec();
        torn.truncate(torn.len() - 1);
        assert!(decode_extents("k", &torn).is_err());
    }
}
