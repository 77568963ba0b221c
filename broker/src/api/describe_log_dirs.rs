//! DescribeLogDirs: the one local log directory with each partition's size on disk.
//! Authorization: DESCRIBE on the cluster; without it no results (and, v3+,
//! CLUSTER_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::Operation;
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: DescribeLogDirsRequest = decode(header, body)?;
    if !session.allowed_on_cluster(Operation::Describe) {
        // The top-level error code is in the response from v3.
        let error = if header.request_api_version >= 3 {
            ResponseError::ClusterAuthorizationFailed.code()
        } else {
            0
        };
        return Ok(frame(
            header,
            &DescribeLogDirsResponse::default().with_error_code(error),
        ));
    }
    let wanted = |topic: &str, partition: i32| {
        request.topics.as_ref().is_none_or(|ts| {
            ts.iter()
                .any(|t| t.topic.as_str() == topic && t.partitions.contains(&partition))
        })
    };
    let mut topics = Vec::new();
    for topic in broker.topics() {
        let partitions: Vec<_> = topic
            .partitions
            .iter()
            .filter(|p| wanted(&topic.record.name, p.index))
            .map(|p| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index)
                    .with_partition_size(p.size_bytes() as i64)
                    .with_offset_lag(0)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.record.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = std::path::absolute(broker.config.data_dir.join("logs"))
        .unwrap_or_else(|_| broker.config.data_dir.join("logs"));
    let result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    Ok(frame(
        header,
        &DescribeLogDirsResponse::default().with_results(vec![result]),
    ))
}
