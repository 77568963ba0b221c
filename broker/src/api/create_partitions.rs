//! CreatePartitions: grows a topic's partition count (never shrinks it), validate_only too.
//! Authorization: ALTER on the topic (TOPIC_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::admin_error;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: CreatePartitionsRequest = decode(header, body)?;
    let mut results = Vec::with_capacity(request.topics.len());
    for t in &request.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let outcome = if session.allowed(Operation::Alter, ResourceType::Topic, t.name.as_str()) {
            broker
                .create_partitions(t.name.as_str(), t.count, request.validate_only)
                .await
                .map_err(admin_error)
        } else {
            Err((
                ResponseError::TopicAuthorizationFailed,
                "Authorization failed.".to_string(),
            ))
        };
        match outcome {
            Ok(()) => results.push(r),
            Err((code, message)) => results.push(
                r.with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            ),
        }
    }
    Ok(frame(
        header,
        &CreatePartitionsResponse::default().with_results(results),
    ))
}
