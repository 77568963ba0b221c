//! DeleteRecords: moves a partition's log start offset forward (-1: to the high watermark).
//! Authorization: DELETE on each topic (TOPIC_AUTHORIZATION_FAILED for its partitions).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::partition_code;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: DeleteRecordsRequest = decode(header, body)?;
    let topics = request
        .topics
        .iter()
        .map(|t| {
            let authorized =
                session.allowed(Operation::Delete, ResourceType::Topic, t.name.as_str());
            let topic = broker.topic(t.name.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let r = DeleteRecordsPartitionResult::default()
                        .with_partition_index(p.partition_index)
                        .with_low_watermark(-1);
                    if !authorized {
                        return r.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(partition) =
                        topic.as_ref().and_then(|t| t.partition(p.partition_index))
                    else {
                        return r.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match partition.delete_records(p.offset) {
                        Ok(low) => r.with_low_watermark(low),
                        Err(e) => r.with_error_code(partition_code(&e).code()),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    Ok(frame(
        header,
        &DeleteRecordsResponse::default().with_topics(topics),
    ))
}
