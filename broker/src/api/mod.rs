//! One module per Kafka API. [`SUPPORTED`] is the single list of what this broker implements,
//! at which versions; ApiVersions advertises exactly it.

pub mod acls;
pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod fetch;
pub mod find_coordinator;
pub mod frame;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sasl;
pub mod scram_credentials;
pub mod sync_group;

use crate::api::frame::Reply;
use crate::broker::Broker;
use crate::log::partition::Partition;
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;

/// Implemented APIs and version ranges.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 9),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeLogDirs, 1, 4),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // v0 is advertised because librdkafka (before 2.10) looks for it to enable SASL at all;
    // a v0 handshake (raw SASL tokens after it) is refused, clients then use v1.
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
];

/// The metric label of an API.
pub fn label(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::OffsetForLeaderEpoch => "OffsetForLeaderEpoch",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::DeleteRecords => "DeleteRecords",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::DescribeLogDirs => "DescribeLogDirs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        ApiKey::CreateAcls => "CreateAcls",
        ApiKey::DescribeAcls => "DescribeAcls",
        ApiKey::DeleteAcls => "DeleteAcls",
        ApiKey::DescribeUserScramCredentials => "DescribeUserScramCredentials",
        ApiKey::AlterUserScramCredentials => "AlterUserScramCredentials",
        _ => "other",
    }
}

pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

pub async fn handle(
    broker: &Arc<Broker>,
    key: ApiKey,
    header: RequestHeader,
    mut body: Bytes,
    session: &Session,
) -> anyhow::Result<Reply> {
    Ok(match key {
        ApiKey::FindCoordinator => Reply::Now(find_coordinator::handle(
            broker, &header, &mut body, session,
        )?),
        ApiKey::JoinGroup => join_group::handle(broker, header, &mut body, session)?,
        ApiKey::SyncGroup => sync_group::handle(broker, header, &mut body, session)?,
        ApiKey::Heartbeat => Reply::Now(heartbeat::handle(broker, &header, &mut body, session)?),
        ApiKey::LeaveGroup => Reply::Now(leave_group::handle(broker, &header, &mut body, session)?),
        ApiKey::OffsetCommit => offset_commit::handle(broker, header, &mut body, session)?,
        ApiKey::OffsetFetch => {
            Reply::Now(offset_fetch::handle(broker, &header, &mut body, session)?)
        }
        ApiKey::ListGroups => Reply::Now(list_groups::handle(broker, &header, &mut body, session)?),
        ApiKey::DescribeGroups => Reply::Now(describe_groups::handle(
            broker, &header, &mut body, session,
        )?),
        ApiKey::DeleteGroups => {
            Reply::Now(delete_groups::handle(broker, &header, &mut body, session).await?)
        }
        ApiKey::OffsetDelete => {
            Reply::Now(offset_delete::handle(broker, &header, &mut body, session).await?)
        }
        ApiKey::Produce => produce::handle(broker, header, &mut body, session).await?,
        ApiKey::Fetch => fetch::handle(broker, header, &mut body, session).await?,
        // Timestamp lookups read and decompress batches: off the runtime threads.
        ApiKey::ListOffsets => {
            let broker = broker.clone();
            let session = session.clone();
            Reply::Later(tokio::task::spawn_blocking(move || {
                list_offsets::handle(&broker, &header, &mut body, &session).unwrap_or_else(
                    |error| {
                        tracing::warn!(%error, "ListOffsets failed; closing the connection");
                        crate::api::frame::Frame::Failed
                    },
                )
            }))
        }
        ApiKey::Metadata => {
            Reply::Now(metadata::handle(broker, &header, &mut body, session).await?)
        }
        ApiKey::CreateTopics => {
            Reply::Now(create_topics::handle(broker, &header, &mut body, session).await?)
        }
        ApiKey::DeleteTopics => {
            Reply::Now(delete_topics::handle(broker, &header, &mut body, session).await?)
        }
        ApiKey::DescribeConfigs => Reply::Now(describe_configs::handle(
            broker, &header, &mut body, session,
        )?),
        ApiKey::AlterConfigs => {
            Reply::Now(alter_configs::handle(broker, &header, &mut body, session).await?)
        }
        ApiKey::IncrementalAlterConfigs => Reply::Now(
            incremental_alter_configs::handle(broker, &header, &mut body, session).await?,
        ),
        ApiKey::CreatePartitions => {
            Reply::Now(create_partitions::handle(broker, &header, &mut body, session).await?)
        }
        ApiKey::DescribeCluster => Reply::Now(describe_cluster::handle(
            broker, &header, &mut body, session,
        )?),
        ApiKey::DescribeLogDirs => Reply::Now(describe_log_dirs::handle(
            broker, &header, &mut body, session,
        )?),
        ApiKey::DeleteRecords => {
            Reply::Now(delete_records::handle(broker, &header, &mut body, session)?)
        }
        ApiKey::InitProducerId => {
            Reply::Now(init_producer_id::handle(broker, &header, &mut body, session).await?)
        }
        ApiKey::OffsetForLeaderEpoch => Reply::Now(offset_for_leader_epoch::handle(
            broker, &header, &mut body, session,
        )?),
        ApiKey::CreateAcls => Reply::Now(acls::create(broker, &header, &mut body, session).await?),
        ApiKey::DescribeAcls => Reply::Now(acls::describe(broker, &header, &mut body, session)?),
        ApiKey::DeleteAcls => Reply::Now(acls::delete(broker, &header, &mut body, session).await?),
        ApiKey::DescribeUserScramCredentials => {
            Reply::Now(scram_credentials::describe(broker, &header, &mut body, session).await?)
        }
        ApiKey::AlterUserScramCredentials => {
            Reply::Now(scram_credentials::alter(broker, &header, &mut body, session).await?)
        }
        other => anyhow::bail!("API {other:?} is not supported"),
    })
}

/// Decodes a request frame's body (header and request) exactly as the handlers do, without
/// acting on it: the entry point of the request fuzz target. Any input returns; none panics.
pub fn decode_request(mut body: Bytes) -> anyhow::Result<()> {
    use crate::api::frame::decode;
    use kafka_protocol::messages as m;
    let (key, header) = crate::api::frame::parse_header(&mut body)?;
    let Some((min, max)) = supported(key) else {
        anyhow::bail!("API {key:?} is not supported");
    };
    let version = header.request_api_version;
    if key == ApiKey::ApiVersions {
        // Unknown ApiVersions versions are answered, not decoded.
        if (0..=3).contains(&version) {
            decode::<m::ApiVersionsRequest>(&header, &mut body)?;
        }
        return Ok(());
    }
    anyhow::ensure!((min..=max).contains(&version), "unsupported version");
    match key {
        ApiKey::Produce => {
            let request: m::ProduceRequest = decode(&header, &mut body)?;
            // The batch validation a produce request goes through.
            let limits = crate::log::batch::Limits {
                max_message_bytes: 1 << 20,
                max_decompressed_bytes: 1 << 22,
                require_keys: false,
            };
            for topic in &request.topic_data {
                for p in &topic.partition_data {
                    if let Some(records) = &p.records {
                        let _ = crate::log::batch::validate_record_set(records, &limits);
                    }
                }
            }
        }
        ApiKey::Fetch => drop(decode::<m::FetchRequest>(&header, &mut body)?),
        ApiKey::ListOffsets => drop(decode::<m::ListOffsetsRequest>(&header, &mut body)?),
        ApiKey::Metadata => drop(decode::<m::MetadataRequest>(&header, &mut body)?),
        ApiKey::CreateTopics => drop(decode::<m::CreateTopicsRequest>(&header, &mut body)?),
        ApiKey::DeleteTopics => drop(decode::<m::DeleteTopicsRequest>(&header, &mut body)?),
        ApiKey::OffsetForLeaderEpoch => drop(decode::<m::OffsetForLeaderEpochRequest>(
            &header, &mut body,
        )?),
        ApiKey::InitProducerId => drop(decode::<m::InitProducerIdRequest>(&header, &mut body)?),
        ApiKey::DeleteRecords => drop(decode::<m::DeleteRecordsRequest>(&header, &mut body)?),
        ApiKey::DescribeConfigs => drop(decode::<m::DescribeConfigsRequest>(&header, &mut body)?),
        ApiKey::AlterConfigs => drop(decode::<m::AlterConfigsRequest>(&header, &mut body)?),
        ApiKey::IncrementalAlterConfigs => drop(decode::<m::IncrementalAlterConfigsRequest>(
            &header, &mut body,
        )?),
        ApiKey::CreatePartitions => drop(decode::<m::CreatePartitionsRequest>(&header, &mut body)?),
        ApiKey::DescribeLogDirs => drop(decode::<m::DescribeLogDirsRequest>(&header, &mut body)?),
        ApiKey::DescribeCluster => drop(decode::<m::DescribeClusterRequest>(&header, &mut body)?),
        ApiKey::FindCoordinator => drop(decode::<m::FindCoordinatorRequest>(&header, &mut body)?),
        ApiKey::JoinGroup => drop(decode::<m::JoinGroupRequest>(&header, &mut body)?),
        ApiKey::SyncGroup => drop(decode::<m::SyncGroupRequest>(&header, &mut body)?),
        ApiKey::Heartbeat => drop(decode::<m::HeartbeatRequest>(&header, &mut body)?),
        ApiKey::LeaveGroup => drop(decode::<m::LeaveGroupRequest>(&header, &mut body)?),
        ApiKey::OffsetCommit => drop(decode::<m::OffsetCommitRequest>(&header, &mut body)?),
        ApiKey::OffsetFetch => drop(decode::<m::OffsetFetchRequest>(&header, &mut body)?),
        ApiKey::ListGroups => drop(decode::<m::ListGroupsRequest>(&header, &mut body)?),
        ApiKey::DescribeGroups => drop(decode::<m::DescribeGroupsRequest>(&header, &mut body)?),
        ApiKey::DeleteGroups => drop(decode::<m::DeleteGroupsRequest>(&header, &mut body)?),
        ApiKey::OffsetDelete => drop(decode::<m::OffsetDeleteRequest>(&header, &mut body)?),
        ApiKey::SaslHandshake => drop(decode::<m::SaslHandshakeRequest>(&header, &mut body)?),
        ApiKey::SaslAuthenticate => drop(decode::<m::SaslAuthenticateRequest>(&header, &mut body)?),
        ApiKey::CreateAcls => drop(decode::<m::CreateAclsRequest>(&header, &mut body)?),
        ApiKey::DescribeAcls => drop(decode::<m::DescribeAclsRequest>(&header, &mut body)?),
        ApiKey::DeleteAcls => drop(decode::<m::DeleteAclsRequest>(&header, &mut body)?),
        ApiKey::DescribeUserScramCredentials => drop(decode::<
            m::DescribeUserScramCredentialsRequest,
        >(&header, &mut body)?),
        ApiKey::AlterUserScramCredentials => drop(decode::<m::AlterUserScramCredentialsRequest>(
            &header, &mut body,
        )?),
        other => anyhow::bail!("API {other:?} has no decoder here"),
    }
    Ok(())
}

/// Whether this broker leads the partition, then Kafka's check of a request's
/// `current_leader_epoch` (-1: not checked).
pub fn check_leader_epoch(partition: &Partition, requested: i32) -> Option<ResponseError> {
    if !partition.leading() {
        return Some(ResponseError::NotLeaderOrFollower);
    }
    if requested < 0 {
        return None;
    }
    let current = partition.leader_epoch().0;
    match requested.cmp(&current) {
        std::cmp::Ordering::Less => Some(ResponseError::FencedLeaderEpoch),
        std::cmp::Ordering::Greater => Some(ResponseError::UnknownLeaderEpoch),
        std::cmp::Ordering::Equal => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_api_has_a_decoder_for_the_fuzzer() {
        for (key, _, max) in SUPPORTED {
            let mut frame = Vec::new();
            frame.extend_from_slice(&(*key as i16).to_be_bytes());
            frame.extend_from_slice(&max.to_be_bytes());
            frame.extend_from_slice(&1i32.to_be_bytes());
            frame.extend_from_slice(&(-1i16).to_be_bytes());
            frame.extend_from_slice(&[0; 8]);
            if let Err(e) = decode_request(Bytes::from(frame)) {
                assert!(!e.to_string().contains("no decoder"), "{key:?}: {e}");
            }
        }
    }
}
