//! AlterConfigs (the legacy API): replaces every override of a topic with the given set.
//! Broker settings are static (silt.toml, SILT_* variables, flags) and cannot be altered here.
//! Authorization: ALTER_CONFIGS on the topic (TOPIC_AUTHORIZATION_FAILED) or, for the broker, on
//! the cluster (CLUSTER_AUTHORIZATION_FAILED).

use super::describe_configs::{authorize_configs, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::admin_error;
use crate::security::acl::Operation;
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: AlterConfigsRequest = decode(header, body)?;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        if let Err(denied) = authorize_configs(
            session,
            Operation::AlterConfigs,
            resource.resource_type,
            resource.resource_name.as_str(),
        ) {
            responses.push(response(
                resource.resource_type,
                &resource.resource_name,
                Err(denied),
            ));
            continue;
        }
        let configs: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| {
                Some((
                    c.name.as_str().to_string(),
                    c.value.as_ref()?.as_str().to_string(),
                ))
            })
            .collect();
        let result = match resource.resource_type {
            RESOURCE_TOPIC => broker
                .set_topic_configs(
                    resource.resource_name.as_str(),
                    configs,
                    request.validate_only,
                )
                .await
                .map_err(admin_error),
            RESOURCE_BROKER => Err(static_broker_configs()),
            other => Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} has no configs here"),
            )),
        };
        responses.push(response(
            resource.resource_type,
            &resource.resource_name,
            result,
        ));
    }
    Ok(frame(
        header,
        &AlterConfigsResponse::default().with_responses(responses),
    ))
}

pub fn static_broker_configs() -> (ResponseError, String) {
    (
        ResponseError::InvalidRequest,
        "broker settings are static: set them in silt.toml, SILT_* variables or flags".into(),
    )
}

pub fn response(
    resource_type: i8,
    name: &StrBytes,
    result: Result<(), (ResponseError, String)>,
) -> AlterConfigsResourceResponse {
    let r = AlterConfigsResourceResponse::default()
        .with_resource_type(resource_type)
        .with_resource_name(name.clone());
    match result {
        Ok(()) => r,
        Err((code, message)) => r
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message))),
    }
}
