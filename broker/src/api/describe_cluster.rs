//! DescribeCluster: cluster id, controller and brokers (the AdminClient's describeCluster).

use super::metadata::{bits, CLUSTER_OPERATIONS};
use crate::broker::Broker;
use crate::server::{decode, frame, Frame};
use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::sync::Arc;

/// DescribeCluster's endpoint types: brokers (1) or controllers (2).
const ENDPOINT_BROKERS: i8 = 1;

pub fn handle(
    broker: &Arc<Broker>,
    header: &RequestHeader,
    body: &mut Bytes,
) -> anyhow::Result<Frame> {
    let request: DescribeClusterRequest = decode(header, body)?;
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(
            broker.controller.load(std::sync::atomic::Ordering::Relaxed),
        ))
        .with_brokers(
            broker
                .live_brokers()
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.node.0))
                        .with_host(StrBytes::from_string(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(StrBytes::from_string))
                })
                .collect(),
        )
        .with_cluster_authorized_operations(if request.include_cluster_authorized_operations {
            bits(CLUSTER_OPERATIONS)
        } else {
            i32::MIN
        });
    if header.request_api_version >= 1 {
        if request.endpoint_type != ENDPOINT_BROKERS {
            response = response
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_brokers(Vec::new());
        }
        response = response.with_endpoint_type(ENDPOINT_BROKERS);
    }
    Ok(frame(header, &response))
}
