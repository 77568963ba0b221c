//! OffsetFetch: committed offsets with their leader epoch and metadata, for one group (v1-7)
//! or several (v8+); all of a group's partitions when no topics are named.

use crate::broker::Broker;
use crate::group::GroupOffsets;
use crate::server::{decode, frame, Frame};
use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

/// (topic, [(partition, offset, leader epoch, metadata)]) for the requested or all partitions.
type Rows = Vec<(String, Vec<(i32, i64, i32, Option<String>)>)>;

fn rows(offsets: &GroupOffsets, requested: Option<Vec<(String, Vec<i32>)>>) -> Rows {
    match requested {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                let r = parts
                    .into_iter()
                    .map(|p| match offsets.get(&t, p) {
                        Some(e) => (p, e.offset, e.leader_epoch, e.metadata.clone()),
                        None => (p, -1, -1, Some(String::new())),
                    })
                    .collect();
                (t, r)
            })
            .collect(),
        None => offsets
            .offsets
            .iter()
            .map(|(t, parts)| {
                (
                    t.clone(),
                    parts
                        .iter()
                        .map(|(p, e)| (*p, e.offset, e.leader_epoch, e.metadata.clone()))
                        .collect(),
                )
            })
            .collect(),
    }
}

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
) -> anyhow::Result<Frame> {
    let version = header.request_api_version;
    let request: OffsetFetchRequest = decode(header, body)?;
    let epoch = |e: i32| if version >= 5 { e } else { -1 };
    let meta = |m: Option<String>| Some(StrBytes::from_string(m.unwrap_or_default()));
    if version >= 8 {
        let groups = request
            .groups
            .iter()
            .map(|g| {
                if !broker.coordinates(g.group_id.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(ResponseError::NotCoordinator.code());
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
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_topics(
                        rows(&offsets, wanted)
                            .into_iter()
                            .map(|(t, parts)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(StrBytes::from_string(t)))
                                    .with_partitions(
                                        parts
                                            .into_iter()
                                            .map(|(p, o, e, m)| {
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(p)
                                                    .with_committed_offset(o)
                                                    .with_committed_leader_epoch(e)
                                                    .with_metadata(meta(m))
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
    let wanted = request.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (t.name.as_str().to_string(), t.partition_indexes.clone()))
            .collect()
    });
    let topics = rows(&offsets, wanted)
        .into_iter()
        .map(|(t, parts)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(t)))
                .with_partitions(
                    parts
                        .into_iter()
                        .map(|(p, o, e, m)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(epoch(e))
                                .with_metadata(meta(m))
                        })
                        .collect(),
                )
        })
        .collect();
    Ok(frame(
        header,
        &OffsetFetchResponse::default().with_topics(topics),
    ))
}
