//! OffsetFetch: committed offsets with their leader epoch and metadata, for one group (v1-7)
//! or several (v8+); all of a group's partitions when no topics are named. Authorization:
//! DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED: for the group from v2, in each partition
//! in v1); named topics the session may not DESCRIBE get TOPIC_AUTHORIZATION_FAILED, and a
//! listing of all leaves them out.

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::group::GroupOffsets;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

/// One partition: (partition, offset, leader epoch, metadata, error code).
type Row = (i32, i64, i32, Option<String>, i16);
/// (topic, its rows) for the requested or all partitions.
type Rows = Vec<(String, Vec<Row>)>;

/// A partition without an offset to give: no offset, no epoch, empty metadata.
fn no_offset(partition: i32, error: i16) -> Row {
    (partition, -1, -1, Some(String::new()), error)
}

/// The rows of the requested partitions, or of all the group's. Requested topics the session
/// may not DESCRIBE get TOPIC_AUTHORIZATION_FAILED in each partition; a listing of all leaves
/// them out.
fn rows(
    offsets: &GroupOffsets,
    requested: Option<Vec<(String, Vec<i32>)>>,
    session: &Session,
) -> Rows {
    match requested {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                let authorized = session.allowed(Operation::Describe, ResourceType::Topic, &t);
                let r = parts
                    .into_iter()
                    .map(|p| {
                        if !authorized {
                            return no_offset(p, ResponseError::TopicAuthorizationFailed.code());
                        }
                        match offsets.get(&t, p) {
                            Some(e) => (p, e.offset, e.leader_epoch, e.metadata.clone(), 0),
                            None => no_offset(p, 0),
                        }
                    })
                    .collect();
                (t, r)
            })
            .collect(),
        None => offsets
            .offsets
            .iter()
            .filter(|(t, _)| session.may(Operation::Describe, ResourceType::Topic, t.as_str()))
            .map(|(t, parts)| {
                (
                    t.clone(),
                    parts
                        .iter()
                        .map(|(p, e)| (*p, e.offset, e.leader_epoch, e.metadata.clone(), 0))
                        .collect(),
                )
            })
            .collect(),
    }
}

/// Every requested partition with `error`: how v1, which has no group-level error code,
/// answers for the group.
fn failed(requested: Option<Vec<(String, Vec<i32>)>>, error: i16) -> Rows {
    requested
        .unwrap_or_default()
        .into_iter()
        .map(|(t, parts)| (t, parts.into_iter().map(|p| no_offset(p, error)).collect()))
        .collect()
}

fn metadata(m: Option<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(m.unwrap_or_default()))
}

/// The response topics of v1-7.
fn topics(rows: Rows, version: i16) -> Vec<OffsetFetchResponseTopic> {
    rows.into_iter()
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o, e, m, error)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                // The leader epoch is in the response from v5.
                                .with_committed_leader_epoch(if version >= 5 { e } else { -1 })
                                .with_metadata(metadata(m))
                                .with_error_code(error)
                        })
                        .collect(),
                )
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
    let request: OffsetFetchRequest = decode(header, body)?;
    let group_allowed =
        |group: &str| session.allowed(Operation::Describe, ResourceType::Group, group);
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                if !group_allowed(g.group_id.as_str()) {
                    return group.with_error_code(ResponseError::GroupAuthorizationFailed.code());
                }
                if !broker.coordinates(g.group_id.as_str()) {
                    return group.with_error_code(ResponseError::NotCoordinator.code());
                }
                let offsets = broker
                    .groups
                    .offsets(g.group_id.as_str())
                    .unwrap_or_default();
                let wanted = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (t.name.as_str().to_string(), t.partition_indexes.clone()))
                        .collect()
                });
                group.with_topics(
                    rows(&offsets, wanted, session)
                        .into_iter()
                        .map(|(t, parts)| {
                            OffsetFetchResponseTopics::default()
                                .with_name(TopicName(StrBytes::from_string(t)))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, o, e, m, error)| {
                                            OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(o)
                                                .with_committed_leader_epoch(e)
                                                .with_metadata(metadata(m))
                                                .with_error_code(error)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
            })
            .collect();
        return Ok(frame(
            header,
            &OffsetFetchResponse::default().with_groups(groups),
        ));
    }
    let wanted = request.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.as_str().to_string(), t.partition_indexes.clone()))
            .collect()
    });
    if !group_allowed(request.group_id.as_str()) {
        let error = ResponseError::GroupAuthorizationFailed.code();
        let response = if version >= 2 {
            OffsetFetchResponse::default().with_error_code(error)
        } else {
            OffsetFetchResponse::default().with_topics(topics(failed(wanted, error), version))
        };
        return Ok(frame(header, &response));
    }
    if !broker.coordinates(request.group_id.as_str()) {
        return Ok(frame(
            header,
            &OffsetFetchResponse::default().with_error_code(ResponseError::NotCoordinator.code()),
        ));
    }
    let offsets = broker
        .groups
        .offsets(request.group_id.as_str())
        .unwrap_or_default();
    let found = rows(&offsets, wanted, session);
    Ok(frame(
        header,
        &OffsetFetchResponse::default().with_topics(topics(found, version)),
    ))
}
