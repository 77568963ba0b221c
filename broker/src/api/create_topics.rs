//! CreateTopics: name, partitions and replication factor (-1 = broker default), configs by their
//! Kafka names, validate_only. Any replication factor is accepted and stored; durability comes
//! from the object store, not from copies on brokers. Authorization: CREATE on the cluster or
//! on the topic (TOPIC_AUTHORIZATION_FAILED); the created topic's configs are given only with
//! DESCRIBE_CONFIGS on it.

use crate::api::frame::{decode, frame, Frame};
use crate::broker::{Broker, CreateTopicError};
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// DescribeConfigs' config source codes.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

/// The most partitions one CreateTopics request creates (as many as one topic may have).
pub const MAX_PARTITIONS_PER_REQUEST: i32 = 100_000;

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: CreateTopicsRequest = decode(header, body)?;
    // CREATE on the cluster allows any topic; without it, CREATE on each topic is needed.
    let create_any = session.may(Operation::Create, ResourceType::Cluster, CLUSTER_NAME);
    let mut results = Vec::with_capacity(request.topics.len());
    let mut seen = HashSet::new();
    // Partitions this request may still create: one request cannot make the broker open
    // hundreds of thousands of partitions at once.
    let mut budget = i64::from(MAX_PARTITIONS_PER_REQUEST);
    for t in request.topics {
        let name = t.name.as_str().to_string();
        let result = CreatableTopicResult::default().with_name(t.name.clone());
        let fail = |code: ResponseError, message: String| {
            result
                .clone()
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        };
        if !seen.insert(name.clone()) {
            results.push(fail(
                ResponseError::InvalidRequest,
                format!("topic {name} is listed twice"),
            ));
            continue;
        }
        if !create_any && !session.allowed(Operation::Create, ResourceType::Topic, &name) {
            results.push(fail(
                ResponseError::TopicAuthorizationFailed,
                "Authorization failed.".into(),
            ));
            continue;
        }
        let mut partitions = t.num_partitions;
        let mut replication_factor = t.replication_factor;
        if !t.assignments.is_empty() {
            if partitions != -1 || replication_factor != -1 {
                results.push(fail(
                    ResponseError::InvalidRequest,
                    "give either assignments or partitions and replication factor".into(),
                ));
                continue;
            }
            partitions = t.assignments.len() as i32;
            replication_factor = t.assignments[0].broker_ids.len() as i16;
        }
        let wanted = broker.partitions_or_default(partitions);
        if wanted > 0 && i64::from(wanted) > budget {
            results.push(fail(
                ResponseError::InvalidPartitions,
                format!(
                    "one CreateTopics request creates at most {MAX_PARTITIONS_PER_REQUEST} \
                     partitions; send topic {name} ({wanted} partitions) in another request"
                ),
            ));
            continue;
        }
        budget -= i64::from(wanted.max(0));
        let mut configs = BTreeMap::new();
        let mut bad = None;
        for c in &t.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.as_str().to_string(), v.as_str().to_string());
                }
                None => bad = Some(format!("config {} has no value", c.name.as_str())),
            }
        }
        if let Some(message) = bad {
            results.push(fail(ResponseError::InvalidConfig, message));
            continue;
        }
        match broker
            .create_topic(
                &name,
                partitions,
                replication_factor,
                configs,
                request.validate_only,
            )
            .await
        {
            Ok(topic) => {
                let created = result
                    .with_topic_id(topic.record.id.0)
                    .with_num_partitions(topic.record.partitions)
                    .with_replication_factor(topic.record.replication_factor);
                // As in Kafka: no configs, and a config error, without DESCRIBE_CONFIGS.
                if !session.may(Operation::DescribeConfigs, ResourceType::Topic, &name) {
                    results.push(
                        created
                            .with_topic_config_error_code(
                                ResponseError::TopicAuthorizationFailed.code(),
                            )
                            .with_configs(None),
                    );
                    continue;
                }
                let overridden = &topic.record.configs;
                let configs = topic
                    .config
                    .effective()
                    .into_iter()
                    .map(|(k, v)| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_static_str(k))
                            .with_value(Some(StrBytes::from_string(
                                overridden.get(k).cloned().unwrap_or(v),
                            )))
                            .with_config_source(if overridden.contains_key(k) {
                                SOURCE_TOPIC
                            } else {
                                SOURCE_DEFAULT
                            })
                    })
                    .collect();
                results.push(created.with_configs(Some(configs)));
            }
            Err(e) => {
                let code = match &e {
                    CreateTopicError::Exists(_) => ResponseError::TopicAlreadyExists,
                    CreateTopicError::InvalidName(_) => ResponseError::InvalidTopicException,
                    CreateTopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
                    CreateTopicError::InvalidReplicationFactor(_) => {
                        ResponseError::InvalidReplicationFactor
                    }
                    CreateTopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
                    CreateTopicError::Internal(_) => ResponseError::UnknownServerError,
                };
                results.push(fail(code, e.to_string()));
            }
        }
    }
    Ok(frame(
        header,
        &CreateTopicsResponse::default().with_topics(results),
    ))
}
