//! Reading ahead the recorded tails of many partitions at once (one ranged GET per WAL object).

use super::*;

/// Parts of WAL objects read once for many partitions' recorded tails (a takeover of many
/// partitions at once: one ranged GET per object instead of one per partition and object).
#[derive(Default)]
pub struct Prefetched {
    ranges: HashMap<String, (u64, Bytes)>,
}

/// Extents of one partition's recorded tail read at the same time during recovery.
pub(super) const TAIL_READS: usize = 16;

/// Upper bound on what one round of takeovers reads ahead.
pub(super) const PREFETCH_MAX_BYTES: u64 = 512 << 20;

impl Prefetched {
    /// Reads, for every WAL object holding the tail of two or more of `wanted` (partition and
    /// where its manifest ends), the range covering those tails (16 objects at a time, at most
    /// [`PREFETCH_MAX_BYTES`] in all; the rest is read per extent later).
    pub async fn read(
        store: &Arc<dyn ObjectStore>,
        commits: &[(String, CommitRecord)],
        wanted: &HashMap<(TopicId, i32), i64>,
    ) -> Prefetched {
        let mut per_object: HashMap<&str, (usize, u64, u64)> = HashMap::new();
        for (_, c) in commits {
            for e in &c.extents {
                let Some(&archived_end) = wanted.get(&(e.topic_id, e.partition)) else {
                    continue;
                };
                if e.end().0 <= archived_end {
                    continue;
                }
                let entry = per_object
                    .entry(c.object.as_str())
                    .or_insert((0, u64::MAX, 0));
                entry.0 += 1;
                entry.1 = entry.1.min(e.start);
                entry.2 = entry.2.max(e.start + e.len);
            }
        }
        let mut budget = PREFETCH_MAX_BYTES;
        let mut reads = Vec::new();
        for (object, (count, start, end)) in per_object {
            if count < 2 || end - start > budget {
                continue;
            }
            budget -= end - start;
            reads.push((object.to_string(), start..end));
        }
        use futures::StreamExt;
        let ranges = futures::stream::iter(reads)
            .map(|(object, range)| {
                let store = store.clone();
                async move {
                    let key = Path::from(object.as_str());
                    let got = with_retries("read WAL object", || {
                        let (store, key, range) = (store.clone(), key.clone(), range.clone());
                        async move { store.get_range(&key, range).await }
                    })
                    .await;
                    got.ok().map(|bytes| (object, (range.start, bytes)))
                }
            })
            .buffer_unordered(16)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        Prefetched { ranges }
    }

    pub(super) fn slice(&self, object: &str, range: &std::ops::Range<u64>) -> Option<Bytes> {
        let (start, bytes) = self.ranges.get(object)?;
        let from = usize::try_from(range.start.checked_sub(*start)?).ok()?;
        let to = from + usize::try_from(range.end - range.start).ok()?;
        (to <= bytes.len()).then(|| bytes.slice(from..to))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::testing::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn prefetch_reads_an_object_once_for_several_partitions_tails() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..=255u8).collect();
        store
            .put(&Path::from("wal/a"), data.clone().into())
            .await
            .unwrap();
        store
            .put(&Path::from("wal/b"), data.clone().into())
            .await
            .unwrap();
        let t = TopicId::random();
        let commits = vec![
            (
                "k1".to_string(),
                CommitRecord {
                    object: "wal/a".into(),
                    extents: vec![extent(t, 0, 0, 10, 20), extent(t, 1, 0, 40, 30)],
                },
            ),
            (
                "k2".to_string(),
                // Only partition 0's tail is wanted here: read per extent later.
                CommitRecord {
                    object: "wal/b".into(),
                    extents: vec![extent(t, 0, 10, 0, 5), extent(t, 7, 0, 5, 5)],
                },
            ),
        ];
        let wanted = HashMap::from([((t, 0), 0), ((t, 1), 0)]);
        let prefetched = Prefetched::read(&store, &commits, &wanted).await;
        assert_eq!(
            prefetched.slice("wal/a", &(10..30)).unwrap()[..],
            data[10..30]
        );
        assert_eq!(
            prefetched.slice("wal/a", &(40..70)).unwrap()[..],
            data[40..70]
        );
        assert!(
            prefetched.slice("wal/a", &(60..90)).is_none(),
            "outside the range read"
        );
        assert!(
            prefetched.slice("wal/b", &(0..5)).is_none(),
            "one wanted extent: not read ahead"
        );
        // Extents below the manifest's end are not part of the tail.
        let archived = HashMap::from([((t, 0), 100), ((t, 1), 100)]);
        let none = Prefetched::read(&store, &commits, &archived).await;
        assert!(none.slice("wal/a", &(10..30)).is_none());
    }
}
