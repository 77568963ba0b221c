//! DescribeConfigs: every topic config with its value, source and type (synonyms and
//! documentation when asked), and the broker's static settings under their Kafka names.
//! Authorization: DESCRIBE_CONFIGS on the topic (TOPIC_AUTHORIZATION_FAILED) or, for the
//! broker, on the cluster (CLUSTER_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::config::Config;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use crate::topic_config::{self, ConfigType, TopicConfig};
use bytes::Bytes;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// The config APIs' authorization of one resource, as Kafka's: `operation` (DESCRIBE_CONFIGS
/// or ALTER_CONFIGS) on the topic, or on the cluster for a broker. Resource types without
/// configs here pass, to be refused as such.
pub fn authorize_configs(
    session: &Session,
    operation: Operation,
    resource_type: i8,
    name: &str,
) -> Result<(), (ResponseError, String)> {
    match resource_type {
        RESOURCE_TOPIC if !session.allowed(operation, ResourceType::Topic, name) => Err((
            ResponseError::TopicAuthorizationFailed,
            format!("not authorized for the configs of topic {name}"),
        )),
        RESOURCE_BROKER if !session.allowed_on_cluster(operation) => Err((
            ResponseError::ClusterAuthorizationFailed,
            "not authorized for the broker's configs".to_string(),
        )),
        _ => Ok(()),
    }
}

/// Kafka's ConfigSource codes.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

struct Entry {
    name: String,
    value: String,
    source: i8,
    read_only: bool,
    config_type: ConfigType,
    doc: &'static str,
    synonyms: Vec<(String, String, i8)>,
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn topic_entries(
    broker: &Broker,
    configs: &std::collections::BTreeMap<String, String>,
) -> Vec<Entry> {
    topic_config::KNOWN
        .iter()
        .map(|spec| {
            let default =
                TopicConfig::default_value(&broker.config.log, spec.name).unwrap_or_default();
            let mut synonyms = Vec::new();
            let (value, source) = match configs.get(spec.name) {
                Some(v) => {
                    synonyms.push((spec.name.to_string(), v.clone(), SOURCE_TOPIC));
                    (v.clone(), SOURCE_TOPIC)
                }
                None => (default.clone(), SOURCE_DEFAULT),
            };
            if let Some(broker_name) = spec.broker_synonym {
                synonyms.push((broker_name.to_string(), default, SOURCE_DEFAULT));
            }
            Entry {
                name: spec.name.to_string(),
                value,
                source,
                read_only: false,
                config_type: spec.config_type,
                doc: spec.doc,
                synonyms,
            }
        })
        .collect()
}

/// The broker's settings that Kafka tools look for, by their Kafka names. All static: they
/// come from defaults, silt.toml, SILT_* variables or flags.
fn broker_entries(config: &Config) -> Vec<Entry> {
    let d = Config::default();
    let ts = |t: crate::topic_config::TimestampType| match t {
        crate::topic_config::TimestampType::CreateTime => "CreateTime".to_string(),
        crate::topic_config::TimestampType::LogAppendTime => "LogAppendTime".to_string(),
    };
    // Kafka's forms: `NAME://host:port,...` and `NAME:PROTOCOL,...`.
    let joined = |c: &Config, f: &dyn Fn(&crate::config::ListenerSettings) -> String| {
        c.listeners().iter().map(f).collect::<Vec<_>>().join(",")
    };
    let advertised =
        |l: &crate::config::ListenerSettings| format!("{}://{}", l.name, l.advertised());
    let bound = |l: &crate::config::ListenerSettings| format!("{}://{}", l.name, l.listen);
    let protocols = |l: &crate::config::ListenerSettings| format!("{}:{}", l.name, l.protocol);
    let rows: Vec<(&str, String, String, ConfigType, &'static str)> = vec![
        (
            "advertised.listeners",
            joined(config, &advertised),
            joined(&d, &advertised),
            ConfigType::List,
            "Addresses given to clients.",
        ),
        (
            "auto.create.topics.enable",
            config.auto_create_topics_enable.to_string(),
            d.auto_create_topics_enable.to_string(),
            ConfigType::Boolean,
            "Create topics named in Metadata requests that allow it.",
        ),
        (
            "broker.id",
            config.node_id.to_string(),
            d.node_id.to_string(),
            ConfigType::Int,
            "This broker's node id.",
        ),
        (
            "default.replication.factor",
            config.default_replication_factor.to_string(),
            d.default_replication_factor.to_string(),
            ConfigType::Int,
            "Replication factor recorded for topics created with -1.",
        ),
        (
            "listeners",
            joined(config, &bound),
            joined(&d, &bound),
            ConfigType::List,
            "Addresses the broker listens on.",
        ),
        (
            "listener.security.protocol.map",
            joined(config, &protocols),
            joined(&d, &protocols),
            ConfigType::List,
            "Each listener's security protocol.",
        ),
        (
            "log.dirs",
            config.data_dir.join("logs").display().to_string(),
            d.data_dir.join("logs").display().to_string(),
            ConfigType::String,
            "Where hot segments live.",
        ),
        (
            "log.message.timestamp.type",
            ts(config.log.message_timestamp_type),
            ts(d.log.message_timestamp_type),
            ConfigType::String,
            "Default message.timestamp.type.",
        ),
        (
            "log.retention.bytes",
            config.log.retention_bytes.to_string(),
            d.log.retention_bytes.to_string(),
            ConfigType::Long,
            "Default retention.bytes.",
        ),
        (
            "log.retention.check.interval.ms",
            config.log.retention_check_interval_ms.to_string(),
            d.log.retention_check_interval_ms.to_string(),
            ConfigType::Long,
            "How often retention runs.",
        ),
        (
            "log.retention.ms",
            config.log.retention_ms.to_string(),
            d.log.retention_ms.to_string(),
            ConfigType::Long,
            "Default retention.ms.",
        ),
        (
            "log.roll.ms",
            config.log.segment_ms.to_string(),
            d.log.segment_ms.to_string(),
            ConfigType::Long,
            "Default segment.ms.",
        ),
        (
            "log.segment.bytes",
            config.log.segment_bytes.to_string(),
            d.log.segment_bytes.to_string(),
            ConfigType::Int,
            "Default segment.bytes.",
        ),
        (
            "message.max.bytes",
            config.log.message_max_bytes.to_string(),
            d.log.message_max_bytes.to_string(),
            ConfigType::Int,
            "Default max.message.bytes.",
        ),
        (
            "num.partitions",
            config.num_partitions.to_string(),
            d.num_partitions.to_string(),
            ConfigType::Int,
            "Partitions of topics created with -1 or auto-created.",
        ),
        (
            "producer.id.expiration.ms",
            config.producer_id_expiration_ms.to_string(),
            d.producer_id_expiration_ms.to_string(),
            ConfigType::Int,
            "Idle producers are forgotten after this long.",
        ),
        (
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            d.socket_request_max_bytes.to_string(),
            ConfigType::Int,
            "Largest request accepted.",
        ),
    ];
    rows.into_iter()
        .map(|(name, value, default, config_type, doc)| {
            let source = if value == default {
                SOURCE_DEFAULT
            } else {
                SOURCE_STATIC_BROKER
            };
            Entry {
                name: name.to_string(),
                synonyms: vec![(name.to_string(), value.clone(), source)],
                value,
                source,
                read_only: true,
                config_type,
                doc,
            }
        })
        .collect()
}

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let version = header.request_api_version;
    let request: DescribeConfigsRequest = decode(header, body)?;
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            if let Err((error, message)) = authorize_configs(
                session,
                Operation::DescribeConfigs,
                resource.resource_type,
                resource.resource_name.as_str(),
            ) {
                return result
                    .with_error_code(error.code())
                    .with_error_message(Some(s(message)));
            }
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match broker.topic(resource.resource_name.as_str()) {
                    Some(topic) => topic_entries(broker, &topic.record.configs),
                    None => {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(s(format!(
                                "topic {} does not exist",
                                resource.resource_name.as_str()
                            ))));
                    }
                },
                RESOURCE_BROKER => {
                    let name = resource.resource_name.as_str();
                    if !name.is_empty() && name != broker.node_id.0.to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(s(format!(
                                "this is broker {}, not {name}",
                                broker.node_id
                            ))));
                    }
                    broker_entries(&broker.config)
                }
                other => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(s(format!(
                            "resource type {other} has no configs here"
                        ))));
                }
            };
            // Null or empty: every config.
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == name))
            };
            let configs = entries
                .into_iter()
                .filter(|e| wanted(&e.name))
                .map(|e| {
                    let mut c = DescribeConfigsResourceResult::default()
                        .with_name(s(e.name))
                        .with_value(Some(s(e.value)))
                        .with_read_only(e.read_only)
                        .with_config_source(e.source);
                    if request.include_synonyms {
                        c = c.with_synonyms(
                            e.synonyms
                                .into_iter()
                                .map(|(n, v, src)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(s(n))
                                        .with_value(Some(s(v)))
                                        .with_source(src)
                                })
                                .collect(),
                        );
                    }
                    if version >= 3 {
                        c = c.with_config_type(e.config_type as i8);
                        if request.include_documentation {
                            c = c.with_documentation(Some(StrBytes::from_static_str(e.doc)));
                        }
                    }
                    c
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    Ok(frame(
        header,
        &DescribeConfigsResponse::default().with_results(results),
    ))
}
