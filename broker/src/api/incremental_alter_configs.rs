//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT on a topic's overrides (APPEND and
//! SUBTRACT for list configs such as cleanup.policy). Authorization: ALTER_CONFIGS on the topic
//! (TOPIC_AUTHORIZATION_FAILED) or, for the broker, on the cluster
//! (CLUSTER_AUTHORIZATION_FAILED).

use super::alter_configs::static_broker_configs;
use super::describe_configs::{authorize_configs, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::admin_error;
use crate::security::acl::Operation;
use crate::security::Session;
use crate::topic_config::{ConfigType, TopicConfig};
use bytes::Bytes;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, RequestHeader,
};
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

/// Applies the operations to `current`; the error names the offending config.
fn apply(
    broker: &Broker,
    mut current: BTreeMap<String, String>,
    ops: &[AlterableConfig],
) -> Result<BTreeMap<String, String>, (ResponseError, String)> {
    let invalid = |m: String| (ResponseError::InvalidConfig, m);
    for op in ops {
        let name = op.name.as_str();
        let spec = crate::topic_config::spec(name)
            .ok_or_else(|| invalid(format!("unknown topic config {name}")))?;
        let value = op.value.as_ref().map(|v| v.as_str().to_string());
        match op.config_operation {
            SET => {
                let v = value.ok_or_else(|| invalid(format!("SET {name} needs a value")))?;
                current.insert(name.to_string(), v);
            }
            DELETE => {
                current.remove(name);
            }
            APPEND | SUBTRACT => {
                if spec.config_type != ConfigType::List {
                    return Err(invalid(format!(
                        "{name} is not a list; APPEND and SUBTRACT need one"
                    )));
                }
                let v = value.ok_or_else(|| invalid(format!("{name} needs a value")))?;
                let existing = current
                    .get(name)
                    .cloned()
                    .or_else(|| TopicConfig::default_value(&broker.config.log, name))
                    .unwrap_or_default();
                let mut items: Vec<String> = existing
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                    .collect();
                for item in v
                    .split(',')
                    .map(|x| x.trim().to_string())
                    .filter(|x| !x.is_empty())
                {
                    if op.config_operation == APPEND {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else {
                        items.retain(|x| *x != item);
                    }
                }
                current.insert(name.to_string(), items.join(","));
            }
            other => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other}"),
                ));
            }
        }
    }
    Ok(current)
}

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: IncrementalAlterConfigsRequest = decode(header, body)?;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let name = resource.resource_name.as_str();
        let authorization = authorize_configs(
            session,
            Operation::AlterConfigs,
            resource.resource_type,
            name,
        );
        let result = match resource.resource_type {
            _ if authorization.is_err() => authorization,
            RESOURCE_TOPIC => match broker.topic(name) {
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                )),
                Some(topic) => match apply(broker, topic.record.configs.clone(), &resource.configs)
                {
                    Ok(next) => broker
                        .set_topic_configs(name, next, request.validate_only)
                        .await
                        .map_err(admin_error),
                    Err(e) => Err(e),
                },
            },
            RESOURCE_BROKER => Err(static_broker_configs()),
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} has no configs here"),
            )),
        };
        let r =
            super::alter_configs::response(resource.resource_type, &resource.resource_name, result);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(r.error_code)
                .with_error_message(r.error_message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    Ok(frame(
        header,
        &IncrementalAlterConfigsResponse::default().with_responses(responses),
    ))
}
