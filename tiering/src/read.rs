//! Tiered reads: record batches from segment objects, through a foyer hybrid cache (memory and
//! local disk) of fixed-size blocks, with read-ahead for sequential consumers. Every GET takes a
//! permit from the catch-up budget, so reads from the bucket cannot crowd out uploads.

use crate::manifest::SegmentRef;
use crate::segment::{self, Footer, SegmentIndex, FOOTER_LEN, HEADER_LEN, INDEX_INTERVAL};
use crate::{Error, Result};
use bytes::{Bytes, BytesMut};
use foyer::{BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Cache block size: the unit of GETs and of cache entries.
pub const BLOCK: u64 = 1024 * 1024;
/// Parsed segment indexes kept in memory.
const MAX_INDEXES: usize = 4096;

#[derive(Debug, Clone)]
pub struct ReadConfig {
    /// Directory for the disk tier; `None` keeps the cache in memory only.
    pub cache_dir: Option<PathBuf>,
    pub memory_bytes: usize,
    pub disk_bytes: usize,
    /// Concurrent GETs for catch-up reads.
    pub concurrency: usize,
    /// Blocks fetched ahead of a sequential reader.
    pub readahead_blocks: u64,
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            cache_dir: None,
            memory_bytes: 64 << 20,
            disk_bytes: 1 << 30,
            concurrency: 8,
            readahead_blocks: 4,
        }
    }
}

/// Cache counters (the broker exports them as metrics).
#[derive(Debug, Default)]
pub struct ReadStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bytes_fetched: AtomicU64,
}

pub struct TieredReader {
    store: Arc<dyn ObjectStore>,
    cache: HybridCache<String, Bytes>,
    indexes: Mutex<HashMap<String, Arc<SegmentIndex>>>,
    budget: Arc<Semaphore>,
    readahead: u64,
    pub stats: Arc<ReadStats>,
}

fn store_err<'a>(op: &'static str, key: &'a str) -> impl FnOnce(object_store::Error) -> Error + 'a {
    move |source| Error::Store {
        op,
        key: key.to_string(),
        source,
    }
}

impl TieredReader {
    pub async fn new(
        store: Arc<dyn ObjectStore>,
        config: &ReadConfig,
    ) -> Result<Arc<TieredReader>> {
        let builder = HybridCacheBuilder::new()
            .with_name("silt-segments")
            .memory(config.memory_bytes.max(BLOCK as usize * 4))
            .with_weighter(|k: &String, v: &Bytes| k.len() + v.len())
            .storage();
        let builder = match &config.cache_dir {
            Some(dir) => {
                let cache_err = |e: foyer::Error| Error::Cache {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                };
                std::fs::create_dir_all(dir).map_err(|e| Error::Cache {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                })?;
                let device = FsDeviceBuilder::new(dir)
                    .with_capacity(config.disk_bytes.max(64 << 20))
                    .build()
                    .map_err(cache_err)?;
                builder.with_engine_config(BlockEngineConfig::new(device))
            }
            None => builder,
        };
        let cache = builder.build().await.map_err(|e| Error::Cache {
            path: format!("{:?}", config.cache_dir),
            reason: e.to_string(),
        })?;
        Ok(Arc::new(TieredReader {
            store,
            cache,
            indexes: Mutex::new(HashMap::new()),
            budget: Arc::new(Semaphore::new(config.concurrency.max(1))),
            readahead: config.readahead_blocks,
            stats: Arc::default(),
        }))
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Footer and index of a segment object (two ranged GETs the first time, then memory).
    pub async fn index(&self, seg: &SegmentRef) -> Result<Arc<SegmentIndex>> {
        if let Some(i) = self.indexes.lock().expect("index lock").get(&seg.key) {
            return Ok(i.clone());
        }
        let key = Path::from(seg.key.as_str());
        if seg.size < HEADER_LEN + FOOTER_LEN {
            return Err(Error::Corrupt {
                key: seg.key.clone(),
                reason: format!("{} bytes is too small for a segment", seg.size),
            });
        }
        let footer_bytes = self
            .get_range(&key, seg.size - FOOTER_LEN..seg.size)
            .await?;
        let footer = Footer::parse(&seg.key, &footer_bytes)?;
        if footer.object_len() != seg.size {
            return Err(Error::Corrupt {
                key: seg.key.clone(),
                reason: format!(
                    "footer says {} bytes, manifest says {}",
                    footer.object_len(),
                    seg.size
                ),
            });
        }
        let index_bytes = self
            .get_range(
                &key,
                footer.index_start()..footer.index_start() + footer.index_len(),
            )
            .await?;
        let index = Arc::new(SegmentIndex::parse(&seg.key, footer, &index_bytes)?);
        let mut indexes = self.indexes.lock().expect("index lock");
        if indexes.len() >= MAX_INDEXES {
            indexes.clear();
        }
        indexes.insert(seg.key.clone(), index.clone());
        Ok(index)
    }

    async fn get_range(&self, key: &Path, range: Range<u64>) -> Result<Bytes> {
        let _permit = self.budget.acquire().await.expect("budget never closed");
        let bytes = self
            .store
            .get_range(key, range)
            .await
            .map_err(store_err("get range", key.as_ref()))?;
        self.stats
            .bytes_fetched
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    fn block_key(key: &str, block: u64) -> String {
        format!("{key}#{block}")
    }

    async fn block(self: &Arc<Self>, key: &str, size: u64, block: u64) -> Result<Bytes> {
        let cache_key = Self::block_key(key, block);
        if let Ok(Some(e)) = self.cache.get(&cache_key).await {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(e.value().clone());
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let start = block * BLOCK;
        let bytes = self
            .get_range(&Path::from(key), start..(start + BLOCK).min(size))
            .await?;
        self.cache.insert(cache_key, bytes.clone());
        Ok(bytes)
    }

    /// Bytes `range` of an object of `size` bytes, assembled from cached blocks.
    async fn range(self: &Arc<Self>, key: &str, size: u64, range: Range<u64>) -> Result<Bytes> {
        let first = range.start / BLOCK;
        let last = range.end.saturating_sub(1) / BLOCK;
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for b in first..=last {
            let block = self.block(key, size, b).await?;
            let from = range.start.max(b * BLOCK) - b * BLOCK;
            let to = (range.end.min((b + 1) * BLOCK) - b * BLOCK).min(block.len() as u64);
            if from >= to {
                return Err(Error::Corrupt {
                    key: key.to_string(),
                    reason: format!("object shorter than {}", range.end),
                });
            }
            out.extend_from_slice(&block[from as usize..to as usize]);
        }
        self.prefetch(key, size, last + 1);
        Ok(out.freeze())
    }

    /// Fetches the next blocks in the background when a permit is free (never waits for one).
    fn prefetch(self: &Arc<Self>, key: &str, size: u64, from_block: u64) {
        let end_block = size.div_ceil(BLOCK);
        for b in from_block..(from_block + self.readahead).min(end_block) {
            let cache_key = Self::block_key(key, b);
            if self.cache.contains(&cache_key) {
                continue;
            }
            let Ok(permit) = self.budget.clone().try_acquire_owned() else {
                return;
            };
            let this = self.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                let start = b * BLOCK;
                if let Ok(bytes) = this
                    .store
                    .get_range(&Path::from(key.as_str()), start..(start + BLOCK).min(size))
                    .await
                {
                    this.stats
                        .bytes_fetched
                        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    this.cache.insert(cache_key, bytes);
                }
                drop(permit);
            });
        }
    }

    /// Whole batches holding offsets ≥ `offset` from a segment object: at most `max_bytes`,
    /// except that with `min_one` the first batch comes whole (KIP-74).
    pub async fn read(
        self: &Arc<Self>,
        seg: &SegmentRef,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<Bytes> {
        let index = self.index(seg).await?;
        let data_len = index.footer.data_len;
        let pos = index.position_for_offset(offset);
        let want = (INDEX_INTERVAL + max_bytes as u64).min(data_len - pos.min(data_len));
        let window = self
            .range(
                &seg.key,
                seg.size,
                HEADER_LEN + pos..HEADER_LEN + pos + want,
            )
            .await?;
        match segment::cut_batches(&window, offset, max_bytes, min_one) {
            Ok(r) => Ok(window.slice(r)),
            Err((at, size)) => {
                let start = HEADER_LEN + pos + at as u64;
                self.range(&seg.key, seg.size, start..start + size as u64)
                    .await
            }
        }
    }

    /// Batches from the first one that may hold a timestamp ≥ `ts` (up to `max_bytes`), for
    /// the caller to decode.
    pub async fn read_for_timestamp(
        self: &Arc<Self>,
        seg: &SegmentRef,
        ts: i64,
        max_bytes: usize,
    ) -> Result<Bytes> {
        let index = self.index(seg).await?;
        let pos = index.position_for_timestamp(ts);
        let first = crate::batch::BatchHeader::parse(
            &self
                .range(
                    &seg.key,
                    seg.size,
                    HEADER_LEN + pos
                        ..HEADER_LEN
                            + pos
                            + (crate::batch::HEADER_LEN as u64).min(index.footer.data_len - pos),
                )
                .await?,
        )
        .map_or(seg.base.0, |h| h.base_offset);
        self.read(seg, first, max_bytes, true).await
    }

    /// Forgets cached data of objects that were deleted.
    pub fn forget(&self, key: &str) {
        self.indexes.lock().expect("index lock").remove(key);
    }

    pub async fn close(&self) {
        let _ = self.cache.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::fake_batch;
    use object_store::memory::InMemory;
    use silt_metadata::{LeaderEpoch, Offset};

    #[tokio::test]
    async fn reads_any_offset_through_the_cache() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let mut data = Vec::new();
        for i in 0..600 {
            data.extend(fake_batch(i * 10, 10, 1000 + i, 5000));
        }
        let object = segment::build(0, &data).unwrap();
        let key = "topics/x/00000/segments/a.seg";
        store
            .put(&Path::from(key), object.clone().into())
            .await
            .unwrap();
        let seg = SegmentRef {
            key: key.into(),
            base: Offset(0),
            end: Offset(6000),
            size: object.len() as u64,
            max_timestamp: 1599,
            epoch: LeaderEpoch(0),
        };
        let dir = tempfile::tempdir().unwrap();
        let config = ReadConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..ReadConfig::default()
        };
        let reader = TieredReader::new(store, &config).await.unwrap();
        let mut offset = 0;
        while offset < 6000 {
            let got = reader.read(&seg, offset, 100_000, true).await.unwrap();
            let batches: Vec<_> = crate::batch::batches(&got).collect();
            assert!(!batches.is_empty());
            assert!(batches[0].1.base_offset <= offset && batches[0].1.last_offset() >= offset);
            assert!(got.len() <= 100_000);
            offset = batches.last().unwrap().1.last_offset() + 1;
        }
        let before = reader.stats.hits.load(Ordering::Relaxed);
        let again = reader.read(&seg, 2345, 1, true).await.unwrap();
        assert_eq!(
            crate::batch::batches(&again).count(),
            1,
            "min_one returns one whole batch"
        );
        assert!(
            reader.stats.hits.load(Ordering::Relaxed) > before,
            "second pass hits the cache"
        );
        let by_time = reader.read_for_timestamp(&seg, 1300, 1).await.unwrap();
        let h = crate::batch::BatchHeader::parse(&by_time).unwrap();
        assert!(h.base_offset <= 3000);
        reader.close().await;
    }
}
