//! The broker's state: topics and their partitions, the WAL, the catalog; startup recovery,
//! topic creation and deletion, and the background checkpoint and retention tasks.

use crate::config::Config;
use crate::log::partition::{now_ms, Partition, PartitionError};
use crate::log::wal::{decode_file, FileWalStorage, Wal, WalStorage};
use crate::tier::Tier;
use crate::topic_config::{self, TopicConfig};
use anyhow::Context;
use silt_metadata::catalog::{Catalog, TopicRecord, VersionedPartition};
use silt_metadata::{NodeId, Offset, TopicId};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct Topic {
    pub record: TopicRecord,
    pub config: Arc<TopicConfig>,
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    pub fn partition(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }
}

pub struct Broker {
    pub config: Config,
    pub node_id: NodeId,
    /// The controller this broker last saw elected (itself on a single node).
    pub controller: std::sync::atomic::AtomicI32,
    pub cluster_id: String,
    pub catalog: Catalog,
    pub wal: Arc<Wal>,
    pub advertised_host: String,
    pub advertised_port: i32,
    /// The group coordinator (every group, on a single node).
    pub groups: Arc<crate::group::Coordinator>,
    /// Object storage: uploads, archiving, tiered reads.
    pub tier: Arc<Tier>,
    /// This broker's registration and the live brokers.
    pub membership: Arc<crate::cluster::Membership>,
    /// What Produce and Fetch use of the log, the WAL, the tier and the membership.
    pub service: crate::service::PartitionService,
    /// ACLs and the decisions made with them.
    pub authorizer: Arc<crate::security::acl::Authorizer>,
    /// SCRAM credentials (SASL).
    pub credentials: crate::security::sasl::Credentials,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serializes topic creation and deletion on this broker (and following other brokers'
    /// changes to topics).
    admin: tokio::sync::Mutex<()>,
    /// Wakes the leadership loop (a topic was created here: its partitions wait for takeover).
    pub(crate) leadership_wake: tokio::sync::Notify,
    /// The live brokers that group placement last settled on (see [`crate::leadership`]).
    pub(crate) group_view: RwLock<Vec<silt_metadata::catalog::BrokerRegistration>>,
    /// Producer ids claimed from the catalog and not yet handed out.
    producer_ids: tokio::sync::Mutex<std::ops::Range<i64>>,
    logs_dir: PathBuf,
    descriptor_seq: Arc<std::sync::atomic::AtomicU64>,
}

/// Why a topic could not be created; each maps to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum CreateTopicError {
    #[error("topic {0} already exists")]
    Exists(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    Internal(String),
}

/// Why an admin change was refused; each maps to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    Internal(String),
}

/// Kafka's topic name rule: `[a-zA-Z0-9._-]`, 1..=249 characters, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > 249 {
        return Err(format!(
            "topic name is {} characters; the limit is 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

impl Broker {
    /// Opens the broker's state with the object store its configuration names.
    pub async fn open(config: Config, catalog: Catalog) -> anyhow::Result<Arc<Broker>> {
        let url = config.object_store_url()?;
        let store = silt_tiering::store::from_url(&url)
            .with_context(|| format!("open object store {url}"))?;
        Self::open_with_store(config, catalog, store).await
    }

    /// Opens the broker's state: catalog, partitions, WAL replay, what the bucket has that the
    /// local disk lacks, new leader epochs.
    pub async fn open_with_store(
        config: Config,
        catalog: Catalog,
        store: Arc<dyn object_store::ObjectStore>,
    ) -> anyhow::Result<Arc<Broker>> {
        let advertised = config.advertised();
        let (host, port) = advertised
            .rsplit_once(':')
            .context("advertised listener needs host:port")?;
        let advertised_host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let advertised_port: i32 = port.parse().context("advertised listener port")?;
        let listeners = config
            .listeners()
            .iter()
            .map(|l| (l.name.clone(), l.advertised().to_string()))
            .collect();
        let authorizer = Arc::new(crate::security::acl::Authorizer::new(
            &config.authorizer,
            catalog.store().clone(),
        )?);
        if config.authorizer.enabled {
            authorizer.reload().await.context("read ACLs")?;
        }
        let credentials = crate::security::sasl::Credentials::new(catalog.store().clone());
        if !config.sasl.users.is_empty() {
            credentials
                .ensure(&config.sasl.users, config.sasl.scram_iterations)
                .await
                .context("create the SCRAM credentials of sasl.users")?;
        }
        let node_id = NodeId(config.node_id);
        let cluster_id = catalog.cluster_id().await?;
        // Join first: a broker that may not serve this cluster stops before touching anything.
        let membership = crate::cluster::Membership::join(
            catalog.clone(),
            silt_metadata::catalog::BrokerRegistration {
                node: node_id,
                host: advertised_host.clone(),
                port: advertised_port,
                rack: config.cluster.rack.clone(),
                started_ms: now_ms(),
                listeners,
            },
            &config.cluster,
        )
        .await?;
        let clustered = config.clustered();
        let logs_dir = config.data_dir.join("logs");
        std::fs::create_dir_all(&logs_dir)
            .with_context(|| format!("create {}", logs_dir.display()))?;
        let tier = Tier::open(
            store,
            catalog.clone(),
            node_id,
            config.tiering.clone(),
            config.data_dir.join("cache"),
        )
        .await?;

        // 1. Partitions as their segments left them.
        let mut topics = HashMap::new();
        let mut by_id: HashMap<TopicId, Arc<Topic>> = HashMap::new();
        for record in catalog.topics().await? {
            let config_resolved = Arc::new(TopicConfig::resolve(&config.log, &record.configs));
            let mut partitions = Vec::new();
            let stored = catalog.partitions(record.id).await?;
            for p in stored {
                let index = p.partition;
                let partition =
                    open_partition(&logs_dir, &tier, &record, p, config_resolved.clone())
                        .with_context(|| format!("open partition {}-{index}", record.name))?;
                // In a cluster a partition is served only after its takeover.
                partition.set_leading(!clustered);
                partitions.push(partition);
            }
            let topic = Arc::new(Topic {
                record: record.clone(),
                config: config_resolved,
                partitions,
            });
            by_id.insert(record.id, topic.clone());
            topics.insert(record.name.clone(), topic);
        }
        report_unknown_logs(&logs_dir, &by_id);

        // 2. The WAL holds what segments may have lost; replay it over them. (In a cluster, only
        // batches that fit the partition's epoch history: the WAL may still hold batches of a
        // term this broker lost, and another leader may have reused their offsets. Takeover
        // then rebuilds each partition from the bucket, keeping this broker's own unrecorded
        // data only if no term began after it.)
        let wal_dir = config.data_dir.join("wal");
        let mut storage = FileWalStorage::open(&wal_dir)
            .with_context(|| format!("open WAL in {}", wal_dir.display()))?;
        let (mut replayed, mut unfit) = (0usize, 0usize);
        for seq in storage.files().context("list WAL files")? {
            let bytes = storage.read(seq).context("read WAL")?;
            let (records, intact) = decode_file(&bytes);
            if intact < bytes.len() {
                tracing::warn!(
                    file = seq,
                    intact,
                    len = bytes.len(),
                    "cutting torn WAL tail"
                );
                storage
                    .cut(seq, intact as u64)
                    .context("cut torn WAL tail")?;
            }
            for record in records {
                let Some(topic) = by_id.get(&TopicId(record.topic_id)) else {
                    continue;
                };
                if let Some(p) = topic.partition(record.partition) {
                    if clustered && !p.fits_history(&record.batch) {
                        unfit += 1;
                        continue;
                    }
                    if p.replay(&record.batch).with_context(|| {
                        format!("replay WAL file {seq} into {}-{}", p.topic, p.index)
                    })? {
                        replayed += 1;
                    }
                }
            }
        }
        if replayed > 0 || unfit > 0 {
            tracing::info!(
                batches = replayed,
                skipped = unfit,
                "replayed WAL into segments (skipped: batches of terms another leader followed)"
            );
        }
        // The bucket may hold what the local disk lost (or never had): the manifest and the
        // recorded tail. Local data past the recorded end is uploaded again.
        let mut unrecorded = Vec::new();
        if !clustered {
            let commits = catalog
                .commit_records()
                .await
                .context("read commit records")?;
            for topic in topics.values() {
                for p in &topic.partitions {
                    let recovered = tier
                        .recover(
                            p,
                            &p.record(),
                            &commits,
                            crate::tier::LocalLog::Keep,
                            &Default::default(),
                        )
                        .await
                        .with_context(|| {
                            format!("recover {}-{} from the bucket", p.topic, p.index)
                        })?;
                    let crate::tier::Recovered::Ready {
                        recorded_end,
                        log_end,
                    } = recovered
                    else {
                        anyhow::bail!(
                            "{}-{}: kept data is recorded only by a takeover",
                            p.topic,
                            p.index
                        );
                    };
                    unrecorded.push((p.clone(), recorded_end, log_end));
                }
            }
            // Producer state: the newest snapshot plus the batches after it.
            for topic in topics.values() {
                for p in &topic.partitions {
                    p.load_producers().with_context(|| {
                        format!("load producer state of {}-{}", p.topic, p.index)
                    })?;
                }
            }
        }
        // Make every segment durable (reopened ones too: their tails may still be only in the
        // page cache of a process that was killed), then start a fresh WAL file.
        for topic in topics.values() {
            for p in &topic.partitions {
                p.sync()?;
            }
        }
        let fresh = storage.rotate().context("rotate WAL")?;
        storage.truncate_before(fresh).context("trim WAL")?;
        let wal = Wal::start(
            Box::new(storage),
            Some(Box::new(|took, bytes| {
                let m = crate::metrics::metrics();
                m.wal_fsync_duration.observe(took.as_secs_f64());
                m.wal_sync_bytes.observe(bytes as f64);
            })),
        );

        // 3. A restarted leader starts a new leader epoch for each of its partitions. (In a
        // cluster, takeover does, partition by partition.)
        let mut bumps: Vec<(VersionedPartition, _)> = Vec::new();
        for topic in topics.values().filter(|_| !clustered) {
            for (stored, p) in catalog
                .partitions(topic.record.id)
                .await?
                .into_iter()
                .zip(&topic.partitions)
            {
                let next = stored.record.next_term(node_id, Offset(p.log_end()));
                bumps.push((stored, next));
            }
        }
        catalog.update_partitions(&bumps).await?;
        for (stored, next) in bumps {
            if let Some(p) = by_id
                .get(&stored.topic_id)
                .and_then(|t| t.partition(stored.partition))
            {
                p.set_record(next);
            }
        }
        for (p, from, to) in unrecorded {
            tier.requeue(&p, from, to)
                .with_context(|| format!("re-queue unrecorded data of {}-{}", p.topic, p.index))?;
        }

        let groups = crate::group::Coordinator::start(
            catalog.store().clone(),
            crate::group::GroupSettings {
                initial_rebalance_delay: Duration::from_millis(
                    config.group_initial_rebalance_delay_ms,
                ),
                min_session_timeout: Duration::from_millis(config.group_min_session_timeout_ms),
                max_session_timeout: Duration::from_millis(config.group_max_session_timeout_ms),
                offsets_retention: Duration::from_secs(config.offsets_retention_minutes * 60),
                offset_metadata_max_bytes: config.offset_metadata_max_bytes,
                max_protocol_metadata_bytes: 1024 * 1024,
                max_members: config.group_max_size,
            },
        )
        .await
        .context("load consumer groups")?;

        let service = crate::service::PartitionService::new(
            wal.clone(),
            tier.clone(),
            membership.clone(),
            &config,
        );
        let broker = Arc::new(Broker {
            controller: std::sync::atomic::AtomicI32::new(node_id.0),
            groups,
            tier,
            membership,
            service,
            authorizer,
            credentials,
            config,
            node_id,
            cluster_id,
            catalog,
            wal,
            advertised_host,
            advertised_port,
            topics: RwLock::new(topics),
            admin: tokio::sync::Mutex::new(()),
            leadership_wake: tokio::sync::Notify::new(),
            group_view: RwLock::new(Vec::new()),
            producer_ids: tokio::sync::Mutex::new(0..0),
            logs_dir,
            descriptor_seq: Arc::default(),
        });
        let weak = Arc::downgrade(&broker);
        broker.tier.set_partitions(Box::new(move || {
            weak.upgrade()
                .map(|b| b.all_partitions())
                .unwrap_or_default()
        }));
        if clustered {
            broker.tier.set_clustered();
            let weak = Arc::downgrade(&broker);
            broker.groups.set_placement(Arc::new(move |g: &str| {
                weak.upgrade().is_none_or(|b| b.coordinates(g))
            }));
            // A lost lease means another broker may lead any of these partitions by now: stop
            // serving them before registering again (takeover brings back those still ours).
            let weak = Arc::downgrade(&broker);
            broker.membership.on_lease_lost(Box::new(move || {
                if let Some(b) = weak.upgrade() {
                    for p in b.all_partitions() {
                        p.set_leading(false);
                    }
                    b.tier.notify_recorded();
                }
            }));
            let live = broker.membership.live();
            let me = node_id;
            broker.groups.give_up_unowned(|g| {
                crate::leadership::coordinator_for(g, &live).is_none_or(|b| b.node == me)
            });
            *broker.group_view.write().expect("group view lock") = live;
        }
        broker.all_partitions();
        broker.publish_descriptor();
        Ok(broker)
    }

    /// Whether other brokers share this broker's metadata store (partitions are led by
    /// whichever broker their records name; see [`crate::leadership`]).
    pub fn clustered(&self) -> bool {
        self.config.clustered()
    }

    /// The broker that coordinates `group` (FindCoordinator's answer); `None` while no broker
    /// is known to be live.
    pub fn group_coordinator(
        &self,
        group: &str,
    ) -> Option<silt_metadata::catalog::BrokerRegistration> {
        if !self.clustered() {
            return Some(self.membership.registration().clone());
        }
        let view = self.group_view.read().expect("group view lock");
        crate::leadership::coordinator_for(group, &view).cloned()
    }

    /// Whether this broker answers for `group` now: placement settled on it, and the live
    /// brokers as last read agree (a group about to move is refused before it moves).
    pub fn coordinates(&self, group: &str) -> bool {
        if !self.clustered() {
            return true;
        }
        if !self.membership.healthy() {
            // Cut off from the store: another broker may coordinate the group by now.
            return false;
        }
        let live = self.membership.live();
        self.group_coordinator(group)
            .is_some_and(|b| b.node == self.node_id)
            && crate::leadership::coordinator_for(group, &live)
                .is_none_or(|b| b.node == self.node_id)
    }

    /// Brings the local topics in line with the catalog's `records` (topics created, altered,
    /// grown or deleted through other brokers). New partitions are not led until taken over.
    pub(crate) async fn sync_topics(&self) -> anyhow::Result<()> {
        // Read under the admin lock: a topic being created here is not mistaken for deleted.
        let _admin = self.admin.lock().await;
        let records = self.catalog.topics().await?;
        let records = &records;
        let mut changed = false;
        let known: std::collections::HashSet<TopicId> = records.iter().map(|r| r.id).collect();
        let gone: Vec<Arc<Topic>> = self
            .topics()
            .into_iter()
            .filter(|t| !known.contains(&t.record.id))
            .collect();
        for topic in gone {
            self.remove_local_topic(&topic);
            changed = true;
            tracing::info!(topic = %topic.record.name, "removed a topic deleted through another broker");
        }
        for record in records {
            let existing = self.topic(&record.name);
            if existing.as_ref().is_some_and(|t| t.record == *record) {
                continue;
            }
            let config = Arc::new(TopicConfig::resolve(&self.config.log, &record.configs));
            let mut partitions = match &existing {
                Some(t) if t.record.id == record.id => {
                    for p in &t.partitions {
                        p.set_config(config.clone());
                    }
                    t.partitions.clone()
                }
                Some(t) => {
                    // Deleted and created again elsewhere under the same name.
                    self.remove_local_topic(t);
                    Vec::new()
                }
                None => Vec::new(),
            };
            let stored = self.catalog.partitions(record.id).await?;
            let have = partitions.len();
            // Records past the count belong to a growth still being written.
            for v in stored
                .into_iter()
                .filter(|v| v.partition as usize >= have && v.partition < record.partitions)
            {
                let p = open_partition(&self.logs_dir, &self.tier, record, v, config.clone())?;
                p.set_leading(false);
                partitions.push(p);
            }
            tracing::info!(topic = %record.name, partitions = partitions.len(), "following a topic created or changed through another broker");
            self.topics.write().expect("topics lock").insert(
                record.name.clone(),
                Arc::new(Topic {
                    record: record.clone(),
                    config,
                    partitions,
                }),
            );
            changed = true;
        }
        if changed {
            self.all_partitions();
        }
        Ok(())
    }

    /// Forgets a topic locally and removes its files (the catalog no longer has it).
    fn remove_local_topic(&self, topic: &Topic) {
        self.topics
            .write()
            .expect("topics lock")
            .remove(&topic.record.name);
        for p in &topic.partitions {
            if let Err(error) = p.delete() {
                tracing::warn!(topic = %topic.record.name, %error, "removing deleted partition's files failed");
            }
        }
        let _ = std::fs::remove_dir_all(self.logs_dir.join(topic.record.id.to_string()));
        self.tier.notify_recorded();
    }

    /// Writes the bucket's cluster descriptor (topic names, ids, configs) in the background,
    /// so that readers without a broker can find topics.
    pub fn publish_descriptor(&self) {
        let descriptor = silt_tiering::reader::ClusterDescriptor {
            version: silt_tiering::layout::FORMAT_VERSION,
            cluster_id: self.cluster_id.clone(),
            topics: self
                .topics()
                .iter()
                .map(|t| silt_tiering::reader::TopicDescriptor {
                    name: t.record.name.clone(),
                    id: t.record.id,
                    partitions: t.record.partitions,
                    configs: t.record.configs.clone(),
                })
                .collect(),
        };
        let store = self.tier.store.clone();
        let seq = self
            .descriptor_seq
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        let latest = self.descriptor_seq.clone();
        tokio::spawn(async move {
            for attempt in 1..=10u64 {
                if latest.load(std::sync::atomic::Ordering::Acquire) != seq {
                    return; // a newer descriptor is on its way
                }
                match descriptor.put(store.as_ref()).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(attempt, %error, "writing cluster.json to the bucket failed");
                        tokio::time::sleep(Duration::from_secs(attempt)).await;
                    }
                }
            }
        });
    }

    /// The live brokers for Metadata and DescribeCluster: the registrations as last read, and
    /// always this broker (it answers, so it is live, even before its first refresh).
    pub fn live_brokers(&self) -> Vec<silt_metadata::catalog::BrokerRegistration> {
        let mut live = self.membership.live();
        if !live.iter().any(|b| b.node == self.node_id) {
            live.push(self.membership.registration().clone());
            live.sort_by_key(|b| b.node);
        }
        live
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().expect("topics lock").get(name).cloned()
    }

    pub fn topic_by_id(&self, id: uuid::Uuid) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .expect("topics lock")
            .values()
            .find(|t| t.record.id.0 == id)
            .cloned()
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut all: Vec<_> = self
            .topics
            .read()
            .expect("topics lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        all
    }

    /// A CreateTopics partition count, with -1 meaning the broker's `num_partitions`.
    pub fn partitions_or_default(&self, partitions: i32) -> i32 {
        if partitions == -1 {
            self.config.num_partitions
        } else {
            partitions
        }
    }

    /// Validates and (unless `validate_only`) creates a topic.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, CreateTopicError> {
        validate_topic_name(name).map_err(CreateTopicError::InvalidName)?;
        let partitions = self.partitions_or_default(partitions);
        if !(1..=100_000).contains(&partitions) {
            return Err(CreateTopicError::InvalidPartitions(format!(
                "number of partitions must be between 1 and 100000, got {partitions}"
            )));
        }
        let replication_factor = if replication_factor == -1 {
            self.config.default_replication_factor
        } else {
            replication_factor
        };
        if replication_factor < 1 {
            return Err(CreateTopicError::InvalidReplicationFactor(format!(
                "replication factor must be at least 1, got {replication_factor}"
            )));
        }
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(CreateTopicError::InvalidConfig)?;
        }
        let record = TopicRecord {
            name: name.to_string(),
            id: TopicId::random(),
            partitions,
            replication_factor,
            configs,
        };
        let config = Arc::new(TopicConfig::resolve(&self.config.log, &record.configs));
        let _admin = self.admin.lock().await;
        if self.topic(name).is_some() {
            return Err(CreateTopicError::Exists(name.to_string()));
        }
        if validate_only {
            return Ok(Arc::new(Topic {
                record,
                config,
                partitions: Vec::new(),
            }));
        }
        let leaders = self.leaders_for_new_partitions().await;
        match self.catalog.create_topic(&record, &leaders).await {
            Ok(()) => {}
            Err(silt_metadata::Error::TopicExists(n)) => return Err(CreateTopicError::Exists(n)),
            Err(e) => return Err(CreateTopicError::Internal(e.to_string())),
        }
        let stored = self
            .catalog
            .partitions(record.id)
            .await
            .map_err(|e| CreateTopicError::Internal(e.to_string()))?;
        // Creating directories and segment files (with their fsyncs) is blocking work: off the
        // runtime threads, which also keep the lease alive.
        let (logs_dir, tier, opened_record, opened_config) = (
            self.logs_dir.clone(),
            self.tier.clone(),
            record.clone(),
            config.clone(),
        );
        let leading = !self.clustered();
        let parts = tokio::task::spawn_blocking(move || {
            stored
                .into_iter()
                .map(|p| {
                    let partition =
                        open_partition(&logs_dir, &tier, &opened_record, p, opened_config.clone())?;
                    partition.set_leading(leading);
                    Ok(partition)
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| CreateTopicError::Internal(e.to_string()))?
        .map_err(|e| CreateTopicError::Internal(e.to_string()))?;
        let topic = Arc::new(Topic {
            record,
            config,
            partitions: parts,
        });
        self.topics
            .write()
            .expect("topics lock")
            .insert(name.to_string(), topic.clone());
        self.all_partitions();
        self.publish_descriptor();
        self.leadership_wake.notify_one();
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Replaces a topic's stored config overrides (validated here; nothing is written when
    /// `validate_only`).
    pub async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        for (k, v) in &configs {
            topic_config::validate(k, v).map_err(AdminError::InvalidConfig)?;
        }
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(AdminError::UnknownTopic(name.to_string()));
        };
        if validate_only {
            return Ok(());
        }
        let record = self
            .catalog
            .update_topic(
                name,
                |t| TopicRecord {
                    configs: configs.clone(),
                    ..t.clone()
                },
                &[self.node_id],
            )
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        let config = Arc::new(TopicConfig::resolve(&self.config.log, &record.configs));
        for p in &topic.partitions {
            p.set_config(config.clone());
        }
        self.replace_topic(Topic {
            record,
            config,
            partitions: topic.partitions.clone(),
        });
        tracing::info!(topic = name, "altered topic configs");
        Ok(())
    }

    /// Grows a topic to `count` partitions.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<(), AdminError> {
        let _admin = self.admin.lock().await;
        let Some(topic) = self.topic(name) else {
            return Err(AdminError::UnknownTopic(name.to_string()));
        };
        let current = topic.record.partitions;
        if count <= current {
            return Err(AdminError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count {count} must be larger"
            )));
        }
        if count > 100_000 {
            return Err(AdminError::InvalidPartitions(format!(
                "{count} partitions is more than 100000"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let record = self
            .catalog
            .update_topic(
                name,
                |t| TopicRecord {
                    partitions: count,
                    ..t.clone()
                },
                &self.leaders_for_new_partitions().await,
            )
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        let stored = self
            .catalog
            .partitions(record.id)
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))?;
        let mut partitions = topic.partitions.clone();
        for p in stored.into_iter().filter(|p| p.partition >= current) {
            let partition =
                open_partition(&self.logs_dir, &self.tier, &record, p, topic.config.clone())
                    .map_err(|e| AdminError::Internal(e.to_string()))?;
            partition.set_leading(!self.clustered());
            partitions.push(partition);
        }
        self.leadership_wake.notify_one();
        self.replace_topic(Topic {
            record,
            config: topic.config.clone(),
            partitions,
        });
        tracing::info!(
            topic = name,
            from = current,
            to = count,
            "created partitions"
        );
        Ok(())
    }

    /// Who leads new partitions: this broker alone, or in a cluster the live brokers in turn,
    /// the least-loaded first (the controller evens out the rest).
    async fn leaders_for_new_partitions(&self) -> Vec<NodeId> {
        if !self.clustered() {
            return vec![self.node_id];
        }
        // A broker that joined a moment ago gets its share from the start.
        if let Err(error) = self.membership.refresh_live().await {
            tracing::debug!(%error, "reading the live brokers failed; using the last list");
        }
        let mut load: BTreeMap<NodeId, usize> =
            self.live_brokers().iter().map(|b| (b.node, 0)).collect();
        for p in self.all_partitions() {
            if let Some(n) = load.get_mut(&p.record().leader) {
                *n += 1;
            }
        }
        let mut nodes: Vec<(usize, NodeId)> = load.into_iter().map(|(n, l)| (l, n)).collect();
        nodes.sort();
        nodes.into_iter().map(|(_, n)| n).collect()
    }

    fn replace_topic(&self, topic: Topic) {
        self.topics
            .write()
            .expect("topics lock")
            .insert(topic.record.name.clone(), Arc::new(topic));
        self.all_partitions();
        self.publish_descriptor();
    }

    /// Deletes a topic: from the catalog first, then locally.
    pub async fn delete_topic(&self, name: &str) -> Result<TopicRecord, silt_metadata::Error> {
        let _admin = self.admin.lock().await;
        let record = self.catalog.delete_topic(name).await?;
        if let Some(topic) = self.topic(name) {
            self.remove_local_topic(&topic);
        }
        self.all_partitions();
        self.publish_descriptor();
        let tier = self.tier.clone();
        let id = record.id;
        tokio::spawn(async move { tier.delete_topic_objects(id).await });
        tracing::info!(topic = name, "deleted topic");
        Ok(record)
    }

    /// A producer id unique in the cluster (claimed from the catalog in blocks of 1000).
    pub async fn next_producer_id(&self) -> Result<i64, silt_metadata::Error> {
        let mut ids = self.producer_ids.lock().await;
        if ids.is_empty() {
            *ids = self.catalog.allocate_producer_ids(1000).await?;
        }
        let id = ids.start;
        ids.start += 1;
        Ok(id)
    }

    /// Every partition (also refreshes the partitions-led gauge).
    pub(crate) fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let all: Vec<Arc<Partition>> = self
            .topics
            .read()
            .expect("topics lock")
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect();
        crate::metrics::metrics().partitions.set(all.len() as i64);
        all
    }

    /// Rotates the WAL, fsyncs every dirty segment, then removes the WAL files before the
    /// rotation: each record in them was written to its segment before it entered the WAL.
    pub async fn checkpoint(self: &Arc<Self>) -> anyhow::Result<()> {
        let fresh = self.wal.rotate().await.context("rotate WAL")?;
        let broker = self.clone();
        let expiration_ms = self.config.producer_id_expiration_ms;
        tokio::task::spawn_blocking(move || -> Result<(), PartitionError> {
            let now = now_ms();
            for p in broker.all_partitions() {
                p.sync()?;
                p.expire_producers(now, expiration_ms);
                p.snapshot_producers()?;
            }
            Ok(())
        })
        .await??;
        self.wal.truncate_before(fresh);
        Ok(())
    }

    /// Runs the uploader, the archiver and checkpoints until cancelled.
    /// Returns why the broker stopped itself, if it did (a failed WAL in a cluster).
    pub async fn run_background(self: Arc<Self>, cancel: CancellationToken) -> Option<String> {
        let uploader = tokio::spawn(self.tier.clone().run_uploader(self.wal.clone()));
        // Membership outlives `cancel`: the lease is kept through the final flush and revoked
        // when the broker has stopped.
        let membership_stop = CancellationToken::new();
        // Cancelled however this future ends (a shutdown that overran its deadline drops it):
        // the lease thread must not keep a stopping broker looking alive.
        let _membership_stopped = membership_stop.clone().drop_guard();
        if self.clustered() {
            let options = self.config.etcd.options(&self.config.metadata);
            let connect: crate::cluster::ConnectStore = Box::new(move || {
                Box::pin(async move {
                    let store = silt_metadata::EtcdMetadataStore::connect(&options?).await?;
                    Ok(Arc::new(store) as Arc<dyn silt_metadata::MetadataStore>)
                })
            });
            if let Err(error) = self
                .membership
                .keep_alive_apart(connect, membership_stop.clone())
            {
                tracing::warn!(%error, "no thread for the lease keep-alive; the shared runtime keeps it");
            }
        }
        let membership = tokio::spawn(self.membership.clone().run(membership_stop.clone()));
        tokio::spawn(self.authorizer.clone().run(cancel.clone()));
        // Archiving waits on the object store; it runs apart so checkpoints never wait on it.
        let archiver = tokio::spawn(self.clone().run_archiver(cancel.clone()));
        if !self.config.telemetry.lag_groups.is_empty() {
            tokio::spawn(self.clone().run_lag_metric(cancel.clone()));
        }
        let leadership = self
            .clustered()
            .then(|| tokio::spawn(crate::leadership::run(self.clone(), cancel.clone())));
        let checkpoint_every =
            Duration::from_millis(self.config.wal.checkpoint_interval_ms.max(100));
        let mut checkpoint_tick = tokio::time::interval(Duration::from_millis(200));
        let mut last_checkpoint = tokio::time::Instant::now();
        let mut wal_failed = self.wal.subscribe_failed();
        let mut fatal = None;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                changed = wal_failed.changed(), if fatal.is_none() => {
                    let reason = match (changed, wal_failed.borrow().clone()) {
                        (Ok(()), Some(failed)) => failed.0,
                        (Ok(()), None) => continue,
                        (Err(_), _) => "the WAL writer stopped".to_string(),
                    };
                    // (It fails once: the watch does not change again.)
                    fatal = self.clone().wal_failed(&reason).await;
                    if fatal.is_some() {
                        cancel.cancel();
                    }
                }
                _ = checkpoint_tick.tick() => {
                    let due = last_checkpoint.elapsed() >= checkpoint_every
                        || self.wal.bytes_since_rotate() >= self.config.wal.checkpoint_bytes;
                    if due && self.wal.bytes_since_rotate() > 0 {
                        if let Err(error) = self.checkpoint().await {
                            tracing::warn!(%error, "WAL checkpoint failed; the WAL keeps its files until the next one");
                        }
                        last_checkpoint = tokio::time::Instant::now();
                    }
                }
            }
        }
        let _ = archiver.await;
        if let Some(leadership) = leadership {
            let _ = leadership.await;
        }
        // Let queued data reach the bucket before the uploader stops, within most of the
        // shutdown deadline (the rest is for revoking the lease).
        let flush_within = Duration::from_millis(self.config.shutdown_timeout_ms * 4 / 5);
        if !self.tier.flush(flush_within).await {
            tracing::warn!(
                pending_bytes = self.tier.uploads.pending_bytes(),
                "shutting down with data not yet in the bucket; the local WAL keeps it"
            );
        }
        self.tier.cancel.cancel();
        let _ = uploader.await;
        if fatal.is_some() {
            for p in self.all_partitions() {
                p.set_leading(false);
            }
        }
        membership_stop.cancel();
        let _ = membership.await;
        fatal
    }

    /// The WAL refuses writes (a full or failing disk). Every partition's local log is cut back
    /// to what the WAL made durable, so no refused batch is ever visible, uploaded or re-queued
    /// after a restart. In a cluster the broker then stops (returns why), as Kafka stops a
    /// broker whose log directory failed: like any shutdown it first flushes its durable data
    /// to the bucket, then steps down and revokes its lease, and the others take its
    /// partitions over; on one node it keeps serving reads while
    /// writes get KAFKA_STORAGE_ERROR and `/readyz` reports not ready, until it is restarted.
    async fn wal_failed(self: Arc<Self>, reason: &str) -> Option<String> {
        tracing::error!(%reason, "the WAL failed: refusing writes and cutting every local log back to what the WAL made durable");
        let broker = self.clone();
        let cut = tokio::task::spawn_blocking(move || {
            let mut cut = 0;
            for p in broker.all_partitions() {
                match p.discard_unsynced() {
                    Ok(n) => cut += n,
                    Err(error) => {
                        // The refused data may still be in the segment: never serve it.
                        tracing::error!(topic = %p.topic, partition = p.index, %error, "cutting refused batches failed; the partition stops serving");
                        p.set_leading(false);
                    }
                }
            }
            cut
        })
        .await
        .unwrap_or(0);
        if cut > 0 {
            tracing::warn!(
                offsets = cut,
                "cut batches the WAL never made durable (none was acknowledged)"
            );
        }
        if !self.clustered() {
            return None;
        }
        // Not stepping down yet: the shutdown's flush first commits what the WAL made durable
        // (acknowledged with acks=1 or on `local` topics), which a step-down would drop.
        Some(format!(
            "the WAL failed ({reason}); stopped so that other brokers take the partitions over"
        ))
    }

    /// Archiving (segment uploads, retention, local eviction) and garbage collection, one
    /// round every `archive_interval_ms`, until cancelled (a round in progress finishes).
    async fn run_archiver(self: Arc<Self>, cancel: CancellationToken) {
        let archive_every = Duration::from_millis(self.config.tiering.archive_interval_ms.max(50));
        let mut archive_tick = tokio::time::interval(archive_every);
        archive_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_gc = tokio::time::Instant::now();
        let gc_every =
            Duration::from_millis((self.config.tiering.gc_grace_ms / 4).clamp(1_000, 60_000));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = archive_tick.tick() => {}
            }
            for p in self.all_partitions() {
                if cancel.is_cancelled() {
                    return;
                }
                if !p.leading() {
                    continue;
                }
                if let Err(error) = self.tier.archive(&p).await {
                    tracing::warn!(topic = %p.topic, partition = p.index, error = format!("{error:#}"), "archiving failed; retrying next round");
                }
            }
            self.tier.sweep_graveyard().await;
            if last_gc.elapsed() >= gc_every {
                let broker = self.clone();
                // Partitions led elsewhere: the manifest end their record names.
                let archived_end = move |topic: TopicId, index: i32| {
                    broker.topic_by_id(topic.0).and_then(|t| {
                        t.partition(index).map(|p| {
                            if p.leading() {
                                p.manifest().end().0
                            } else {
                                p.record().manifest_end.0
                            }
                        })
                    })
                };
                if let Err(error) = self.tier.collect_garbage(archived_end).await {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        "garbage collection of WAL objects failed"
                    );
                }
                last_gc = tokio::time::Instant::now();
            }
            self.tier.update_metrics();
        }
    }

    /// Keeps `silt_broker_consumer_group_lag_records` current for the configured groups until
    /// cancelled.
    async fn run_lag_metric(self: Arc<Self>, cancel: CancellationToken) {
        let every = Duration::from_millis(self.config.telemetry.lag_refresh_ms);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shown = std::collections::BTreeSet::new();
        let mut warned_cap = false;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let settings = &self.config.telemetry;
            let mut lags: std::collections::BTreeMap<String, i64> = Default::default();
            let mut capped = false;
            let mut failed = false;
            for pattern in &settings.lag_groups {
                let found = match self.groups.stored_offsets(pattern).await {
                    Ok(found) => found,
                    Err(error) => {
                        tracing::warn!(%pattern, %error, "reading offsets for the lag metric failed");
                        failed = true;
                        break;
                    }
                };
                for (group, offsets) in found {
                    if lags.len() >= settings.lag_groups_max && !lags.contains_key(&group) {
                        capped = true;
                        continue;
                    }
                    let lag = self.lag_here(&offsets);
                    lags.insert(group, lag);
                }
            }
            if failed {
                // Keep the last values rather than show a gap as zero lag.
                continue;
            }
            if capped && !warned_cap {
                tracing::warn!(
                    max = settings.lag_groups_max,
                    "more groups match telemetry.lag_groups than telemetry.lag_groups_max; the rest get no lag series"
                );
                warned_cap = true;
            }
            let gauge = &crate::metrics::metrics().group_lag;
            for gone in shown.iter().filter(|g| !lags.contains_key(*g)) {
                let _ = gauge.remove_label_values(&[gone]);
            }
            for (group, lag) in &lags {
                gauge.with_label_values(&[group]).set(*lag);
            }
            shown = lags.into_keys().collect();
        }
    }

    /// A group's lag over the partitions this broker leads: high watermark minus committed
    /// offset, summed (never negative per partition).
    fn lag_here(&self, offsets: &crate::group::GroupOffsets) -> i64 {
        offsets
            .offsets
            .iter()
            .filter_map(|(topic, parts)| Some((self.topic(topic)?, parts)))
            .flat_map(|(topic, parts)| {
                parts.iter().filter_map(move |(index, entry)| {
                    let p = topic.partition(*index)?;
                    (p.leading() && entry.offset >= 0)
                        .then(|| (p.high_watermark() - entry.offset).max(0))
                })
            })
            .sum()
    }

    /// Flushes and stops the WAL writer.
    pub async fn shutdown(self: &Arc<Self>) {
        if let Err(error) = self.checkpoint().await {
            tracing::warn!(%error, "final checkpoint failed; the WAL replays on next start");
        }
        let wal = self.wal.clone();
        let _ = tokio::task::spawn_blocking(move || wal.shutdown()).await;
        self.tier.reader.close().await;
        self.membership.leave().await;
    }
}

/// Opens one partition's local log under `logs/{topic-id}/{partition}`, feeding the upload queue.
fn open_partition(
    logs_dir: &std::path::Path,
    tier: &Tier,
    topic: &TopicRecord,
    stored: VersionedPartition,
    config: Arc<TopicConfig>,
) -> Result<Arc<Partition>, PartitionError> {
    let dir = logs_dir
        .join(topic.id.to_string())
        .join(stored.partition.to_string());
    Partition::open(
        &dir,
        &topic.name,
        topic.id,
        stored.partition,
        stored.record,
        config,
        Some(tier.uploads.clone()),
    )
    .map(Arc::new)
}

/// Reports partition directories of topics the catalog does not have, and leaves them.
///
/// A topic deleted while this broker was down leaves such a directory, but so would metadata
/// that lost records: deleting data because metadata is missing would turn one loss into two.
/// An operator removes them once the metadata is known good (DeleteTopics removes its own).
fn report_unknown_logs(logs_dir: &std::path::Path, known: &HashMap<TopicId, Arc<Topic>>) {
    let Ok(entries) = std::fs::read_dir(logs_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| uuid::Uuid::parse_str(n).ok()) else {
            continue;
        };
        if !known.contains_key(&TopicId(id)) {
            tracing::warn!(
                topic_id = %id,
                path = %entry.path().display(),
                "local log of a topic the metadata store does not have; kept (delete it by hand \
                 once the topic is known to be deleted)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::validate_topic_name;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        for bad in ["", ".", "..", "a b", "ü", "a/b"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
