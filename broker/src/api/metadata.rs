//! Metadata: brokers, topics, partitions with leader and leader epoch; auto-creates topics as
//! Kafka does when the request allows it and `auto_create_topics_enable` is on.

use crate::broker::{validate_topic_name, Broker, CreateTopicError, Topic};
use crate::server::{decode, frame, Frame};
use bytes::Bytes;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Kafka's AclOperation codes: every operation allowed while no ACLs are enforced.
pub const TOPIC_OPERATIONS: &[i32] = &[3, 4, 5, 6, 7, 8, 10, 11];
pub const CLUSTER_OPERATIONS: &[i32] = &[5, 7, 8, 9, 10, 11, 12];

pub fn bits(ops: &[i32]) -> i32 {
    ops.iter().fold(0, |acc, op| acc | (1 << op))
}

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
) -> anyhow::Result<Frame> {
    let version = header.request_api_version;
    let request: MetadataRequest = decode(header, body)?;
    let auto_create = broker.config.auto_create_topics_enable
        && (version < 4 || request.allow_auto_topic_creation);
    let topic_ops = if request.include_topic_authorized_operations {
        bits(TOPIC_OPERATIONS)
    } else {
        i32::MIN
    };

    let mut topics = Vec::new();
    match request.topics {
        None => {
            for topic in broker.topics() {
                topics.push(describe(broker, &topic, topic_ops));
            }
        }
        Some(requested) => {
            for t in requested {
                let found = match &t.name {
                    Some(name) => broker.topic(name.as_str()),
                    None => broker.topic_by_id(t.topic_id),
                };
                if let Some(topic) = found {
                    topics.push(describe(broker, &topic, topic_ops));
                    continue;
                }
                let Some(name) = t.name else {
                    topics.push(
                        MetadataResponseTopic::default()
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_topic_id(t.topic_id)
                            .with_topic_authorized_operations(topic_ops),
                    );
                    continue;
                };
                let error_topic = |error: ResponseError| {
                    MetadataResponseTopic::default()
                        .with_error_code(error.code())
                        .with_name(Some(name.clone()))
                        .with_topic_authorized_operations(topic_ops)
                };
                if validate_topic_name(name.as_str()).is_err() {
                    topics.push(error_topic(ResponseError::InvalidTopicException));
                    continue;
                }
                if !auto_create {
                    topics.push(error_topic(ResponseError::UnknownTopicOrPartition));
                    continue;
                }
                match broker
                    .create_topic(name.as_str(), -1, -1, BTreeMap::new(), false)
                    .await
                {
                    Ok(topic) => topics.push(describe(broker, &topic, topic_ops)),
                    Err(CreateTopicError::Exists(_)) => match broker.topic(name.as_str()) {
                        Some(topic) => topics.push(describe(broker, &topic, topic_ops)),
                        None => topics.push(error_topic(ResponseError::LeaderNotAvailable)),
                    },
                    Err(error) => {
                        tracing::warn!(topic = %name.as_str(), %error, "auto-creating topic failed");
                        topics.push(error_topic(ResponseError::LeaderNotAvailable));
                    }
                }
            }
        }
    }

    let response = MetadataResponse::default()
        .with_brokers(
            broker
                .live_brokers()
                .into_iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node.0))
                        .with_host(StrBytes::from_string(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(
            broker.controller.load(std::sync::atomic::Ordering::Relaxed),
        ))
        .with_topics(topics)
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            bits(CLUSTER_OPERATIONS)
        } else {
            i32::MIN
        });
    Ok(frame(header, &response))
}

fn describe(broker: &Broker, topic: &Topic, topic_ops: i32) -> MetadataResponseTopic {
    let live: std::collections::HashSet<i32> =
        broker.live_brokers().iter().map(|b| b.node.0).collect();
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let record = p.record();
            let leader = BrokerId(record.leader.0);
            let r = MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_epoch(record.leader_epoch.0)
                .with_replica_nodes(vec![leader]);
            if live.contains(&leader.0) {
                r.with_leader_id(leader).with_isr_nodes(vec![leader])
            } else {
                // Its leader is gone and the controller has not given it to another yet.
                r.with_error_code(ResponseError::LeaderNotAvailable.code())
                    .with_leader_id(BrokerId(-1))
            }
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(
            topic.record.name.clone(),
        ))))
        .with_topic_id(topic.record.id.0)
        .with_partitions(partitions)
        .with_topic_authorized_operations(topic_ops)
}
