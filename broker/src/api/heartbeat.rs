//! Heartbeat: keeps a member's session; tells it when a rebalance is under way.
//! Authorization: READ on the group (GROUP_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::group_code;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: HeartbeatRequest = decode(header, body)?;
    let group = request.group_id.as_str();
    let error = if !session.allowed(Operation::Read, ResourceType::Group, group) {
        ResponseError::GroupAuthorizationFailed.code()
    } else {
        match broker.groups.heartbeat(
            group,
            request.generation_id,
            request.member_id.as_str(),
            request.group_instance_id.as_ref().map(|s| s.as_str()),
        ) {
            Ok(()) => 0,
            Err(e) => group_code(e),
        }
    };
    Ok(frame(
        header,
        &HeartbeatResponse::default().with_error_code(error),
    ))
}
