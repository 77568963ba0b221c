//! The partition service: what the data-path handlers need of the partition log, the WAL, the
//! tier and the cluster membership, behind one narrow surface. Produce appends and waits here
//! for what its acks ask; Fetch reads here, the bucket half of a read included, and waits here
//! for new data. The handlers keep the protocol (decoding, authorization, response layout); the
//! rules of durability and visibility stay behind this seam, where transactions (an isolation
//! level, the last stable offset) and quotas (a throttle answer) will plug in.

use crate::cluster::Membership;
use crate::error::{batch_code, partition_code};
use crate::log::batch::{validate_record_set, Limits};
use crate::log::partition::{Partition, PartitionError, ReadResult};
use crate::log::wal::Wal;
use crate::tier::Tier;
use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Unsynced WAL bytes past which a producing connection waits for its own sync before its
/// next request.
const MAX_UNSYNCED_BYTES: usize = 64 * 1024 * 1024;

/// A refused write or read: the Kafka error and a message for the client.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub code: ResponseError,
    pub message: String,
}

impl Refusal {
    fn new(code: ResponseError, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// An append's answer to its producer.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub base_offset: i64,
    pub log_append_time: Option<i64>,
    pub log_start: i64,
}

/// The appends of one produce request and what acknowledging them waits for; `T` tags each
/// write (its place in the response).
pub struct Writes<T> {
    /// The newest WAL append among them.
    max_seq: u64,
    /// acks=all on durability `object`: (partition, end offset, leader epoch of the append, tag).
    recorded: Vec<(Arc<Partition>, i64, i32, T)>,
}

impl<T> Default for Writes<T> {
    fn default() -> Self {
        Writes {
            max_seq: 0,
            recorded: Vec::new(),
        }
    }
}

/// What waiting for durability found.
pub struct Durable<T> {
    /// Every write failed to become durable in time (or the WAL failed): answered with this.
    pub error: Option<Refusal>,
    /// Writes whose partition changed leader epoch before they were recorded (its new term may
    /// hold other data at those offsets): NOT_LEADER_OR_FOLLOWER.
    pub deposed: Vec<T>,
}

/// New data may have become visible (a WAL sync or a commit record advanced high watermarks).
pub struct Progress {
    synced: watch::Receiver<u64>,
    recorded: watch::Receiver<u64>,
}

impl Progress {
    /// Marks what is visible now as seen.
    pub fn mark_seen(&mut self) {
        self.synced.borrow_and_update();
        self.recorded.borrow_and_update();
    }

    /// Until something changed since [`Progress::mark_seen`]; `false` once nothing ever will.
    pub async fn changed(&mut self) -> bool {
        tokio::select! {
            r = self.synced.changed() => r.is_ok(),
            r = self.recorded.changed() => r.is_ok(),
        }
    }
}

/// Why a read failed.
pub enum ReadError {
    Partition(PartitionError),
    /// The bucket did not give the segment object's part in time (or failed).
    Bucket(String),
}

impl ReadError {
    pub fn code(&self) -> ResponseError {
        match self {
            ReadError::Partition(e) => partition_code(e),
            ReadError::Bucket(_) => ResponseError::KafkaStorageError,
        }
    }
}

#[derive(Clone)]
pub struct PartitionService {
    wal: Arc<Wal>,
    tier: Arc<Tier>,
    membership: Arc<Membership>,
    clustered: bool,
    max_decompressed_batch_bytes: usize,
    remote_fetch_max_wait: Duration,
}

impl PartitionService {
    pub fn new(
        wal: Arc<Wal>,
        tier: Arc<Tier>,
        membership: Arc<Membership>,
        config: &crate::config::Config,
    ) -> PartitionService {
        PartitionService {
            wal,
            tier,
            membership,
            clustered: config.clustered(),
            max_decompressed_batch_bytes: config.max_decompressed_batch_bytes,
            remote_fetch_max_wait: Duration::from_millis(config.tiering.remote_fetch_max_wait_ms),
        }
    }

    /// Whether this broker may acknowledge writes: in a cluster, only while its membership is
    /// confirmed (a broker cut off from the metadata store, or paused, past its lease may have
    /// been replaced as leader).
    pub fn may_acknowledge(&self) -> bool {
        !self.clustered || self.membership.healthy()
    }

    /// Validates `records` for `p` and appends them (blocking work: call it in
    /// [`crate::blocking`]); what acknowledging the append waits for joins `writes`, tagged
    /// `tag`. Refused while too much data waits for the bucket (retriable).
    pub fn append<T>(
        &self,
        p: &Arc<Partition>,
        records: &Bytes,
        acks: i16,
        writes: &mut Writes<T>,
        tag: T,
    ) -> Result<Written, Refusal> {
        if self.tier.uploads.over_limit() {
            return Err(Refusal::new(
                ResponseError::NotEnoughReplicas,
                format!(
                    "{} bytes are waiting for the object store; retry later",
                    self.tier.uploads.pending_bytes()
                ),
            ));
        }
        let config = p.config();
        let mut records = BytesMut::from(&records[..]);
        let limits = Limits {
            max_message_bytes: config.max_message_bytes,
            max_decompressed_bytes: self.max_decompressed_batch_bytes,
            require_keys: config.is_compacted(),
        };
        let batches = validate_record_set(&records, &limits).map_err(|e| {
            tracing::debug!(topic = %p.topic, partition = p.index, error = %e, "refused batch");
            Refusal::new(batch_code(&e), e.to_string())
        })?;
        let appended = p.append(&mut records, &batches, &self.wal).map_err(|e| {
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "append failed");
            Refusal::new(partition_code(&e), e.to_string())
        })?;
        let m = crate::metrics::metrics();
        let records_in: u64 = batches
            .iter()
            .map(|(h, _)| h.record_count.max(0) as u64)
            .sum();
        m.records_in
            .with_label_values(&[p.topic.as_str()])
            .inc_by(records_in);
        m.bytes_in
            .with_label_values(&[p.topic.as_str()])
            .inc_by(records.len() as u64);
        writes.max_seq = writes.max_seq.max(appended.wal_seq);
        if acks == -1 && p.durability_object() {
            writes
                .recorded
                .push((p.clone(), appended.end_offset, appended.leader_epoch, tag));
        }
        Ok(Written {
            base_offset: appended.base_offset,
            log_append_time: appended.log_append_time,
            log_start: appended.log_start,
        })
    }

    /// Backpressure: while the WAL has much unsynced data, the producing connection waits (up
    /// to 30 s) until its own appends are durable before it reads another request.
    pub async fn throttle<T>(&self, writes: &Writes<T>) {
        if writes.max_seq > 0 && self.wal.buffered_bytes() > MAX_UNSYNCED_BYTES {
            let _ = tokio::time::timeout(
                Duration::from_secs(30),
                self.wal.wait_synced(writes.max_seq),
            )
            .await;
        }
    }

    /// Waits, until `deadline`, for the writes to be as durable as their acks ask: synced in
    /// the local WAL, and for acks=all on durability `object` recorded in the bucket by the
    /// leader that appended them.
    pub async fn durable<T>(&self, writes: Writes<T>, deadline: Instant) -> Durable<T> {
        let Writes {
            max_seq,
            recorded: mut waits,
        } = writes;
        let synced = if max_seq == 0 {
            Ok(Ok(()))
        } else {
            tokio::time::timeout_at(deadline, self.wal.wait_synced(max_seq)).await
        };
        let mut error = match synced {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Refusal::new(ResponseError::KafkaStorageError, e.0)),
            Err(_) => Some(Refusal::new(
                ResponseError::RequestTimedOut,
                "WAL sync timed out",
            )),
        };
        let mut deposed = Vec::new();
        if error.is_none() && !waits.is_empty() {
            let mut recorded = self.tier.subscribe_recorded();
            self.tier.uploads.acks_all_begin();
            let all_recorded = async {
                loop {
                    recorded.borrow_and_update();
                    let mut i = 0;
                    while i < waits.len() {
                        let (p, end, epoch, _) = &waits[i];
                        if !p.leading_in(*epoch) {
                            deposed.push(waits.swap_remove(i).3);
                        } else if p.high_watermark() >= *end {
                            waits.swap_remove(i);
                        } else {
                            i += 1;
                        }
                    }
                    if waits.is_empty() || recorded.changed().await.is_err() {
                        return;
                    }
                }
            };
            let waited = tokio::time::timeout_at(deadline, all_recorded).await;
            self.tier.uploads.acks_all_end();
            if waited.is_err() {
                error = Some(Refusal::new(
                    ResponseError::RequestTimedOut,
                    "the data did not reach the object store within the request timeout; it stays in the local WAL and is uploaded when the store is back",
                ));
            }
        }
        Durable { error, deposed }
    }

    /// Follows what makes new data visible (for a long-polling fetch).
    pub fn progress(&self) -> Progress {
        Progress {
            synced: self.wal.subscribe(),
            recorded: self.tier.subscribe_recorded(),
        }
    }

    /// The deadline for the bucket's part of one response read now.
    pub fn bucket_deadline(&self) -> Instant {
        Instant::now() + self.remote_fetch_max_wait
    }

    /// Reads whole batches of `p` from `offset`, up to `limit` bytes (`min_one`: the first
    /// batch goes out whole, KIP-74), from the local log or, below it, from the segment object
    /// through the read cache, by `bucket_deadline`.
    pub async fn read(
        &self,
        p: &Arc<Partition>,
        offset: i64,
        limit: usize,
        min_one: bool,
        bucket_deadline: Instant,
    ) -> Result<ReadResult, ReadError> {
        let mut read = p
            .read(offset, limit, min_one)
            .map_err(ReadError::Partition)?;
        if let Some(seg) = read.remote.take() {
            let bytes = self.tier.reader.read(&seg, offset, limit, min_one);
            let bytes = match tokio::time::timeout_at(bucket_deadline, bytes).await {
                Ok(bytes) => bytes.map_err(|e| ReadError::Bucket(e.to_string()))?,
                Err(_) => {
                    return Err(ReadError::Bucket(format!(
                        "no answer within tiering.remote_fetch_max_wait_ms ({} ms)",
                        self.remote_fetch_max_wait.as_millis()
                    )))
                }
            };
            read.records = bytes.to_vec();
        }
        Ok(read)
    }
}
