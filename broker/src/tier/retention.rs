//! Retention on the manifest and garbage collection of objects nothing references.

use super::*;

impl Tier {
    /// Drops segment objects past `retention.ms` / `retention.bytes` or below the log start from
    /// the manifest (manifest first; the objects go after the grace period).
    pub(super) async fn apply_retention(
        &self,
        p: &Arc<Partition>,
        epoch: LeaderEpoch,
        retention_ms: i64,
        retention_bytes: i64,
    ) -> anyhow::Result<()> {
        let current = p.manifest();
        let log_start = p.log_start();
        let (unarchived, _, _) = p.unarchived();
        let now = now_ms();
        let mut total: u64 = current.segments.iter().map(|s| s.size).sum::<u64>() + unarchived;
        let mut drop = 0;
        for seg in &current.segments {
            let below_start = seg.end.0 <= log_start;
            let by_time = retention_ms >= 0
                && seg.max_timestamp >= 0
                && now - seg.max_timestamp > retention_ms;
            let by_size = retention_bytes >= 0 && total - seg.size >= retention_bytes as u64;
            if !(below_start || by_time || by_size) {
                break;
            }
            total -= seg.size;
            drop += 1;
        }
        let new_start = match current.segments.get(drop) {
            Some(s) if drop > 0 => s.base.0.max(log_start),
            None if drop > 0 => current.end().0.max(log_start),
            _ => log_start,
        };
        if drop == 0 && current.log_start.0 >= new_start {
            return Ok(());
        }
        let mut next = current.clone();
        let dropped: Vec<SegmentRef> = next.segments.drain(..drop).collect();
        next.seq = current.seq + 1;
        next.epoch = p.leader_epoch();
        next.log_start = Offset(new_start.max(current.log_start.0));
        self.commit_manifest(p, epoch, &current, next).await?;
        for seg in dropped {
            tracing::info!(topic = %p.topic, partition = p.index, base = seg.base.0, end = seg.end.0, "retention dropped segment object");
            self.reader.forget(&seg.key);
            self.bury(Path::from(seg.key));
        }
        Ok(())
    }

    /// Makes the next manifest of `p` use a sequence number above `seq`.
    pub(super) fn skip_manifest_seq(&self, p: &Partition, seq: u64) {
        let mut m = p.manifest();
        m.seq = m.seq.max(seq);
        p.set_manifest(m);
    }

    pub(super) fn bury(&self, key: Path) {
        let at = Instant::now() + Duration::from_millis(self.settings.gc_grace_ms);
        self.graveyard
            .lock()
            .expect("graveyard lock")
            .push((at, key));
    }

    /// Deletes buried objects whose grace period passed.
    pub async fn sweep_graveyard(&self) {
        let due: Vec<Path> = {
            let mut g = self.graveyard.lock().expect("graveyard lock");
            let now = Instant::now();
            let (due, keep): (Vec<_>, Vec<_>) = g.drain(..).partition(|(at, _)| *at <= now);
            *g = keep;
            due.into_iter().map(|(_, k)| k).collect()
        };
        for key in due {
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => {
                    tracing::warn!(%key, %error, "deleting an unreferenced object failed; will retry");
                    self.bury(key);
                }
            }
        }
    }

    /// Deletes this broker's commit records whose extents are all archived (`archived_end`
    /// gives a partition's manifest end, `None` for a deleted partition), then WAL objects no
    /// commit record references that are older than the grace period.
    pub async fn collect_garbage(
        &self,
        archived_end: impl Fn(TopicId, i32) -> Option<i64>,
    ) -> anyhow::Result<()> {
        let records = self.catalog.commit_records().await?;
        let mine = keys::commits_of(self.node);
        let done: Vec<String> = records
            .iter()
            .filter(|(k, _)| k.starts_with(&mine))
            .filter(|(_, c)| {
                c.extents.iter().all(|e| {
                    archived_end(e.topic_id, e.partition).is_none_or(|end| end >= e.end().0)
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        if !done.is_empty() {
            self.catalog.delete_commit_records(&done).await?;
        }
        let live: std::collections::HashSet<&str> = records
            .iter()
            .filter(|(k, _)| !done.contains(k))
            .map(|(_, c)| c.object.as_str())
            .collect();
        use futures::TryStreamExt;
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&layout::wal_prefix()))
            .try_collect()
            .await?;
        let in_flight: std::collections::HashSet<u64> = self
            .uploads
            .in_flight
            .lock()
            .expect("upload queue lock")
            .keys()
            .copied()
            .collect();
        let mut candidates = Vec::new();
        for meta in objects {
            if live.contains(meta.location.as_ref()) {
                continue;
            }
            // Only this broker's objects, and never one whose commit is still being tried.
            let Some((node, generation, seq)) = parse_wal_key(meta.location.as_ref()) else {
                continue;
            };
            if node != self.node.0 || (generation == self.generation && in_flight.contains(&seq)) {
                continue;
            }
            candidates.push(meta.location.to_string());
        }
        // No wall clock is compared with the object's last_modified (the store's clock): a
        // broker whose clock ran ahead would delete objects just committed. An object is
        // deleted once this broker has seen it unreferenced for the grace period.
        let due = self.unreferenced.lock().expect("unreferenced lock").due(
            candidates,
            Duration::from_millis(self.settings.gc_grace_ms),
            Instant::now(),
        );
        for key in due {
            if let Err(error) = self.store.delete(&Path::from(key.as_str())).await {
                tracing::warn!(%key, %error, "deleting an unreferenced WAL object failed");
            }
        }
        Ok(())
    }

    /// Deletes every object of a deleted topic (bounded retries; leftovers are logged).
    pub async fn delete_topic_objects(&self, topic: TopicId) {
        use futures::TryStreamExt;
        let prefix = layout::topic_prefix(topic);
        for attempt in 1..=5 {
            let result: Result<(), object_store::Error> = async {
                let objects: Vec<object_store::ObjectMeta> =
                    self.store.list(Some(&prefix)).try_collect().await?;
                for meta in objects {
                    self.reader.forget(meta.location.as_ref());
                    match self.store.delete(&meta.location).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => return,
                Err(error) => {
                    tracing::warn!(%prefix, attempt, %error, "deleting a deleted topic's objects failed");
                    tokio::time::sleep(Duration::from_secs(attempt)).await;
                }
            }
        }
        tracing::error!(%prefix, "gave up deleting a deleted topic's objects; delete them by hand");
    }
}

/// (node, generation, sequence) from a WAL object key.
pub(super) fn parse_wal_key(key: &str) -> Option<(i32, u64, u64)> {
    let name = key.rsplit('/').next()?.strip_suffix(".wal")?;
    let mut parts = name.split('-');
    let node = parts.next()?.parse().ok()?;
    let generation = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((node, generation, seq))
}

/// Mark and sweep of unreferenced WAL objects on this broker's monotonic clock.
#[derive(Default)]
pub(super) struct Unreferenced {
    first_seen: HashMap<String, Instant>,
}

impl Unreferenced {
    /// Takes one pass's unreferenced keys and returns those seen unreferenced, pass after pass,
    /// for at least `grace`. A key missing from a pass (referenced again, or gone) starts over.
    pub(super) fn due(&mut self, keys: Vec<String>, grace: Duration, now: Instant) -> Vec<String> {
        let mut next = HashMap::with_capacity(keys.len());
        let mut due = Vec::new();
        for key in keys {
            let seen = self.first_seen.get(&key).copied().unwrap_or(now);
            if now.saturating_duration_since(seen) >= grace {
                due.push(key);
            } else {
                next.insert(key, seen);
            }
        }
        self.first_seen = next;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreferenced_objects_are_deleted_after_the_grace_on_this_brokers_clock() {
        let grace = Duration::from_secs(600);
        let t0 = Instant::now();
        let mut u = Unreferenced::default();
        // However old the store says an object is, the first sighting deletes nothing.
        assert!(u.due(vec!["a".into(), "b".into()], grace, t0).is_empty());
        let later = t0 + Duration::from_secs(300);
        assert!(u.due(vec!["a".into(), "b".into()], grace, later).is_empty());
        // "b" became referenced (a commit listed late): it leaves the candidates and starts over.
        let after = t0 + grace;
        assert_eq!(u.due(vec!["a".into()], grace, after), vec!["a".to_string()]);
        assert!(u.due(vec!["b".into()], grace, after).is_empty());
        assert_eq!(
            u.due(vec!["b".into()], grace, after + grace),
            vec!["b".to_string()]
        );
    }
}
