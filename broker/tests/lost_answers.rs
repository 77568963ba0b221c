//! The commit protocol against a fault-injecting metadata store that applies a transaction and
//! then loses its answer (as a timed-out etcd request may): a WAL object whose commit outcome is
//! unknown is neither acknowledged nor are its offsets reused until the outcome is read back;
//! and manifest-pointer moves racing across a leadership change never let the replaced
//! leader's chain win.

mod common;

use async_trait::async_trait;
use common::{batch, wait_for, OneTopic};
use object_store::memory::InMemory;
use silt_broker::config::Config;
use silt_metadata::catalog::{Catalog, CommitRecord, PartitionRecord, TopicRecord};
use silt_metadata::{
    EmbeddedMetadataStore, Error, KeyValue, LeaderEpoch, LeaseId, MetadataStore, NodeId, Offset,
    Op, Result, TopicId, Txn, TxnResponse, WatchEvent,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Forwards to an embedded store; while `lose` is on, transactions writing under `prefix` are
/// applied and then answered with `Unavailable` (every other one, when `every_other` is on);
/// while `blind` is on, reads of keys under `prefix` fail.
struct LossyStore {
    inner: EmbeddedMetadataStore,
    prefix: &'static str,
    lose: AtomicBool,
    every_other: AtomicBool,
    blind: AtomicBool,
    lost: AtomicU64,
}

impl LossyStore {
    fn new(prefix: &'static str) -> Arc<LossyStore> {
        Arc::new(LossyStore {
            inner: EmbeddedMetadataStore::in_memory(),
            prefix,
            lose: AtomicBool::new(false),
            every_other: AtomicBool::new(false),
            blind: AtomicBool::new(false),
            lost: AtomicU64::new(0),
        })
    }

    fn touches(&self, txn: &Txn) -> bool {
        txn.ops.iter().any(|op| match op {
            Op::Put { key, .. } | Op::Delete { key } => key.starts_with(self.prefix),
            Op::DeletePrefix { prefix } => prefix.starts_with(self.prefix),
        })
    }
}

#[async_trait]
impl MetadataStore for LossyStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        if self.blind.load(Ordering::Acquire) && key.starts_with(self.prefix) {
            return Err(Error::Unavailable("read failed (injected)".into()));
        }
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        self.inner.list(prefix).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        let touches = self.touches(&txn);
        let response = self.inner.txn(txn).await?;
        if touches && self.lose.load(Ordering::Acquire) {
            let n = self.lost.fetch_add(1, Ordering::AcqRel);
            if !self.every_other.load(Ordering::Acquire) || n.is_multiple_of(2) {
                return Err(Error::Unavailable("answer lost (injected)".into()));
            }
        }
        Ok(response)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        self.inner.keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.inner.revoke_lease(lease).await
    }

    async fn watch(&self, prefix: &str) -> Result<mpsc::Receiver<WatchEvent>> {
        self.inner.watch(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_a_lost_answer_is_not_acknowledged_until_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.tiering.wal_max_delay_ms = 10;
    let store = LossyStore::new("/silt/commits/");
    let catalog = Catalog::new(store.clone());
    let t = OneTopic::start(config, catalog.clone(), Arc::new(InMemory::new())).await;
    let p = &t.p;
    let append = |tag: &str| t.append(batch(20, tag, ""));
    let covering = |first: i64| {
        let catalog = catalog.clone();
        async move {
            let commits: Vec<(String, CommitRecord)> = catalog.commit_records().await.unwrap();
            commits
                .iter()
                .flat_map(|(_, c)| c.extents.iter())
                .filter(|e| e.first.0 == first)
                .count()
        }
    };

    append("before");
    wait_for(
        "the first batch to be recorded",
        Duration::from_secs(5),
        || p.high_watermark() == 20,
    )
    .await;

    // The next commit is applied but its answer is lost, and it cannot be read back.
    store.lose.store(true, Ordering::Release);
    store.blind.store(true, Ordering::Release);
    let lost = append("lost");
    assert_eq!(lost.base_offset, 20);
    wait_for("the commit to be applied", Duration::from_secs(5), || {
        store.lost.load(Ordering::Acquire) > 0
    })
    .await;
    assert_eq!(covering(20).await, 1, "the commit record is in the store");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        p.high_watermark(),
        20,
        "an unknown outcome is not acknowledged (the HW is what acks=all waits for)"
    );
    let next = append("next");
    assert_eq!(
        next.base_offset, 40,
        "the unknown commit's offsets are not reused"
    );

    // Reads work again: the outcome is read back, and everything becomes visible once.
    store.lose.store(false, Ordering::Release);
    store.blind.store(false, Ordering::Release);
    wait_for("everything to be recorded", Duration::from_secs(10), || {
        p.high_watermark() == 60
    })
    .await;
    assert_eq!(covering(20).await, 1, "recorded once");
    assert_eq!(covering(40).await, 1);

    t.stop().await;
}

/// A leader (epoch 1) keeps moving the manifest pointer while another broker begins epoch 2
/// and moves it too, with every other answer lost on both sides. Once epoch 2 has begun, no
/// pointer of the old leader is ever written: the store's history of the record shows a
/// single chain per epoch and never goes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_manifest_moves_with_lost_answers_cannot_fork_the_pointer() {
    let store = LossyStore::new("/silt/partitions/");
    let catalog = Catalog::new(store.clone());
    let topic = TopicRecord {
        name: "t".into(),
        id: TopicId::random(),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::new(),
    };
    catalog.create_topic(&topic, &[NodeId(1)]).await.unwrap();
    let v = catalog.partition(topic.id, 0).await.unwrap().unwrap();
    let first = v.record.begin_term(NodeId(1), Offset(0));
    catalog
        .update_partitions(&[(v, first.clone())])
        .await
        .unwrap();
    let mut history = store.inner.watch("/silt/partitions/").await.unwrap();
    store.lose.store(true, Ordering::Release);
    store.every_other.store(true, Ordering::Release);

    let advance = |catalog: Catalog, who: &'static str, epoch: LeaderEpoch| async move {
        let mut moved = 0;
        for n in 0..200 {
            let key = format!("manifest/{who}-{n:04}");
            let result = catalog
                .update_partition(topic.id, 0, epoch, |r| {
                    Some(PartitionRecord {
                        manifest: Some(key.clone()),
                        manifest_end: Offset(n),
                        ..r.clone()
                    })
                })
                .await;
            match result {
                Ok(_) => moved += 1,
                Err(Error::Fenced { .. }) => return moved,
                Err(_) => {} // unknown outcome: the next move reads the record again
            }
            tokio::task::yield_now().await;
        }
        moved
    };
    let old = tokio::spawn(advance(catalog.clone(), "old", first.leader_epoch));
    // The new leader begins epoch 2 (retrying through lost answers), then moves the pointer.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let begun = loop {
        let v = catalog.partition(topic.id, 0).await.unwrap().unwrap();
        if v.record.leader == NodeId(2) {
            break v.record; // an earlier attempt was applied; its answer was lost
        }
        let next = v.record.begin_term(NodeId(2), v.record.manifest_end);
        match catalog.update_partitions(&[(v, next)]).await {
            Ok(()) | Err(_) => continue,
        }
    };
    assert_eq!(begun.leader_epoch, LeaderEpoch(2));
    let new_moves = advance(catalog.clone(), "new", begun.leader_epoch).await;
    let old_moves = old.await.unwrap();
    assert!(new_moves > 0);

    // Replay the record's history: after the first epoch-2 value, only the new chain.
    store.lose.store(false, Ordering::Release);
    let mut began_with: Option<Option<String>> = None;
    let mut values = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(200), history.recv()).await
    {
        let record: PartitionRecord = serde_json::from_slice(&event.kv.value).unwrap();
        values += 1;
        if began_with.is_none() && record.leader_epoch == LeaderEpoch(2) {
            // The new term starts from the last pointer the old leader managed to move.
            began_with = Some(record.manifest.clone());
            continue;
        }
        if let Some(start) = &began_with {
            assert_eq!(
                record.leader_epoch,
                LeaderEpoch(2),
                "the epoch never goes back"
            );
            let manifest = record.manifest.clone().unwrap_or_default();
            assert!(
                record.manifest == *start || manifest.starts_with("manifest/new"),
                "the replaced leader moved the pointer after epoch 2 began: {manifest}"
            );
        }
    }
    let seen_new_epoch = began_with.is_some();
    assert!(seen_new_epoch && values > 2, "{values} values");
    let last = catalog
        .partition(topic.id, 0)
        .await
        .unwrap()
        .unwrap()
        .record;
    assert!(last.manifest.unwrap().starts_with("manifest/new"));
    println!(
        "old leader moved the pointer {old_moves} times before it was fenced; new {new_moves}"
    );
}
