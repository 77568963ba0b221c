//! LeaveGroup: one member (v0-2) or a batch of members by id or instance id (v3+).
//! Authorization: READ on the group (GROUP_AUTHORIZATION_FAILED, the top-level error).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::group_code;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: LeaveGroupRequest = decode(header, body)?;
    if !session.allowed(
        Operation::Read,
        ResourceType::Group,
        request.group_id.as_str(),
    ) {
        let response = LeaveGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
        return Ok(frame(header, &response));
    }
    let batched = header.request_api_version >= 3;
    let members: Vec<(String, Option<String>)> = if batched {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_string(),
                    m.group_instance_id.as_ref().map(|s| s.as_str().to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.as_str().to_string(), None)]
    };
    let response = match broker.groups.leave(request.group_id.as_str(), &members) {
        Err(e) => LeaveGroupResponse::default().with_error_code(group_code(e)),
        Ok(results) if batched => LeaveGroupResponse::default().with_members(
            request
                .members
                .iter()
                .zip(results)
                .map(|(m, r)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id.clone())
                        .with_group_instance_id(m.group_instance_id.clone())
                        .with_error_code(r.err().map_or(0, group_code))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default().with_error_code(
            results
                .into_iter()
                .next()
                .and_then(|r| r.err())
                .map_or(0, group_code),
        ),
    };
    Ok(frame(header, &response))
}
