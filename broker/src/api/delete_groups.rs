//! DeleteGroups: removes groups without members, with their committed offsets.
//! Authorization: DELETE on each group (GROUP_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::error::group_code;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, RequestHeader};
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub async fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: DeleteGroupsRequest = decode(header, body)?;
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in &request.groups_names {
        let error = if !session.allowed(Operation::Delete, ResourceType::Group, id.as_str()) {
            ResponseError::GroupAuthorizationFailed.code()
        } else {
            match broker.groups.delete(id.as_str()).await {
                Ok(()) => 0,
                Err(e) => group_code(e),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(error),
        );
    }
    Ok(frame(
        header,
        &DeleteGroupsResponse::default().with_results(results),
    ))
}
