//! Taking a partition over (a restart on one node, or a takeover in a cluster): the log rebuilt
//! from the manifest and the recorded tail, this broker's own unrecorded data kept or dropped.

use super::prefetch::TAIL_READS;
use super::*;

/// What [`Tier::recover`] does with the local log.
#[derive(Clone, Copy, Debug)]
pub enum LocalLog {
    /// One node: nobody else writes, so the local log is kept where it joins the bucket.
    Keep,
    /// A takeover: rebuilt from the bucket; this broker's own unrecorded data of the last epoch
    /// is recorded in the bucket first, so the rebuild reads it back like the rest.
    Rebuild,
}

/// What [`Tier::recover`] found.
#[derive(Debug)]
pub enum Recovered {
    /// The log is rebuilt: it holds the recorded prefix (`..recorded_end`) and, on one node,
    /// local data never recorded after it (`..log_end`), which the caller re-queues.
    Ready { recorded_end: i64, log_end: i64 },
    /// The commit of kept unrecorded data was fenced: the partition moved meanwhile. Nothing
    /// was changed; the takeover is tried again.
    Moved,
}

/// The local batches of `p` past `recorded_end` a takeover may keep: all of them, if every one
/// was written in the partition's last begun epoch and they follow the recorded end without a
/// gap; otherwise none (dropped with a warning and a metric). Only an epoch's leader writes
/// batches of that epoch, and batches past the recorded end did not come from the bucket: they
/// are this broker's own, and no term began after them, so nobody else wrote those offsets.
pub(super) fn own_unrecorded(
    p: &Partition,
    record: &PartitionRecord,
    recorded_end: i64,
) -> Result<Vec<(crate::log::batch::BatchHeader, Vec<u8>)>, PartitionError> {
    let local_end = p.log_end();
    if local_end <= recorded_end {
        return Ok(Vec::new());
    }
    let batches = p.read_local_range(recorded_end, local_end)?;
    let last = record.epoch_history.last();
    let kept = last.is_some_and(|last| {
        last.start_offset.0 <= recorded_end
            && batches
                .first()
                .is_some_and(|(h, _)| h.base_offset == recorded_end)
            && batches
                .iter()
                .all(|(h, _)| h.partition_leader_epoch == last.epoch.0)
    });
    if kept {
        return Ok(batches);
    }
    let epochs: std::collections::BTreeSet<i32> = batches
        .iter()
        .map(|(h, _)| h.partition_leader_epoch)
        .collect();
    tracing::warn!(
        topic = %p.topic,
        partition = p.index,
        from = recorded_end,
        to = local_end,
        ?epochs,
        last_epoch = last.map(|e| e.epoch.0),
        "dropping local data the bucket never recorded: it is not all of the last epoch begun, or it does not follow the recorded end (another term may have written those offsets)"
    );
    crate::metrics::metrics()
        .unrecorded_offsets_dropped
        .inc_by((local_end - recorded_end) as u64);
    Ok(Vec::new())
}

impl Tier {
    /// Rebuilds what the local disk lacks from the bucket. With [`LocalLog::Keep`] local data
    /// never recorded stays (the caller re-queues it). With [`LocalLog::Rebuild`] the local log
    /// is dropped and rebuilt from the manifest and the recorded tail (a takeover: local data
    /// may come from an older term that another leader overwrote); this broker's own
    /// unrecorded data of the last epoch is recorded in the bucket before anything local is
    /// cut, so a failed read, a crash or a WAL checkpoint during the rebuild cannot lose it.
    pub async fn recover(
        &self,
        p: &Arc<Partition>,
        record: &PartitionRecord,
        commits: &[(String, CommitRecord)],
        local: LocalLog,
        prefetched: &Prefetched,
    ) -> anyhow::Result<Recovered> {
        let mut manifest = match &record.manifest {
            Some(key) => {
                let path = Path::from(key.as_str());
                with_retries("read manifest", || {
                    Manifest::get(self.store.as_ref(), &path)
                })
                .await
                .with_context(|| format!("read manifest {key}"))?
            }
            None => Manifest::empty(p.topic_id, p.index),
        };
        manifest.log_start = manifest.log_start.max(record.log_start);
        let archived_end = manifest.end().0;
        // Declared before `tail`, which borrows it.
        let own: Option<(CommitRecord, Bytes)>;
        let mut tail: Vec<(&str, &WalExtent)> = commits
            .iter()
            .flat_map(|(_, c)| c.extents.iter().map(move |e| (c.object.as_str(), e)))
            .filter(|(_, e)| {
                e.topic_id == p.topic_id && e.partition == p.index && e.end().0 > archived_end
            })
            .collect();
        // An extent that starts where a later epoch had already begun was written by a leader
        // that had been replaced (fencing keeps such commits out; this is the second guard).
        tail.retain(|(object, e)| {
            let stale = record
                .epoch_history
                .iter()
                .any(|h| h.epoch > e.epoch && h.start_offset <= e.first);
            if stale {
                tracing::warn!(topic = %p.topic, partition = p.index, %object, epoch = e.epoch.0, first = e.first.0, "ignoring a recorded extent of a replaced leader");
            }
            !stale
        });
        tail.sort_by_key(|(_, e)| e.first);
        let mut recorded_end = archived_end;
        for (_, e) in &tail {
            if e.first.0 > recorded_end {
                break;
            }
            recorded_end = recorded_end.max(e.end().0);
        }
        if let LocalLog::Rebuild = local {
            let kept = own_unrecorded(p, record, recorded_end)?;
            own = match kept.last() {
                None => None,
                Some((last, _)) => {
                    // Recorded in the epoch it was written in, before the local log goes: from
                    // here on the bucket holds it like the rest of the tail.
                    let to = last.last_offset() + 1;
                    let Some(recorded) = self.record_now(p, recorded_end, to).await? else {
                        return Ok(Recovered::Moved);
                    };
                    tracing::info!(topic = %p.topic, partition = p.index, from = recorded_end, to, batches = kept.len(), object = %recorded.0.object, "recorded this broker's own unrecorded data of the partition's last epoch");
                    Some(recorded)
                }
            };
            if let Some((commit, _)) = &own {
                tail.extend(commit.extents.iter().map(|e| (commit.object.as_str(), e)));
                recorded_end =
                    recorded_end.max(commit.extents.iter().map(|e| e.end().0).max().unwrap_or(0));
            }
            p.reset_local(archived_end)?;
        } else {
            own = None;
        }
        let local_end = p.log_end();
        // The local log must join the archived segments without a gap.
        let joins = p.local_start() <= archived_end && local_end >= archived_end;
        if !joins && local_end > archived_end {
            tracing::warn!(topic = %p.topic, partition = p.index, archived_end, local_start = p.local_start(), local_end, "local log does not join the bucket's segments; rebuilding it from the bucket (local data never recorded is dropped)");
        }
        if local_end < recorded_end || !joins {
            let from = if joins {
                local_end
            } else {
                tracing::info!(topic = %p.topic, partition = p.index, archived_end, local_end, "local log does not reach the bucket's manifest; rebuilding it from the bucket");
                p.reset_local(archived_end)?;
                archived_end
            };
            // Read up to TAIL_READS extents at once (a tail can be hundreds of small extents),
            // replay in order.
            let wanted: Vec<(String, std::ops::Range<u64>)> = tail
                .iter()
                .filter(|(_, e)| e.end().0 > from && e.first.0 <= recorded_end)
                .map(|(object, e)| (object.to_string(), e.start..e.start + e.len))
                .collect();
            let store = self.store.clone();
            let mut reads = futures::stream::iter(wanted)
                .map(|(object, range)| {
                    let ahead = match &own {
                        // Just written: read from memory.
                        Some((commit, bytes)) if commit.object == object => {
                            usize::try_from(range.start)
                                .ok()
                                .zip(usize::try_from(range.end).ok())
                                .filter(|&(_, end)| end <= bytes.len())
                                .map(|(start, end)| bytes.slice(start..end))
                        }
                        _ => prefetched.slice(&object, &range),
                    };
                    let store = store.clone();
                    async move {
                        if let Some(bytes) = ahead {
                            return Ok(bytes);
                        }
                        let key = Path::from(object.as_str());
                        with_retries("read WAL object", || {
                            let (store, key, range) = (store.clone(), key.clone(), range.clone());
                            async move { store.get_range(&key, range).await }
                        })
                        .await
                        .with_context(|| format!("read {object}"))
                    }
                })
                .buffered(TAIL_READS);
            let mut replayed = 0;
            while let Some(bytes) = reads.next().await {
                let bytes = bytes?;
                for (pos, h) in silt_tiering::batch::batches(&bytes) {
                    if h.last_offset() < from {
                        continue;
                    }
                    p.replay(&bytes[pos..pos + h.total_size()])?;
                    replayed += 1;
                }
            }
            tracing::info!(topic = %p.topic, partition = p.index, from, to = recorded_end, batches = replayed, "replayed the recorded tail from WAL objects");
            anyhow::ensure!(
                p.log_end() >= recorded_end,
                "{}-{}: the recorded tail ends at {recorded_end} but its WAL objects only gave data up to {}",
                p.topic,
                p.index,
                p.log_end()
            );
        }
        p.set_manifest(manifest);
        p.init_recorded(recorded_end);
        p.note_tail_extents(
            tail.iter()
                .filter(|(_, e)| e.first.0 >= archived_end && e.first.0 < recorded_end)
                .map(|(_, e)| e.first.0),
        );
        Ok(Recovered::Ready {
            recorded_end,
            log_end: p.log_end(),
        })
    }

    /// Queues local batches `from..to` (recorded nowhere yet) for upload.
    pub fn requeue(&self, p: &Arc<Partition>, from: i64, to: i64) -> Result<usize, PartitionError> {
        if from >= to {
            return Ok(0);
        }
        let batches = p.read_local_range(from, to)?;
        for (h, bytes) in &batches {
            self.uploads.push(
                p,
                h.partition_leader_epoch,
                h.base_offset,
                h.last_offset(),
                bytes,
                0,
            );
        }
        if !batches.is_empty() {
            tracing::info!(topic = %p.topic, partition = p.index, from, to, "re-queued local data that was never recorded");
        }
        Ok(batches.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::testing::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_takeover_keeps_unrecorded_data_only_of_the_last_epoch_begun() {
        let dir = tempfile::tempdir().unwrap();
        let p = written(dir.path(), 3).await;
        let kept = |record: &PartitionRecord, recorded_end| {
            own_unrecorded(&p, record, recorded_end)
                .unwrap()
                .iter()
                .map(|(h, _)| h.base_offset)
                .collect::<Vec<_>>()
        };
        let dropped = crate::metrics::metrics().unrecorded_offsets_dropped.get();
        // Epoch 4 is still the last begun: its batches past the recorded end are this broker's.
        assert_eq!(kept(&history(&[(4, 0)]), 10), vec![10, 20]);
        // A later epoch began at 10 (another leader may have written 10..): nothing is kept.
        assert!(kept(&history(&[(4, 0), (5, 10)]), 10).is_empty());
        // Nor when the epoch begun last starts past the recorded end, or the data does not
        // start at the recorded end.
        assert!(kept(&history(&[(4, 0), (5, 20)]), 10).is_empty());
        assert!(kept(&history(&[(4, 0)]), 15).is_empty());
        assert_eq!(
            crate::metrics::metrics().unrecorded_offsets_dropped.get() - dropped,
            20 + 20 + 15
        );
        // Everything recorded: nothing to keep, nothing dropped.
        assert!(kept(&history(&[(4, 0), (5, 30)]), 30).is_empty());
    }

    /// A takeover keeping this broker's own unrecorded data must not lose it when the read of
    /// the recorded tail fails (or the broker dies meanwhile): nothing but the local log held it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_takeover_whose_tail_read_fails_still_keeps_its_own_unrecorded_data() {
        let dir = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let p = written(dir.path(), 3).await;
        let catalog = Catalog::new(Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory()));
        let faulty = Arc::new(silt_tiering::store::FaultyStore::new(Arc::new(
            InMemory::new(),
        )));
        let tier = Tier::open(
            faulty.clone(),
            catalog.clone(),
            NodeId(1),
            TieringSettings::default(),
            cache.path().to_path_buf(),
        )
        .await
        .unwrap();
        tier.fence_own_commits().await.unwrap();
        // 0..10 is recorded in the bucket; 10..30 (epoch 4, still the last begun) only here.
        assert!(tier.record_now(&p, 0, 10).await.unwrap().is_some());
        let record = history(&[(4, 0)]);
        faulty.set_failing_reads(true);
        let commits = catalog.commit_records().await.unwrap();
        let local = LocalLog::Rebuild;
        let failed = tier
            .recover(&p, &record, &commits, local, &Default::default())
            .await;
        assert!(failed.is_err(), "the tail could not be read");
        // The takeover is tried again once the bucket answers.
        faulty.set_failing_reads(false);
        let commits = catalog.commit_records().await.unwrap();
        let recovered = tier
            .recover(&p, &record, &commits, local, &Default::default())
            .await
            .unwrap();
        assert_eq!(p.log_end(), 30, "kept 10..30: {recovered:?}");
        let offsets: Vec<i64> = p
            .read_local_range(0, 30)
            .unwrap()
            .iter()
            .map(|(h, _)| h.base_offset)
            .collect();
        assert_eq!(offsets, vec![0, 10, 20]);
    }

    #[tokio::test]
    async fn wal_batches_replay_in_a_cluster_only_where_they_fit_the_epoch_history() {
        let dir = tempfile::tempdir().unwrap();
        let p = written(dir.path(), 2).await;
        let batch = |epoch: i32, base: i64| {
            let mut bytes =
                crate::log::batch::tests::encode(10, kafka_protocol::records::Compression::None);
            bytes[0..8].copy_from_slice(&base.to_be_bytes());
            bytes[12..16].copy_from_slice(&epoch.to_be_bytes());
            bytes
        };
        p.set_record(history(&[(4, 0)]));
        assert!(
            p.fits_history(&batch(4, 20)),
            "continues the log in its epoch"
        );
        assert!(p.fits_history(&batch(4, 10)), "already in the log");
        assert!(!p.fits_history(&batch(4, 30)), "a gap");
        p.set_record(history(&[(4, 0), (6, 20)]));
        assert!(
            !p.fits_history(&batch(4, 20)),
            "epoch 6 began at 20: a batch of epoch 4 there is of a term that lost"
        );
        assert!(p.fits_history(&batch(6, 20)));
    }
}
