//! FindCoordinator: the broker that coordinates each group (v4 batches the keys); groups are
//! placed over the live brokers (see `crate::leadership`).

use crate::broker::Broker;
use crate::server::{decode, frame, Frame};
use bytes::Bytes;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

const KEY_TYPE_GROUP: i8 = 0;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
) -> anyhow::Result<Frame> {
    let request: FindCoordinatorRequest = decode(header, body)?;
    let unsupported = request.key_type != KEY_TYPE_GROUP;
    // Transactions are not supported. A retriable error would leave a transactional producer
    // retrying until its timeout; UNSUPPORTED_VERSION fails initTransactions at once.
    let find = |key: &str| {
        if unsupported {
            Err(ResponseError::UnsupportedVersion)
        } else {
            broker
                .group_coordinator(key)
                .ok_or(ResponseError::CoordinatorNotAvailable)
        }
    };
    let response = if header.request_api_version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(
            request
                .coordinator_keys
                .iter()
                .map(|key| {
                    let c = Coordinator::default().with_key(key.clone());
                    match find(key.as_str()) {
                        Ok(b) => c
                            .with_node_id(BrokerId(b.node.0))
                            .with_host(StrBytes::from_string(b.host))
                            .with_port(b.port),
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
            Ok(b) => FindCoordinatorResponse::default()
                .with_node_id(BrokerId(b.node.0))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port),
            Err(e) => FindCoordinatorResponse::default()
                .with_error_code(e.code())
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        }
    };
    Ok(frame(header, &response))
}
