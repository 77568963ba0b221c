//! OffsetForLeaderEpoch: from the partition's epoch history, the end offset of the requested
//! epoch (the log end for the current one); how the Java consumer validates its position after
//! a leader change. Authorization: CLUSTER_ACTION on the cluster, or DESCRIBE on each topic
//! (TOPIC_AUTHORIZATION_FAILED for its partitions).

use super::check_leader_epoch;
use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, RequestHeader,
};
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: OffsetForLeaderEpochRequest = decode(header, body)?;
    // Replicas ask with CLUSTER_ACTION; consumers need DESCRIBE on the topic.
    let cluster_action = session.may(
        Operation::ClusterAction,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let authorized = cluster_action
                || session.allowed(Operation::Describe, ResourceType::Topic, t.topic.as_str());
            let topic = broker.topic(t.topic.as_str());
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if !authorized {
                        return base
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let Some(partition) = topic.as_ref().and_then(|t| t.partition(p.partition))
                    else {
                        return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if let Some(error) = check_leader_epoch(partition, p.current_leader_epoch) {
                        return base.with_error_code(error.code());
                    }
                    match partition.end_offset_for_epoch(p.leader_epoch) {
                        Some((epoch, end)) => base.with_leader_epoch(epoch).with_end_offset(end),
                        None => base,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    Ok(frame(
        header,
        &OffsetForLeaderEpochResponse::default().with_topics(topics),
    ))
}
