//! ListGroups, with the state filter of v4+. Authorization: all groups with DESCRIBE on the
//! cluster, otherwise only those the session may DESCRIBE.

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType, CLUSTER_NAME};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse, RequestHeader};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: ListGroupsRequest = decode(header, body)?;
    let all = session.may(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME);
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| g.state != "Dead")
        .filter(|g| all || session.may(Operation::Describe, ResourceType::Group, &g.id))
        .filter(|g| {
            request.states_filter.is_empty()
                || request
                    .states_filter
                    .iter()
                    .any(|s| s.as_str().eq_ignore_ascii_case(g.state))
        })
        .map(|g| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if header.request_api_version >= 4 {
                listed.with_group_state(StrBytes::from_static_str(g.state))
            } else {
                listed
            }
        })
        .collect();
    Ok(frame(
        header,
        &ListGroupsResponse::default().with_groups(groups),
    ))
}
