//! FindCoordinator: the broker that coordinates each group (v4 batches the keys); groups are
//! placed over the live brokers (see `crate::leadership`), given by their address on the
//! listener the client connected to. Authorization: DESCRIBE on the group
//! (GROUP_AUTHORIZATION_FAILED) or on the transactional id
//! (TRANSACTIONAL_ID_AUTHORIZATION_FAILED).

use crate::api::frame::{decode, frame, Frame};
use crate::broker::Broker;
use crate::security::acl::{Operation, ResourceType};
use crate::security::Session;
use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
    session: &Session,
) -> anyhow::Result<Frame> {
    let request: FindCoordinatorRequest = decode(header, body)?;
    let key_type = request.key_type;
    let find = |key: &str| match key_type {
        KEY_TYPE_GROUP if !session.allowed(Operation::Describe, ResourceType::Group, key) => {
            Err(ResponseError::GroupAuthorizationFailed)
        }
        KEY_TYPE_GROUP => broker
            .group_coordinator(key)
            .map(|b| (b.node.0, b.endpoint(&session.listener.name)))
            .ok_or(ResponseError::CoordinatorNotAvailable),
        KEY_TYPE_TRANSACTION
            if !session.allowed(Operation::Describe, ResourceType::TransactionalId, key) =>
        {
            Err(ResponseError::TransactionalIdAuthorizationFailed)
        }
        // Transactions are not supported. A retriable error would leave a transactional
        // producer retrying until its timeout; UNSUPPORTED_VERSION fails initTransactions at
        // once.
        _ => Err(ResponseError::UnsupportedVersion),
    };
    let response = if header.request_api_version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(
            request
                .coordinator_keys
                .iter()
                .map(|key| {
                    let c = Coordinator::default().with_key(key.clone());
                    match find(key.as_str()) {
                        Ok((node, (host, port))) => c
                            .with_node_id(BrokerId(node))
                            .with_host(StrBytes::from_string(host))
                            .with_port(port),
                        Err(e) => c
                            .with_error_code(e.code())
                            .with_node_id(BrokerId(-1))
                            .with_port(-1),
                    }
                })
                .collect(),
        )
    } else {
        match find(request.key.as_str()) {
            Ok((node, (host, port))) => FindCoordinatorResponse::default()
                .with_node_id(BrokerId(node))
                .with_host(StrBytes::from_string(host))
                .with_port(port),
            Err(e) => FindCoordinatorResponse::default()
                .with_error_code(e.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        }
    };
    Ok(frame(header, &response))
}
