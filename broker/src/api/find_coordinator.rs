//! FindCoordinator: this broker coordinates every group (v4 batches the keys).

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
    let host = StrBytes::from_string(broker.advertised_host.clone());
    let node = BrokerId(broker.node_id.0);
    let error = if request.key_type == KEY_TYPE_GROUP {
        0
    } else {
        // Transactions are not supported. A retriable error would leave a transactional
        // producer retrying until its timeout; this one fails initTransactions at once.
        ResponseError::UnsupportedVersion.code()
    };
    let response = if header.request_api_version >= 4 {
        FindCoordinatorResponse::default().with_coordinators(
            request
                .coordinator_keys
                .iter()
                .map(|key| {
                    let c = Coordinator::default()
                        .with_key(key.clone())
                        .with_error_code(error);
                    if error == 0 {
                        c.with_node_id(node)
                            .with_host(host.clone())
                            .with_port(broker.advertised_port)
                    } else {
                        c.with_node_id(BrokerId(-1)).with_port(-1)
                    }
                })
                .collect(),
        )
    } else if error == 0 {
        FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(host)
            .with_port(broker.advertised_port)
    } else {
        FindCoordinatorResponse::default()
            .with_error_code(error)
            .with_node_id(BrokerId(-1))
            .with_port(-1)
    };
    Ok(frame(header, &response))
}
