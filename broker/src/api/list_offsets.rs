//! ListOffsets: -2 earliest (log start), -1 latest (high watermark; also the last stable offset
//! for read_committed, as there are no transactions), -3 the record with the max timestamp
//! (v7+), -4 the local log start (v8+), -5 the last offset in segment objects (the latest
//! tiered offset, v9+; -1 when there is none), otherwise the first offset whose timestamp is at least the target: first in the
//! segment objects below the local log (through the read cache), then locally.
//! Authorization: DESCRIBE on each topic (TOPIC_AUTHORIZATION_FAILED for its partitions).

use super::check_leader_epoch;
use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::partition_code;
use crate::log::batch::record_timestamps;
use crate::log::partition::{OffsetLookup, Partition};
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// Decompression bound for timestamp lookups in segment objects.
const LOOKUP_DECOMPRESS_LIMIT: usize = 256 * 1024 * 1024;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: ListOffsetsRequest = decode(header, body)?;
    let version = header.request_api_version;
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let authorized = session.allowed(Operation::Describe, ResourceType::Topic, t.name.as_str());
        let topic = broker.topic(t.name.as_str());
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let base = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(-1);
                if !authorized {
                    return base.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                }
                let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.partition_index))
                else {
                    return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                };
                if let Some(error) = check_leader_epoch(partition, p.current_leader_epoch) {
                    return base.with_error_code(error.code());
                }
                let found = match p.timestamp {
                    EARLIEST => Ok(Some(partition.earliest())),
                    LATEST => Ok(Some(partition.latest())),
                    MAX_TIMESTAMP => partition.max_timestamp(),
                    EARLIEST_LOCAL => Ok(Some(partition.earliest_local())),
                    LATEST_TIERED => Ok(Some(partition.latest_tiered())),
                    t if t < 0 => {
                        return base.with_error_code(ResponseError::UnsupportedVersion.code());
                    }
                    t => match tokio::runtime::Handle::current()
                        .block_on(remote_offset_for_timestamp(broker, partition, t))
                    {
                        Ok(Some(found)) => Ok(Some(found)),
                        Ok(None) => partition.offset_for_timestamp(t),
                        Err(error) => {
                            tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "timestamp lookup in the bucket failed");
                            return base.with_error_code(ResponseError::KafkaStorageError.code());
                        }
                    },
                };
                match found {
                    Ok(Some(l)) => base
                        .with_offset(l.offset)
                        .with_timestamp(l.timestamp)
                        // The leader epoch is in the response from v4.
                        .with_leader_epoch(if version >= 4 { l.leader_epoch } else { -1 }),
                    Ok(None) => base,
                    Err(e) => base.with_error_code(partition_code(&e).code()),
                }
            })
            .collect();
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    Ok(frame(
        header,
        &ListOffsetsResponse::default().with_topics(topics),
    ))
}

/// The first record at or after `ts` in the segment objects below the local log, if any.
async fn remote_offset_for_timestamp(
    broker: &Broker,
    partition: &Partition,
    ts: i64,
) -> anyhow::Result<Option<OffsetLookup>> {
    const STEP: usize = 1 << 20;
    let manifest = partition.manifest();
    let log_start = partition.log_start();
    let local_start = partition.local_start();
    for seg in manifest
        .segments
        .iter()
        .filter(|s| s.end.0 > log_start && s.base.0 < local_start && s.max_timestamp >= ts)
    {
        let mut bytes = broker.tier.reader.read_for_timestamp(seg, ts, STEP).await?;
        // Bounded: every round moves past at least one batch of this segment.
        for _ in 0..1_000_000 {
            let mut next = None;
            for (pos, h) in silt_tiering::batch::batches(&bytes) {
                next = Some(h.last_offset() + 1);
                if h.max_timestamp < ts || h.is_control() {
                    continue;
                }
                let stamps = record_timestamps(
                    &h,
                    &bytes[pos..pos + h.total_size()],
                    LOOKUP_DECOMPRESS_LIMIT,
                )?;
                if let Some((offset, timestamp)) = stamps
                    .into_iter()
                    .find(|(o, t)| *t >= ts && *o >= log_start)
                {
                    return Ok(Some(OffsetLookup {
                        offset,
                        timestamp,
                        leader_epoch: h.partition_leader_epoch,
                    }));
                }
            }
            match next {
                Some(n) if n < seg.end.0 => {
                    bytes = broker.tier.reader.read(seg, n, STEP, true).await?;
                }
                _ => break,
            }
        }
    }
    Ok(None)
}
