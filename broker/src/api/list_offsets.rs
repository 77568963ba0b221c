//! ListOffsets: -2 earliest (log start), -1 latest (high watermark; also the last stable offset
//! for read_committed, as there are no transactions), -3 the record with the max timestamp
//! (v7+), otherwise the first offset whose timestamp is at least the target.

use super::{check_leader_epoch, error_code};
use crate::broker::Broker;
use crate::server::{decode, frame, Frame};
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

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
) -> anyhow::Result<Frame> {
    let request: ListOffsetsRequest = decode(header, body)?;
    let version = header.request_api_version;
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
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
                    t if t < 0 => {
                        return base.with_error_code(ResponseError::UnsupportedVersion.code());
                    }
                    t => partition.offset_for_timestamp(t),
                };
                match found {
                    Ok(Some(l)) => base
                        .with_offset(l.offset)
                        .with_timestamp(l.timestamp)
                        // The leader epoch is in the response from v4.
                        .with_leader_epoch(if version >= 4 { l.leader_epoch } else { -1 }),
                    Ok(None) => base,
                    Err(e) => base.with_error_code(error_code(&e).code()),
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
