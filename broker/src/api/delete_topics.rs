//! DeleteTopics: by name (all versions) or by topic id (v6+). Authorization: DELETE on the
//! topic (TOPIC_AUTHORIZATION_FAILED, for a name whether or not the topic exists; a topic given
//! by id keeps its name hidden from a session that may not DESCRIBE it).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    DeleteTopicsRequest, DeleteTopicsResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: DeleteTopicsRequest = decode(header, body)?;
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = request
        .topic_names
        .into_iter()
        .map(|n| (Some(n), uuid::Uuid::nil()))
        .collect();
    targets.extend(request.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let topic = match &name {
            Some(n) => broker.topic(n.as_str()),
            None => broker.topic_by_id(id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        // DELETE on the topic: by name whether or not it exists, by id once the id is known.
        let target = match (&name, &topic) {
            (Some(n), _) => Some(n.as_str()),
            (None, t) => t.as_ref().map(|t| t.record.name.as_str()),
        };
        if let Some(target) = target {
            if !session.allowed(Operation::Delete, ResourceType::Topic, target) {
                // A topic given by id is named only to a session that may DESCRIBE it.
                let result = if name.is_none()
                    && session.may(Operation::Describe, ResourceType::Topic, target)
                {
                    result.with_name(Some(TopicName(StrBytes::from_string(target.to_string()))))
                } else {
                    result
                };
                responses
                    .push(result.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
        }
        let Some(topic) = topic else {
            let code = if name.is_some() {
                ResponseError::UnknownTopicOrPartition
            } else {
                ResponseError::UnknownTopicId
            };
            responses.push(result.with_error_code(code.code()));
            continue;
        };
        let result = result
            .with_name(Some(TopicName(StrBytes::from_string(
                topic.record.name.clone(),
            ))))
            .with_topic_id(topic.record.id.0);
        match broker.delete_topic(&topic.record.name).await {
            Ok(_) => responses.push(result),
            Err(silt_metadata::Error::TopicNotFound(_)) => responses
                .push(result.with_error_code(ResponseError::UnknownTopicOrPartition.code())),
            Err(e) => responses.push(
                result
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(Some(StrBytes::from_string(e.to_string()))),
            ),
        }
    }
    Ok(frame(
        header,
        &DeleteTopicsResponse::default().with_responses(responses),
    ))
}
