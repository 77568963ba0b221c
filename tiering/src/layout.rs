//! The bucket's key layout (format version 1). Every object starts with a magic and a format
//! version; this module is the one place that names keys.
//!
//! ```text
//! cluster.json                                             cluster descriptor (topics, configs)
//! wal/{hh}/{node:05}-{generation:010}-{seq:012}.wal        multi-partition WAL objects
//! topics/{topic_id}/{partition:05}/segments/{base:020}-{end:020}-{epoch:010}.seg
//! topics/{topic_id}/{partition:05}/manifest/{epoch:010}-{seq:020}.json
//! ```
//! `hh` is a hash of the rest of the WAL key, so that one broker's writes spread over S3's key
//! partitions. Manifest keys sort by leader epoch first: a fenced leader's manifests sort below
//! its successor's.

use object_store::path::Path;
use silt_metadata::{LeaderEpoch, NodeId, Offset, TopicId};

pub const FORMAT_VERSION: u32 = 1;

pub fn cluster_key() -> Path {
    Path::from("cluster.json")
}

pub fn wal_prefix() -> Path {
    Path::from("wal")
}

pub fn wal_object_key(node: NodeId, generation: u64, seq: u64) -> Path {
    let name = format!("{:05}-{generation:010}-{seq:012}.wal", node.0);
    let hash = crc32c::crc32c(name.as_bytes()) & 0xff;
    Path::from(format!("wal/{hash:02x}/{name}"))
}

pub fn topic_prefix(topic: TopicId) -> Path {
    Path::from(format!("topics/{topic}"))
}

pub fn partition_prefix(topic: TopicId, partition: i32) -> Path {
    Path::from(format!("topics/{topic}/{partition:05}"))
}

pub fn segments_prefix(topic: TopicId, partition: i32) -> Path {
    Path::from(format!("topics/{topic}/{partition:05}/segments"))
}

pub fn segment_key(
    topic: TopicId,
    partition: i32,
    base: Offset,
    end: Offset,
    epoch: LeaderEpoch,
) -> Path {
    Path::from(format!(
        "topics/{topic}/{partition:05}/segments/{:020}-{:020}-{:010}.seg",
        base.0, end.0, epoch.0
    ))
}

pub fn manifest_prefix(topic: TopicId, partition: i32) -> Path {
    Path::from(format!("topics/{topic}/{partition:05}/manifest"))
}

pub fn manifest_key(topic: TopicId, partition: i32, epoch: LeaderEpoch, seq: u64) -> Path {
    Path::from(format!(
        "topics/{topic}/{partition:05}/manifest/{:010}-{seq:020}.json",
        epoch.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_documented() {
        let t = TopicId::random();
        let a = manifest_key(t, 3, LeaderEpoch(2), 99);
        let b = manifest_key(t, 3, LeaderEpoch(10), 1);
        assert!(a.as_ref() < b.as_ref(), "a newer epoch sorts last");
        let w = wal_object_key(NodeId(7), 3, 12);
        assert!(w.as_ref().starts_with("wal/"), "{w}");
        assert!(w.as_ref().ends_with("/00007-0000000003-000000000012.wal"));
        let s = segment_key(t, 0, Offset(0), Offset(42), LeaderEpoch(1));
        assert!(s.as_ref().starts_with(segments_prefix(t, 0).as_ref()));
    }
}
