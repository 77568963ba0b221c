//! Archiving: sealed, fully recorded segments uploaded as segment objects, a new manifest
//! committed and the manifest pointer moved (epoch-checked), local copies evicted.

use super::*;

impl Tier {
    /// One pass over a partition: archive sealed segments, apply retention, evict local copies.
    pub async fn archive(&self, p: &Arc<Partition>) -> anyhow::Result<()> {
        // The term this pass works for: manifest moves are checked against it, so a pass that
        // outlives this broker's leadership (even one regained later) cannot move the pointer.
        let Some(epoch) = p.leader_term() else {
            return Ok(());
        };
        let config = p.config();
        let (unarchived, oldest, count) = p.unarchived();
        let tail_too_old = oldest
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= Duration::from_millis(self.settings.tail_max_ms));
        // A long tail of small extents is a slow takeover (a GET each): archive it too.
        let tail_too_long = p.tail_extents() >= self.settings.tail_max_extents;
        if count == 1
            && (unarchived >= self.settings.tail_max_bytes || tail_too_old || tail_too_long)
        {
            p.roll()?;
        }
        for _ in 0..16 {
            let Some((base, end, file, size)) = p.archivable() else {
                break;
            };
            self.archive_segment(p, epoch, base, end, file, size)
                .await?;
        }
        if config.deletes_by_retention() {
            self.apply_retention(p, epoch, config.retention_ms, config.retention_bytes)
                .await?;
        }
        let evicted = p.evict_local(
            config.local_retention_bytes,
            config.local_retention_ms,
            now_ms(),
        );
        if evicted > 0 {
            tracing::debug!(topic = %p.topic, partition = p.index, bytes = evicted, "evicted local segment copies");
        }
        Ok(())
    }

    pub(super) async fn archive_segment(
        &self,
        p: &Arc<Partition>,
        epoch: LeaderEpoch,
        base: i64,
        end: i64,
        file: Arc<std::fs::File>,
        size: u64,
    ) -> anyhow::Result<()> {
        let key = layout::segment_key(p.topic_id, p.index, Offset(base), Offset(end), epoch);
        let (object_len, max_timestamp) = self.upload_segment(&key, base, file, size).await?;
        let producers = p.producer_snapshot_at(end)?;
        let current = p.manifest();
        let mut next = current.clone();
        next.epoch = epoch;
        next.seq = current.seq + 1;
        next.log_start = current.log_start.max(Offset(p.log_start()));
        next.segments.push(SegmentRef {
            key: key.to_string(),
            base: Offset(base),
            end: Offset(end),
            size: object_len,
            max_timestamp,
            epoch,
        });
        next.epoch_history = p.record().epoch_history;
        next.producers = Some(producers);
        if let Err(error) = self.commit_manifest(p, epoch, &current, next).await {
            self.bury(key);
            return Err(error);
        }
        crate::metrics::metrics().segments_uploaded.inc();
        tracing::debug!(topic = %p.topic, partition = p.index, base, end, %key, "archived segment");
        Ok(())
    }

    /// Streams a local segment file into a segment object; returns its size and max timestamp.
    pub(super) async fn upload_segment(
        &self,
        key: &Path,
        base: i64,
        file: Arc<std::fs::File>,
        size: u64,
    ) -> anyhow::Result<(u64, i64)> {
        const CHUNK: u64 = 4 * 1024 * 1024;
        let mut writer = SegmentWriter::new(base);
        let small = size <= self.settings.multipart_bytes as u64;
        let mut whole = Vec::new();
        let mut multipart = if small {
            whole.extend_from_slice(&SegmentWriter::header());
            None
        } else {
            let upload = self
                .store
                .put_multipart(key)
                .await
                .with_context(|| format!("start multipart upload of {key}"))?;
            let mut w = object_store::WriteMultipart::new_with_chunk_size(
                upload,
                self.settings.multipart_bytes,
            );
            w.write(&SegmentWriter::header());
            Some(w)
        };
        let mut pos = 0u64;
        let mut carry: Vec<u8> = Vec::new();
        while pos < size {
            let n = CHUNK.min(size - pos);
            let chunk = {
                let file = file.clone();
                tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    let mut buf = vec![0u8; n as usize];
                    file.read_exact_at(&mut buf, pos)?;
                    Ok(buf)
                })
                .await??
            };
            pos += n;
            carry.extend_from_slice(&chunk);
            let whole_batches = silt_tiering::batch::batches(&carry)
                .last()
                .map_or(0, |(at, h)| at + h.total_size());
            anyhow::ensure!(
                whole_batches > 0 || carry.len() <= 2 * CHUNK as usize + (64 << 20),
                "segment file of {key} holds no whole batch in {} bytes",
                carry.len()
            );
            writer.add(&carry[..whole_batches])?;
            match &mut multipart {
                Some(w) => {
                    w.wait_for_capacity(2).await?;
                    w.write(&carry[..whole_batches]);
                }
                None => whole.extend_from_slice(&carry[..whole_batches]),
            }
            carry.drain(..whole_batches);
        }
        anyhow::ensure!(
            carry.is_empty(),
            "segment file of {key} ends inside a batch ({} bytes left)",
            carry.len()
        );
        let max_timestamp = writer.max_timestamp();
        let footer = writer.finish();
        let object_len = match multipart {
            Some(mut w) => {
                w.write(&footer);
                let len = SegmentWriter::header().len() as u64 + size + footer.len() as u64;
                w.finish()
                    .await
                    .with_context(|| format!("finish upload of {key}"))?;
                len
            }
            None => {
                whole.extend_from_slice(&footer);
                let len = whole.len() as u64;
                self.store
                    .put(key, Bytes::from(whole).into())
                    .await
                    .with_context(|| format!("upload {key}"))?;
                len
            }
        };
        Ok((object_len, max_timestamp))
    }

    /// Writes `next` to the bucket and moves the partition's manifest pointer to it (only if
    /// the partition's leader epoch is still ours), then installs it locally.
    pub(super) async fn commit_manifest(
        &self,
        p: &Arc<Partition>,
        epoch: LeaderEpoch,
        current: &Manifest,
        mut next: Manifest,
    ) -> anyhow::Result<()> {
        next.archived_end = next.end();
        let key = match next.put(self.store.as_ref()).await {
            Ok(key) => key,
            Err(error) => {
                // The key may be taken by an attempt whose pointer update failed: skip it.
                self.skip_manifest_seq(p, next.seq);
                return Err(error).context("write manifest");
            }
        };
        let manifest_end = next.end();
        let log_start = next.log_start;
        let updated = self
            .catalog
            .update_partition(p.topic_id, p.index, epoch, |r| {
                Some(PartitionRecord {
                    manifest: Some(key.to_string()),
                    manifest_end,
                    log_start: r.log_start.max(log_start),
                    ..r.clone()
                })
            })
            .await;
        let stored = match updated {
            Ok(stored) => stored,
            Err(error) => {
                // The outcome may be unknown: adopt the new manifest if the pointer moved.
                match self.catalog.partition(p.topic_id, p.index).await {
                    Ok(Some(v)) if v.record.manifest.as_deref() == Some(key.as_ref()) => v.record,
                    _ => {
                        self.skip_manifest_seq(p, next.seq);
                        self.bury(key);
                        return Err(error).context("move the manifest pointer");
                    }
                }
            }
        };
        p.set_record(stored);
        p.set_manifest(next);
        if current.seq > 0 || !current.segments.is_empty() {
            self.bury(current.key());
        }
        Ok(())
    }
}
