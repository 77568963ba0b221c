//! OffsetCommit: checks the member and generation, then answers once the offsets are durable in
//! the metadata store (commits that arrive together share one write). Authorization: READ on
//! the group (else GROUP_AUTHORIZATION_FAILED for every partition), then READ on each topic
//! (TOPIC_AUTHORIZATION_FAILED for its partitions, which are not committed).

use crate::api::frame::{decode, frame, Reply};
use crate::broker::Broker;
use crate::error::group_code;
use crate::group::OffsetEntry;
use crate::log::partition::now_ms;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Reply> {
    let request: OffsetCommitRequest = decode(&header, body)?;
    // Per topic: the authorization error its partitions get, if any (decided now).
    let group_allowed = session.allowed(
        Operation::Read,
        ResourceType::Group,
        request.group_id.as_str(),
    );
    let denied: Vec<Option<i16>> = request
        .topics
        .iter()
        .map(|t| {
            if !group_allowed {
                Some(ResponseError::GroupAuthorizationFailed.code())
            } else if !session.allowed(Operation::Read, ResourceType::Topic, t.name.as_str()) {
                Some(ResponseError::TopicAuthorizationFailed.code())
            } else {
                None
            }
        })
        .collect();
    let broker = broker.clone();
    Ok(Reply::Later(tokio::spawn(async move {
        let now = now_ms();
        let max_metadata = broker.config.offset_metadata_max_bytes;
        // Per partition: Ok(entry) to commit, or the error it gets.
        let mut checked: Vec<(usize, i32, Result<OffsetEntry, i16>)> = Vec::new();
        for (t, topic) in request.topics.iter().enumerate() {
            let known = broker.topic(topic.name.as_str());
            for p in &topic.partitions {
                let result = if let Some(error) = denied[t] {
                    Err(error)
                } else if known
                    .as_ref()
                    .and_then(|k| k.partition(p.partition_index))
                    .is_none()
                {
                    Err(ResponseError::UnknownTopicOrPartition.code())
                } else if p
                    .committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > max_metadata)
                {
                    Err(ResponseError::OffsetMetadataTooLarge.code())
                } else {
                    Ok(OffsetEntry {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.as_str().to_string()),
                        commit_ms: now,
                    })
                };
                checked.push((t, p.partition_index, result));
            }
        }
        let to_commit: Vec<_> = checked
            .iter()
            .filter_map(|(t, p, r)| {
                Some((
                    request.topics[*t].name.as_str().to_string(),
                    *p,
                    r.as_ref().ok()?.clone(),
                ))
            })
            .collect();
        let group_error = if to_commit.is_empty() {
            None
        } else {
            broker
                .groups
                .commit(
                    request.group_id.as_str(),
                    request.generation_id_or_member_epoch,
                    request.member_id.as_str(),
                    request.group_instance_id.as_ref().map(|s| s.as_str()),
                    to_commit,
                )
                .await
                .err()
                .map(group_code)
        };
        let topics = request
            .topics
            .iter()
            .enumerate()
            .map(|(t, topic)| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(
                        checked
                            .iter()
                            .filter(|(ti, _, _)| *ti == t)
                            .map(|(_, p, r)| {
                                let error = match r {
                                    Err(code) => *code,
                                    Ok(_) => group_error.unwrap_or(0),
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(*p)
                                    .with_error_code(error)
                            })
                            .collect(),
                    )
            })
            .collect();
        frame(
            &header,
            &OffsetCommitResponse::default().with_topics(topics),
        )
    })))
}
