//! Produce: validate each partition's batches, append them in arrival order (on the
//! connection's reader), then wait for the WAL sync off the reader and answer. acks=0 gets no
//! response; acks=1 and acks=all are answered once the batches are durable in the local WAL.
//! Authorization: WRITE on each topic (TOPIC_AUTHORIZATION_FAILED for all of its partitions,
//! whether or not the topic exists); a transactional produce needs WRITE on its id first.

use crate::api::frame::{decode, frame, Frame, Reply};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use crate::service::{Durable, Writes};
use bytes::Bytes;
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
    let service = &broker.service;
    // Each write is tagged with its outcome's place in the response.
    let mut writes: Writes<(usize, usize)> = Writes::default();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    // A broker cut off from the metadata store (or paused) past its lease may have been
    // replaced as leader: it acknowledges nothing until it is sure again.
    let member = service.may_acknowledge();
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
                let at = (topics.len(), outcomes.len());
                outcomes.push(PartitionOutcome {
                    index: pd.index,
                    result: service
                        .append(partition, &records, acks, &mut writes, at)
                        .map(|w| (w.base_offset, w.log_append_time, w.log_start))
                        .map_err(|r| (r.code, r.message)),
                });
            }
            topics.push((topic_data.name, outcomes));
        }
    });

    // Backpressure: while the WAL has much unsynced data, this connection reads no further
    // request until its own appends are durable (acks=0 producers included).
    service.throttle(&writes).await;
    if acks == 0 {
        // No response at all; the group commit makes the data durable shortly.
        return Ok(Reply::Now(Frame::NoResponse));
    }
    let service = service.clone();
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
        // acks=all with durability `object`: answered once the data is recorded in the bucket,
        // by the leader that appended it.
        let Durable {
            error: sync_error,
            deposed,
        } = service.durable(writes, deadline).await;
        let sync_error = sync_error.map(|r| (r.code, r.message));
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
