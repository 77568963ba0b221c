//! Heartbeat: keeps a member's session; tells it when a rebalance is under way.

use super::groups::code;
use crate::broker::Broker;
use crate::server::{decode, frame, Frame};
use bytes::Bytes;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse, RequestHeader};
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
) -> anyhow::Result<Frame> {
    let request: HeartbeatRequest = decode(header, body)?;
    let error = match broker.groups.heartbeat(
        request.group_id.as_str(),
        request.generation_id,
        request.member_id.as_str(),
        request.group_instance_id.as_ref().map(|s| s.as_str()),
    ) {
        Ok(()) => 0,
        Err(e) => code(e),
    };
    Ok(frame(
        header,
        &HeartbeatResponse::default().with_error_code(error),
    ))
}
