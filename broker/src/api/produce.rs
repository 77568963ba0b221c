//! Produce: validate each partition's batches, append them in arrival order (on the
//! connection's reader), then wait for the WAL sync off the reader and answer. acks=0 gets no
//! response; acks=1 and acks=all are answered once the batches are durable in the local WAL.
//! Authorization: WRITE on each topic (TOPIC_AUTHORIZATION_FAILED for all of its partitions,
//! whether or not the topic exists); a transactional produce needs WRITE on its id first.

use crate::api::frame::{decode, frame, Frame, Reply};
use crate::broker::Broker;
use crate::error::{batch_code, partition_code};
use crate::log::batch::{validate_record_set, Limits};
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;

struct PartitionOutcome {
    index: i32,
    result: Result<(i64, Option<i64>, i64), (ResponseError, String)>,
}

/// acks=all: (partition, end offset, leader epoch of the append, (topic, partition) index of
/// its outcome in the response).
type RecordedWait = (
    Arc<crate::log::partition::Partition>,
    i64,
    i32,
    (usize, usize),
);

/// Unsynced WAL bytes above which producers wait for their own sync before the next request.
const MAX_UNSYNCED_BYTES: usize = 64 * 1024 * 1024;

pub async fn handle(
    broker: &Arc<Broker>,
    header: RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Reply> {
    let request: ProduceRequest = decode(&header, body)?;
    let acks = request.acks;
    // Transactions are not supported: a transactional produce fails either way. As in Kafka,
    // WRITE on its transactional id is checked first (and its topics then are not).
    let transactional = request.transactional_id.as_ref().map(|id| {
        if session.allowed(Operation::Write, ResourceType::TransactionalId, id.as_str()) {
            "transactions are not supported"
        } else {
            "not authorized to write with this transactional id"
        }
    });
    let mut max_seq = 0u64;
    let mut recorded_waits: Vec<RecordedWait> = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    // A broker cut off from the metadata store (or paused) past its lease may have been
    // replaced as leader: it acknowledges nothing until it is sure again.
    let member = !broker.clustered() || broker.membership.healthy();
    // Validation (decompression included) and the appends (segment writes, a roll's fsync)
    // block: the runtime's other tasks move to another thread meanwhile.
    crate::blocking(|| {
        for topic_data in request.topic_data {
            let authorized = transactional.is_some()
                || session.allowed(
                    Operation::Write,
                    ResourceType::Topic,
                    topic_data.name.as_str(),
                );
            let topic = broker.topic(topic_data.name.as_str());
            let mut outcomes = Vec::with_capacity(topic_data.partition_data.len());
            for pd in topic_data.partition_data {
                let fail = |e: ResponseError, m: String| PartitionOutcome {
                    index: pd.index,
                    result: Err((e, m)),
                };
                if !matches!(acks, -1..=1) {
                    outcomes.push(fail(
                        ResponseError::InvalidRequiredAcks,
                        format!("acks={acks}"),
                    ));
                    continue;
                }
                if let Some(message) = transactional {
                    outcomes.push(fail(
                        ResponseError::TransactionalIdAuthorizationFailed,
                        message.into(),
                    ));
                    continue;
                }
                if !authorized {
                    outcomes.push(fail(ResponseError::TopicAuthorizationFailed, String::new()));
                    continue;
                }
                let Some(partition) = topic.as_ref().and_then(|t| t.partition(pd.index)) else {
                    outcomes.push(fail(ResponseError::UnknownTopicOrPartition, String::new()));
                    continue;
                };
                if !member {
                    outcomes.push(fail(
                        ResponseError::NotLeaderOrFollower,
                        "this broker's cluster membership is not confirmed".into(),
                    ));
                    continue;
                }
                let _span = tracing::debug_span!(
                    "partition",
                    topic = %partition.topic,
                    partition = pd.index,
                    leader_epoch = partition.leader_epoch().0
                )
                .entered();
                let Some(records) = pd.records else {
                    outcomes.push(fail(ResponseError::CorruptMessage, "no records".into()));
                    continue;
                };
                if broker.tier.uploads.over_limit() {
                    outcomes.push(fail(
                        ResponseError::NotEnoughReplicas,
                        format!(
                            "{} bytes are waiting for the object store; retry later",
                            broker.tier.uploads.pending_bytes()
                        ),
                    ));
                    continue;
                }
                let config = partition.config();
                let mut records = BytesMut::from(&records[..]);
                let limits = Limits {
                    max_message_bytes: config.max_message_bytes,
                    max_decompressed_bytes: broker.config.max_decompressed_batch_bytes,
                    require_keys: config.is_compacted(),
                };
                let batches = match validate_record_set(&records, &limits) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::debug!(topic = %partition.topic, partition = pd.index, error = %e, "refused batch");
                        outcomes.push(fail(batch_code(&e), e.to_string()));
                        continue;
                    }
                };
                match partition.append(&mut records, &batches, &broker.wal) {
                    Ok(appended) => {
                        let m = crate::metrics::metrics();
                        let records_in: u64 = batches
                            .iter()
                            .map(|(h, _)| h.record_count.max(0) as u64)
                            .sum();
                        m.records_in
                            .with_label_values(&[partition.topic.as_str()])
                            .inc_by(records_in);
                        m.bytes_in
                            .with_label_values(&[partition.topic.as_str()])
                            .inc_by(records.len() as u64);
                        max_seq = max_seq.max(appended.wal_seq);
                        if acks == -1 && partition.durability_object() {
                            recorded_waits.push((
                                partition.clone(),
                                appended.end_offset,
                                appended.leader_epoch,
                                (topics.len(), outcomes.len()),
                            ));
                        }
                        outcomes.push(PartitionOutcome {
                            index: pd.index,
                            result: Ok((
                                appended.base_offset,
                                appended.log_append_time,
                                appended.log_start,
                            )),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(topic = %partition.topic, partition = pd.index, error = %e, "append failed");
                        outcomes.push(fail(partition_code(&e), e.to_string()));
                    }
                }
            }
            topics.push((topic_data.name, outcomes));
        }
    });

    // Backpressure: while the WAL has much unsynced data, this connection reads no further
    // request until its own appends are durable (acks=0 producers included).
    if max_seq > 0 && broker.wal.buffered_bytes() > MAX_UNSYNCED_BYTES {
        let _ =
            tokio::time::timeout(Duration::from_secs(30), broker.wal.wait_synced(max_seq)).await;
    }
    if acks == 0 {
        // No response at all; the group commit makes the data durable shortly.
        return Ok(Reply::Now(Frame::NoResponse));
    }
    let broker = broker.clone();
    // The request timeout bounds acks=all; acks=1 waits for the local sync at least 30 s
    // (answering "timed out" for data that will be durable invites duplicate retries).
    let requested = Duration::from_millis(request.timeout_ms.clamp(0, 300_000) as u64);
    let timeout = if acks == 1 {
        requested.max(Duration::from_secs(30))
    } else {
        requested
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let wait = async move {
        let synced = if max_seq == 0 {
            Ok(Ok(()))
        } else {
            tokio::time::timeout_at(deadline, broker.wal.wait_synced(max_seq)).await
        };
        let mut sync_error = match synced {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((ResponseError::KafkaStorageError, e.0)),
            Err(_) => Some((
                ResponseError::RequestTimedOut,
                "WAL sync timed out".to_string(),
            )),
        };
        // acks=all with durability `object`: answered once the data is recorded in the bucket,
        // by the leader that appended it (a partition that changed leader epoch meanwhile
        // answers NOT_LEADER_OR_FOLLOWER: its new term may hold other data at those offsets).
        let mut deposed = Vec::new();
        if sync_error.is_none() && !recorded_waits.is_empty() {
            let tier = broker.tier.clone();
            let mut recorded = tier.subscribe_recorded();
            tier.uploads.acks_all_begin();
            let all_recorded = async {
                loop {
                    recorded.borrow_and_update();
                    recorded_waits.retain(|(p, end, epoch, at)| {
                        if !p.leading_in(*epoch) {
                            deposed.push(*at);
                            return false;
                        }
                        p.high_watermark() < *end
                    });
                    if recorded_waits.is_empty() {
                        return;
                    }
                    if recorded.changed().await.is_err() {
                        return;
                    }
                }
            };
            let waited = tokio::time::timeout_at(deadline, all_recorded).await;
            tier.uploads.acks_all_end();
            if waited.is_err() {
                sync_error = Some((
                    ResponseError::RequestTimedOut,
                    "the data did not reach the object store within the request timeout; it stays in the local WAL and is uploaded when the store is back".to_string(),
                ));
            }
        }
        let mut topics = topics;
        for (t, o) in deposed {
            topics[t].1[o].result = Err((
                ResponseError::NotLeaderOrFollower,
                "leadership of the partition moved before the data was recorded".to_string(),
            ));
        }
        let responses = topics
            .into_iter()
            .map(|(name, outcomes)| {
                let partitions = outcomes
                    .into_iter()
                    .map(|o| {
                        let r = PartitionProduceResponse::default().with_index(o.index);
                        let result = match (o.result, &sync_error) {
                            (Ok(v), None) => Ok(v),
                            (Ok(_), Some(e)) => Err(e.clone()),
                            (Err(e), _) => Err(e),
                        };
                        match result {
                            Ok((base, append_time, log_start)) => r
                                .with_base_offset(base)
                                .with_log_append_time_ms(append_time.unwrap_or(-1))
                                .with_log_start_offset(log_start),
                            Err((code, message)) => r
                                .with_error_code(code.code())
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                                .with_error_message(
                                    (!message.is_empty()).then(|| StrBytes::from_string(message)),
                                ),
                        }
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partitions)
            })
            .collect();
        frame(
            &header,
            &ProduceResponse::default().with_responses(responses),
        )
    };
    Ok(Reply::Later(tokio::spawn(wait)))
}
