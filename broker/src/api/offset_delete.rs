//! OffsetDelete: removes a group's committed offsets for partitions of topics its members do
//! not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise). Authorization: DELETE on the group
//! (GROUP_AUTHORIZATION_FAILED), then READ on each topic (TOPIC_AUTHORIZATION_FAILED for its
//! partitions, whose offsets stay).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::group_code;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetDeleteRequest, OffsetDeleteResponse, RequestHeader,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;
use std::collections::HashSet;
use std::sync::Arc;

/// Topics the members subscribe to, read from their consumer-protocol metadata.
fn subscribed(broker: &Broker, group: &str) -> HashSet<String> {
    let mut topics = HashSet::new();
    for mut metadata in broker.groups.member_metadata(group) {
        if metadata.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([metadata[0], metadata[1]]);
        bytes::Buf::advance(&mut metadata, 2);
        if let Ok(s) = ConsumerProtocolSubscription::decode(&mut metadata, version) {
            topics.extend(s.topics.iter().map(|t| t.as_str().to_string()));
        }
    }
    topics
}

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: OffsetDeleteRequest = decode(header, body)?;
    if !session.allowed(
        Operation::Delete,
        ResourceType::Group,
        request.group_id.as_str(),
    ) {
        let response = OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
        return Ok(frame(header, &response));
    }
    let authorized: Vec<bool> = request
        .topics
        .iter()
        .map(|t| session.allowed(Operation::Read, ResourceType::Topic, t.name.as_str()))
        .collect();
    let subs = subscribed(broker, request.group_id.as_str());
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .zip(&authorized)
        .filter(|(_, allowed)| **allowed)
        .flat_map(|(t, _)| {
            t.partitions
                .iter()
                .map(move |p| (t.name.as_str().to_string(), p.partition_index))
        })
        .collect();
    let response = match broker
        .groups
        .delete_offsets(request.group_id.as_str(), &partitions, &subs)
        .await
    {
        Err(e) => OffsetDeleteResponse::default().with_error_code(group_code(e)),
        Ok(results) => {
            let mut results = results.into_iter();
            OffsetDeleteResponse::default().with_topics(
                request
                    .topics
                    .iter()
                    .zip(&authorized)
                    .map(|(t, &allowed)| {
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        // The results are for authorized topics only.
                                        let error = if !allowed {
                                            ResponseError::TopicAuthorizationFailed.code()
                                        } else if results.next().unwrap_or(false) {
                                            0
                                        } else {
                                            ResponseError::GroupSubscribedToTopic.code()
                                        };
                                        OffsetDeleteResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(error)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        }
    };
    Ok(frame(header, &response))
}
