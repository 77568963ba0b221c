//! The bucket reader: a topic's committed history straight from object storage, with no broker
//! and no metadata server. It reads the cluster descriptor for topic names and ids, the newest
//! manifest of each partition, and the segment objects it lists; it reads up to that manifest's
//! end and says which offset that is.
//!
//! ```no_run
//! # async fn demo() -> silt_tiering::Result<()> {
//! let store = silt_tiering::store::from_url("s3://bucket/silt")?;
//! let reader = silt_tiering::reader::BucketReader::open(store).await?;
//! let end = reader.partition_end("orders", 0).await?;
//! reader.read("orders", 0, 0, end, |record| { println!("{}", record.offset); true }).await?;
//! # Ok(()) }
//! ```

use crate::manifest::Manifest;
use crate::read::{ReadConfig, TieredReader};
use crate::{Error, Result};
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use silt_metadata::TopicId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `cluster.json`: what a reader needs to find topics without the metadata store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterDescriptor {
    pub version: u32,
    pub cluster_id: String,
    pub topics: Vec<TopicDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescriptor {
    pub name: String,
    pub id: TopicId,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

impl ClusterDescriptor {
    pub async fn put(&self, store: &dyn ObjectStore) -> Result<()> {
        let key = crate::layout::cluster_key();
        let bytes = serde_json::to_vec_pretty(self).expect("descriptor serializes");
        store
            .put(&key, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| Error::Store {
                op: "put cluster descriptor",
                key: key.to_string(),
                source,
            })
    }

    pub async fn get(store: &dyn ObjectStore) -> Result<ClusterDescriptor> {
        let key = crate::layout::cluster_key();
        let err = |source| Error::Store {
            op: "get cluster descriptor",
            key: key.to_string(),
            source,
        };
        let bytes = match store.get(&key).await {
            Ok(r) => r.bytes().await.map_err(err)?,
            Err(object_store::Error::NotFound { .. }) => return Err(Error::NotFound(
                "no cluster.json in this bucket: is it a silt bucket (check the URL and prefix)?"
                    .into(),
            )),
            Err(e) => return Err(err(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }
}

/// One record as the bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

pub struct BucketReader {
    descriptor: ClusterDescriptor,
    reader: Arc<TieredReader>,
}

/// Bytes asked of the segment reader per step.
const STEP_BYTES: usize = 4 << 20;

impl BucketReader {
    /// Reads the cluster descriptor; reads go through a memory-only cache.
    pub async fn open(store: Arc<dyn ObjectStore>) -> Result<BucketReader> {
        let descriptor = ClusterDescriptor::get(store.as_ref()).await?;
        let reader = TieredReader::new(store, &ReadConfig::default()).await?;
        Ok(BucketReader { descriptor, reader })
    }

    pub fn descriptor(&self) -> &ClusterDescriptor {
        &self.descriptor
    }

    pub fn topic(&self, name: &str) -> Result<&TopicDescriptor> {
        self.descriptor
            .topics
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| {
                Error::NotFound(format!("topic {name} is not in the bucket's cluster.json"))
            })
    }

    /// The newest manifest of a partition (an empty one if none was written yet).
    pub async fn manifest(&self, topic: &str, partition: i32) -> Result<Manifest> {
        let t = self.topic(topic)?;
        if !(0..t.partitions).contains(&partition) {
            return Err(Error::NotFound(format!(
                "topic {topic} has partitions 0..{}; there is no partition {partition}",
                t.partitions
            )));
        }
        Ok(
            Manifest::newest(self.reader.store().as_ref(), t.id, partition)
                .await?
                .unwrap_or_else(|| Manifest::empty(t.id, partition)),
        )
    }

    /// The offset after the last record a reader can get from the bucket.
    pub async fn partition_end(&self, topic: &str, partition: i32) -> Result<i64> {
        Ok(self.manifest(topic, partition).await?.end().0)
    }

    /// The first offset whose record has a timestamp ≥ `ts` (the manifest's end if none).
    pub async fn offset_for_time(&self, manifest: &Manifest, ts: i64) -> Result<i64> {
        for seg in &manifest.segments {
            if seg.max_timestamp < ts || seg.end.0 <= manifest.log_start.0 {
                continue;
            }
            let mut offset = seg.base.0.max(manifest.log_start.0);
            while offset < seg.end.0 {
                let bytes = self.reader.read(seg, offset, STEP_BYTES, true).await?;
                if bytes.is_empty() {
                    break;
                }
                let mut found = None;
                let before = offset;
                offset = decode(&bytes, manifest.partition, |r| {
                    if r.timestamp >= ts && r.offset >= manifest.log_start.0 {
                        found = Some(r.offset);
                        return false;
                    }
                    true
                })?
                .max(before + 1);
                if let Some(o) = found {
                    return Ok(o);
                }
            }
        }
        Ok(manifest.end().0)
    }

    /// Calls `each` for every record in `from..to` of the newest manifest, in offset order,
    /// until it returns false. Control records (transaction markers) are skipped.
    pub async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        to: i64,
        each: impl FnMut(Record) -> bool,
    ) -> Result<()> {
        let manifest = self.manifest(topic, partition).await?;
        self.read_manifest(&manifest, from, to, each).await
    }

    pub async fn read_manifest(
        &self,
        manifest: &Manifest,
        from: i64,
        to: i64,
        mut each: impl FnMut(Record) -> bool,
    ) -> Result<()> {
        let to = to.min(manifest.end().0);
        let mut offset = from.max(manifest.log_start.0);
        while offset < to {
            let Some(seg) = manifest.segment_for(offset) else {
                break;
            };
            let bytes = self.reader.read(seg, offset, STEP_BYTES, true).await?;
            if bytes.is_empty() {
                offset = seg.end.0;
                continue;
            }
            let mut stop = false;
            let next = decode(&bytes, manifest.partition, |r| {
                if r.offset < offset || r.offset >= to || stop {
                    return !stop;
                }
                if !each(r) {
                    stop = true;
                }
                !stop
            })?;
            if stop {
                break;
            }
            offset = next.max(offset + 1);
        }
        Ok(())
    }
}

/// Decodes whole batches; returns the offset after the last batch seen.
fn decode(bytes: &Bytes, partition: i32, mut each: impl FnMut(Record) -> bool) -> Result<i64> {
    let mut next = 0;
    for (pos, h) in crate::batch::batches(bytes) {
        next = h.last_offset() + 1;
        if h.is_control() {
            continue;
        }
        let mut batch = bytes.slice(pos..pos + h.total_size());
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch).map_err(|e| {
            Error::Corrupt {
                key: format!("batch at offset {}", h.base_offset),
                reason: e.to_string(),
            }
        })?;
        for r in set.records {
            let keep_going = each(Record {
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
            if !keep_going {
                return Ok(next);
            }
        }
    }
    Ok(next)
}
