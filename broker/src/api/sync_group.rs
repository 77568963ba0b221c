//! SyncGroup: the leader's assignments go to every member; the broker never reads them.
//! Authorization: READ on the group (GROUP_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Reply};
use crate::broker::Broker;
use crate::error::group_code;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::{RequestHeader, SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Reply> {
    let request: SyncGroupRequest = decode(&header, body)?;
    if !session.allowed(
        Operation::Read,
        ResourceType::Group,
        request.group_id.as_str(),
    ) {
        let response = SyncGroupResponse::default()
            .with_error_code(ResponseError::GroupAuthorizationFailed.code());
        return Ok(Reply::Now(frame(&header, &response)));
    }
    let broker = broker.clone();
    Ok(Reply::Later(tokio::spawn(async move {
        let result = broker
            .groups
            .sync(
                request.group_id.as_str(),
                request.generation_id,
                request.member_id.as_str(),
                request.group_instance_id.as_ref().map(|s| s.as_str()),
                request
                    .assignments
                    .iter()
                    .map(|a| (a.member_id.as_str().to_string(), a.assignment.clone()))
                    .collect(),
            )
            .await;
        let response = match result {
            Ok((assignment, protocol_type, protocol_name)) => {
                let r = SyncGroupResponse::default().with_assignment(assignment);
                if header.request_api_version >= 5 {
                    r.with_protocol_type(Some(StrBytes::from_string(protocol_type)))
                        .with_protocol_name(Some(StrBytes::from_string(protocol_name)))
                } else {
                    r
                }
            }
            Err(e) => SyncGroupResponse::default().with_error_code(group_code(e)),
        };
        frame(&header, &response)
    })))
}
