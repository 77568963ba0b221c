//! Per-partition manifests: immutable JSON objects listing a partition's segment objects in
//! offset order, its leader-epoch history and the producer-state snapshot as of its end. The
//! metadata store points at the current one; the bucket reader takes the newest key.

use crate::{Error, Result};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use silt_metadata::catalog::EpochEntry;
use silt_metadata::{LeaderEpoch, Offset, TopicId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub key: String,
    pub base: Offset,
    /// The offset after the segment's last record.
    pub end: Offset,
    pub size: u64,
    pub max_timestamp: i64,
    /// The leader epoch that wrote the object.
    pub epoch: LeaderEpoch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub topic_id: TopicId,
    pub partition: i32,
    pub epoch: LeaderEpoch,
    pub seq: u64,
    /// The first offset a reader may return (retention and DeleteRecords move it).
    pub log_start: Offset,
    /// The offset after the last archived record: the last segment's end, kept when
    /// retention drops every segment. The recorded tail starts here; always a batch boundary.
    pub archived_end: Offset,
    pub segments: Vec<SegmentRef>,
    pub epoch_history: Vec<EpochEntry>,
    /// The broker's producer state as of [`Manifest::end`] (opaque to this crate).
    #[serde(default)]
    pub producers: Option<serde_json::Value>,
}

impl Manifest {
    pub fn empty(topic_id: TopicId, partition: i32) -> Manifest {
        Manifest {
            version: crate::layout::FORMAT_VERSION,
            topic_id,
            partition,
            epoch: LeaderEpoch(0),
            seq: 0,
            log_start: Offset(0),
            archived_end: Offset(0),
            segments: Vec::new(),
            epoch_history: Vec::new(),
            producers: None,
        }
    }

    /// The offset after the last archived record (where the recorded tail begins).
    pub fn end(&self) -> Offset {
        self.segments
            .last()
            .map_or(self.archived_end, |s| s.end.max(self.archived_end))
    }

    pub fn key(&self) -> Path {
        crate::layout::manifest_key(self.topic_id, self.partition, self.epoch, self.seq)
    }

    /// The segment holding `offset`, if any.
    pub fn segment_for(&self, offset: i64) -> Option<&SegmentRef> {
        let i = self.segments.partition_point(|s| s.end.0 <= offset);
        self.segments.get(i).filter(|s| s.base.0 <= offset)
    }

    /// Writes this manifest under its key, refusing to overwrite one that exists.
    pub async fn put(&self, store: &dyn ObjectStore) -> Result<Path> {
        let key = self.key();
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match store.put_opts(&key, bytes.into(), opts).await {
            Ok(_) => Ok(key),
            Err(source) => Err(Error::Store {
                op: "put manifest",
                key: key.to_string(),
                source,
            }),
        }
    }

    pub async fn get(store: &dyn ObjectStore, key: &Path) -> Result<Manifest> {
        let bytes = store
            .get(key)
            .await
            .map_err(|source| Error::Store {
                op: "get manifest",
                key: key.to_string(),
                source,
            })?
            .bytes()
            .await
            .map_err(|source| Error::Store {
                op: "get manifest",
                key: key.to_string(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }

    /// The newest manifest in the bucket (highest epoch, then sequence), if there is one.
    pub async fn newest(
        store: &dyn ObjectStore,
        topic: TopicId,
        partition: i32,
    ) -> Result<Option<Manifest>> {
        use futures::TryStreamExt;
        let prefix = crate::layout::manifest_prefix(topic, partition);
        let metas: Vec<_> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| Error::Store {
                op: "list manifests",
                key: prefix.to_string(),
                source,
            })?;
        let Some(newest) = metas
            .iter()
            .map(|m| &m.location)
            .max_by(|a, b| a.as_ref().cmp(b.as_ref()))
        else {
            return Ok(None);
        };
        Manifest::get(store, newest).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn newest_is_highest_epoch_and_puts_never_overwrite() {
        let store = InMemory::new();
        let t = TopicId::random();
        let mut m = Manifest::empty(t, 2);
        m.epoch = LeaderEpoch(3);
        m.seq = 9;
        m.archived_end = Offset(10);
        m.segments.push(SegmentRef {
            key: "s".into(),
            base: Offset(0),
            end: Offset(10),
            size: 1,
            max_timestamp: 0,
            epoch: LeaderEpoch(3),
        });
        m.put(&store).await.unwrap();
        assert!(
            m.put(&store).await.is_err(),
            "a manifest key is written once"
        );
        let mut older = m.clone();
        older.epoch = LeaderEpoch(2);
        older.seq = 50;
        older.segments.clear();
        older.put(&store).await.unwrap();
        let newest = Manifest::newest(&store, t, 2).await.unwrap().unwrap();
        assert_eq!(newest, m);
        assert_eq!(newest.end(), Offset(10));
        assert!(newest.segment_for(9).is_some() && newest.segment_for(10).is_none());
        assert!(Manifest::newest(&store, t, 3).await.unwrap().is_none());
    }
}
