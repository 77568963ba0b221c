//! Metadata: brokers, topics, partitions with leader and leader epoch; auto-creates topics as
//! Kafka does when the request allows it and `auto_create_topics_enable` is on. Brokers are
//! given by their address on the listener the client connected to.
//! Authorization: a listing of all topics leaves out those the session may not DESCRIBE;
//! named topics it may not DESCRIBE get TOPIC_AUTHORIZATION_FAILED, as do unknown ones it may
//! not CREATE (on the cluster or the topic) when they would be auto-created.

use crate::api::frame::{decode, frame, Frame};
use crate::broker::{validate_topic_name, Broker, CreateTopicError, Topic};
use crate::security::acl::{
    Operation, ResourceType, CLUSTER_NAME, CLUSTER_OPERATIONS, TOPIC_OPERATIONS,
};
use crate::security::Session;
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

/// Kafka's `cluster_authorized_operations` (Metadata v8-10, DescribeCluster): when `requested`,
/// the bit set, or 0 without DESCRIBE on the cluster; otherwise i32::MIN (not given).
pub fn cluster_authorized_operations(session: &Session, requested: bool) -> i32 {
    if !requested {
        i32::MIN
    } else if session.allowed_on_cluster(Operation::Describe) {
        session.authorized_operations(ResourceType::Cluster, CLUSTER_NAME, CLUSTER_OPERATIONS)
    } else {
        0
    }
}

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let version = header.request_api_version;
    let request: MetadataRequest = decode(header, body)?;
    let auto_create = broker.config.auto_create_topics_enable
        && (version < 4 || request.allow_auto_topic_creation);
    let include_topic_ops = request.include_topic_authorized_operations;
    let topic_ops = |name: &str| {
        if include_topic_ops {
            session.authorized_operations(ResourceType::Topic, name, TOPIC_OPERATIONS)
        } else {
            i32::MIN
        }
    };
    let describe_allowed =
        |name: &str| session.allowed(Operation::Describe, ResourceType::Topic, name);

    let mut topics = Vec::new();
    match request.topics {
        None => {
            for topic in broker.topics() {
                let name = topic.record.name.as_str();
                if session.may(Operation::Describe, ResourceType::Topic, name) {
                    topics.push(describe(broker, &topic, topic_ops(name)));
                }
            }
        }
        Some(requested) => {
            // CREATE on the cluster allows auto-creating any topic; without it, CREATE on each.
            let create_any =
                auto_create && session.may(Operation::Create, ResourceType::Cluster, CLUSTER_NAME);
            for t in requested {
                let Some(name) = t.name else {
                    // By id (v10+): an unknown id names nothing to authorize, and a topic the
                    // session may not DESCRIBE keeps its name hidden.
                    topics.push(match broker.topic_by_id(t.topic_id) {
                        Some(topic) if describe_allowed(&topic.record.name) => {
                            describe(broker, &topic, topic_ops(&topic.record.name))
                        }
                        Some(topic) => MetadataResponseTopic::default()
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_topic_id(t.topic_id)
                            .with_topic_authorized_operations(topic_ops(&topic.record.name)),
                        None => MetadataResponseTopic::default()
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_topic_id(t.topic_id)
                            .with_topic_authorized_operations(if include_topic_ops {
                                0
                            } else {
                                i32::MIN
                            }),
                    });
                    continue;
                };
                let ops = topic_ops(name.as_str());
                let error_topic = |error: ResponseError| {
                    MetadataResponseTopic::default()
                        .with_error_code(error.code())
                        .with_name(Some(name.clone()))
                        .with_topic_authorized_operations(ops)
                };
                // Denied whether or not the topic exists, so that names do not leak.
                if !describe_allowed(name.as_str()) {
                    topics.push(error_topic(ResponseError::TopicAuthorizationFailed));
                    continue;
                }
                if let Some(topic) = broker.topic(name.as_str()) {
                    topics.push(describe(broker, &topic, ops));
                    continue;
                }
                if validate_topic_name(name.as_str()).is_err() {
                    topics.push(error_topic(ResponseError::InvalidTopicException));
                    continue;
                }
                if !auto_create {
                    topics.push(error_topic(ResponseError::UnknownTopicOrPartition));
                    continue;
                }
                if !create_any
                    && !session.allowed(Operation::Create, ResourceType::Topic, name.as_str())
                {
                    topics.push(error_topic(ResponseError::TopicAuthorizationFailed));
                    continue;
                }
                match broker
                    .create_topic(name.as_str(), -1, -1, BTreeMap::new(), false)
                    .await
                {
                    Ok(topic) => topics.push(describe(broker, &topic, ops)),
                    Err(CreateTopicError::Exists(_)) => match broker.topic(name.as_str()) {
                        Some(topic) => topics.push(describe(broker, &topic, ops)),
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
                    let (host, port) = b.endpoint(&session.listener.name);
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(b.node.0))
                        .with_host(StrBytes::from_string(host))
                        .with_port(port)
                        .with_rack(b.rack.map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(
            broker.controller.load(std::sync::atomic::Ordering::Relaxed),
        ))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_authorized_operations(
            session,
            request.include_cluster_authorized_operations,
        ));
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
