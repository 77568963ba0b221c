//! JoinGroup: answered when the group's rebalance completes. A first join without a member id
//! gets MEMBER_ID_REQUIRED with an id (v4+, KIP-394); static members (`group.instance.id`,
//! v5+) keep their identity across restarts. Authorization: READ on the group
//! (GROUP_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Reply};
use crate::broker::Broker;
use crate::error::group_code;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;
use std::time::Duration;

pub fn handle(
    broker: &Arc<Broker>,
    header: RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Reply> {
    let request: JoinGroupRequest = decode(&header, body)?;
    let version = header.request_api_version;
    if !session.allowed(
        Operation::Read,
        ResourceType::Group,
        request.group_id.as_str(),
    ) {
        let response = failed(
            &request,
            version,
            ResponseError::GroupAuthorizationFailed.code(),
        );
        return Ok(Reply::Now(frame(&header, &response)));
    }
    let broker = broker.clone();
    let peer = session.peer.as_str();
    let host = format!("/{}", peer.rsplit_once(':').map_or(peer, |(h, _)| h));
    Ok(Reply::Later(tokio::spawn(async move {
        let session_timeout = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
        // v0 has no rebalance timeout: it is the session timeout.
        let rebalance = if version >= 1 {
            Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64)
        } else {
            session_timeout
        };
        let outcome = broker
            .groups
            .join(
                request.group_id.as_str(),
                request.member_id.as_str(),
                request
                    .group_instance_id
                    .as_ref()
                    .map(|s| s.as_str().to_string()),
                header.client_id.as_deref().unwrap_or(""),
                &host,
                session_timeout,
                rebalance,
                request.protocol_type.as_str(),
                request
                    .protocols
                    .iter()
                    .map(|p| (p.name.as_str().to_string(), p.metadata.clone()))
                    .collect(),
                version >= 4,
            )
            .await;
        let response = match outcome {
            Ok(o) if o.member_id_required => JoinGroupResponse::default()
                .with_error_code(ResponseError::MemberIdRequired.code())
                .with_generation_id(-1)
                .with_member_id(StrBytes::from_string(o.member_id)),
            Ok(o) => {
                let mut r = JoinGroupResponse::default()
                    .with_generation_id(o.generation)
                    .with_protocol_name(Some(StrBytes::from_string(o.protocol_name)))
                    .with_leader(StrBytes::from_string(o.leader))
                    .with_member_id(StrBytes::from_string(o.member_id))
                    .with_members(
                        o.members
                            .into_iter()
                            .map(|(id, instance, metadata)| {
                                let m = JoinGroupResponseMember::default()
                                    .with_member_id(StrBytes::from_string(id))
                                    .with_metadata(metadata);
                                if version >= 5 {
                                    m.with_group_instance_id(instance.map(StrBytes::from_string))
                                } else {
                                    m
                                }
                            })
                            .collect(),
                    );
                if version >= 7 {
                    r = r.with_protocol_type(Some(StrBytes::from_string(o.protocol_type)));
                }
                r
            }
            Err(e) => failed(&request, version, group_code(e)),
        };
        frame(&header, &response)
    })))
}

/// The response to a join that failed with `error`.
fn failed(request: &JoinGroupRequest, version: i16, error: i16) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error)
        .with_generation_id(-1)
        .with_member_id(request.member_id.clone())
        .with_protocol_name(if version >= 7 {
            None
        } else {
            Some(StrBytes::default())
        })
}
