//! DescribeGroups: state, protocol, members with their metadata and assignments.
//! Authorization: DESCRIBE on each group (GROUP_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, GROUP_OPERATIONS};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let version = header.request_api_version;
    let request: DescribeGroupsRequest = decode(header, body)?;
    let groups = request
        .groups
        .iter()
        .map(|id| {
            if !session.allowed(Operation::Describe, ResourceType::Group, id.as_str()) {
                return DescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            let ops = if request.include_authorized_operations {
                session.authorized_operations(ResourceType::Group, id.as_str(), GROUP_OPERATIONS)
            } else {
                i32::MIN
            };
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(ops);
            if !broker.coordinates(id.as_str()) {
                return base.with_error_code(ResponseError::NotCoordinator.code());
            }
            let Some(g) = broker.groups.describe(id.as_str()) else {
                return base.with_group_state(StrBytes::from_static_str("Dead"));
            };
            base.with_group_state(StrBytes::from_static_str(g.state))
                .with_protocol_type(StrBytes::from_string(g.protocol_type))
                .with_protocol_data(StrBytes::from_string(g.protocol_name))
                .with_members(
                    g.members
                        .into_iter()
                        .map(|m| {
                            let member = DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.id))
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment);
                            if version >= 4 {
                                member.with_group_instance_id(
                                    m.instance_id.map(StrBytes::from_string),
                                )
                            } else {
                                member
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    Ok(frame(
        header,
        &DescribeGroupsResponse::default().with_groups(groups),
    ))
}
