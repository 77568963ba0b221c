//! One module per Kafka API. [`APIS`] is the single list of what this broker implements: one
//! entry per API with its versions (ApiVersions advertises exactly these), its label, its
//! decoder and its handler. Adding an API is one module and one entry.

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
use futures::future::BoxFuture;
use kafka_protocol::messages as m;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;

/// A request handler: the broker, the request's header and body (after the header), and the
/// connection's session.
pub type Handler = for<'a> fn(
    &'a Arc<Broker>,
    RequestHeader,
    Bytes,
    &'a Session,
) -> BoxFuture<'a, anyhow::Result<Reply>>;

/// One implemented API: everything the broker knows about it, in one entry.
pub struct Api {
    pub key: ApiKey,
    /// The versions served and advertised by ApiVersions.
    pub min: i16,
    pub max: i16,
    /// The metric and span label.
    pub label: &'static str,
    /// Decodes a body exactly as the handler does, without acting on it (the fuzz target).
    pub decode: fn(&RequestHeader, &mut Bytes) -> anyhow::Result<()>,
    /// `None`: answered by the connection itself (ApiVersions, SASL).
    pub handle: Option<Handler>,
}

/// An [`Api`] entry: key, versions, the request type, and how to handle it (`connection` for
/// the APIs the connection answers itself).
macro_rules! api {
    ($key:ident, $min:expr, $max:expr, $request:ty, connection) => {
        Api {
            key: ApiKey::$key,
            min: $min,
            max: $max,
            label: stringify!($key),
            decode: |header, body| frame::decode::<$request>(header, body).map(drop),
            handle: None,
        }
    };
    ($key:ident, $min:expr, $max:expr, $request:ty, |$broker:ident, $header:ident, $body:ident, $session:ident| $handle:expr) => {
        api!($key, $min, $max, $request, decode: |header, body| frame::decode::<$request>(header, body).map(drop), |$broker, $header, $body, $session| $handle)
    };
    ($key:ident, $min:expr, $max:expr, $request:ty, decode: $decode:expr, |$broker:ident, $header:ident, $body:ident, $session:ident| $handle:expr) => {
        Api {
            key: ApiKey::$key,
            min: $min,
            max: $max,
            label: stringify!($key),
            decode: $decode,
            handle: Some(|$broker, $header, $body, $session| {
                Box::pin(async move {
                    #[allow(unused_mut)]
                    let mut $body = $body;
                    Ok($handle)
                })
            }),
        }
    };
}

/// Every implemented API, at the versions implemented. ApiVersions advertises exactly these.
pub static APIS: &[Api] = &[
    api!(Produce, 3, 9, m::ProduceRequest, decode: decode_produce, |broker, header, body, session| {
        produce::handle(broker, header, &mut body, session).await?
    }),
    api!(
        Fetch,
        4,
        12,
        m::FetchRequest,
        |broker, header, body, session| {
            fetch::handle(broker, header, &mut body, session).await?
        }
    ),
    // Timestamp lookups read and decompress batches: off the runtime threads.
    api!(
        ListOffsets,
        1,
        9,
        m::ListOffsetsRequest,
        |broker, header, body, session| {
            let (broker, session) = (broker.clone(), session.clone());
            Reply::Later(tokio::task::spawn_blocking(move || {
                list_offsets::handle(&broker, &header, &mut body, &session).unwrap_or_else(
                    |error| {
                        tracing::warn!(%error, "ListOffsets failed; closing the connection");
                        frame::Frame::Failed
                    },
                )
            }))
        }
    ),
    api!(
        Metadata,
        1,
        12,
        m::MetadataRequest,
        |broker, header, body, session| {
            Reply::Now(metadata::handle(broker, &header, &mut body, session).await?)
        }
    ),
    api!(ApiVersions, 0, 3, m::ApiVersionsRequest, connection),
    api!(
        CreateTopics,
        2,
        7,
        m::CreateTopicsRequest,
        |broker, header, body, session| {
            Reply::Now(create_topics::handle(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        DeleteTopics,
        1,
        6,
        m::DeleteTopicsRequest,
        |broker, header, body, session| {
            Reply::Now(delete_topics::handle(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        OffsetForLeaderEpoch,
        2,
        4,
        m::OffsetForLeaderEpochRequest,
        |broker, header, body, session| {
            Reply::Now(offset_for_leader_epoch::handle(
                broker, &header, &mut body, session,
            )?)
        }
    ),
    api!(
        InitProducerId,
        0,
        4,
        m::InitProducerIdRequest,
        |broker, header, body, session| {
            Reply::Now(init_producer_id::handle(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        DeleteRecords,
        0,
        2,
        m::DeleteRecordsRequest,
        |broker, header, body, session| {
            Reply::Now(delete_records::handle(broker, &header, &mut body, session)?)
        }
    ),
    api!(
        DescribeConfigs,
        1,
        4,
        m::DescribeConfigsRequest,
        |broker, header, body, session| {
            Reply::Now(describe_configs::handle(
                broker, &header, &mut body, session,
            )?)
        }
    ),
    api!(
        AlterConfigs,
        0,
        2,
        m::AlterConfigsRequest,
        |broker, header, body, session| {
            Reply::Now(alter_configs::handle(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        IncrementalAlterConfigs,
        0,
        1,
        m::IncrementalAlterConfigsRequest,
        |broker, header, body, session| {
            Reply::Now(
                incremental_alter_configs::handle(broker, &header, &mut body, session).await?,
            )
        }
    ),
    api!(
        CreatePartitions,
        0,
        3,
        m::CreatePartitionsRequest,
        |broker, header, body, session| {
            Reply::Now(create_partitions::handle(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        DescribeLogDirs,
        1,
        4,
        m::DescribeLogDirsRequest,
        |broker, header, body, session| {
            Reply::Now(describe_log_dirs::handle(
                broker, &header, &mut body, session,
            )?)
        }
    ),
    api!(
        DescribeCluster,
        0,
        1,
        m::DescribeClusterRequest,
        |broker, header, body, session| {
            Reply::Now(describe_cluster::handle(
                broker, &header, &mut body, session,
            )?)
        }
    ),
    api!(
        FindCoordinator,
        0,
        4,
        m::FindCoordinatorRequest,
        |broker, header, body, session| {
            Reply::Now(find_coordinator::handle(
                broker, &header, &mut body, session,
            )?)
        }
    ),
    api!(
        JoinGroup,
        0,
        9,
        m::JoinGroupRequest,
        |broker, header, body, session| { join_group::handle(broker, header, &mut body, session)? }
    ),
    api!(
        SyncGroup,
        0,
        5,
        m::SyncGroupRequest,
        |broker, header, body, session| { sync_group::handle(broker, header, &mut body, session)? }
    ),
    api!(
        Heartbeat,
        0,
        4,
        m::HeartbeatRequest,
        |broker, header, body, session| {
            Reply::Now(heartbeat::handle(broker, &header, &mut body, session)?)
        }
    ),
    api!(
        LeaveGroup,
        0,
        5,
        m::LeaveGroupRequest,
        |broker, header, body, session| {
            Reply::Now(leave_group::handle(broker, &header, &mut body, session)?)
        }
    ),
    api!(
        OffsetCommit,
        2,
        8,
        m::OffsetCommitRequest,
        |broker, header, body, session| {
            offset_commit::handle(broker, header, &mut body, session)?
        }
    ),
    api!(
        OffsetFetch,
        1,
        8,
        m::OffsetFetchRequest,
        |broker, header, body, session| {
            Reply::Now(offset_fetch::handle(broker, &header, &mut body, session)?)
        }
    ),
    api!(
        ListGroups,
        0,
        4,
        m::ListGroupsRequest,
        |broker, header, body, session| {
            Reply::Now(list_groups::handle(broker, &header, &mut body, session)?)
        }
    ),
    api!(
        DescribeGroups,
        0,
        5,
        m::DescribeGroupsRequest,
        |broker, header, body, session| {
            Reply::Now(describe_groups::handle(
                broker, &header, &mut body, session,
            )?)
        }
    ),
    api!(
        DeleteGroups,
        0,
        2,
        m::DeleteGroupsRequest,
        |broker, header, body, session| {
            Reply::Now(delete_groups::handle(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        OffsetDelete,
        0,
        0,
        m::OffsetDeleteRequest,
        |broker, header, body, session| {
            Reply::Now(offset_delete::handle(broker, &header, &mut body, session).await?)
        }
    ),
    // v0 is advertised because librdkafka (before 2.10) looks for it to enable SASL at all;
    // a v0 handshake (raw SASL tokens after it) is refused, clients then use v1.
    api!(SaslHandshake, 0, 1, m::SaslHandshakeRequest, connection),
    api!(
        SaslAuthenticate,
        0,
        2,
        m::SaslAuthenticateRequest,
        connection
    ),
    api!(
        CreateAcls,
        1,
        3,
        m::CreateAclsRequest,
        |broker, header, body, session| {
            Reply::Now(acls::create(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        DescribeAcls,
        1,
        3,
        m::DescribeAclsRequest,
        |broker, header, body, session| {
            Reply::Now(acls::describe(broker, &header, &mut body, session)?)
        }
    ),
    api!(
        DeleteAcls,
        1,
        3,
        m::DeleteAclsRequest,
        |broker, header, body, session| {
            Reply::Now(acls::delete(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        DescribeUserScramCredentials,
        0,
        0,
        m::DescribeUserScramCredentialsRequest,
        |broker, header, body, session| {
            Reply::Now(scram_credentials::describe(broker, &header, &mut body, session).await?)
        }
    ),
    api!(
        AlterUserScramCredentials,
        0,
        0,
        m::AlterUserScramCredentialsRequest,
        |broker, header, body, session| {
            Reply::Now(scram_credentials::alter(broker, &header, &mut body, session).await?)
        }
    ),
];

/// The entry of an implemented API.
pub fn api(key: ApiKey) -> Option<&'static Api> {
    APIS.iter().find(|a| a.key == key)
}

/// The metric label of an API ("other" for one not implemented: a bounded label set).
pub fn label(key: ApiKey) -> &'static str {
    api(key).map_or("other", |a| a.label)
}

pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    api(key).map(|a| (a.min, a.max))
}

pub async fn handle(
    broker: &Arc<Broker>,
    key: ApiKey,
    header: RequestHeader,
    body: Bytes,
    session: &Session,
) -> anyhow::Result<Reply> {
    match api(key).and_then(|a| a.handle) {
        Some(handle) => handle(broker, header, body, session).await,
        None => anyhow::bail!("API {key:?} is not supported"),
    }
}

/// Produce's decoding includes the batch validation a produce request goes through.
fn decode_produce(header: &RequestHeader, body: &mut Bytes) -> anyhow::Result<()> {
    let request: m::ProduceRequest = frame::decode(header, body)?;
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
    Ok(())
}

/// Decodes a request frame's body (header and request) exactly as the handlers do, without
/// acting on it: the entry point of the request fuzz target. Any input returns; none panics.
pub fn decode_request(mut body: Bytes) -> anyhow::Result<()> {
    let (key, header) = frame::parse_header(&mut body)?;
    let Some(api) = api(key) else {
        anyhow::bail!("API {key:?} is not supported");
    };
    let version = header.request_api_version;
    // Unknown ApiVersions versions are answered, not decoded.
    if key == ApiKey::ApiVersions && !(api.min..=api.max).contains(&version) {
        return Ok(());
    }
    anyhow::ensure!(
        (api.min..=api.max).contains(&version),
        "unsupported version"
    );
    (api.decode)(&header, &mut body)
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
        for api in APIS {
            let mut frame = Vec::new();
            frame.extend_from_slice(&(api.key as i16).to_be_bytes());
            frame.extend_from_slice(&api.max.to_be_bytes());
            frame.extend_from_slice(&1i32.to_be_bytes());
            frame.extend_from_slice(&(-1i16).to_be_bytes());
            frame.extend_from_slice(&[0; 8]);
            if let Err(e) = decode_request(Bytes::from(frame)) {
                assert!(!e.to_string().contains("no decoder"), "{:?}: {e}", api.key);
            }
        }
    }
}
