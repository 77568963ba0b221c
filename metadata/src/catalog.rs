//! The typed layer over a [`MetadataStore`]: topics, partitions and their leader epochs.
//!
//! Keys (values are JSON):
//! - `/silt/cluster` → [`ClusterRecord`]
//! - `/silt/topics/{name}` → [`TopicRecord`]
//! - `/silt/partitions/{topic_id}/{partition:05}` → [`PartitionRecord`] (leader, epoch and its
//!   history, manifest pointer, log start)
//! - `/silt/brokers/{node:05}/generation` → u64, bumped on every broker start
//! - `/silt/brokers/{node:05}/assignment` → u64, the broker's assignment version (its fence)
//! - `/silt/brokers/{node:05}/registration` → [`BrokerRegistration`], under the broker's lease
//! - `/silt/controller` → node id of the controller, under its lease
//! - `/silt/commits/{node:05}/{generation:010}-{seq:012}` → [`CommitRecord`], one per WAL object

use crate::keys;
use crate::store::{Compare, LeaseId, MetadataStore, Op, Txn};
use crate::types::{LeaderEpoch, NodeId, Offset, TopicId};
use crate::{Error, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most records written by one transaction: below etcd's default `--max-txn-ops` (128).
pub const TXN_BATCH: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: TopicId,
    pub partitions: i32,
    /// As requested by the client; durability comes from the bucket, not from copies.
    pub replication_factor: i16,
    /// Topic-level config overrides, by Kafka name.
    pub configs: BTreeMap<String, String>,
}

/// One entry of a partition's leader-epoch history: `epoch` began at `start_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub epoch_history: Vec<EpochEntry>,
    /// Bucket key of the partition's current manifest.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Where the current manifest's segments end: the recorded tail starts here.
    #[serde(default)]
    pub manifest_end: Offset,
    /// The first offset consumers may read (retention and DeleteRecords move it).
    #[serde(default)]
    pub log_start: Offset,
}

/// One partition's data in a WAL object: offsets `first..=last` at bytes `start..start+len`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalExtent {
    pub topic_id: TopicId,
    pub partition: i32,
    pub epoch: LeaderEpoch,
    pub first: Offset,
    pub last: Offset,
    pub start: u64,
    pub len: u64,
}

impl WalExtent {
    /// The offset after this extent.
    pub fn end(&self) -> Offset {
        Offset(self.last.0 + 1)
    }
}

/// The record that makes a WAL object's data recorded: written once per WAL object, by the
/// broker that uploaded it, conditional on that broker's assignment version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// The WAL object's key in the bucket.
    pub object: String,
    pub extents: Vec<WalExtent>,
}

/// A live broker: written under the broker's lease, so it disappears when the broker does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node: NodeId,
    /// The advertised Kafka listener.
    pub host: String,
    pub port: i32,
    #[serde(default)]
    pub rack: Option<String>,
    /// When this incarnation started (ms since the epoch).
    pub started_ms: i64,
    /// Advertised `host:port` per listener name; `host`/`port` are the first listener's.
    #[serde(default)]
    pub listeners: BTreeMap<String, String>,
}

impl BrokerRegistration {
    /// The broker's advertised host and port on the named listener; its first listener's
    /// when it has no listener of that name.
    pub fn endpoint(&self, listener: &str) -> (String, i32) {
        self.listeners
            .get(listener)
            .and_then(|a| {
                let (host, port) = a.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((host.to_string(), port.parse().ok()?))
            })
            .unwrap_or_else(|| (self.host.clone(), self.port))
    }
}

/// A leadership change decided by the controller: `partition` (as read) goes to `leader`.
#[derive(Debug, Clone)]
pub struct Reassignment {
    pub partition: VersionedPartition,
    pub leader: NodeId,
}

impl PartitionRecord {
    /// A new partition: led by `leader` at epoch 0 from offset 0.
    pub fn first(leader: NodeId) -> PartitionRecord {
        PartitionRecord {
            leader,
            leader_epoch: LeaderEpoch(0),
            epoch_history: vec![EpochEntry {
                epoch: LeaderEpoch(0),
                start_offset: Offset(0),
            }],
            manifest: None,
            manifest_end: Offset(0),
            log_start: Offset(0),
        }
    }

    /// Kafka's `OffsetForLeaderEpoch` answer for `requested`: the largest known epoch not above
    /// it and the offset where the next epoch began (the log end for the current epoch).
    /// `None` stands for Kafka's undefined epoch and offset (-1, -1).
    pub fn end_offset_for(
        &self,
        requested: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        if requested.0 < 0 {
            return None;
        }
        let latest = self.epoch_history.last()?;
        if requested == latest.epoch {
            return Some((requested, log_end));
        }
        let higher = self.epoch_history.iter().find(|e| e.epoch > requested)?;
        match self
            .epoch_history
            .iter()
            .rev()
            .find(|e| e.epoch <= requested)
        {
            Some(floor) => Some((floor.epoch, higher.start_offset)),
            None => Some((requested, higher.start_offset)),
        }
    }

    /// The record after a new leadership term starting at `log_end`, led by `leader`.
    pub fn next_term(&self, leader: NodeId, log_end: Offset) -> PartitionRecord {
        let epoch = self.leader_epoch.next();
        let mut history: Vec<EpochEntry> = self
            .epoch_history
            .iter()
            .copied()
            // An epoch that began at or after the new start holds no records.
            .filter(|e| e.start_offset < log_end)
            .collect();
        history.push(EpochEntry {
            epoch,
            start_offset: log_end,
        });
        PartitionRecord {
            leader,
            leader_epoch: epoch,
            epoch_history: history,
            ..self.clone()
        }
    }
}

impl PartitionRecord {
    /// The record after `leader` begins serving at `start` (the recorded end it rebuilt). An
    /// epoch the controller assigned to `leader` and nobody began yet is begun as is; an epoch
    /// already begun (by a previous run of this broker, or by another) is followed by the next.
    pub fn begin_term(&self, leader: NodeId, start: Offset) -> PartitionRecord {
        let begun = self
            .epoch_history
            .last()
            .is_some_and(|e| e.epoch >= self.leader_epoch);
        if begun || self.leader != leader {
            return self.next_term(leader, start);
        }
        let mut history: Vec<EpochEntry> = self
            .epoch_history
            .iter()
            .copied()
            .filter(|e| e.start_offset < start)
            .collect();
        history.push(EpochEntry {
            epoch: self.leader_epoch,
            start_offset: start,
        });
        PartitionRecord {
            epoch_history: history,
            ..self.clone()
        }
    }
}

/// The next unallocated producer id, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ProducerIdBlock {
    next: i64,
}

/// A partition's record with the store revision it was read at (for conditional updates).
#[derive(Debug, Clone)]
pub struct VersionedPartition {
    pub topic_id: TopicId,
    pub partition: i32,
    pub record: PartitionRecord,
    pub mod_revision: i64,
}

/// Typed access to cluster metadata.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn MetadataStore>,
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| Error::Codec {
        key: key.to_string(),
        source,
    })
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Codec {
        key: key.to_string(),
        source,
    })
}

impl Catalog {
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// The cluster id, created on first use.
    pub async fn cluster_id(&self) -> Result<String> {
        if let Some(kv) = self.store.get(keys::CLUSTER).await? {
            return Ok(decode::<ClusterRecord>(keys::CLUSTER, &kv.value)?.cluster_id);
        }
        let record = ClusterRecord {
            cluster_id: uuid::Uuid::new_v4().simple().to_string(),
        };
        self.store
            .txn(
                Txn::new()
                    .when(Compare::absent(keys::CLUSTER))
                    .then(Op::put(keys::CLUSTER, encode(keys::CLUSTER, &record)?)),
            )
            .await?;
        // Whoever won the race, read back the stored one.
        let kv = self
            .store
            .get(keys::CLUSTER)
            .await?
            .ok_or(Error::Conflict {
                key: keys::CLUSTER.into(),
            })?;
        Ok(decode::<ClusterRecord>(keys::CLUSTER, &kv.value)?.cluster_id)
    }

    /// Claims `size` producer ids no other broker will ever get (compare-and-swap on one key).
    pub async fn allocate_producer_ids(&self, size: i64) -> Result<std::ops::Range<i64>> {
        // Bounded: a conflict means another broker took a block; a few retries always suffice.
        for _ in 0..32 {
            let current = self.store.get(keys::PRODUCER_IDS).await?;
            let (next, compare) = match &current {
                Some(kv) => (
                    decode::<ProducerIdBlock>(keys::PRODUCER_IDS, &kv.value)?.next,
                    Compare::mod_revision(keys::PRODUCER_IDS, kv.mod_revision),
                ),
                None => (0, Compare::absent(keys::PRODUCER_IDS)),
            };
            let block = ProducerIdBlock { next: next + size };
            let txn = Txn::new().when(compare).then(Op::put(
                keys::PRODUCER_IDS,
                encode(keys::PRODUCER_IDS, &block)?,
            ));
            if self.store.txn(txn).await?.succeeded {
                return Ok(next..next + size);
            }
        }
        Err(Error::Conflict {
            key: keys::PRODUCER_IDS.into(),
        })
    }

    pub async fn topics(&self) -> Result<Vec<TopicRecord>> {
        self.store
            .list(keys::TOPICS)
            .await?
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }

    pub async fn topic(&self, name: &str) -> Result<Option<TopicRecord>> {
        let key = keys::topic(name);
        match self.store.get(&key).await? {
            Some(kv) => Ok(Some(decode(&key, &kv.value)?)),
            None => Ok(None),
        }
    }

    /// Creates the topic and its partitions at epoch 0 from offset 0, partition `p` led by
    /// `leaders[p % leaders.len()]` (`leaders` must not be empty).
    ///
    /// The partition records go first, in batches of at most [`TXN_BATCH`] (etcd's limit on
    /// operations per transaction); the topic record, created only if absent, makes them
    /// visible. A creation that loses the race removes its partition records again; a crash in
    /// between leaves records under a topic id no topic names, which nothing reads.
    pub async fn create_topic(&self, topic: &TopicRecord, leaders: &[NodeId]) -> Result<()> {
        let key = keys::topic(&topic.name);
        self.put_first_partitions(topic.id, 0..topic.partitions, leaders)
            .await?;
        let txn = Txn::new()
            .when(Compare::absent(&key))
            .then(Op::put(&key, encode(&key, topic)?));
        if self.store.txn(txn).await?.succeeded {
            Ok(())
        } else {
            // Remove what this attempt wrote, unless the topic that exists is this very one.
            if self
                .topic(&topic.name)
                .await?
                .is_none_or(|t| t.id != topic.id)
            {
                self.store
                    .txn(Txn::new().then(Op::delete_prefix(keys::partitions_of(topic.id))))
                    .await?;
            }
            Err(Error::TopicExists(topic.name.clone()))
        }
    }

    async fn put_first_partitions(
        &self,
        topic: TopicId,
        partitions: std::ops::Range<i32>,
        leaders: &[NodeId],
    ) -> Result<()> {
        let all: Vec<i32> = partitions.collect();
        for chunk in all.chunks(TXN_BATCH) {
            let mut txn = Txn::new();
            for &p in chunk {
                let pkey = keys::partition(topic, p);
                let leader = leaders[p as usize % leaders.len()];
                txn = txn.then(Op::put(
                    &pkey,
                    encode(&pkey, &PartitionRecord::first(leader))?,
                ));
            }
            self.store.txn(txn).await?;
        }
        Ok(())
    }

    /// Rewrites a topic's record (configs, or a larger partition count: the new partitions are
    /// created at epoch 0, led as in `create_topic`), conditional on the record it read. Returns the new
    /// record; `Conflict` if it changed concurrently, `TopicNotFound` if it is gone.
    pub async fn update_topic(
        &self,
        name: &str,
        update: impl FnOnce(&TopicRecord) -> TopicRecord,
        leaders: &[NodeId],
    ) -> Result<TopicRecord> {
        let key = keys::topic(name);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Error::TopicNotFound(name.to_string()))?;
        let old: TopicRecord = decode(&key, &kv.value)?;
        let new = update(&old);
        // New partitions are invisible until the topic record counts them (as in create_topic).
        self.put_first_partitions(new.id, old.partitions..new.partitions, leaders)
            .await?;
        let txn = Txn::new()
            .when(Compare::mod_revision(&key, kv.mod_revision))
            .then(Op::put(&key, encode(&key, &new)?));
        if self.store.txn(txn).await?.succeeded {
            Ok(new)
        } else {
            Err(Error::Conflict { key })
        }
    }

    /// Deletes the topic and its partitions; returns what was deleted.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicRecord> {
        let key = keys::topic(name);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or_else(|| Error::TopicNotFound(name.to_string()))?;
        let topic: TopicRecord = decode(&key, &kv.value)?;
        let txn = Txn::new()
            .when(Compare::mod_revision(&key, kv.mod_revision))
            .then(Op::delete(&key))
            .then(Op::delete_prefix(keys::partitions_of(topic.id)));
        if self.store.txn(txn).await?.succeeded {
            Ok(topic)
        } else {
            Err(Error::Conflict { key })
        }
    }

    /// Every partition record of every topic (one paged read), by topic id then partition.
    pub async fn all_partitions(&self) -> Result<Vec<VersionedPartition>> {
        let mut out = Vec::new();
        for kv in self.store.list(keys::PARTITIONS).await? {
            let mut parts = kv.key[keys::PARTITIONS.len()..].split('/');
            let (Some(topic), Some(partition), None) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(topic), Ok(partition)) = (uuid::Uuid::parse_str(topic), partition.parse())
            else {
                return Err(Error::Corrupt {
                    path: kv.key.clone().into(),
                    reason: "partition key without a topic id and partition number".into(),
                });
            };
            out.push(VersionedPartition {
                topic_id: TopicId(topic),
                partition,
                record: decode(&kv.key, &kv.value)?,
                mod_revision: kv.mod_revision,
            });
        }
        Ok(out)
    }

    pub async fn partitions(&self, topic: TopicId) -> Result<Vec<VersionedPartition>> {
        let mut out = Vec::new();
        for kv in self.store.list(&keys::partitions_of(topic)).await? {
            let partition = kv
                .key
                .rsplit('/')
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .ok_or_else(|| Error::Corrupt {
                    path: kv.key.clone().into(),
                    reason: "partition key without a partition number".into(),
                })?;
            out.push(VersionedPartition {
                topic_id: topic,
                partition,
                record: decode(&kv.key, &kv.value)?,
                mod_revision: kv.mod_revision,
            });
        }
        Ok(out)
    }

    /// Writes new partition records in transactions of at most [`TXN_BATCH`] records, each
    /// record conditional on the revision it was read at. `Conflict` if any in a batch changed
    /// meanwhile: that batch and the ones after it are not written (earlier batches are).
    pub async fn update_partitions(
        &self,
        updates: &[(VersionedPartition, PartitionRecord)],
    ) -> Result<()> {
        for chunk in updates.chunks(TXN_BATCH) {
            let mut txn = Txn::new();
            for (current, next) in chunk {
                let key = keys::partition(current.topic_id, current.partition);
                txn = txn
                    .when(Compare::mod_revision(&key, current.mod_revision))
                    .then(Op::put(&key, encode(&key, next)?));
            }
            if !self.store.txn(txn).await?.succeeded {
                return Err(Error::Conflict {
                    key: keys::PARTITIONS.into(),
                });
            }
        }
        Ok(())
    }

    /// One partition's record with its revision.
    pub async fn partition(
        &self,
        topic: TopicId,
        partition: i32,
    ) -> Result<Option<VersionedPartition>> {
        let key = keys::partition(topic, partition);
        Ok(match self.store.get(&key).await? {
            Some(kv) => Some(VersionedPartition {
                topic_id: topic,
                partition,
                record: decode(&key, &kv.value)?,
                mod_revision: kv.mod_revision,
            }),
            None => None,
        })
    }

    /// Changes a partition's record if its leader epoch is still `epoch` (the epoch check of
    /// manifest advances and log-start moves). `Fenced` once another term began; `f` returns
    /// `None` when nothing needs writing.
    pub async fn update_partition(
        &self,
        topic: TopicId,
        partition: i32,
        epoch: LeaderEpoch,
        mut f: impl FnMut(&PartitionRecord) -> Option<PartitionRecord>,
    ) -> Result<PartitionRecord> {
        let key = keys::partition(topic, partition);
        // Bounded: only this partition's leader writes these fields between epoch changes.
        for _ in 0..8 {
            let Some(current) = self.partition(topic, partition).await? else {
                return Err(Error::Fenced {
                    key,
                    reason: "the partition no longer exists".into(),
                });
            };
            if current.record.leader_epoch != epoch {
                return Err(Error::Fenced {
                    key,
                    reason: format!(
                        "leader epoch is {} now, not {}",
                        current.record.leader_epoch.0, epoch.0
                    ),
                });
            }
            let Some(next) = f(&current.record) else {
                return Ok(current.record);
            };
            let txn = Txn::new()
                .when(Compare::mod_revision(&key, current.mod_revision))
                .then(Op::put(&key, encode(&key, &next)?));
            if self.store.txn(txn).await?.succeeded {
                return Ok(next);
            }
        }
        Err(Error::Conflict { key })
    }

    /// A generation number for this start of broker `node`, larger than any before.
    pub async fn next_generation(&self, node: NodeId) -> Result<u64> {
        self.increment(&keys::broker_generation(node)).await
    }

    /// Adds one to the u64 counter at `key` (absent counts as 0) by compare-and-swap; returns
    /// the new value.
    async fn increment(&self, key: &str) -> Result<u64> {
        // Bounded: a conflict means another writer moved the counter; retries converge.
        for _ in 0..32 {
            let current = self.store.get(key).await?;
            let (next, compare) = match &current {
                Some(kv) => (
                    decode::<u64>(key, &kv.value)? + 1,
                    Compare::mod_revision(key, kv.mod_revision),
                ),
                None => (1, Compare::absent(key)),
            };
            let txn = Txn::new()
                .when(compare)
                .then(Op::put(key, encode(key, &next)?));
            if self.store.txn(txn).await?.succeeded {
                return Ok(next);
            }
        }
        Err(Error::Conflict { key: key.into() })
    }

    /// Broker `node`'s assignment version (created at 0). It moves whenever a partition is
    /// taken from the broker, and every commit record is conditional on it.
    pub async fn assignment_version(&self, node: NodeId) -> Result<u64> {
        let key = keys::broker_assignment(node);
        if let Some(kv) = self.store.get(&key).await? {
            return decode(&key, &kv.value);
        }
        self.store
            .txn(
                Txn::new()
                    .when(Compare::absent(&key))
                    .then(Op::put(&key, encode(&key, &0u64)?)),
            )
            .await?;
        match self.store.get(&key).await? {
            Some(kv) => decode(&key, &kv.value),
            None => Err(Error::Conflict { key }),
        }
    }

    /// Bumps broker `node`'s assignment version: every commit it has not yet made will fail.
    pub async fn bump_assignment_version(&self, node: NodeId) -> Result<u64> {
        self.increment(&keys::broker_assignment(node)).await
    }

    /// Registers a live broker under `lease` if its node id is free. `Ok(None)` when registered;
    /// `Ok(Some(other))` when a live broker already holds the id.
    pub async fn register_broker(
        &self,
        registration: &BrokerRegistration,
        lease: LeaseId,
    ) -> Result<Option<BrokerRegistration>> {
        let key = keys::broker_registration(registration.node);
        let txn = Txn::new().when(Compare::absent(&key)).then(Op::Put {
            key: key.clone(),
            value: encode(&key, registration)?,
            lease: Some(lease),
        });
        if self.store.txn(txn).await?.succeeded {
            return Ok(None);
        }
        match self.store.get(&key).await? {
            Some(kv) => Ok(Some(decode(&key, &kv.value)?)),
            // It expired between the two reads: the caller tries again.
            None => Err(Error::Conflict { key }),
        }
    }

    /// The registered (live) brokers, by node id.
    pub async fn live_brokers(&self) -> Result<Vec<BrokerRegistration>> {
        let mut out = Vec::new();
        for kv in self.store.list(keys::BROKERS).await? {
            if kv.key.ends_with("/registration") {
                out.push(decode(&kv.key, &kv.value)?);
            }
        }
        Ok(out)
    }

    /// Becomes the controller if there is none (the key lives under `lease`); returns the
    /// controller's node id either way.
    pub async fn campaign_controller(&self, node: NodeId, lease: LeaseId) -> Result<NodeId> {
        let txn = Txn::new()
            .when(Compare::absent(keys::CONTROLLER))
            .then(Op::Put {
                key: keys::CONTROLLER.into(),
                value: encode(keys::CONTROLLER, &node)?,
                lease: Some(lease),
            });
        if self.store.txn(txn).await?.succeeded {
            return Ok(node);
        }
        match self.store.get(keys::CONTROLLER).await? {
            Some(kv) => decode(keys::CONTROLLER, &kv.value),
            None => Err(Error::Conflict {
                key: keys::CONTROLLER.into(),
            }),
        }
    }

    /// The current controller, if any.
    pub async fn controller(&self) -> Result<Option<NodeId>> {
        match self.store.get(keys::CONTROLLER).await? {
            Some(kv) => Ok(Some(decode(keys::CONTROLLER, &kv.value)?)),
            None => Ok(None),
        }
    }

    /// Applies the controller's leadership changes in batched transactions. Each change gives
    /// the partition its new leader and the next leader epoch, and bumps the assignment version
    /// of the broker losing it, in the same transaction (so the loser's pending commits fail
    /// before the new leader reads the recorded tail). Every transaction is conditional on
    /// `controller` still holding the controller key and on each partition being unchanged
    /// since it was read. Returns how many changes were applied; a batch that loses a race is
    /// skipped (the next round re-plans).
    pub async fn reassign(&self, controller: NodeId, changes: &[Reassignment]) -> Result<usize> {
        let mut applied = 0;
        for chunk in changes.chunks(TXN_BATCH / 2) {
            let mut txn = Txn::new().when(Compare::value(
                keys::CONTROLLER,
                encode(keys::CONTROLLER, &controller)?,
            ));
            let mut losers = std::collections::BTreeSet::new();
            for change in chunk {
                let current = &change.partition;
                let key = keys::partition(current.topic_id, current.partition);
                let mut next = current.record.clone();
                next.leader = change.leader;
                next.leader_epoch = current.record.leader_epoch.next();
                txn = txn
                    .when(Compare::mod_revision(&key, current.mod_revision))
                    .then(Op::put(&key, encode(&key, &next)?));
                if current.record.leader != change.leader {
                    losers.insert(current.record.leader);
                }
            }
            for loser in losers {
                let key = keys::broker_assignment(loser);
                let (value, compare) = match self.store.get(&key).await? {
                    Some(kv) => (
                        decode::<u64>(&key, &kv.value)? + 1,
                        Compare::mod_revision(&key, kv.mod_revision),
                    ),
                    None => (1, Compare::absent(&key)),
                };
                txn = txn.when(compare).then(Op::put(&key, encode(&key, &value)?));
            }
            if self.store.txn(txn).await?.succeeded {
                applied += chunk.len();
            }
        }
        Ok(applied)
    }

    /// Records a WAL object: writes its commit record if broker `node`'s assignment version is
    /// still `assignment`. `Fenced` if it moved (nothing is written then).
    pub async fn commit_wal_object(
        &self,
        node: NodeId,
        assignment: u64,
        key: &str,
        record: &CommitRecord,
    ) -> Result<()> {
        let assignment_key = keys::broker_assignment(node);
        let txn = Txn::new()
            .when(Compare::value(
                &assignment_key,
                encode(&assignment_key, &assignment)?,
            ))
            .then(Op::put(key, encode(key, record)?));
        if self.store.txn(txn).await?.succeeded {
            Ok(())
        } else {
            Err(Error::Fenced {
                key: key.to_string(),
                reason: format!(
                    "assignment version of broker {} is no longer {assignment}",
                    node.0
                ),
            })
        }
    }

    /// One commit record, if it exists (resolves a commit whose outcome was unknown).
    pub async fn commit_record(&self, key: &str) -> Result<Option<CommitRecord>> {
        match self.store.get(key).await? {
            Some(kv) => Ok(Some(decode(key, &kv.value)?)),
            None => Ok(None),
        }
    }

    /// Every commit record of every broker, by key.
    pub async fn commit_records(&self) -> Result<Vec<(String, CommitRecord)>> {
        self.store
            .list(keys::COMMITS)
            .await?
            .into_iter()
            .map(|kv| Ok((kv.key.clone(), decode(&kv.key, &kv.value)?)))
            .collect()
    }

    /// Deletes commit records whose extents all lie below their partitions' manifests.
    pub async fn delete_commit_records(&self, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(64) {
            let mut txn = Txn::new();
            for key in chunk {
                txn = txn.then(Op::delete(key.as_str()));
            }
            self.store.txn(txn).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedMetadataStore;
    use std::time::Duration;

    fn history(entries: &[(i32, i64)]) -> PartitionRecord {
        PartitionRecord {
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(entries.last().unwrap().0),
            epoch_history: entries
                .iter()
                .map(|&(e, o)| EpochEntry {
                    epoch: LeaderEpoch(e),
                    start_offset: Offset(o),
                })
                .collect(),
            manifest: None,
            manifest_end: Offset(0),
            log_start: Offset(0),
        }
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let p = history(&[(0, 0), (2, 10), (5, 30)]);
        let leo = Offset(42);
        assert_eq!(
            p.end_offset_for(LeaderEpoch(5), leo),
            Some((LeaderEpoch(5), leo))
        );
        assert_eq!(
            p.end_offset_for(LeaderEpoch(0), leo),
            Some((LeaderEpoch(0), Offset(10)))
        );
        // An epoch in a gap answers with the floor epoch and the next epoch's start.
        assert_eq!(
            p.end_offset_for(LeaderEpoch(3), leo),
            Some((LeaderEpoch(2), Offset(30)))
        );
        assert_eq!(p.end_offset_for(LeaderEpoch(6), leo), None);
        assert_eq!(
            p.end_offset_for(LeaderEpoch(-1), leo),
            None,
            "undefined epoch"
        );
        let q = history(&[(3, 5), (4, 9)]);
        assert_eq!(
            q.end_offset_for(LeaderEpoch(1), leo),
            Some((LeaderEpoch(1), Offset(5)))
        );
    }

    #[test]
    fn next_term_drops_empty_epochs() {
        let p = history(&[(0, 0), (1, 10)]);
        let q = p.next_term(NodeId(1), Offset(10));
        assert_eq!(q.leader_epoch, LeaderEpoch(2));
        assert_eq!(
            q.epoch_history,
            history(&[(0, 0), (2, 10)]).epoch_history,
            "epoch 1 began at 10 and holds nothing"
        );
        let r = q.next_term(NodeId(1), Offset(15));
        assert_eq!(
            r.epoch_history,
            history(&[(0, 0), (2, 10), (3, 15)]).epoch_history
        );
    }

    #[test]
    fn begin_term_starts_an_assigned_epoch_once() {
        // The controller gave epoch 2 to broker 2; nobody began it yet.
        let mut assigned = history(&[(0, 0), (1, 10)]);
        assigned.leader = NodeId(2);
        assigned.leader_epoch = LeaderEpoch(2);
        let begun = assigned.begin_term(NodeId(2), Offset(25));
        assert_eq!(begun.leader_epoch, LeaderEpoch(2));
        assert_eq!(begun.leader, NodeId(2));
        assert_eq!(
            begun.epoch_history,
            history(&[(0, 0), (1, 10), (2, 25)]).epoch_history
        );
        // A restart of broker 2 begins the next epoch.
        let again = begun.begin_term(NodeId(2), Offset(30));
        assert_eq!(again.leader_epoch, LeaderEpoch(3));
        assert_eq!(
            again.epoch_history,
            history(&[(0, 0), (1, 10), (2, 25), (3, 30)]).epoch_history
        );
        // A broker the record does not name always begins a new epoch.
        let other = assigned.begin_term(NodeId(3), Offset(25));
        assert_eq!(other.leader_epoch, LeaderEpoch(3));
        assert_eq!(other.leader, NodeId(3));
    }

    #[tokio::test]
    async fn topic_lifecycle() {
        let catalog = Catalog::new(Arc::new(EmbeddedMetadataStore::in_memory()));
        let id = catalog.cluster_id().await.unwrap();
        assert_eq!(
            id,
            catalog.cluster_id().await.unwrap(),
            "cluster id is stable"
        );
        let topic = TopicRecord {
            name: "orders".into(),
            id: TopicId::random(),
            partitions: 3,
            replication_factor: 3,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        };
        catalog.create_topic(&topic, &[NodeId(1)]).await.unwrap();
        assert!(matches!(
            catalog.create_topic(&topic, &[NodeId(1)]).await,
            Err(Error::TopicExists(_))
        ));
        assert_eq!(catalog.topic("orders").await.unwrap().unwrap(), topic);
        let parts = catalog.partitions(topic.id).await.unwrap();
        assert_eq!(
            parts.iter().map(|p| p.partition).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );

        let bumps: Vec<_> = parts
            .iter()
            .map(|p| (p.clone(), p.record.next_term(NodeId(1), Offset(0))))
            .collect();
        catalog.update_partitions(&bumps).await.unwrap();
        assert!(
            matches!(
                catalog.update_partitions(&bumps).await,
                Err(Error::Conflict { .. })
            ),
            "stale revisions are refused"
        );
        let parts = catalog.partitions(topic.id).await.unwrap();
        assert!(parts
            .iter()
            .all(|p| p.record.leader_epoch == LeaderEpoch(1)));

        let grown = catalog
            .update_topic(
                "orders",
                |t| TopicRecord {
                    partitions: 5,
                    ..t.clone()
                },
                &[NodeId(1), NodeId(2)],
            )
            .await
            .unwrap();
        assert_eq!(grown.partitions, 5);
        let grown_parts = catalog.partitions(topic.id).await.unwrap();
        assert_eq!(grown_parts.len(), 5);
        let leaders: Vec<i32> = grown_parts.iter().map(|p| p.record.leader.0).collect();
        assert_eq!(
            leaders[3..],
            [2, 1],
            "new partitions spread over the given leaders"
        );

        let a = catalog.allocate_producer_ids(100).await.unwrap();
        let b = catalog.allocate_producer_ids(100).await.unwrap();
        assert_eq!(
            (a, b),
            (0..100, 100..200),
            "producer id blocks never overlap"
        );

        catalog.delete_topic("orders").await.unwrap();
        assert!(catalog.topic("orders").await.unwrap().is_none());
        assert!(catalog.partitions(topic.id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn commits_and_manifest_moves_are_fenced() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let catalog = Catalog::new(store);
        let node = NodeId(3);
        assert_eq!(catalog.next_generation(node).await.unwrap(), 1);
        assert_eq!(catalog.next_generation(node).await.unwrap(), 2);
        let v = catalog.assignment_version(node).await.unwrap();
        let record = CommitRecord {
            object: "wal/aa/x.wal".into(),
            extents: vec![],
        };
        let key = keys::commit(node, 2, 1);
        catalog
            .commit_wal_object(node, v, &key, &record)
            .await
            .unwrap();
        assert_eq!(
            catalog.commit_record(&key).await.unwrap(),
            Some(record.clone())
        );
        catalog.bump_assignment_version(node).await.unwrap();
        let key2 = keys::commit(node, 2, 2);
        assert!(matches!(
            catalog.commit_wal_object(node, v, &key2, &record).await,
            Err(Error::Fenced { .. })
        ));
        assert_eq!(catalog.commit_records().await.unwrap().len(), 1);
        catalog.delete_commit_records(&[key]).await.unwrap();
        assert!(catalog.commit_records().await.unwrap().is_empty());

        let topic = TopicRecord {
            name: "t".into(),
            id: TopicId::random(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::new(),
        };
        catalog.create_topic(&topic, &[node]).await.unwrap();
        let moved = catalog
            .update_partition(topic.id, 0, LeaderEpoch(0), |r| {
                Some(PartitionRecord {
                    manifest: Some("m".into()),
                    manifest_end: Offset(10),
                    ..r.clone()
                })
            })
            .await
            .unwrap();
        assert_eq!(moved.manifest_end, Offset(10));
        let stored = catalog.partition(topic.id, 0).await.unwrap().unwrap();
        let next = stored.record.next_term(node, Offset(12));
        assert_eq!(
            next.manifest_end,
            Offset(10),
            "a new term keeps the manifest pointer"
        );
        catalog.update_partitions(&[(stored, next)]).await.unwrap();
        assert!(matches!(
            catalog
                .update_partition(topic.id, 0, LeaderEpoch(0), |r| Some(r.clone()))
                .await,
            Err(Error::Fenced { .. })
        ));
    }

    #[tokio::test]
    async fn registrations_controller_and_reassignment() {
        let store: Arc<dyn MetadataStore> = Arc::new(EmbeddedMetadataStore::in_memory());
        let catalog = Catalog::new(store.clone());
        let reg = |node| BrokerRegistration {
            node: NodeId(node),
            host: "127.0.0.1".into(),
            port: 9092 + node,
            rack: None,
            started_ms: 0,
            listeners: Default::default(),
        };
        let l1 = store.grant_lease(Duration::from_secs(30)).await.unwrap();
        let l2 = store.grant_lease(Duration::from_secs(30)).await.unwrap();
        assert_eq!(catalog.register_broker(&reg(1), l1).await.unwrap(), None);
        assert_eq!(
            catalog.register_broker(&reg(1), l2).await.unwrap(),
            Some(reg(1)),
            "a live node id is not taken twice"
        );
        assert_eq!(catalog.register_broker(&reg(2), l2).await.unwrap(), None);
        assert_eq!(catalog.live_brokers().await.unwrap(), vec![reg(1), reg(2)]);
        assert_eq!(
            catalog.campaign_controller(NodeId(2), l2).await.unwrap(),
            NodeId(2)
        );
        assert_eq!(
            catalog.campaign_controller(NodeId(1), l1).await.unwrap(),
            NodeId(2),
            "one controller"
        );

        let topic = TopicRecord {
            name: "moves".into(),
            id: TopicId::random(),
            partitions: 130,
            replication_factor: 1,
            configs: BTreeMap::new(),
        };
        catalog.create_topic(&topic, &[NodeId(1)]).await.unwrap();
        let before = catalog.assignment_version(NodeId(1)).await.unwrap();
        let parts = catalog.partitions(topic.id).await.unwrap();
        assert_eq!(parts.len(), 130, "created in several transactions");
        let changes: Vec<_> = parts
            .iter()
            .map(|p| Reassignment {
                partition: p.clone(),
                leader: NodeId(2),
            })
            .collect();
        assert_eq!(
            catalog.reassign(NodeId(1), &changes).await.unwrap(),
            0,
            "only the controller reassigns"
        );
        assert_eq!(catalog.reassign(NodeId(2), &changes).await.unwrap(), 130);
        for p in catalog.partitions(topic.id).await.unwrap() {
            assert_eq!(p.record.leader, NodeId(2));
            assert_eq!(p.record.leader_epoch, LeaderEpoch(1));
        }
        assert!(
            catalog.assignment_version(NodeId(1)).await.unwrap() > before,
            "the broker losing partitions is fenced"
        );
        assert_eq!(
            catalog.reassign(NodeId(2), &changes).await.unwrap(),
            0,
            "changes planned on stale reads are refused"
        );
        store.revoke_lease(l2).await.unwrap();
        assert_eq!(catalog.live_brokers().await.unwrap(), vec![reg(1)]);
        assert_eq!(catalog.controller().await.unwrap(), None);
    }
}
