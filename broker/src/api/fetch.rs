//! Fetch: whole batches below the high watermark, honouring partition and response max_bytes
//! (the first batch goes out whole even when larger, KIP-74) and long polling until min_bytes
//! are available or max_wait_ms passes. Fetch sessions are declined (session id 0), so clients
//! keep sending full fetches. Authorization: READ on each topic, decided once per request
//! (TOPIC_AUTHORIZATION_FAILED for all of a denied topic's partitions).

use super::check_leader_epoch;
use crate::api::frame::{decode, frame, Frame, Reply};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use crate::service::ReadError;
use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// Upper bound on how long one fetch may be held, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(60);
/// Upper bound on one response's size, whatever the client asks (Kafka's `fetch.max.bytes`).
const MAX_RESPONSE_BYTES: usize = 55 * 1024 * 1024;

/// Decodes, authorizes and reserves the response's bound in the connection's budget (here,
/// in request order: a later fetch cannot hold what an earlier one waits for), then answers in
/// a task whose frame keeps the reservation until the writer has sent it.
pub async fn handle(
    broker: &Arc<Broker>,
    header: RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Reply> {
    let request: FetchRequest = decode(&header, body)?;
    let authorized = authorize(broker, &request, session);
    let largest_batch = request
        .topics
        .iter()
        .filter_map(|ft| {
            let topic = if ft.topic_id.is_nil() {
                broker.topic(ft.topic.as_str())
            } else {
                broker.topic_by_id(ft.topic_id)
            }?;
            let p = topic.partitions.first()?;
            Some(p.config().max_message_bytes)
        })
        .max()
        .unwrap_or(0);
    let reserve =
        response_bound(&request, largest_batch).min(crate::api::frame::MAX_QUEUED_RESPONSE_BYTES);
    let permit = session
        .responses
        .clone()
        .acquire_many_owned(reserve as u32)
        .await?;
    let broker = broker.clone();
    Ok(Reply::Later(tokio::spawn(async move {
        match respond(&broker, &header, request, authorized).await {
            Frame::Bytes(bytes) => Frame::Reserved(bytes, permit),
            other => other,
        }
    })))
}

/// What a response to `request` may hold: its records (`max_bytes`, capped, or, when that is
/// smaller, the one first batch KIP-74 sends whole: at most `largest_batch`, the largest
/// `max.message.bytes` of the topics asked for) and a per-partition allowance for the rest.
fn response_bound(request: &FetchRequest, largest_batch: usize) -> usize {
    let partitions: usize = request.topics.iter().map(|t| t.partitions.len()).sum();
    let records = (request.max_bytes.max(0) as usize).min(MAX_RESPONSE_BYTES);
    records.max(largest_batch.min(MAX_RESPONSE_BYTES)) + 64 * partitions + 1024
}

/// READ on each requested topic, in request order: decided once, not on every read of a long
/// poll. A topic named by an unknown id is let through to be answered UNKNOWN_TOPIC_ID.
fn authorize(broker: &Broker, request: &FetchRequest, session: &Session) -> Vec<bool> {
    request
        .topics
        .iter()
        .map(|ft| {
            if ft.topic_id.is_nil() {
                session.allowed(Operation::Read, ResourceType::Topic, ft.topic.as_str())
            } else {
                broker.topic_by_id(ft.topic_id).is_none_or(|t| {
                    session.allowed(Operation::Read, ResourceType::Topic, &t.record.name)
                })
            }
        })
        .collect()
}

async fn respond(
    broker: &Broker,
    header: &RequestHeader,
    request: FetchRequest,
    authorized: Vec<bool>,
) -> Frame {
    if request.session_id != 0 || request.session_epoch > 0 {
        let error = if request.session_id != 0 {
            ResponseError::FetchSessionIdNotFound
        } else {
            ResponseError::InvalidFetchSessionEpoch
        };
        return frame(
            header,
            &FetchResponse::default().with_error_code(error.code()),
        );
    }
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let mut progress = broker.service.progress();
    loop {
        progress.mark_seen();
        let (response, bytes, has_error) = read_once(broker, &request, &authorized).await;
        let done =
            has_error || bytes >= request.min_bytes.max(0) as usize || Instant::now() >= deadline;
        if done {
            return frame(header, &response);
        }
        // New data becomes visible only when a WAL sync or a commit record advances high
        // watermarks.
        if tokio::time::timeout_at(deadline, progress.changed())
            .await
            .is_err()
        {
            let (response, _, _) = read_once(broker, &request, &authorized).await;
            return frame(header, &response);
        }
    }
}

async fn read_once(
    broker: &Broker,
    request: &FetchRequest,
    authorized: &[bool],
) -> (FetchResponse, usize, bool) {
    let mut remaining = (request.max_bytes.max(0) as usize).min(MAX_RESPONSE_BYTES);
    // One deadline for every read from the bucket in this response: a slow or unreachable
    // store delays the answer by at most this, whatever its own retries would take.
    let bucket_deadline = broker.service.bucket_deadline();
    let mut total = 0usize;
    let mut has_error = false;
    let read_committed = request.isolation_level == 1;
    let mut topics = Vec::with_capacity(request.topics.len());
    for (ft, &allowed) in request.topics.iter().zip(authorized) {
        let topic = if ft.topic_id.is_nil() {
            broker.topic(ft.topic.as_str())
        } else {
            broker.topic_by_id(ft.topic_id)
        };
        let mut partitions = Vec::with_capacity(ft.partitions.len());
        for fp in &ft.partitions {
            let base = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_aborted_transactions(read_committed.then(Vec::new))
                .with_preferred_read_replica((-1).into());
            if !allowed {
                has_error = true;
                partitions
                    .push(base.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let Some(partition) = topic.as_ref().and_then(|t| t.partition(fp.partition)) else {
                has_error = true;
                let code = if ft.topic_id.is_nil() {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::UnknownTopicId
                };
                partitions.push(base.with_error_code(code.code()));
                continue;
            };
            let span = tracing::debug_span!(
                "partition",
                topic = %partition.topic,
                partition = fp.partition,
                fetch_offset = fp.fetch_offset
            );
            if let Some(error) = check_leader_epoch(partition, fp.current_leader_epoch) {
                has_error = true;
                partitions.push(base.with_error_code(error.code()));
                continue;
            }
            // KIP-74: until some data is in the response, the first batch goes out whole.
            let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
            let read = broker
                .service
                .read(
                    partition,
                    fp.fetch_offset,
                    limit,
                    total == 0,
                    bucket_deadline,
                )
                .instrument(span)
                .await;
            match read {
                Ok(r) => {
                    total += r.records.len();
                    if !r.records.is_empty() {
                        let m = crate::metrics::metrics();
                        m.bytes_out
                            .with_label_values(&[partition.topic.as_str()])
                            .inc_by(r.records.len() as u64);
                        m.records_out
                            .with_label_values(&[partition.topic.as_str()])
                            .inc_by(crate::metrics::count_records(&r.records));
                    }
                    remaining = remaining.saturating_sub(r.records.len());
                    partitions.push(
                        base.with_high_watermark(r.high_watermark)
                            .with_last_stable_offset(r.high_watermark)
                            .with_log_start_offset(r.log_start)
                            .with_records(Some(Bytes::from(r.records))),
                    );
                }
                Err(e) => {
                    if let ReadError::Bucket(error) = &e {
                        tracing::warn!(topic = %partition.topic, partition = fp.partition, %error, "read from the bucket failed");
                    }
                    has_error = true;
                    partitions.push(
                        base.with_error_code(e.code().code())
                            .with_high_watermark(partition.high_watermark())
                            .with_last_stable_offset(partition.high_watermark())
                            .with_log_start_offset(partition.log_start()),
                    );
                }
            }
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(ft.topic.clone())
                .with_topic_id(ft.topic_id)
                .with_partitions(partitions),
        );
    }
    (
        FetchResponse::default()
            .with_session_id(0)
            .with_responses(topics),
        total,
        has_error,
    )
}
