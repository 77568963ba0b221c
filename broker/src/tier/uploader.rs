//! The uploader: cuts WAL objects from the upload queue by size or age, uploads them
//! (retrying with backoff), writes one commit record per object conditional on this broker's
//! assignment version, then advances each partition's recorded prefix and so its high
//! watermark.

use super::*;

/// Cuts extent `e` of a WAL object (`object`) to its batches that end at or before `synced`
/// (a partition's durable end); returns the bytes cut. A batch never straddles the cut: the
/// WAL makes whole batches durable.
pub(super) fn durable_prefix(e: &mut WalExtent, object: &[u8], synced: i64) -> u64 {
    if e.end().0 <= synced {
        return 0;
    }
    let (start, len) = (e.start as usize, e.len as usize);
    let data = object.get(start..start + len).unwrap_or_default();
    let mut kept = 0;
    let mut last = None;
    for (pos, h) in silt_tiering::batch::batches(data) {
        if h.last_offset() >= synced {
            break;
        }
        kept = pos + h.total_size();
        last = Some(h.last_offset());
    }
    let cut = e.len - kept as u64;
    e.len = kept as u64;
    if let Some(last) = last {
        e.last = Offset(last);
    }
    cut
}

/// Attempts at one WAL object's commit before a broker in a cluster gives its partitions up
/// (with the 2 s backoff cap, about two minutes).
pub(super) const COMMIT_ATTEMPTS: u32 = 64;

impl Tier {
    /// Cuts and uploads WAL objects until cancelled.
    pub async fn run_uploader(self: Arc<Self>, wal: Arc<crate::log::wal::Wal>) {
        let slots = Arc::new(Semaphore::new(self.settings.upload_concurrency.max(1)));
        let max_delay = Duration::from_millis(self.settings.wal_max_delay_ms);
        let acks_delay = Duration::from_millis(self.settings.wal_acks_all_delay_ms).min(max_delay);
        loop {
            // Wait until an object is due: by size, by age, or sooner for acks=all.
            loop {
                let (len, first_at) = self.uploads.peek();
                let delay = if self.uploads.acks_all_waiting.load(Ordering::Acquire) > 0 {
                    acks_delay
                } else {
                    max_delay
                };
                let due = first_at.map(|t| t + delay);
                if len >= self.settings.wal_object_bytes || due.is_some_and(|d| d <= Instant::now())
                {
                    break;
                }
                let sleep = async {
                    match due {
                        Some(d) => tokio::time::sleep_until(d.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = self.uploads.notify.notified() => {}
                    _ = sleep => {}
                }
            }
            let permit = tokio::select! {
                _ = self.cancel.cancelled() => return,
                p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            };
            let Some(buffered) = self.uploads.take() else {
                continue;
            };
            let seq = self.wal_seq.fetch_add(1, Ordering::AcqRel) + 1;
            let first_at = buffered.first_at.unwrap_or_else(Instant::now);
            self.uploads
                .in_flight
                .lock()
                .expect("upload queue lock")
                .insert(seq, first_at);
            let (this, wal) = (self.clone(), wal.clone());
            tokio::spawn(async move {
                this.upload_wal_object(seq, buffered, &wal).await;
                this.uploads
                    .in_flight
                    .lock()
                    .expect("upload queue lock")
                    .remove(&seq);
                drop(permit);
            });
        }
    }

    pub(super) async fn upload_wal_object(
        &self,
        seq: u64,
        buffered: Buffered,
        wal: &crate::log::wal::Wal,
    ) {
        let (bytes, mut extents) = buffered.builder.finish();
        let data_bytes: u64 = extents.iter().map(|e| e.len).sum();
        let key = layout::wal_object_key(self.node, self.generation, seq);
        if let Err(error) = store::upload_with_retry(
            self.store.as_ref(),
            &key,
            bytes.clone(),
            usize::MAX,
            &self.cancel,
        )
        .await
        {
            tracing::warn!(%key, %error, "WAL object not uploaded before shutdown; the local WAL keeps the data");
            return;
        }
        // Nothing becomes visible that the local WAL refused: the commit waits for the WAL to
        // make every batch in the object durable (usually long done: the PUT takes longer).
        let durable = tokio::select! {
            _ = self.cancel.cancelled() => return,
            r = wal.wait_synced(buffered.wal_seq) => r,
        };
        if let Err(failed) = durable {
            // Some of it may be durable all the same (and acknowledged: acks=1, or a `local`
            // topic): a partition's synced end covers exactly what the WAL made durable, and
            // nothing is written past it once the WAL has failed. Only that part is committed.
            let refused: u64 = extents
                .iter_mut()
                .map(|e| {
                    let synced = buffered
                        .partitions
                        .get(&(e.topic_id, e.partition))
                        .map_or(i64::MIN, |p| p.synced_end());
                    durable_prefix(e, &bytes, synced)
                })
                .sum();
            extents.retain(|e| e.len > 0);
            if extents.is_empty() {
                tracing::error!(%key, reason = %failed.0, "the WAL failed before this object's data was durable; the object is not committed");
                self.uploads.release(data_bytes as usize);
                self.notify_recorded();
                return;
            }
            tracing::warn!(%key, reason = %failed.0, refused_bytes = refused, "the WAL failed before all of this object's data was durable; committing only the durable part");
        }
        let commit_key = keys::commit(self.node, self.generation, seq);
        let mut record = CommitRecord {
            object: key.to_string(),
            extents,
        };
        let mut backoff = Duration::from_millis(20);
        let mut fenced_rounds = 0;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            if attempts > COMMIT_ATTEMPTS && self.clustered.load(Ordering::Acquire) {
                // Unresolved (the store keeps failing, or the outcome stays unknown): step down
                // from these partitions rather than acknowledge or reuse anything. Takeover
                // fences this broker's commits and reads the truth before serving again.
                tracing::error!(%commit_key, attempts, "WAL object commit unresolved; stepping down from its partitions");
                for e in &record.extents {
                    if let Some(p) = buffered.partitions.get(&(e.topic_id, e.partition)) {
                        p.set_leading(false);
                    }
                }
                self.uploads.release(data_bytes as usize);
                self.notify_recorded();
                return;
            }
            let assignment = self.assignment.load(Ordering::Acquire);
            // Only data of partitions still led here in the epoch it was written in (checked
            // after reading the version: a step-down comes before any fence of this broker).
            record.extents.retain(|e| {
                buffered
                    .partitions
                    .get(&(e.topic_id, e.partition))
                    .is_some_and(|p| self.still_ours(p, e))
            });
            if record.extents.is_empty() {
                self.uploads.release(data_bytes as usize);
                return;
            }
            match self
                .catalog
                .commit_wal_object(self.node, assignment, &commit_key, &record)
                .await
            {
                Ok(()) => break,
                Err(silt_metadata::Error::Fenced { reason, .. }) => {
                    // A partition was taken from this broker. The data of partitions it still
                    // leads (in the epoch the data was written in) is committed again under the
                    // new assignment version; the rest never becomes visible.
                    fenced_rounds += 1;
                    match self.still_led(&record.extents).await {
                        Ok(kept) if fenced_rounds <= 8 => {
                            tracing::warn!(%commit_key, %reason, kept = kept.len(), dropped = record.extents.len() - kept.len(), "WAL object commit fenced; committing the extents of partitions still led here again");
                            record.extents = kept;
                            if record.extents.is_empty() {
                                self.uploads.release(data_bytes as usize);
                                return;
                            }
                            continue;
                        }
                        Ok(_) => {
                            tracing::error!(%commit_key, %reason, "WAL object commit fenced again and again; its data stays unrecorded");
                            self.uploads.release(data_bytes as usize);
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(%commit_key, %reason, %error, "WAL object commit fenced; reading what this broker still leads failed; retrying");
                        }
                    }
                }
                Err(error) => {
                    // The outcome is unknown until the record is read back.
                    match self.catalog.commit_record(&commit_key).await {
                        Ok(Some(_)) => break,
                        Ok(None) => {
                            tracing::warn!(%commit_key, %error, "WAL object commit failed; retrying")
                        }
                        Err(read_error) => {
                            tracing::warn!(%commit_key, %error, %read_error, "WAL object commit outcome unknown; retrying")
                        }
                    }
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
        for e in &record.extents {
            if let Some(p) = buffered.partitions.get(&(e.topic_id, e.partition)) {
                p.mark_recorded(e.first.0, e.end().0);
            }
        }
        self.uploads.release(data_bytes as usize);
        crate::metrics::metrics().wal_objects.inc();
        self.recorded.send_modify(|v| *v += 1);
    }

    /// Waits (up to `deadline`) until everything queued so far is recorded.
    pub async fn flush(&self, deadline: Duration) -> bool {
        self.uploads.acks_all_begin();
        let mut recorded = self.subscribe_recorded();
        let done = tokio::time::timeout(deadline, async {
            while self.uploads.pending_bytes() > 0 {
                if recorded.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
        .is_ok();
        self.uploads.acks_all_end();
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::testing::*;
    use object_store::memory::InMemory;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_the_wal_refused_is_committed_to_the_bucket() {
        use crate::log::batch::{tests::encode, validate_record_set};
        use crate::log::wal::{MemoryWalStorage, Wal};
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory()));
        let settings = TieringSettings {
            wal_max_delay_ms: 1,
            ..TieringSettings::default()
        };
        let tier = Tier::open(
            Arc::new(InMemory::new()),
            catalog.clone(),
            NodeId(1),
            settings,
            dir.path().join("cache"),
        )
        .await
        .unwrap();
        let storage = MemoryWalStorage::default();
        let wal = Wal::start(Box::new(storage.clone()), None);
        let pdir = dir.path().join("p");
        std::fs::create_dir_all(&pdir).unwrap();
        let record = history(&[(4, 0)]);
        let defaults = crate::config::LogDefaults::default();
        let config = Arc::new(crate::topic_config::TopicConfig::resolve(
            &defaults,
            &Default::default(),
        ));
        let p = Arc::new(
            Partition::open(
                &pdir,
                "t",
                TopicId::random(),
                0,
                record,
                config,
                Some(tier.uploads.clone()),
            )
            .unwrap(),
        );
        // The batch is in the upload queue before its WAL write fails.
        storage.fill_up();
        let mut bytes = encode(10, kafka_protocol::records::Compression::None);
        let parsed = validate_record_set(&bytes, &crate::log::batch::tests::LIMITS).unwrap();
        let appended = p.append(&mut bytes, &parsed, &wal).unwrap();
        assert!(tier.uploads.pending_bytes() > 0);
        assert!(wal.wait_synced(appended.wal_seq).await.is_err());
        let uploader = tokio::spawn(tier.clone().run_uploader(wal.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tier.uploads.pending_bytes() > 0 {
            assert!(Instant::now() < deadline, "the upload never resolved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(catalog.commit_records().await.unwrap().is_empty());
        assert_eq!((p.recorded_end(), p.high_watermark()), (0, 0));
        tier.cancel.cancel();
        uploader.await.unwrap();
    }

    /// An object that mixes batches the WAL made durable (acknowledged with acks=1, or on a
    /// `local` topic) and batches it refused: the durable ones are still committed, in a
    /// cluster too (the broker flushes before it steps down), and the refused ones never are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_durable_part_of_an_object_the_wal_failed_under_is_committed() {
        use crate::log::batch::{tests::encode, validate_record_set};
        use crate::log::wal::{MemoryWalStorage, Wal};
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::new(Arc::new(silt_metadata::EmbeddedMetadataStore::in_memory()));
        let tier = Tier::open(
            Arc::new(InMemory::new()),
            catalog.clone(),
            NodeId(1),
            TieringSettings::default(),
            dir.path().join("cache"),
        )
        .await
        .unwrap();
        tier.set_clustered();
        tier.fence_own_commits().await.unwrap();
        let storage = MemoryWalStorage::default();
        let wal = Wal::start(Box::new(storage.clone()), None);
        let pdir = dir.path().join("p");
        std::fs::create_dir_all(&pdir).unwrap();
        let defaults = crate::config::LogDefaults::default();
        let config = Arc::new(crate::topic_config::TopicConfig::resolve(
            &defaults,
            &Default::default(),
        ));
        let p = Arc::new(
            Partition::open(
                &pdir,
                "t",
                TopicId::random(),
                0,
                history(&[(4, 0)]),
                config,
                Some(tier.uploads.clone()),
            )
            .unwrap(),
        );
        p.set_leading(true);
        let append = || {
            let mut bytes = encode(10, kafka_protocol::records::Compression::None);
            let parsed = validate_record_set(&bytes, &crate::log::batch::tests::LIMITS).unwrap();
            p.append(&mut bytes, &parsed, &wal).unwrap()
        };
        // 0..10 is durable in the WAL; 10..20 is refused (the disk filled up).
        let first = append();
        wal.wait_synced(first.wal_seq).await.unwrap();
        storage.fill_up();
        let second = append();
        assert!(wal.wait_synced(second.wal_seq).await.is_err());
        // Both wait in one object for the uploader (started only now).
        let uploader = tokio::spawn(tier.clone().run_uploader(wal.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tier.uploads.pending_bytes() > 0 {
            assert!(Instant::now() < deadline, "the upload never resolved");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let commits = catalog.commit_records().await.unwrap();
        let extents: Vec<(i64, i64)> = commits
            .iter()
            .flat_map(|(_, c)| c.extents.iter().map(|e| (e.first.0, e.end().0)))
            .collect();
        assert_eq!(extents, vec![(0, 10)]);
        assert_eq!(p.recorded_end(), 10);
        tier.cancel.cancel();
        uploader.await.unwrap();
    }
}
