//! Commit records and fencing: this broker's assignment version, which of its extents may
//! still be committed, commits whose outcome was unknown, and recording a takeover's kept data.

use super::*;

/// Attempts at the commit of data a takeover keeps (the takeover itself is retried after).
pub(super) const RECORD_NOW_ATTEMPTS: u32 = 8;

/// The longest [`Tier::record_now`] tries to upload its object before the takeover gives up
/// (and is tried again at the next leadership round, the local log untouched).
pub(super) const RECORD_NOW_UPLOAD_DEADLINE: Duration = Duration::from_secs(30);

impl Tier {
    /// Fences this broker's own commits in flight (before it takes over partitions it may have
    /// led earlier in this run): they fail and are re-committed only for partitions still led.
    pub async fn fence_own_commits(&self) -> silt_metadata::Result<()> {
        let version = self.catalog.bump_assignment_version(self.node).await?;
        self.adopt_assignment(version).await.map(|_| ())
    }

    /// Whether extent `e` of `p` may still be committed by this broker. In a cluster: only while
    /// it leads `p` in the epoch the data was written in (any other term may have reused the
    /// offsets). On one node nobody else writes: data re-queued after a restart carries the
    /// epoch before it and is still this broker's.
    pub(super) fn still_ours(&self, p: &Partition, e: &WalExtent) -> bool {
        if self.clustered.load(Ordering::Acquire) {
            p.leading_in(e.epoch.0)
        } else {
            p.leading()
        }
    }

    /// Commits from now on use assignment version `version` (read before this call). First,
    /// every partition led here whose record (read now, after the version) names another
    /// leader or epoch is stepped down: a move this broker has not noticed yet must not let
    /// its later data be committed under the new version.
    pub(super) async fn adopt_assignment(
        &self,
        version: u64,
    ) -> silt_metadata::Result<HashMap<(TopicId, i32), PartitionRecord>> {
        let records: HashMap<(TopicId, i32), PartitionRecord> = self
            .catalog
            .all_partitions()
            .await?
            .into_iter()
            .map(|v| ((v.topic_id, v.partition), v.record))
            .collect();
        let mut stepped = 0;
        for p in self.partitions.get().map(|f| f()).unwrap_or_default() {
            let Some(epoch) = p.leader_term() else {
                continue;
            };
            let still = records
                .get(&(p.topic_id, p.index))
                .is_some_and(|r| r.leader == self.node && r.leader_epoch == epoch);
            if !still {
                p.set_leading(false);
                stepped += 1;
                tracing::info!(topic = %p.topic, partition = p.index, "stepped down: the partition moved (found while adopting a new assignment version)");
            }
        }
        if stepped > 0 {
            self.notify_recorded();
        }
        self.assignment.fetch_max(version, Ordering::AcqRel);
        Ok(records)
    }

    /// After a fenced commit: reads the assignment version (first, so that any move after this
    /// read fails the next commit again), adopts it (stepping down what moved), and returns the
    /// extents whose partitions this broker still leads in the extent's epoch.
    pub(super) async fn still_led(
        &self,
        extents: &[WalExtent],
    ) -> silt_metadata::Result<Vec<WalExtent>> {
        let assignment = self.catalog.assignment_version(self.node).await?;
        let records = self.adopt_assignment(assignment).await?;
        Ok(extents
            .iter()
            // (The local check, `still_ours`, runs before every commit attempt.)
            .filter(|e| {
                records
                    .get(&(e.topic_id, e.partition))
                    .is_some_and(|r| r.leader == self.node && r.leader_epoch == e.epoch)
            })
            .cloned()
            .collect())
    }

    /// Records local batches `from..to` of `p` now, as one WAL object of their own and a
    /// commit record conditional on this broker's assignment version, in the epoch they were
    /// written in, and returns the commit and the object's bytes. For a takeover that keeps
    /// this broker's own unrecorded data (it led the partition's last epoch and nobody began
    /// one since): the data is recorded before the local log is rebuilt and before the new
    /// term begins, so every term still begins at the recorded end. `Ok(None)`: fenced (the
    /// partition moved meanwhile); nothing was recorded.
    pub async fn record_now(
        &self,
        p: &Arc<Partition>,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Option<(CommitRecord, Bytes)>> {
        let batches = p.read_local_range(from, to)?;
        let mut builder = WalObjectBuilder::default();
        for (h, bytes) in &batches {
            builder.push(
                p.topic_id,
                p.index,
                h.partition_leader_epoch,
                h.base_offset,
                h.last_offset(),
                bytes,
            );
        }
        anyhow::ensure!(
            !builder.is_empty(),
            "{}-{}: no local batches in {from}..{to} to record",
            p.topic,
            p.index
        );
        let (bytes, extents) = builder.finish();
        let seq = self.wal_seq.fetch_add(1, Ordering::AcqRel) + 1;
        // In flight: the garbage collector leaves the object alone until it is committed.
        self.uploads
            .in_flight
            .lock()
            .expect("upload queue lock")
            .insert(seq, Instant::now());
        let result = self.commit_own_object(seq, bytes.clone(), extents).await;
        self.uploads
            .in_flight
            .lock()
            .expect("upload queue lock")
            .remove(&seq);
        let Some(record) = result? else {
            return Ok(None);
        };
        for e in &record.extents {
            p.mark_recorded(e.first.0, e.end().0);
        }
        crate::metrics::metrics().wal_objects.inc();
        self.recorded.send_modify(|v| *v += 1);
        Ok(Some((record, bytes)))
    }

    /// Uploads WAL object `seq` and writes its commit record (retrying an unknown outcome a
    /// bounded number of times); `None` when the commit was fenced.
    pub(super) async fn commit_own_object(
        &self,
        seq: u64,
        bytes: Bytes,
        extents: Vec<WalExtent>,
    ) -> anyhow::Result<Option<CommitRecord>> {
        let key = layout::wal_object_key(self.node, self.generation, seq);
        // Bounded: a takeover waits on this, and a store that refuses every PUT must not hold
        // the leadership round (and the controller's work) forever; the takeover is retried.
        tokio::time::timeout(
            RECORD_NOW_UPLOAD_DEADLINE,
            store::upload_with_retry(self.store.as_ref(), &key, bytes, usize::MAX, &self.cancel),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no upload within {RECORD_NOW_UPLOAD_DEADLINE:?}"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("upload {key}"))?;
        let commit_key = keys::commit(self.node, self.generation, seq);
        let record = CommitRecord {
            object: key.to_string(),
            extents,
        };
        let assignment = self.assignment.load(Ordering::Acquire);
        let mut backoff = Duration::from_millis(20);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self
                .catalog
                .commit_wal_object(self.node, assignment, &commit_key, &record)
                .await
            {
                Ok(()) => return Ok(Some(record)),
                Err(silt_metadata::Error::Fenced { reason, .. }) => {
                    tracing::info!(%commit_key, %reason, "commit of kept unrecorded data fenced");
                    return Ok(None);
                }
                Err(error) => error,
            };
            // The outcome is unknown until the record is read back.
            match self.catalog.commit_record(&commit_key).await {
                Ok(Some(_)) => return Ok(Some(record)),
                _ if attempt >= RECORD_NOW_ATTEMPTS => {
                    return Err(error).with_context(|| format!("commit {commit_key}"))
                }
                _ => {
                    tracing::warn!(%commit_key, %error, attempt, "commit of kept unrecorded data failed; retrying")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}
